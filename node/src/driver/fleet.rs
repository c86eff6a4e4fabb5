//! Fleet status in the mesh: this node's own signed record, and the
//! records of other devices it relays towards the seeder. Every node keeps
//! the newest record per device key (bounded, stale ones expire) and passes
//! new ones on towards the seeder only: to its origins, or else to site
//! peers that have an uplink. In a closed mesh a record counts only with
//! the credential of the key that signed it, and device id, site and
//! hardware come from that credential, never from the record.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use libp2p::PeerId;
use pollen_core::manifest::{KeyId, SecretKey};
use pollen_core::status::{SignedStatus, StatusError, StatusRecord};
use pollen_core::trust::{CredentialError, FleetPolicy, VerifiedCredential};
use pollen_core::wire::{Request, StatusEntry, MAX_STATUS_RECORDS};
use serde_bytes::ByteBuf;

use super::{Driver, DriverError, Mode, Pending};
use crate::store::keys;

/// Devices remembered at most; records of further devices are dropped
/// (in a closed mesh only enrolled devices count, so this bounds the fleet).
pub(crate) const MAX_DEVICES: usize = 20_000;
/// Records waiting to be passed on at most.
const MAX_OUTBOX: usize = 4_096;
/// A record not renewed for this long is dropped (the device is gone).
pub(crate) const RECORD_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a status record was not kept.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum FleetError {
    #[error(transparent)]
    Status(#[from] StatusError),
    #[error("status record without a credential in a closed mesh")]
    NoCredential,
    #[error("status record: {0}")]
    Credential(#[from] CredentialError),
    #[error("status record older than the record lifetime")]
    Stale,
}

#[derive(Debug)]
struct Held {
    signed: SignedStatus,
    credential: Option<ByteBuf>,
    /// The record with device, site and hardware from the credential.
    trusted: StatusRecord,
}

impl Held {
    fn entry(&self) -> StatusEntry {
        StatusEntry {
            record: ByteBuf::from(self.signed.to_bytes().to_vec()),
            credential: self.credential.clone(),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Fleet {
    key: SecretKey,
    records: HashMap<[u8; 32], Held>,
    outbox: Vec<StatusEntry>,
    last_seq: u64,
    /// The own record last published, without its seq, to publish on change.
    last_own: Option<StatusRecord>,
}

impl Fleet {
    pub fn new(key: SecretKey) -> Self {
        Self {
            key,
            records: HashMap::new(),
            outbox: Vec::new(),
            last_seq: 0,
            last_own: None,
        }
    }

    /// Whether `record` (seq ignored) differs from the last one published.
    /// Byte counters alone do not count as a change (they grow with every
    /// chunk); they travel with the next record that is due anyway.
    pub fn changed(&self, record: &StatusRecord) -> bool {
        self.last_own.as_ref().is_none_or(|last| {
            let mut last = last.clone();
            last.traffic = record.traffic;
            last != *record
        })
    }

    /// Signs and publishes this node's record; `now_ms` orders it.
    pub fn publish(
        &mut self,
        mut record: StatusRecord,
        credential: Option<ByteBuf>,
        now_ms: u64,
    ) -> StatusEntry {
        self.last_own = Some(record.clone());
        self.last_seq = now_ms.max(self.last_seq + 1);
        record.seq = self.last_seq;
        let signed = SignedStatus::sign(record.clone(), &self.key);
        let held = Held {
            signed,
            credential,
            trusted: record,
        };
        let entry = held.entry();
        self.keep(held);
        entry
    }

    /// The last record this node published, to hand a new peer.
    pub fn own(&self) -> Option<StatusEntry> {
        self.records
            .get(self.key.public().as_bytes())
            .map(Held::entry)
    }

    /// A record from a peer: kept and passed on if it is new. Under a
    /// closed `policy` it must come with a credential for the key that
    /// signed it; the record kept then names the credential's device.
    pub fn receive(
        &mut self,
        entry: &StatusEntry,
        policy: Option<&FleetPolicy>,
        now_ms: u64,
    ) -> Result<Option<(KeyId, StatusRecord)>, FleetError> {
        let s = SignedStatus::decode(&entry.record)?;
        let key = *s.key().as_bytes();
        let mut trusted = s.record().clone();
        let credential = match policy.filter(|p| p.is_closed()) {
            Some(policy) => {
                let bytes = entry.credential.as_ref().ok_or(FleetError::NoCredential)?;
                let c = VerifiedCredential::check(bytes, &key, policy, now_ms / 1000)?;
                crate::status_store::name_by(&mut trusted, c.credential());
                Some(bytes.clone())
            }
            None => None,
        };
        if s.record().seq.saturating_add(ttl_ms()) < now_ms {
            return Err(FleetError::Stale);
        }
        let newer = match self.records.get(&key) {
            Some(held) => s.record().seq > held.signed.record().seq,
            None => self.records.len() < MAX_DEVICES,
        };
        if !newer {
            return Ok(None);
        }
        let kept = (s.key_id(), trusted.clone());
        self.keep(Held {
            signed: s,
            credential,
            trusted,
        });
        Ok(Some(kept))
    }

    fn keep(&mut self, held: Held) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push(held.entry());
        }
        self.records.insert(*held.signed.key().as_bytes(), held);
    }

    /// Drops records not renewed within [`RECORD_TTL`].
    pub fn expire(&mut self, now_ms: u64) {
        self.records
            .retain(|_, h| h.signed.record().seq.saturating_add(ttl_ms()) >= now_ms);
    }

    /// Records to pass on since the last call.
    pub fn take_outbox(&mut self) -> Vec<StatusEntry> {
        std::mem::take(&mut self.outbox)
    }

    /// The records held, as trusted (device, site, hardware from credentials).
    pub fn records(&self) -> impl Iterator<Item = &StatusRecord> {
        self.records.values().map(|h| &h.trusted)
    }
}

fn ttl_ms() -> u64 {
    RECORD_TTL.as_millis() as u64
}

/// How often stale records are looked for.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);

/// How long a release waits for a peer to answer `GetControl` before it
/// may be installed anyway (a device with no peers left).
const CONTROL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

// The driver's side: publishing this node's record, relaying others'.
impl<S: crate::store::Store + 'static> Driver<S> {
    /// Peers status records go to: towards the seeder. Its origins if it
    /// has any; else site peers with an uplink (they reach an origin); else
    /// every site peer. A record crosses a site's uplink about once, and
    /// never goes to devices of other sites.
    fn fleet_peers(&self) -> Vec<PeerId> {
        let hello = || {
            self.peers
                .iter()
                .filter(|(p, i)| i.hello && self.trust.is_admitted(p))
        };
        let origins: Vec<PeerId> = hello()
            .filter(|(_, i)| i.role.origin)
            .map(|(p, _)| *p)
            .collect();
        if !origins.is_empty() {
            return origins;
        }
        let site: Vec<(&PeerId, &super::PeerInfo)> = hello()
            .filter(|(_, i)| !self.other_site(i.site, i.role))
            .collect();
        let uplinks: Vec<PeerId> = site
            .iter()
            .filter(|(_, i)| i.role.uplink)
            .map(|(p, _)| **p)
            .collect();
        if !uplinks.is_empty() {
            return uplinks;
        }
        site.into_iter().map(|(p, _)| *p).collect()
    }

    /// Bytes of the current release fetched so far, LAN versus uplink.
    fn traffic(&self) -> pollen_core::status::Traffic {
        self.node
            .swarm()
            .map(|s| {
                let stats = s.stats();
                pollen_core::status::Traffic {
                    from_site: stats.bytes_from_site,
                    from_uplink: stats.bytes_from_remote,
                }
            })
            .unwrap_or_default()
    }

    /// This node's record from its lifecycle, if it installs releases.
    fn own_record(&self) -> Option<StatusRecord> {
        let l = self.lifecycle.as_ref()?;
        let r = &l.record;
        Some(StatusRecord {
            device: self.device_id.clone(),
            site: self.config.site.clone(),
            hardware: self.config.hardware.clone(),
            channel: self.config.channel.clone(),
            installed: r.installed.as_ref().map(|t| t.release.clone()),
            target: r.target.as_ref().map(|t| t.release.clone()),
            phase: r.phase,
            note: r.note.clone(),
            last_error: r.last_error.clone(),
            attempts: r.attempts,
            traffic: self.traffic(),
            seq: 0,
        })
    }

    /// Publishes this node's record when it changed, or when `status_interval` passed.
    pub(super) fn publish_status(&mut self, force: bool) {
        let Some(record) = self.own_record() else {
            return;
        };
        let due = self
            .last_status
            .is_none_or(|t| t.elapsed() >= self.config.status_interval);
        if force || due || self.fleet.changed(&record) {
            self.last_status = Some(Instant::now());
            let credential = self.trust.own_bytes();
            self.fleet.publish(record, credential, unix_ms());
        }
    }

    /// Every tick: the lifecycle's rollout decision, status records to pass
    /// on, and the local endpoint's snapshot.
    pub(super) fn tick_fleet(&mut self) {
        let answered = self
            .control_asked
            .is_none_or(|asked| asked.elapsed() >= CONTROL_WAIT);
        if let (Some(l), Some(r), true) = (&mut self.lifecycle, &self.release, answered) {
            let control = self.control.as_ref().map(|c| c.control());
            let complete = self.node.is_complete();
            let policy = self.trust.policy();
            let recalled = |id: &_| policy.is_some_and(|p| p.policy().is_recalled(id));
            let trouble = self
                .write_trouble
                .as_ref()
                .map(|(e, _)| format!("paused: cannot store chunks: {e}"));
            l.tick(
                r,
                complete,
                trouble,
                &self.device_id,
                control,
                crate::unix_now(),
                recalled,
            );
        }
        self.publish_status(false);
        if self.last_expiry.is_none_or(|t| t.elapsed() >= EXPIRE_EVERY) {
            self.last_expiry = Some(Instant::now());
            self.fleet.expire(unix_ms());
        }
        let outbox = self.fleet.take_outbox();
        // The seeder is where records go; it passes none on.
        if !outbox.is_empty() && self.config.mode != Mode::Seed {
            for p in self.fleet_peers() {
                self.send_records(p, &outbox);
            }
        }
        self.update_snapshot();
    }

    fn send_records(&mut self, peer: PeerId, records: &[StatusEntry]) {
        for batch in records.chunks(MAX_STATUS_RECORDS) {
            self.send(peer, Request::Status(batch.to_vec()), Pending::Notice);
        }
    }

    /// A peer finished its hello: it gets the current control, and, if
    /// it is on the way to the seeder, this node's own record.
    pub(super) fn greet_fleet(&mut self, peer: PeerId) {
        if self.config.mode != Mode::Seed && self.fleet_peers().contains(&peer) {
            if let Some(own) = self.fleet.own() {
                self.send_records(peer, &[own]);
            }
        }
        if let Some(c) = &self.control {
            let bytes = ByteBuf::from(c.to_bytes());
            self.send(peer, Request::Control(bytes), Pending::Notice);
        }
    }

    /// Loads the records a seeder stored before it restarted (each is
    /// judged again under the policy held now).
    pub(super) fn load_fleet(&mut self) -> Result<(), DriverError> {
        let policy = self.trust.policy().map(|p| p.policy().clone());
        for (_, bytes) in self.store.state_with_prefix(keys::STATUS_PREFIX)? {
            let entry = crate::status_store::entry(&bytes);
            if let Err(e) = self.fleet.receive(&entry, policy.as_ref(), unix_ms()) {
                tracing::warn!(error = %e, "a stored status record is no longer kept");
            }
        }
        // Loaded, not new: nothing to pass on.
        self.fleet.take_outbox();
        Ok(())
    }

    /// Status records from a peer.
    pub(super) fn on_status(
        &mut self,
        peer: PeerId,
        list: Vec<StatusEntry>,
    ) -> Result<(), DriverError> {
        let mut any = false;
        let policy = self.trust.policy().map(|p| p.policy().clone());
        for entry in list.iter().take(MAX_STATUS_RECORDS) {
            match self.fleet.receive(entry, policy.as_ref(), unix_ms()) {
                Ok(Some((key, r))) => {
                    any = true;
                    tracing::debug!(%peer, device = %r.device, phase = %r.phase, "status record");
                    if self.config.mode == Mode::Seed {
                        let bytes = crate::status_store::encode(entry);
                        self.store.put_state(&keys::status(&key), &bytes)?;
                    }
                }
                Ok(None) => {}
                Err(e) => tracing::debug!(%peer, error = %e, "refused a status record"),
            }
        }
        if any && self.config.mode == Mode::Seed {
            self.check_auto_halt()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollen_core::manifest::TrustPolicy;
    use pollen_core::status::Phase;
    use pollen_core::trust::{Credential, SignedCredential};

    const NOW_MS: u64 = 1_800_000_000_000;

    fn record(device: &str) -> StatusRecord {
        StatusRecord {
            device: device.into(),
            site: None,
            hardware: None,
            channel: "stable".into(),
            installed: None,
            target: None,
            phase: Phase::RolledBack,
            note: None,
            last_error: None,
            attempts: 0,
            traffic: Default::default(),
            seq: 0,
        }
    }

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    /// Enroll key 30; closed.
    fn closed() -> FleetPolicy {
        let single = |n: u8| TrustPolicy::single(key(n).public());
        FleetPolicy::new(
            1,
            u64::MAX,
            [single(1), single(2), single(3)],
            Some(single(30)),
        )
    }

    fn credential(device_key: u8, device: &str, enroll: u8) -> ByteBuf {
        let c = Credential {
            key: *key(device_key).public().as_bytes(),
            device: device.into(),
            site: Some("hall-a".into()),
            hardware: Some("imx8".into()),
            serial: None,
            issued_at: 0,
            expires_at: u64::MAX,
        };
        ByteBuf::from(
            SignedCredential::sign(c, &[&key(enroll)])
                .expect("valid")
                .encode(),
        )
    }

    #[test]
    fn byte_counters_alone_are_no_change() {
        let mut f = Fleet::new(key(1));
        let r = record("press-1");
        assert!(f.changed(&r), "nothing published yet");
        f.publish(r.clone(), None, 1_000);
        let mut more = r.clone();
        more.traffic.from_site += 4096;
        more.traffic.from_uplink += 1;
        assert!(!f.changed(&more), "only the counters moved");
        let mut phase = more.clone();
        phase.phase = pollen_core::status::Phase::Committed;
        assert!(f.changed(&phase));
    }

    #[test]
    fn newest_record_per_device_wins_and_is_relayed_once() {
        let mut a = Fleet::new(key(1));
        let mut b = Fleet::new(key(2));
        let old = a.publish(record("a"), None, NOW_MS);
        let new = a.publish(record("a"), None, NOW_MS);
        assert!(b.receive(&new, None, NOW_MS).expect("valid").is_some());
        assert!(
            b.receive(&old, None, NOW_MS).expect("valid").is_none(),
            "older record kept"
        );
        assert!(
            b.receive(&new, None, NOW_MS).expect("valid").is_none(),
            "relayed twice"
        );
        assert_eq!(b.take_outbox().len(), 1);
        let mut bad = new.clone();
        let last = bad.record.len() - 1;
        bad.record[last] ^= 1;
        assert!(b.receive(&bad, None, NOW_MS).is_err());
    }

    #[test]
    fn closed_mesh_counts_enrolled_devices_under_their_credential() {
        let policy = closed();
        let mut seeder = Fleet::new(key(2));
        // Enrolled device 40 ("press-1") claims to be "press-9": it counts as press-1.
        let mut d = Fleet::new(key(40));
        let e = d.publish(
            record("press-9"),
            Some(credential(40, "press-1", 30)),
            NOW_MS,
        );
        let (_, kept) = seeder
            .receive(&e, Some(&policy), NOW_MS)
            .expect("enrolled")
            .expect("new");
        assert_eq!(kept.device, "press-1");
        assert_eq!(kept.site.as_deref(), Some("hall-a"));
        // Unenrolled keys: no credential, a self-made one, another device's.
        let mut forger = Fleet::new(key(50));
        let none = forger.publish(record("press-2"), None, NOW_MS);
        let self_made = forger.publish(
            record("press-2"),
            Some(credential(50, "press-2", 51)),
            NOW_MS,
        );
        let stolen = forger.publish(
            record("press-1"),
            Some(credential(40, "press-1", 30)),
            NOW_MS,
        );
        assert!(matches!(
            seeder.receive(&none, Some(&policy), NOW_MS),
            Err(FleetError::NoCredential)
        ));
        assert!(matches!(
            seeder.receive(&self_made, Some(&policy), NOW_MS),
            Err(FleetError::Credential(CredentialError::Signature { .. }))
        ));
        assert!(matches!(
            seeder.receive(&stolen, Some(&policy), NOW_MS),
            Err(FleetError::Credential(CredentialError::WrongKey { .. }))
        ));
        assert_eq!(
            seeder.records().count(),
            1,
            "forged records change no count"
        );
    }

    #[test]
    fn stale_records_expire_and_are_not_taken() {
        let mut a = Fleet::new(key(1));
        let mut b = Fleet::new(key(2));
        let e = a.publish(record("a"), None, NOW_MS);
        let later = NOW_MS + ttl_ms() + 1;
        assert!(matches!(b.receive(&e, None, later), Err(FleetError::Stale)));
        assert!(b.receive(&e, None, NOW_MS).expect("fresh").is_some());
        b.expire(NOW_MS + 1000);
        assert_eq!(b.records().count(), 1);
        b.expire(later);
        assert_eq!(b.records().count(), 0);
    }
}
