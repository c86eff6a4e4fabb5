//! What the console shows, read from the seeder's store: the releases with
//! their controls in force and the devices' newest status records (each
//! record's signature checked once: unchanged bytes reuse the decoded
//! record), plus the completion-over-time series sampled at each refresh.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use pollen_core::fleet::StageCounts;
use pollen_core::manifest::SignedManifest;
use pollen_core::rollout::SignedControl;
use pollen_core::status::StatusRecord;
use pollen_node::store::{Store, StoreError};
use serde::Serialize;

use super::views::{release_progress, ReleaseEntry};

/// Samples kept per release (at the 2 s refresh: the last 24 minutes;
/// older samples are thinned to every other one so a day still fits).
pub const SERIES_LEN: usize = 720;

/// One snapshot of the fleet.
#[derive(Clone, Debug, Default)]
pub struct Fleet {
    /// Newest release first.
    pub releases: Vec<ReleaseEntry>,
    /// Sorted by device id.
    pub records: Vec<StatusRecord>,
}

impl Fleet {
    /// The release `release` of `channel`.
    pub fn release(&self, channel: &str, release: u64) -> Option<&ReleaseEntry> {
        self.releases.iter().find(|e| {
            let m = e.manifest.manifest();
            m.channel == channel && m.release == release
        })
    }
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    #[error("reading the store: {0}")]
    Store(#[from] StoreError),
}

/// Reads snapshots from a store, remembering decoded records.
pub struct Reader {
    store: Arc<dyn Store + Send + Sync>,
    cache: HashMap<String, (Vec<u8>, StatusRecord)>,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("cached", &self.cache.len())
            .finish()
    }
}

impl Reader {
    pub fn new(store: Arc<dyn Store + Send + Sync>) -> Self {
        Self {
            store,
            cache: HashMap::new(),
        }
    }

    /// The store as it is now. Manifests, controls or records that do not
    /// decode are left out (with a warning): the store's writer judged
    /// them when they came in.
    pub fn read(&mut self) -> Result<Fleet, FleetError> {
        let mut releases = Vec::new();
        for id in self.store.manifest_ids()? {
            let Some(bytes) = self.store.get_manifest(&id)? else {
                continue;
            };
            let manifest = match SignedManifest::decode(&bytes) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(manifest = %id, error = %e, "stored manifest refused");
                    continue;
                }
            };
            let control = pollen_node::controls::load_bytes(self.store.as_ref(), &id)?
                .and_then(|b| SignedControl::decode(&b).ok())
                .map(|s| s.control().clone());
            releases.push(ReleaseEntry { manifest, control });
        }
        releases.sort_by_key(|e| std::cmp::Reverse(e.manifest.manifest().release));
        let entries = self
            .store
            .state_with_prefix(pollen_node::store::keys::STATUS_PREFIX)?;
        let mut cache = HashMap::with_capacity(entries.len());
        let mut records = Vec::with_capacity(entries.len());
        for (key, bytes) in entries {
            let record = match self.cache.remove(&key) {
                Some((held, r)) if held == bytes => r,
                _ => match pollen_node::status_store::record(&bytes) {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::warn!(%key, error = %e, "stored status record refused");
                        continue;
                    }
                },
            };
            records.push(record.clone());
            cache.insert(key, (bytes, record));
        }
        self.cache = cache;
        records.sort_by(|a, b| a.device.cmp(&b.device));
        Ok(Fleet { releases, records })
    }
}

/// One point of a release's completion over time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// Seconds since the Unix epoch.
    pub time: u64,
    pub seen: u32,
    pub installed: u32,
    /// Failed or rolled back.
    pub failed: u32,
}

impl Sample {
    fn of(time: u64, c: &StageCounts) -> Self {
        Self {
            time,
            seen: c.seen,
            installed: c.installed,
            failed: c.failed + c.rolled_back,
        }
    }
}

/// Completion over time, per release (manifest id hex).
#[derive(Debug, Default)]
pub struct Series {
    per_release: BTreeMap<String, VecDeque<Sample>>,
}

impl Series {
    /// Samples every release of `fleet` at `now`.
    pub fn sample(&mut self, fleet: &Fleet, now: u64) {
        for e in &fleet.releases {
            let p = release_progress(e, &fleet.records, now);
            let s = self
                .per_release
                .entry(p.release.head.manifest_id.clone())
                .or_default();
            if s.len() == SERIES_LEN {
                // Thin the older half: every other sample of it goes.
                let keep: VecDeque<Sample> = s
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i >= SERIES_LEN / 2 || i % 2 == 0)
                    .map(|(_, x)| *x)
                    .collect();
                *s = keep;
            }
            s.push_back(Sample::of(now, &p.totals));
        }
    }

    /// The samples of a release, oldest first.
    pub fn of(&self, manifest_id: &str) -> Vec<Sample> {
        self.per_release
            .get(manifest_id)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::fixture;

    #[test]
    fn series_stay_bounded_and_ordered() {
        let entry = fixture::release(3);
        let id = entry.manifest.id().to_hex();
        let fleet = Fleet {
            records: fixture::records(&entry, 16),
            releases: vec![entry],
        };
        let mut series = Series::default();
        for t in 0..(SERIES_LEN as u64 * 3) {
            series.sample(&fleet, t);
        }
        let s = series.of(&id);
        assert!(
            s.len() <= SERIES_LEN && s.len() > SERIES_LEN / 2,
            "{}",
            s.len()
        );
        assert!(s.windows(2).all(|w| w[0].time < w[1].time));
        assert_eq!(s.last().map(|x| x.time), Some(SERIES_LEN as u64 * 3 - 1));
        assert_eq!(s[0].installed, 6);
        assert!(series.of("other").is_empty());
    }

    #[test]
    fn reads_releases_controls_and_records_from_a_store() {
        use pollen_core::manifest::{SecretKey, TrustPolicy, VerifyContext};
        use pollen_core::rollout::VerifiedControl;
        use pollen_core::status::SignedStatus;
        let store = Arc::new(pollen_node::store::MemStore::new());
        let entry = fixture::release(3);
        let key = SecretKey::from_bytes(&[7; 32]);
        let policy = TrustPolicy::single(key.public());
        let verified = pollen_core::manifest::verify(
            &entry.manifest.encode(),
            &policy,
            &VerifyContext::default(),
        )
        .expect("verifies");
        store.put_manifest(&verified).expect("manifest");
        let control = SignedControl::sign(fixture::control(&entry, 4, None, true), &[&key]);
        let control = VerifiedControl::from_bytes(&control.encode(), &policy).expect("control");
        pollen_node::controls::save_if_newer(store.as_ref(), &control).expect("saved");
        for (n, r) in fixture::records(&entry, 3).into_iter().enumerate() {
            let device_key = SecretKey::from_bytes(&[9 + n as u8; 32]);
            let signed = SignedStatus::sign(r, &device_key);
            store
                .put_state(
                    &pollen_node::store::keys::status(&device_key.public().id()),
                    signed.to_bytes(),
                )
                .expect("record");
        }
        let junk = SecretKey::from_bytes(&[99; 32]).public().id();
        store
            .put_state(&pollen_node::store::keys::status(&junk), b"junk")
            .expect("junk");
        let mut reader = Reader::new(store);
        let fleet = reader.read().expect("read");
        assert_eq!(fleet.releases.len(), 1);
        assert_eq!(fleet.releases[0].control.as_ref().map(|c| c.seq), Some(4));
        assert_eq!(fleet.records.len(), 3, "the junk record is left out");
        let again = reader.read().expect("read again");
        assert_eq!(again.records, fleet.records);
        assert!(fleet.release("stable", 3).is_some());
        assert!(fleet.release("stable", 4).is_none());
    }
}
