//! The update lifecycle (DESIGN.md §6): Idle → Downloading → Verified →
//! Staged → Switched (pending health) → Committed | RolledBack.
//!
//! [`Updater`] owns the persisted [`Record`] of one channel. Every
//! transition is written to the store *before* it takes effect, so a node
//! killed at any point finds, on restart ([`Updater::recover`]), either a
//! step to redo (staging is idempotent; a pending health check runs again
//! and counts as an attempt) or a result to make true again (the `active`
//! slot link of a commit or a rollback). Commit is final: nothing rolls back
//! a committed release, and only commit raises the anti-rollback floor.
//!
//! Hooks are the operator's commands (see [`Hooks`]); the updater runs them
//! with a timeout and records what they said. The rollout decision (stage,
//! halt) is the caller's: it calls [`Updater::install`] only when the
//! device may install.

mod failpoint;
mod hooks;
mod slots;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pollen_core::manifest::{ManifestId, VerifiedManifest};
use pollen_core::status::{Phase, ReleaseRef};
use serde::{Deserialize, Serialize};

use crate::store::{self, Store, StoreError};

pub use failpoint::{hit as failpoint, POINTS as FAILPOINTS};
pub use hooks::HookError;
pub use slots::{Slot, SlotInfo, Slots};

/// Errors of the lifecycle.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpdateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("update state is corrupt: lifecycle record: {0}")]
    Record(#[source] serde_json::Error),
    #[error("encoding the lifecycle record: {0}")]
    EncodeRecord(#[source] serde_json::Error),
    #[error("update state is corrupt: switched without a slot")]
    NoSlot,
    #[error("update state is corrupt: slots/active points to {}", .0.display())]
    ActiveLink(PathBuf),
    #[error("update state is corrupt: {}: {source}", path.display())]
    SlotInfo {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("update state is corrupt: refusing to {doing} the active slot {}", slot.name())]
    ActiveSlot { slot: Slot, doing: &'static str },
    #[error("update state is corrupt: the release was written into {}, not slot {}", path.display(), slot.name())]
    WrongPlace { path: PathBuf, slot: Slot },
}

/// The operator's hooks: shell commands run with `sh -c`.
///
/// Each receives `POLLEN_HOOK` (its name), `POLLEN_SLOT` (the directory of
/// the slot being installed), `POLLEN_ARTIFACT` (the artifact file in it),
/// `POLLEN_PREVIOUS_SLOT` (the active slot before the switch, or empty),
/// `POLLEN_CHANNEL`, `POLLEN_RELEASE`, `POLLEN_VERSION`, `POLLEN_MANIFEST`
/// and `POLLEN_ATTEMPT`.
#[derive(Clone, Debug, Default)]
pub struct Hooks {
    /// Before staging; nonzero defers the install (retried later, not an attempt).
    pub precondition: Option<String>,
    /// After staging: puts the artifact where the device needs it. Failure: retried.
    pub install: Option<String>,
    /// After the switch; failure or timeout rolls back to the previous slot.
    pub health: Option<String>,
    /// Each hook is killed after this long (and counts as failed).
    pub timeout: Duration,
}

/// Settings of the lifecycle, validated by the CLI.
#[derive(Clone, Debug)]
pub struct UpdateConfig {
    pub data_dir: std::path::PathBuf,
    pub channel: String,
    pub hooks: Hooks,
    /// Install attempts per release (interrupted ones included) before giving up.
    pub max_attempts: u32,
}

/// A release and the slot it is staged into or installed in.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub release: ReleaseRef,
    pub slot: Option<Slot>,
}

impl Target {
    /// The JSON shape status output uses.
    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "manifest": self.release.manifest.to_hex(),
            "release": self.release.release,
            "version": self.release.version,
            "slot": self.slot.map(|s| s.name()),
        })
    }
}

/// The persisted lifecycle state of one channel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub phase: Phase,
    /// The release being (or last) worked on.
    pub target: Option<Target>,
    /// The committed release and its slot.
    pub installed: Option<Target>,
    /// Install attempts of `target`.
    pub attempts: u32,
    pub note: Option<String>,
    pub last_error: Option<String>,
    /// Releases this device gave up on (rolled back, or out of attempts): never retried.
    pub given_up: Vec<ManifestId>,
}

impl Default for Record {
    fn default() -> Self {
        Self {
            phase: Phase::Idle,
            target: None,
            installed: None,
            attempts: 0,
            note: None,
            last_error: None,
            given_up: Vec::new(),
        }
    }
}

/// Releases remembered as given up on.
const GIVEN_UP_KEPT: usize = 32;

/// What an [`Updater::install`] or [`Updater::recover`] came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing to do (already installed, given up, or nothing pending).
    Nothing,
    Committed,
    RolledBack,
    /// Out of attempts before the switch.
    Failed,
    /// The precondition hook said not now: try again later.
    Deferred,
    /// Staging or the install hook failed; attempts remain: try again later.
    Retry,
}

/// Reads a channel's lifecycle record (the default when none was written).
pub fn load_record<S: Store + ?Sized>(store: &S, channel: &str) -> Result<Record, UpdateError> {
    match store.get_state(&store::keys::update_record(channel))? {
        None => Ok(Record::default()),
        Some(bytes) => serde_json::from_slice(&bytes).map_err(UpdateError::Record),
    }
}

/// A name for a release, from its verified manifest.
pub fn release_ref(m: &VerifiedManifest) -> ReleaseRef {
    ReleaseRef {
        manifest: m.id(),
        release: m.manifest().release,
        version: m.manifest().version.clone(),
    }
}

type Observer = Box<dyn FnMut(&Record) + Send>;

/// The lifecycle of one channel on one device.
pub struct Updater {
    store: Arc<dyn Store>,
    slots: Slots,
    config: UpdateConfig,
    record: Record,
    observer: Option<Observer>,
}

impl std::fmt::Debug for Updater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Updater")
            .field("channel", &self.config.channel)
            .field("record", &self.record)
            .finish()
    }
}

impl Updater {
    pub fn open(store: Arc<dyn Store>, config: UpdateConfig) -> Result<Self, UpdateError> {
        let record = load_record(store.as_ref(), &config.channel)?;
        Ok(Self {
            store,
            slots: Slots::new(&config.data_dir),
            config,
            record,
            observer: None,
        })
    }

    /// Called with the record after every persisted transition.
    pub fn set_observer(&mut self, observer: Observer) {
        self.observer = Some(observer);
    }

    pub fn record(&self) -> &Record {
        &self.record
    }

    pub fn slots(&self) -> &Slots {
        &self.slots
    }

    fn persist(&mut self) -> Result<(), UpdateError> {
        let bytes = serde_json::to_vec(&self.record).map_err(UpdateError::EncodeRecord)?;
        self.store
            .put_state(&store::keys::update_record(&self.config.channel), &bytes)?;
        tracing::info!(
            phase = %self.record.phase,
            release = self.record.target.as_ref().map(|t| t.release.release),
            attempts = self.record.attempts,
            "lifecycle"
        );
        if let Some(observe) = &mut self.observer {
            observe(&self.record);
        }
        Ok(())
    }

    /// Whether the lifecycle is between staging and its result: a new
    /// download must not take over the record then.
    fn busy(&self) -> bool {
        matches!(self.record.phase, Phase::Staged | Phase::Switched)
    }

    fn settled_on(&self, id: &ManifestId) -> bool {
        self.record
            .installed
            .as_ref()
            .is_some_and(|t| t.release.manifest == *id)
            || self.record.given_up.contains(id)
    }

    /// Makes `release` the target (attempts start again) unless it already is.
    fn take_target(&mut self, release: ReleaseRef) {
        let same = self
            .record
            .target
            .as_ref()
            .is_some_and(|t| t.release.manifest == release.manifest);
        if !same {
            self.record.target = Some(Target {
                release,
                slot: None,
            });
            self.record.attempts = 0;
            self.record.last_error = None;
        }
    }

    /// The node is fetching `release`; `trouble`: the download is paused,
    /// and why (a full disk), shown as the record's error until it resumes.
    pub fn downloading(
        &mut self,
        release: ReleaseRef,
        trouble: Option<String>,
    ) -> Result<(), UpdateError> {
        if self.busy() || self.settled_on(&release.manifest) {
            return Ok(());
        }
        let before = self.record.clone();
        self.take_target(release);
        self.record.phase = Phase::Downloading;
        self.record.note = trouble.as_ref().map(|_| "paused".to_owned());
        self.record.last_error = trouble;
        if self.record != before {
            self.persist()?;
        }
        Ok(())
    }

    /// The store refused `release` (it does not fit the budget): recorded
    /// as failed with why, not given up on.
    pub fn refuse(&mut self, release: ReleaseRef, why: String) -> Result<(), UpdateError> {
        if self.busy() || self.settled_on(&release.manifest) {
            return Ok(());
        }
        self.take_target(release);
        self.record.phase = Phase::Failed;
        self.record.note = Some("refused by the store".into());
        self.record.last_error = Some(why);
        self.persist()
    }

    /// `release` is complete and verified but may not be installed yet (`note` says why).
    pub fn hold(&mut self, release: ReleaseRef, note: &str) -> Result<(), UpdateError> {
        if self.busy() || self.settled_on(&release.manifest) {
            return Ok(());
        }
        let before = self.record.clone();
        self.take_target(release);
        self.record.phase = Phase::Verified;
        self.record.note = Some(note.to_owned());
        if self.record != before {
            self.persist()?;
        }
        Ok(())
    }

    fn hook_env(&self, hook: &'static str, slot: Slot) -> Vec<(&'static str, String)> {
        let t = self.record.target.as_ref();
        let previous = self
            .record
            .installed
            .as_ref()
            .and_then(|i| i.slot)
            .map(|s| self.slots.dir(s).display().to_string())
            .unwrap_or_default();
        vec![
            ("POLLEN_HOOK", hook.to_owned()),
            ("POLLEN_SLOT", self.slots.dir(slot).display().to_string()),
            (
                "POLLEN_ARTIFACT",
                self.slots.artifact(slot).display().to_string(),
            ),
            ("POLLEN_PREVIOUS_SLOT", previous),
            ("POLLEN_CHANNEL", self.config.channel.clone()),
            (
                "POLLEN_RELEASE",
                t.map(|t| t.release.release.to_string()).unwrap_or_default(),
            ),
            (
                "POLLEN_VERSION",
                t.map(|t| t.release.version.clone()).unwrap_or_default(),
            ),
            (
                "POLLEN_MANIFEST",
                t.map(|t| t.release.manifest.to_hex()).unwrap_or_default(),
            ),
            ("POLLEN_ATTEMPT", self.record.attempts.to_string()),
        ]
    }

    fn run_hook(&self, hook: &'static str, slot: Slot) -> Result<(), HookError> {
        let command = match hook {
            "precondition" => &self.config.hooks.precondition,
            "install" => &self.config.hooks.install,
            _ => &self.config.hooks.health,
        };
        match command {
            None => Ok(()),
            Some(c) => hooks::run(
                hook,
                c,
                &self.hook_env(hook, slot),
                self.config.hooks.timeout,
            ),
        }
    }

    fn give_up(&mut self, phase: Phase, error: String) -> Result<(), UpdateError> {
        if let Some(t) = &self.record.target {
            let id = t.release.manifest;
            if !self.record.given_up.contains(&id) {
                self.record.given_up.push(id);
            }
            let excess = self.record.given_up.len().saturating_sub(GIVEN_UP_KEPT);
            self.record.given_up.drain(..excess);
        }
        self.record.phase = phase;
        self.record.last_error = Some(error);
        self.record.note = None;
        self.persist()
    }

    /// A failure before the switch: the active slot is untouched.
    fn failed_before_switch(&mut self, error: String) -> Result<Outcome, UpdateError> {
        tracing::warn!(error = %error, attempts = self.record.attempts, "install attempt failed");
        if self.record.attempts >= self.config.max_attempts {
            let error = format!(
                "gave up after {} attempts; last: {error}",
                self.record.attempts
            );
            self.give_up(Phase::Failed, error)?;
            return Ok(Outcome::Failed);
        }
        self.record.phase = Phase::Verified;
        self.record.last_error = Some(error);
        self.record.note = Some("install failed; will retry".into());
        self.persist()?;
        Ok(Outcome::Retry)
    }

    /// Installs a complete, verified release the device may install now.
    /// `recall`: the installed release is recalled by the fleet policy, and
    /// this one (its floor reset) replaces it even though it is older.
    pub fn install(
        &mut self,
        manifest: &VerifiedManifest,
        recall: bool,
    ) -> Result<Outcome, UpdateError> {
        let release = release_ref(manifest);
        if self.busy() || self.settled_on(&release.manifest) {
            return Ok(Outcome::Nothing);
        }
        if !recall
            && self
                .record
                .installed
                .as_ref()
                .is_some_and(|i| i.release.release >= release.release)
        {
            return Ok(Outcome::Nothing);
        }
        self.take_target(release);
        if self.record.attempts >= self.config.max_attempts {
            let error = format!("gave up after {} attempts", self.record.attempts);
            self.give_up(Phase::Failed, error)?;
            return Ok(Outcome::Failed);
        }
        // Fetched chunks survive a crash of the process but not yet power
        // loss: make them durable before the record says this release is
        // under way (recovery may stage from them).
        self.store.sync_chunks()?;
        let slot = self.slots.inactive()?;
        if let Err(e) = self.run_hook("precondition", slot) {
            self.record.phase = Phase::Verified;
            self.record.note = Some(format!("deferred: {e}"));
            self.persist()?;
            return Ok(Outcome::Deferred);
        }
        self.record.attempts += 1;
        self.record.phase = Phase::Verified;
        self.record.note = None;
        self.persist()?;
        failpoint::hit("verified");

        if let Err(e) = self.slots.stage(slot, self.store.as_ref(), manifest) {
            return self.failed_before_switch(format!("staging into slot {}: {e}", slot.name()));
        }
        if let Some(t) = &mut self.record.target {
            t.slot = Some(slot);
        }
        self.record.phase = Phase::Staged;
        self.persist()?;
        failpoint::hit("staged");
        if let Err(e) = self.run_hook("install", slot) {
            return self.failed_before_switch(e.to_string());
        }
        self.switch_and_check(slot)
    }

    /// Points `active` at `slot` and tells the store, which serves from
    /// the slots (every switch, commit and rollback goes through here).
    fn point_to(&self, slot: Option<Slot>) -> Result<(), UpdateError> {
        self.slots.point_to(slot)?;
        self.store.slots_changed()?;
        Ok(())
    }

    fn switch_and_check(&mut self, slot: Slot) -> Result<Outcome, UpdateError> {
        self.record.phase = Phase::Switched;
        self.persist()?;
        failpoint::hit("switching");
        self.point_to(Some(slot))?;
        failpoint::hit("switched");
        self.check_health(slot)
    }

    fn check_health(&mut self, slot: Slot) -> Result<Outcome, UpdateError> {
        match self.run_hook("health", slot) {
            Ok(()) => {
                failpoint::hit("healthy");
                self.commit()
            }
            Err(e) => self.roll_back(e.to_string()),
        }
    }

    fn commit(&mut self) -> Result<Outcome, UpdateError> {
        self.record.phase = Phase::Committed;
        self.record.installed = self.record.target.clone();
        self.record.note = None;
        self.record.last_error = None;
        self.persist()?;
        failpoint::hit("committed");
        self.finish_commit()?;
        Ok(Outcome::Committed)
    }

    /// What a commit makes true; idempotent, redone on recovery.
    fn finish_commit(&mut self) -> Result<(), UpdateError> {
        if let Some(i) = &self.record.installed {
            // The floor is the installed release: raised by every commit,
            // lowered only by the commit of a recall (`install` refuses an
            // older release otherwise).
            store::set_floor(self.store.as_ref(), &self.config.channel, i.release.release)?;
            self.store.put_state(
                &store::keys::installed(&self.config.channel),
                &i.release.manifest.0,
            )?;
            if self.slots.active()? != i.slot {
                self.point_to(i.slot)?;
            }
        }
        self.store.collect_garbage()?;
        Ok(())
    }

    fn roll_back(&mut self, error: String) -> Result<Outcome, UpdateError> {
        tracing::warn!(error = %error, "health check failed; rolling back");
        self.give_up(Phase::RolledBack, error)?;
        failpoint::hit("rolled-back");
        self.finish_roll_back()?;
        Ok(Outcome::RolledBack)
    }

    /// What a rollback makes true: the previous slot active again.
    fn finish_roll_back(&mut self) -> Result<(), UpdateError> {
        let previous = self.record.installed.as_ref().and_then(|i| i.slot);
        if self.slots.active()? != previous {
            self.point_to(previous)?;
        }
        Ok(())
    }

    /// Completes whatever a crash interrupted. Call once, before anything else.
    pub fn recover(&mut self) -> Result<Outcome, UpdateError> {
        match self.record.phase {
            Phase::Staged => {
                // The install hook may not have finished: stage again on the next offer.
                self.record.phase = Phase::Verified;
                self.record.note = Some("interrupted while staged; will stage again".into());
                self.persist()?;
                Ok(Outcome::Retry)
            }
            Phase::Switched => {
                let Some(slot) = self.record.target.as_ref().and_then(|t| t.slot) else {
                    return Err(UpdateError::NoSlot);
                };
                self.record.attempts += 1;
                if self.record.attempts > self.config.max_attempts {
                    let error = format!(
                        "interrupted {} times while pending its health check",
                        self.record.attempts - 1
                    );
                    return self.roll_back(error);
                }
                self.persist()?;
                if self.slots.active()? != Some(slot) {
                    self.point_to(Some(slot))?;
                }
                self.check_health(slot)
            }
            Phase::Committed => {
                self.finish_commit()?;
                Ok(Outcome::Nothing)
            }
            Phase::RolledBack => {
                self.finish_roll_back()?;
                Ok(Outcome::Nothing)
            }
            _ => Ok(Outcome::Nothing),
        }
    }
}

#[cfg(test)]
mod tests;
