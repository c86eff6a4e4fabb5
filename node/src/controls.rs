//! Rollout controls a node holds: the newest verified one per release,
//! kept in the store's state so a restart (or the offline path) still
//! knows a release was halted.

use pollen_core::manifest::{ManifestId, TrustPolicy};
use pollen_core::rollout::{SignedControl, VerifiedControl};

use crate::store::{Store, StoreError};

/// The stored control bytes for `release`, if any.
pub fn load_bytes<S: Store + ?Sized>(
    store: &S,
    release: &ManifestId,
) -> Result<Option<Vec<u8>>, StoreError> {
    store.get_state(&crate::store::keys::control(release))
}

/// The stored control for `release`, verified again against `policy`
/// (a control that no longer verifies is ignored).
pub fn load<S: Store + ?Sized>(
    store: &S,
    release: &ManifestId,
    policy: &TrustPolicy,
) -> Result<Option<VerifiedControl>, StoreError> {
    Ok(load_bytes(store, release)?.and_then(|b| VerifiedControl::from_bytes(&b, policy).ok()))
}

/// Stores `control` if it is newer than the one held; true when it was.
pub fn save_if_newer<S: Store + ?Sized>(
    store: &S,
    control: &VerifiedControl,
) -> Result<bool, StoreError> {
    let c = control.control();
    let held = load_bytes(store, &c.release)?
        .and_then(|b| SignedControl::decode(&b).ok())
        .map(|s| s.control().seq);
    if held.is_some_and(|seq| seq >= c.seq) {
        return Ok(false);
    }
    store.put_state(
        &crate::store::keys::control(&c.release),
        &control.to_bytes(),
    )?;
    Ok(true)
}
