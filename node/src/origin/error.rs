//! What can go wrong reading an origin.

use std::time::Duration;

/// Errors of the origin client. Each failed mirror's error is kept in its
/// status; a fetch that no mirror could answer returns the last one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    #[error("reading the origin CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the origin CA file {path} holds no usable PEM certificate: {source}")]
    CaPem {
        path: std::path::PathBuf,
        source: reqwest::Error,
    },
    #[error("the origin CA file {path} holds no certificate")]
    CaEmpty { path: std::path::PathBuf },
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("no origin URL configured")]
    NoMirrors,
    #[error("not a path under an origin: {path}")]
    BadPath { path: String },
    #[error("{url}: HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("{url}: not found (HTTP 404)")]
    NotFound { url: String },
    #[error("{url}: busy (HTTP {status}), retry after {retry_after:?}")]
    Busy {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("every mirror is backing off for {wait:?} more")]
    BackingOff { wait: Duration },
    #[error("{url}: response too large: {got} bytes, at most {limit} allowed")]
    TooLarge { url: String, got: u64, limit: u64 },
    #[error("{url}: response of {got} bytes, expected exactly {expected}")]
    WrongLength {
        url: String,
        got: u64,
        expected: u64,
    },
    #[error("{url}: response truncated after {got} bytes")]
    Truncated { url: String, got: u64 },
    #[error("{url}: no byte for {after:?}: stalled")]
    Stalled { url: String, after: Duration },
    #[error("{url}: cannot connect (directly, through the proxy, or TLS)")]
    Connect { url: String, source: reqwest::Error },
    #[error("{url}: request failed")]
    Http { url: String, source: reqwest::Error },
}

impl OriginError {
    /// How long the origin asked to be left alone, if it said so.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Busy { retry_after, .. } => *retry_after,
            Self::BackingOff { wait } => Some(*wait),
            _ => None,
        }
    }

    /// The origin answered "busy" (429/503) or every mirror is resting.
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. } | Self::BackingOff { .. })
    }

    /// From a reqwest error while connecting or reading (the TLS or
    /// proxy reason is in its chain of causes).
    pub(crate) fn from_reqwest(url: &str, source: reqwest::Error) -> Self {
        let url = url.to_owned();
        if source.is_connect() {
            Self::Connect { url, source }
        } else {
            Self::Http { url, source }
        }
    }
}
