//! The kept HTTP client over an origin's mirrors: one GET at a time per
//! permit, mirrors in order, each response bounded before and while it is
//! read.

use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{CONTENT_LENGTH, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use tokio::sync::Semaphore;
use tokio::time::timeout;

use super::mirror::{jittered, Mirror};
use super::{MirrorStatus, OriginConfig, OriginError};
use crate::net::protocol::Counter;

/// What a response may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Exactly this many bytes (a chunk: its length in the manifest).
    Exactly(u64),
    /// At most this many (manifests, indexes, controls, policies: their caps).
    AtMost(u64),
}

impl Expect {
    fn limit(self) -> u64 {
        match self {
            Self::Exactly(n) | Self::AtMost(n) => n,
        }
    }
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    Body {
        bytes: Bytes,
        /// The response's `ETag`, for the next `If-None-Match`.
        etag: Option<String>,
        /// Which mirror answered (its position in the configuration).
        mirror: usize,
    },
    /// `304 Not Modified` to an `If-None-Match`.
    NotModified { mirror: usize },
}

/// An `ETag` longer than this is not kept (nor sent back).
const MAX_ETAG: usize = 256;
/// A `Retry-After` longer than this counts as this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// The origin's client: build once with [`OriginClient::new`], share in an `Arc`.
#[derive(Debug)]
pub struct OriginClient {
    http: reqwest::Client,
    mirrors: Mutex<Vec<Mirror>>,
    permits: Semaphore,
    config: OriginConfig,
}

impl OriginClient {
    /// The client of `config`: proxies from `HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY` and `NO_PROXY`; the built-in web roots plus the CA file.
    pub fn new(config: OriginConfig) -> Result<Self, OriginError> {
        if config.urls.is_empty() {
            return Err(OriginError::NoMirrors);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(90))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("pollen-node/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let pem = std::fs::read(path).map_err(|source| OriginError::CaFile {
                path: path.clone(),
                source,
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| {
                OriginError::CaPem {
                    path: path.clone(),
                    source,
                }
            })?;
            if certs.is_empty() {
                return Err(OriginError::CaEmpty { path: path.clone() });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(OriginError::Client)?;
        let mirrors = config.urls.iter().cloned().map(Mirror::new).collect();
        Ok(Self {
            http,
            mirrors: Mutex::new(mirrors),
            permits: Semaphore::new(config.concurrency.max(1)),
            config,
        })
    }

    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Each mirror's state, in order.
    pub fn status(&self) -> Vec<MirrorStatus> {
        let now = Instant::now();
        self.lock().iter().map(|m| m.status(now)).collect()
    }

    /// `mirror` served something that failed verification (a chunk whose
    /// BLAKE3 is not its id): it rests like a mirror that failed.
    pub fn blame(&self, mirror: usize, error: String) {
        let (base, max) = (self.config.backoff, self.config.max_backoff);
        if let Some(m) = self.lock().get_mut(mirror) {
            m.failed(Instant::now(), error, None, base, max);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Mirror>> {
        // A panic elsewhere while holding it leaves plain counters behind.
        self.mirrors.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// GETs `path` from the first mirror that answers well, in order,
    /// skipping resting ones. A failing mirror rests (jittered back-off,
    /// or its `Retry-After`) and the next one is asked. `etag` is the
    /// `ETag` a mirror (by position) gave earlier: sent to that mirror only
    /// (another one's tags mean nothing). `progress` counts body bytes as
    /// they arrive.
    pub async fn fetch(
        &self,
        path: &str,
        expect: Expect,
        etag: Option<(usize, &str)>,
        progress: Option<&Counter>,
    ) -> Result<Fetched, OriginError> {
        let count = self.lock().len();
        let mut last = None;
        let mut min_rest: Option<Duration> = None;
        for i in 0..count {
            let (url, probe) = {
                let mut mirrors = self.lock();
                let now = Instant::now();
                let Some(probe) = mirrors[i].admit(now) else {
                    // Resting, or its probe is out: asked again once that
                    // ends (a back-off's time at most).
                    let rest = mirrors[i].resting(now);
                    let rest = if rest.is_zero() {
                        self.config.backoff
                    } else {
                        rest
                    };
                    min_rest = Some(min_rest.map_or(rest, |m| m.min(rest)));
                    continue;
                };
                (mirrors[i].url.join(path), probe)
            };
            let probe = Probe {
                client: self,
                mirror: probe.then_some(i),
            };
            let url = match url {
                Ok(u) => u,
                Err(_) => {
                    return Err(OriginError::BadPath {
                        path: path.to_owned(),
                    })
                }
            };
            let tag = etag.filter(|(m, _)| *m == i).map(|(_, t)| t);
            let (result, read) = self.get(&url, i, expect, tag, progress).await;
            probe.answered();
            let mut mirrors = self.lock();
            let m = &mut mirrors[i];
            m.add_bytes(read);
            match result {
                Ok(f) => {
                    m.succeeded();
                    return Ok(f);
                }
                Err(e) => {
                    let text = crate::cli_support::one_line(&e);
                    tracing::debug!(mirror = %m.url, error = %text, "origin mirror failed");
                    if matches!(e, OriginError::NotFound { .. }) {
                        // Not a broken mirror, maybe one still syncing:
                        // noted, not rested.
                        m.note_error(text);
                    } else {
                        let (base, max) = (self.config.backoff, self.config.max_backoff);
                        m.failed(Instant::now(), text, e.retry_after(), base, max);
                    }
                    last = Some(e);
                }
            }
        }
        Err(last.unwrap_or(OriginError::BackingOff {
            wait: min_rest.unwrap_or(Duration::ZERO),
        }))
    }

    /// [`OriginClient::fetch`], with up to [`OriginConfig::retries`] more
    /// rounds after a jittered, doubling wait (or the origin's hint); a
    /// mirror that answered "not found" is not asked again.
    pub async fn fetch_retrying(
        &self,
        path: &str,
        expect: Expect,
        etag: Option<(usize, &str)>,
    ) -> Result<Fetched, OriginError> {
        let mut round = 0;
        loop {
            match self.fetch(path, expect, etag, None).await {
                Ok(f) => return Ok(f),
                Err(e @ OriginError::NotFound { .. }) => return Err(e),
                Err(e) if round >= self.config.retries => return Err(e),
                Err(e) => {
                    round += 1;
                    let wait = e.retry_after().unwrap_or_else(|| {
                        jittered(self.config.backoff, round, self.config.max_backoff)
                    });
                    tokio::time::sleep(wait.min(self.config.max_backoff)).await;
                }
            }
        }
    }

    /// One GET of `url` (mirror `mirror`); also the body bytes read.
    async fn get(
        &self,
        url: &Url,
        mirror: usize,
        expect: Expect,
        etag: Option<&str>,
        progress: Option<&Counter>,
    ) -> (Result<Fetched, OriginError>, u64) {
        let _permit = self.permits.acquire().await.ok();
        let mut read = 0;
        let result = self
            .get_inner(url, mirror, expect, etag, progress, &mut read)
            .await;
        (result, read)
    }

    async fn get_inner(
        &self,
        url: &Url,
        mirror: usize,
        expect: Expect,
        etag: Option<&str>,
        progress: Option<&Counter>,
        read: &mut u64,
    ) -> Result<Fetched, OriginError> {
        let stall = self.config.stall_timeout;
        let name = url.as_str();
        let stalled = || OriginError::Stalled {
            url: name.to_owned(),
            after: stall,
        };
        let mut request = self.http.get(url.clone());
        if let Some(tag) = etag {
            request = request.header(IF_NONE_MATCH, tag);
        }
        let mut response = timeout(stall, request.send())
            .await
            .map_err(|_| stalled())?
            .map_err(|e| OriginError::from_reqwest(name, e))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && etag.is_some() {
            return Ok(Fetched::NotModified { mirror });
        }
        if status == StatusCode::NOT_FOUND {
            return Err(OriginError::NotFound {
                url: name.to_owned(),
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(OriginError::Busy {
                url: name.to_owned(),
                status: status.as_u16(),
                retry_after: retry_after(response.headers()),
            });
        }
        if !status.is_success() {
            return Err(OriginError::Status {
                url: name.to_owned(),
                status: status.as_u16(),
            });
        }
        let limit = expect.limit();
        // Judged before a byte of the body is read.
        if let Some(len) = declared_length(response.headers()) {
            if len > limit {
                return Err(OriginError::TooLarge {
                    url: name.to_owned(),
                    got: len,
                    limit,
                });
            }
            if let Expect::Exactly(n) = expect {
                if len != n {
                    return Err(OriginError::WrongLength {
                        url: name.to_owned(),
                        got: len,
                        expected: n,
                    });
                }
            }
        }
        let etag = response
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .filter(|v| v.len() <= MAX_ETAG)
            .map(str::to_owned);
        // The capacity is bounded by the limit, never by what the server says.
        let mut body = Vec::with_capacity(limit.min(1 << 20) as usize);
        loop {
            let piece = timeout(stall, response.chunk())
                .await
                .map_err(|_| stalled())?;
            let piece = match piece {
                Ok(Some(p)) => p,
                Ok(None) => break,
                Err(e) if e.is_body() || e.is_decode() => {
                    return Err(OriginError::Truncated {
                        url: name.to_owned(),
                        got: *read,
                    })
                }
                Err(e) => return Err(OriginError::from_reqwest(name, e)),
            };
            *read += piece.len() as u64;
            if *read > limit {
                return Err(OriginError::TooLarge {
                    url: name.to_owned(),
                    got: *read,
                    limit,
                });
            }
            if let Some(c) = progress {
                c.fetch_add(piece.len() as u64, Ordering::Relaxed);
            }
            body.extend_from_slice(&piece);
        }
        if let Expect::Exactly(n) = expect {
            if *read != n {
                return Err(OriginError::Truncated {
                    url: name.to_owned(),
                    got: *read,
                });
            }
        }
        Ok(Fetched::Body {
            bytes: Bytes::from(body),
            etag,
            mirror,
        })
    }
}

/// A failing mirror's probe in flight (`mirror: None`: not a probe).
/// Dropped before its answer (the fetch was dropped), it ends the probe.
struct Probe<'a> {
    client: &'a OriginClient,
    mirror: Option<usize>,
}

impl Probe<'_> {
    /// The answer came: recording it ends the probe.
    fn answered(mut self) {
        self.mirror = None;
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if let Some(i) = self.mirror {
            if let Some(m) = self.client.lock().get_mut(i) {
                m.end_probe();
            }
        }
    }
}

/// The `Content-Length` a response declares (`None`: not given or not a number).
fn declared_length(headers: &reqwest::header::HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A `Retry-After` in seconds (an HTTP date is taken as "unknown").
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}
