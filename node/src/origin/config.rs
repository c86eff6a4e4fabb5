//! The origin client's settings and the check of an origin URL.

use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;

/// How the node reaches its origins.
#[derive(Clone, Debug)]
pub struct OriginConfig {
    /// The mirrors, tried in this order (each a base URL of an exported tree).
    pub urls: Vec<Url>,
    /// An extra PEM root certificate (file), added to the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Giving up on a connection (TCP and TLS, or the proxy's) after this long.
    pub connect_timeout: Duration,
    /// A response that sends no byte for this long is abandoned (also the
    /// wait for its status line).
    pub stall_timeout: Duration,
    /// Requests in flight at most, over all mirrors.
    pub concurrency: usize,
    /// Rounds over the mirrors after the first, for manifests, indexes,
    /// controls and policies (a chunk is retried by the scheduler instead).
    pub retries: u32,
    /// The first back-off of a failing mirror (doubled, with jitter, per
    /// failure in a row, up to [`OriginConfig::max_backoff`]).
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How often the channel's index is polled for a new release.
    pub poll: Duration,
}

impl OriginConfig {
    /// The defaults for `urls`.
    pub fn new(urls: Vec<Url>) -> Self {
        Self {
            urls,
            ca_file: None,
            connect_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(30),
            concurrency: 4,
            retries: 2,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            poll: Duration::from_secs(60),
        }
    }
}

/// An origin's base URL from the command line or the config file: `http`
/// or `https` with a host and no query or fragment. A missing trailing `/`
/// is added (paths are joined below it).
pub fn parse_origin_url(s: &str) -> Result<Url, String> {
    let mut url = Url::parse(s).map_err(|e| format!("not a URL ({e}): {s}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "an origin must be an http:// or https:// URL, not {}://",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("an origin URL needs a host: {s}"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("an origin URL takes no query or fragment: {s}"));
    }
    if !url.path().ends_with('/') {
        let path = format!("{}/", url.path());
        url.set_path(&path);
    }
    Ok(url)
}
