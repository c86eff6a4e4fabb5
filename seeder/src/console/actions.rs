//! Promote, halt and resume from the console: the next rollout control
//! (`crate::rollout::next_control`, as `pollen-seeder rollout` works it
//! out) signed with the seeder's operator key, checked as a device will
//! check it, and handed to the running driver. Actions run one at a time,
//! each from the newest control the store or the console holds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pollen_core::manifest::{ManifestId, SecretKey, TrustPolicy};
use pollen_core::rollout::{RolloutControl, SignedControl, VerifiedControl};
use pollen_node::store::Store;

use super::views::ReleaseEntry;
use crate::rollout::{next_control, RolloutError, Step};
use pollen_node::api::ApiError;

/// Where a signed control goes (the driver, through the local endpoint).
pub type Deliver = Box<dyn Fn(&[u8]) -> Result<(), ApiError> + Send + Sync>;

/// Errors of an action.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ActionError {
    #[error("the seeder holds no operator key (serve --key): it cannot sign controls")]
    NoKey,
    #[error(transparent)]
    Refused(#[from] RolloutError),
    #[error("reading the store: {0}")]
    Store(#[from] pollen_node::store::StoreError),
    #[error("the control does not verify: {0}")]
    Verify(#[from] pollen_core::rollout::ControlError),
    #[error("handing the control to the seeder: {0}")]
    Deliver(#[source] ApiError),
}

/// Parses an action's name.
pub fn step(name: &str) -> Option<Step> {
    match name {
        "promote" => Some(Step::Promote),
        "halt" => Some(Step::Halt),
        "resume" => Some(Step::Resume),
        _ => None,
    }
}

/// Signs and delivers rollout controls.
pub struct Steerer {
    key: Option<Arc<SecretKey>>,
    store: Arc<dyn Store + Send + Sync>,
    deliver: Deliver,
    /// The last control issued per release; the lock also serialises actions.
    issued: Mutex<HashMap<ManifestId, RolloutControl>>,
}

impl std::fmt::Debug for Steerer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Steerer")
            .field("key", &self.key.as_ref().map(|k| k.public().id()))
            .finish()
    }
}

impl Steerer {
    pub fn new(
        key: Option<Arc<SecretKey>>,
        store: Arc<dyn Store + Send + Sync>,
        deliver: Deliver,
    ) -> Self {
        Self {
            key,
            store,
            deliver,
            issued: Mutex::new(HashMap::new()),
        }
    }

    /// Whether this console issued control `seq` of `release` (the last
    /// one it issued for it; waits for an action under way).
    pub fn issued(&self, release: &ManifestId, seq: u64) -> bool {
        let issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        issued.get(release).is_some_and(|c| c.seq == seq)
    }

    /// Whether actions can be signed at all.
    pub fn can_sign(&self) -> bool {
        self.key.is_some()
    }

    /// Works out, signs and delivers the control `step` asks for `entry`.
    /// Nothing is delivered when the step is refused.
    pub fn act(
        &self,
        entry: &ReleaseEntry,
        step: Step,
        now: u64,
    ) -> Result<RolloutControl, ActionError> {
        let key = self.key.as_ref().ok_or(ActionError::NoKey)?;
        let id = entry.manifest.id();
        let m = entry.manifest.manifest();
        let mut issued = self.issued.lock().unwrap_or_else(|p| p.into_inner());
        let stored = pollen_node::controls::load_bytes(self.store.as_ref(), &id)?
            .and_then(|b| SignedControl::decode(&b).ok())
            .map(|s| s.control().clone());
        let current = [stored, issued.get(&id).cloned()]
            .into_iter()
            .flatten()
            .max_by_key(|c| c.seq);
        let next = next_control(&m.channel, id, &m.rollout, current.as_ref(), step, now)?;
        let bytes = SignedControl::sign(next.clone(), &[key.as_ref()]).encode();
        VerifiedControl::from_bytes(&bytes, &TrustPolicy::single(key.public()))?;
        (self.deliver)(&bytes).map_err(ActionError::Deliver)?;
        issued.insert(id, next.clone());
        Ok(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixture;

    fn steerer(key: bool, sent: Arc<Mutex<Vec<Vec<u8>>>>) -> Steerer {
        Steerer::new(
            key.then(|| Arc::new(SecretKey::from_bytes(&[5; 32]))),
            Arc::new(pollen_node::store::MemStore::new()),
            Box::new(move |b: &[u8]| {
                sent.lock().expect("lock").push(b.to_vec());
                Ok(())
            }),
        )
    }

    #[test]
    fn halt_then_resume_each_delivered_with_a_higher_seq() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = steerer(true, sent.clone());
        let entry = fixture::release(3);
        let h = s.act(&entry, Step::Halt, 10).expect("halt");
        assert!(h.halted);
        // Halting twice is refused, nothing sent.
        assert!(matches!(
            s.act(&entry, Step::Halt, 11),
            Err(ActionError::Refused(RolloutError::AlreadyHalted))
        ));
        let r = s.act(&entry, Step::Resume, 12).expect("resume");
        assert!(!r.halted && r.seq > h.seq);
        let p = s.act(&entry, Step::Promote, 13).expect("promote");
        assert_eq!(p.promoted, Some(1));
        let sent = sent.lock().expect("lock");
        assert_eq!(sent.len(), 3);
        let decoded = SignedControl::decode(&sent[0]).expect("decodes");
        assert!(decoded.control().halted);
    }

    #[test]
    fn no_key_no_control() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let s = steerer(false, sent.clone());
        assert!(!s.can_sign());
        let entry = fixture::release(3);
        assert!(matches!(
            s.act(&entry, Step::Halt, 10),
            Err(ActionError::NoKey)
        ));
        assert!(sent.lock().expect("lock").is_empty());
        assert_eq!(step("halt"), Some(Step::Halt));
        assert_eq!(step("delete"), None);
    }
}
