//! The node's HTTPS origin source: a static tree (`pollen-seeder export
//! --origin`) served by any web server, object store or CDN, read through
//! one kept HTTP client (reqwest with rustls). This module owns the HTTP
//! side only: mirrors tried in order with back-off, proxies from the
//! environment, an extra CA, timeouts (connect, and a stall: no byte for a
//! while), bounded concurrency, a bound on every response's size (checked
//! on `Content-Length` before the body is read and again while it
//! streams), retries with jitter, and typed errors. What the bytes mean is
//! decided elsewhere: chunks, manifests, controls and policies go through
//! the driver's usual checks, exactly as from a peer (`driver::origin`).

mod client;
mod config;
mod error;
mod mirror;
mod view;

pub use client::{Expect, Fetched, OriginClient};
pub use config::{parse_origin_url, OriginConfig};
pub use error::OriginError;
pub use mirror::{MirrorState, MirrorStatus};
pub use view::OriginView;

#[cfg(test)]
mod tests;
