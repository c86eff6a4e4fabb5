//! The operator console on the seeder (`serve --http ADDR`): an
//! authenticated JSON API over the releases, rollouts and the fleet's
//! status records, promote / halt / resume signed with the seeder's
//! operator key, an audit log of every action, the embedded dashboard and
//! `/metrics`. Layers: `fleet` reads the store, `views` shapes data
//! (plain functions), `actions` signs controls, `auth` and `audit` guard
//! and record, `api` is the HTTP glue and `server` the listener (TLS with
//! rustls' ring provider when a certificate is given).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use pollen_core::manifest::SecretKey;
use pollen_node::store::Store;

pub mod actions;
pub mod api;
pub mod audit;
pub mod auth;
pub mod fixture;
pub mod fleet;
pub mod observed;
pub mod server;
pub mod views;

use fleet::{Fleet, Reader, Sample, Series};

/// How often the console reads the store again.
pub const REFRESH: Duration = Duration::from_secs(2);

/// Where and how the console listens.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    pub addr: SocketAddr,
    pub tokens: PathBuf,
    /// PEM certificate chain and private key: TLS when both are given.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub audit: Option<PathBuf>,
}

/// Errors of starting the console.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConsoleError {
    #[error("--http-tokens: {0}")]
    Tokens(#[from] auth::AuthError),
    #[error("--http-audit: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("--http-cert/--http-key: {0}")]
    Tls(#[from] server::TlsError),
    #[error("binding the console on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("reading the store: {0}")]
    Fleet(#[from] fleet::FleetError),
}

/// The console's shared state.
pub struct Console {
    tokens: auth::Tokens,
    audit: audit::AuditLog,
    steerer: actions::Steerer,
    reader: Mutex<Reader>,
    fleet: RwLock<Arc<Fleet>>,
    series: Mutex<Series>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("tokens", &self.tokens)
            .finish()
    }
}

impl Console {
    /// A console over `store`, its snapshot read once.
    pub fn new(
        tokens: auth::Tokens,
        audit: audit::AuditLog,
        store: Arc<dyn Store + Send + Sync>,
        key: Option<Arc<SecretKey>>,
        deliver: actions::Deliver,
    ) -> Result<Self, ConsoleError> {
        let console = Self {
            tokens,
            audit,
            steerer: actions::Steerer::new(key, store.clone(), deliver),
            reader: Mutex::new(Reader::new(store)),
            fleet: RwLock::new(Arc::new(Fleet::default())),
            series: Mutex::new(Series::default()),
            wake: tokio::sync::Notify::new(),
        };
        console.refresh(pollen_node::unix_now())?;
        Ok(console)
    }

    /// Reads the store again and samples the series (blocking: the store).
    pub fn refresh(&self, now: u64) -> Result<(), ConsoleError> {
        let fleet = {
            let mut reader = self.reader.lock().unwrap_or_else(|p| p.into_inner());
            reader.read()?
        };
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .sample(&fleet, now);
        let seen = observed::observed(&self.fleet(), &fleet, &self.audit.recent(), |id, seq| {
            self.steerer.issued(id, seq)
        });
        for entry in seen {
            tracing::info!(channel = %entry.channel, release = entry.release, seq = ?entry.seq, action = %entry.action, "control signed elsewhere");
            if let Err(e) = self.audit.append(entry) {
                tracing::warn!(error = %e, "audit log: an observed control not recorded");
            }
        }
        *self.fleet.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(fleet);
        Ok(())
    }

    /// The newest snapshot.
    pub fn fleet(&self) -> Arc<Fleet> {
        self.fleet.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn series(&self, manifest_id: &str) -> Vec<Sample> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .of(manifest_id)
    }

    /// Asks the refresher for a new snapshot now (after an action).
    fn refresh_soon(&self) {
        self.wake.notify_one();
    }
}

/// Re-reads the store every [`REFRESH`] (or when woken) until dropped.
pub async fn refresher(console: Arc<Console>) {
    loop {
        let _ = tokio::time::timeout(REFRESH, console.wake.notified()).await;
        let c = console.clone();
        let done = tokio::task::spawn_blocking(move || c.refresh(pollen_node::unix_now())).await;
        if let Ok(Err(e)) = done {
            tracing::warn!(error = %e, "console: reading the store failed");
        }
    }
}

/// Starts the console: tokens, audit log and TLS are checked and the
/// listener bound before this returns its address; the server and the
/// refresher run as tasks of the current runtime.
pub async fn start(
    config: ConsoleConfig,
    store: Arc<dyn Store + Send + Sync>,
    key: Option<Arc<SecretKey>>,
    deliver: actions::Deliver,
) -> Result<(SocketAddr, bool), ConsoleError> {
    let tokens = auth::Tokens::load(&config.tokens)?;
    let audit = audit::AuditLog::open(config.audit.as_deref())?;
    let tls = match &config.tls {
        Some((cert, key)) => Some(server::tls_acceptor(cert, key)?),
        None => None,
    };
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .map_err(|source| ConsoleError::Bind {
            addr: config.addr,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| ConsoleError::Bind {
        addr: config.addr,
        source,
    })?;
    let console = {
        let store = store.clone();
        tokio::task::spawn_blocking(move || Console::new(tokens, audit, store, key, deliver))
            .await
            .map_err(|e| ConsoleError::Bind {
                addr: bound,
                source: std::io::Error::other(e.to_string()),
            })??
    };
    let console = Arc::new(console);
    let secure = tls.is_some();
    tokio::spawn(refresher(console.clone()));
    tokio::spawn(server::serve(listener, tls, api::router(console)));
    tracing::info!(addr = %bound, tls = secure, "operator console listening");
    Ok((bound, secure))
}
