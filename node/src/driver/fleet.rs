//! Fleet status in the mesh: this node's own signed record, and the
//! records of other devices it relays. Every node keeps the newest record
//! per device key (bounded) and passes new ones to its peers, so a record
//! reaches the seeder through any chain of peers. The seeder also keeps
//! them in its store for `pollen-seeder status`.

use std::collections::HashMap;
use std::time::Instant;

use libp2p::PeerId;
use pollen_core::manifest::{KeyId, SecretKey};
use pollen_core::status::{SignedStatus, StatusError, StatusRecord};
use pollen_core::wire::{Request, MAX_STATUS_RECORDS};
use serde_bytes::ByteBuf;

use super::{Driver, DriverError, Mode, Pending};
use crate::store::keys;

/// Devices remembered at most; records of further devices are dropped.
pub(crate) const MAX_DEVICES: usize = 20_000;
/// Records waiting to be passed on at most.
const MAX_OUTBOX: usize = 4_096;

#[derive(Debug)]
pub(crate) struct Fleet {
    key: SecretKey,
    records: HashMap<KeyId, SignedStatus>,
    outbox: Vec<ByteBuf>,
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
    pub fn changed(&self, record: &StatusRecord) -> bool {
        self.last_own.as_ref() != Some(record)
    }

    /// Signs and publishes this node's record; `now_ms` orders it.
    pub fn publish(&mut self, mut record: StatusRecord, now_ms: u64) -> SignedStatus {
        self.last_own = Some(record.clone());
        self.last_seq = now_ms.max(self.last_seq + 1);
        record.seq = self.last_seq;
        let signed = SignedStatus::sign(record, &self.key);
        self.keep(signed.clone());
        signed
    }

    /// A record from a peer: kept and passed on if it is new.
    pub fn receive(&mut self, bytes: &[u8]) -> Result<Option<SignedStatus>, StatusError> {
        let s = SignedStatus::decode(bytes)?;
        let newer = match self.records.get(&s.key_id()) {
            Some(held) => s.record().seq > held.record().seq,
            None => self.records.len() < MAX_DEVICES,
        };
        if !newer {
            return Ok(None);
        }
        self.keep(s.clone());
        Ok(Some(s))
    }

    fn keep(&mut self, s: SignedStatus) {
        if self.outbox.len() < MAX_OUTBOX {
            self.outbox.push(ByteBuf::from(s.to_bytes().to_vec()));
        }
        self.records.insert(s.key_id(), s);
    }

    /// Records to pass on since the last call.
    pub fn take_outbox(&mut self) -> Vec<ByteBuf> {
        std::mem::take(&mut self.outbox)
    }

    /// Every record held (for a peer that just connected).
    pub fn all(&self) -> Vec<ByteBuf> {
        self.records
            .values()
            .map(|s| ByteBuf::from(s.to_bytes().to_vec()))
            .collect()
    }

    pub fn records(&self) -> impl Iterator<Item = &StatusRecord> {
        self.records.values().map(|s| s.record())
    }
}

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
impl Driver {
    /// Peers status records and controls go to: every peer but devices of
    /// other sites. Records travel towards the seeder through the site's
    /// own members and its origin connections, so a record crosses a site's
    /// uplink about once rather than once per cross-site connection.
    fn fleet_peers(&self) -> Vec<PeerId> {
        self.peers
            .iter()
            .filter(|(_, i)| i.hello && !self.other_site(i.site, i.role))
            .map(|(p, _)| *p)
            .collect()
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
            self.fleet.publish(record, unix_ms());
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
            l.tick(r, complete, &self.device_id, control, crate::unix_now());
        }
        self.publish_status(false);
        let outbox = self.fleet.take_outbox();
        if !outbox.is_empty() {
            for p in self.fleet_peers() {
                self.send_records(p, &outbox);
            }
        }
        self.update_snapshot();
    }

    fn send_records(&mut self, peer: PeerId, records: &[ByteBuf]) {
        for batch in records.chunks(MAX_STATUS_RECORDS) {
            self.send(peer, Request::Status(batch.to_vec()), Pending::Notice);
        }
    }

    /// A peer finished its hello: give it every record and the current
    /// control (a device of another site gets the control only).
    pub(super) fn greet_fleet(&mut self, peer: PeerId) {
        let elsewhere = self
            .peers
            .get(&peer)
            .is_some_and(|i| self.other_site(i.site, i.role));
        let all = if elsewhere {
            Vec::new()
        } else {
            self.fleet.all()
        };
        self.send_records(peer, &all);
        if let Some(c) = &self.control {
            let bytes = ByteBuf::from(c.to_bytes());
            self.send(peer, Request::Control(bytes), Pending::Notice);
        }
    }

    /// Loads the records a seeder stored before it restarted.
    pub(super) fn load_fleet(&mut self) -> Result<(), DriverError> {
        for (_, bytes) in self.store.state_with_prefix(keys::STATUS_PREFIX)? {
            if let Err(e) = self.fleet.receive(&bytes) {
                tracing::warn!(error = %e, "a stored status record no longer decodes");
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
        list: Vec<ByteBuf>,
    ) -> Result<(), DriverError> {
        let mut any = false;
        for bytes in list.iter().take(MAX_STATUS_RECORDS) {
            match self.fleet.receive(bytes) {
                Ok(Some(s)) => {
                    any = true;
                    if self.config.mode == Mode::Seed {
                        self.store
                            .put_state(&keys::status(&s.key_id()), s.to_bytes())?;
                    }
                    tracing::debug!(%peer, device = %s.record().device, phase = %s.record().phase, "status record");
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
    use pollen_core::status::Phase;

    fn record(device: &str) -> StatusRecord {
        StatusRecord {
            device: device.into(),
            site: None,
            hardware: None,
            channel: "stable".into(),
            installed: None,
            target: None,
            phase: Phase::Idle,
            note: None,
            last_error: None,
            attempts: 0,
            seq: 0,
        }
    }

    #[test]
    fn newest_record_per_device_wins_and_is_relayed_once() {
        let mut a = Fleet::new(SecretKey::from_bytes(&[1; 32]));
        let mut b = Fleet::new(SecretKey::from_bytes(&[2; 32]));
        let old = a.publish(record("a"), 100);
        let new = a.publish(record("a"), 100);
        assert!(new.record().seq > old.record().seq, "seq must grow");
        assert!(b.receive(new.to_bytes()).expect("valid").is_some());
        assert!(
            b.receive(old.to_bytes()).expect("valid").is_none(),
            "older record kept"
        );
        assert!(
            b.receive(new.to_bytes()).expect("valid").is_none(),
            "relayed twice"
        );
        assert_eq!(b.take_outbox().len(), 1);
        let mut bad = new.to_bytes().to_vec();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert!(b.receive(&bad).is_err());
    }
}
