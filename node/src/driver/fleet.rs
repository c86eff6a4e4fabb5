//! Fleet status in the mesh: this node's own signed record, and the
//! records of other devices it relays. Every node keeps the newest record
//! per device key (bounded) and passes new ones to its peers, so a record
//! reaches the seeder through any chain of peers. The seeder also keeps
//! them in its store for `pollen-seeder status`.

use std::collections::HashMap;

use pollen_core::manifest::{KeyId, SecretKey};
use pollen_core::status::{SignedStatus, StatusError, StatusRecord};
use serde_bytes::ByteBuf;

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
