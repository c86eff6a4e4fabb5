//! The driver's side of the update lifecycle: an [`Updater`] on its own
//! thread (hooks block, staging writes whole artifacts), fed through a
//! bounded channel, and the rollout decision of when to offer it the
//! current release.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pollen_core::rollout::{decide, Decision, RolloutControl};
use pollen_core::status::Phase;
use tokio::sync::mpsc;

use super::{DriverError, Release};
use crate::store::Store;
use crate::update::{release_ref, Outcome, Record, UpdateConfig, Updater};

/// What the driver asks of the updater thread.
#[derive(Debug)]
enum Command {
    /// Fetching; `Some`: paused, and why.
    Downloading(pollen_core::status::ReleaseRef, Option<String>),
    /// The store refused the release (over its budget), and why.
    Refuse(pollen_core::status::ReleaseRef, String),
    Hold(pollen_core::status::ReleaseRef, String),
    /// A release to install; `true`: it replaces a recalled one.
    Install(Box<pollen_core::manifest::VerifiedManifest>, bool),
}

/// What the updater thread tells the driver: every persisted record, and
/// the outcome of each install.
#[derive(Debug)]
pub(crate) struct Progress {
    pub record: Record,
    pub outcome: Option<Outcome>,
}

/// How often a held release is judged again (stages open with time, controls arrive).
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct Lifecycle {
    tx: std::sync::mpsc::SyncSender<Command>,
    pub progress: mpsc::Receiver<Progress>,
    pub record: Record,
    installing: bool,
    next_offer: Instant,
    retry: Duration,
    /// Last: `tx` is dropped first, which ends the thread's loop.
    _thread: super::joined::Bounded,
}

/// How long a stopping node waits for the lifecycle thread (it ends at
/// once unless a hook is running).
const STOP_GRACE: Duration = Duration::from_secs(3);

impl Lifecycle {
    /// Opens the record, finishes what a crash interrupted (on the thread),
    /// and starts the thread.
    pub fn spawn(
        store: Arc<dyn Store>,
        config: UpdateConfig,
        retry: Duration,
    ) -> Result<Self, DriverError> {
        let mut updater = Updater::open(store, config)?;
        let record = updater.record().clone();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Command>(8);
        let (ptx, prx) = mpsc::channel(64);
        let observer = ptx.clone();
        updater.set_observer(Box::new(move |r: &Record| {
            let _ = observer.blocking_send(Progress {
                record: r.clone(),
                outcome: None,
            });
        }));
        let thread = super::joined::Bounded::spawn("pollen-update", STOP_GRACE, move || {
            if let Err(e) = updater.recover() {
                tracing::error!(error = %e, "recovering the update lifecycle failed");
            }
            while let Ok(cmd) = rx.recv() {
                let result = match cmd {
                    Command::Downloading(r, trouble) => {
                        updater.downloading(r, trouble).map(|()| None)
                    }
                    Command::Refuse(r, why) => updater.refuse(r, why).map(|()| None),
                    Command::Hold(r, note) => updater.hold(r, &note).map(|()| None),
                    Command::Install(m, recall) => updater.install(&m, recall).map(Some),
                };
                match result {
                    Ok(outcome) => {
                        if outcome.is_some() {
                            let _ = ptx.blocking_send(Progress {
                                record: updater.record().clone(),
                                outcome,
                            });
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "update lifecycle step failed");
                        let _ = ptx.blocking_send(Progress {
                            record: updater.record().clone(),
                            outcome: Some(Outcome::Retry),
                        });
                    }
                }
            }
        })?;
        Ok(Self {
            tx,
            progress: prx,
            record,
            installing: false,
            next_offer: Instant::now(),
            retry,
            _thread: thread,
        })
    }

    pub fn on_progress(&mut self, p: Progress) {
        self.record = p.record;
        if let Some(outcome) = p.outcome {
            self.installing = false;
            let wait = match outcome {
                Outcome::Deferred | Outcome::Retry => self.retry,
                _ => RECHECK,
            };
            self.next_offer = Instant::now() + wait;
        }
    }

    /// The store refused `manifest`: recorded as failed (not given up: a
    /// larger budget after a restart tries it again).
    pub fn refuse(&mut self, manifest: &pollen_core::manifest::VerifiedManifest, why: String) {
        let _ = self
            .tx
            .try_send(Command::Refuse(release_ref(manifest), why));
    }

    /// The download of `manifest` waits (no room on the disk), and why.
    pub fn paused(&mut self, manifest: &pollen_core::manifest::VerifiedManifest, why: String) {
        let _ = self
            .tx
            .try_send(Command::Downloading(release_ref(manifest), Some(why)));
    }

    /// Offers the current release (`complete`: all its chunks held) to the
    /// updater when the rollout lets this device install it; otherwise
    /// records why it waits (`trouble`: the download is paused, and why,
    /// such as a full disk).
    #[allow(clippy::too_many_arguments)]
    pub fn tick(
        &mut self,
        release: &Release,
        complete: bool,
        trouble: Option<String>,
        device_id: &str,
        control: Option<&RolloutControl>,
        unix_now: u64,
        recalled: impl Fn(&pollen_core::manifest::ManifestId) -> bool,
    ) {
        let now = Instant::now();
        if self.installing || now < self.next_offer {
            return;
        }
        self.next_offer = now + RECHECK;
        let id = release.id();
        let r = &self.record;
        // A recalled install is replaced by the current release, older or not.
        let recall = r
            .installed
            .as_ref()
            .is_some_and(|i| recalled(&i.release.manifest));
        let settled = r.installed.as_ref().is_some_and(|i| {
            i.release.manifest == id || (i.release.release >= release.release() && !recall)
        }) || r.given_up.contains(&id);
        if settled {
            return;
        }
        let rref = release_ref(&release.manifest);
        let on_target = r.target.as_ref().is_some_and(|t| t.release.manifest == id);
        if !complete {
            if !(on_target && r.phase == Phase::Downloading && r.last_error == trouble) {
                let _ = self.tx.try_send(Command::Downloading(rref, trouble));
            }
            return;
        }
        let m = release.manifest.manifest();
        match decide(device_id, &id, &m.rollout, control, unix_now) {
            Decision::Install => {
                let cmd = Command::Install(Box::new(release.manifest.clone()), recall);
                if self.tx.try_send(cmd).is_ok() {
                    self.installing = true;
                }
            }
            Decision::NotYet => {
                let _ = self.tx.try_send(Command::Hold(
                    rref,
                    "waiting for its rollout stage to open".into(),
                ));
            }
            Decision::Halted => {
                let _ = self.tx.try_send(Command::Hold(
                    rref,
                    "rollout halted by the publisher".into(),
                ));
            }
        }
    }
}
