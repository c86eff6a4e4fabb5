//! Fleet status records as a seeder keeps them in its store: each device's
//! newest signed record together with the credential it came with, so
//! `pollen-seeder status` and a restarted seeder name devices as their
//! credentials do, never as the records claim.

use pollen_core::status::{SignedStatus, StatusError, StatusRecord};
use pollen_core::trust::{Credential, SignedCredential};
use pollen_core::wire::StatusEntry;
use serde_bytes::ByteBuf;

/// The stored bytes of `entry`.
pub fn encode(entry: &StatusEntry) -> Vec<u8> {
    // Plain owned data: postcard cannot fail on it.
    postcard::to_stdvec(entry).unwrap_or_default()
}

/// The entry a seeder stored (or, from before credentials, the bare record).
pub fn entry(bytes: &[u8]) -> StatusEntry {
    match postcard::from_bytes::<StatusEntry>(bytes) {
        Ok(e) => e,
        Err(_) => StatusEntry {
            record: ByteBuf::from(bytes.to_vec()),
            credential: None,
        },
    }
}

/// A stored record as the seeder counted it: device id, site and hardware
/// from the credential stored with it (which the seeder verified before
/// storing), if any.
pub fn record(bytes: &[u8]) -> Result<StatusRecord, StatusError> {
    let e = entry(bytes);
    let signed = SignedStatus::decode(&e.record)?;
    let mut record = signed.record().clone();
    if let Some(c) = e.credential.and_then(|c| SignedCredential::decode(&c).ok()) {
        name_by(&mut record, c.credential());
    }
    Ok(record)
}

/// Device id, site and hardware of `record` as `credential` says, whatever
/// the record claimed.
pub fn name_by(record: &mut StatusRecord, credential: &Credential) {
    record.device = credential.device.clone();
    record.site = credential.site.clone();
    record.hardware = credential.hardware.clone();
}
