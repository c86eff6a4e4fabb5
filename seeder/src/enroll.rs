//! Enrolling devices: a credential per node, signed by the enroll role,
//! binding the ed25519 key inside its peer id to its device id, site,
//! hardware and serial; one at a time or a batch from CSV, all or nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use libp2p::PeerId;
use pollen_core::manifest::SecretKey;
use pollen_core::trust::credential::MAX_CREDENTIAL_BYTES;
use pollen_core::trust::{Credential, CredentialError, FleetPolicy, SignedCredential};
use pollen_node::net::identity::{peer_key, peer_of_key};

use crate::files::{write_new, FileError};

/// The CSV header a batch must start with.
pub const CSV_HEADER: &str = "peer_id,device_id,site,hardware,serial";

/// Errors of this module; each names the row or the value at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnrollError {
    #[error("peer id {peer:?}: {reason}")]
    PeerId { peer: String, reason: String },
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error("line {line}: {reason}")]
    Csv { line: usize, reason: String },
    #[error("the enroll key {key_id} is not a key of the policy's enroll role{why}")]
    NotEnrollKey { key_id: String, why: &'static str },
    #[error("{path}: {source}")]
    CredentialFile {
        path: PathBuf,
        source: CredentialError,
    },
    #[error(transparent)]
    File(#[from] FileError),
}

/// What the enroll role says about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    pub peer: PeerId,
    pub device: String,
    pub site: Option<String>,
    pub hardware: Option<String>,
    pub serial: Option<String>,
}

/// A peer id that names an ed25519 key (what `pollen-node id` prints), and
/// that key.
pub fn parse_peer(text: &str) -> Result<(PeerId, [u8; 32]), EnrollError> {
    let bad = |reason: &str| EnrollError::PeerId {
        peer: text.to_owned(),
        reason: reason.to_owned(),
    };
    let peer = PeerId::from_str(text.trim()).map_err(|e| bad(&e.to_string()))?;
    let key = peer_key(&peer).ok_or_else(|| {
        bad("not an ed25519 peer id (no key inside it; `pollen-node id` prints a node's id)")
    })?;
    Ok((peer, key))
}

/// A device to revoke, given as a credential file or a peer id: its
/// identity key and peer id.
pub fn device_key(arg: &str) -> Result<([u8; 32], PeerId), EnrollError> {
    let path = Path::new(arg);
    if !path.is_file() {
        let (peer, key) = parse_peer(arg)?;
        return Ok((key, peer));
    }
    let bytes = crate::files::read_bounded(path, MAX_CREDENTIAL_BYTES)?;
    let signed =
        SignedCredential::decode(&bytes).map_err(|source| EnrollError::CredentialFile {
            path: path.to_owned(),
            source,
        })?;
    let key = signed.credential().key;
    let peer = peer_of_key(&key).ok_or_else(|| EnrollError::PeerId {
        peer: hex::encode(key),
        reason: format!("the key in {} is not an ed25519 key", path.display()),
    })?;
    Ok((key, peer))
}

/// Refuses an enroll key the policy's enroll role does not hold.
pub fn check_enroll_key(policy: &FleetPolicy, key: &SecretKey) -> Result<(), EnrollError> {
    let id = key.public().id();
    let why = match &policy.enroll {
        None => " (the policy has no enroll role: an open mesh asks no credentials)",
        Some(role) if role.key(&id).is_none() => "",
        Some(_) => return Ok(()),
    };
    Err(EnrollError::NotEnrollKey {
        key_id: id.to_string(),
        why,
    })
}

/// The signed credential of `device`, issued at `now` for `valid_for` seconds.
pub fn credential(
    device: &Device,
    key: &SecretKey,
    now: u64,
    valid_for: u64,
) -> Result<SignedCredential, EnrollError> {
    let node_key = peer_key(&device.peer).ok_or_else(|| EnrollError::PeerId {
        peer: device.peer.to_string(),
        reason: "not an ed25519 peer id".into(),
    })?;
    let c = Credential {
        key: node_key,
        device: device.device.clone(),
        site: device.site.clone(),
        hardware: device.hardware.clone(),
        serial: device.serial.clone(),
        issued_at: now,
        expires_at: now.saturating_add(valid_for),
    };
    Ok(SignedCredential::sign(c, &[key])?)
}

/// The file name of a device's credential: `<device id>.cred`, every
/// character but ASCII letters, digits, `-` and `_` written as `_` (so a
/// device id can never name a path elsewhere).
pub fn file_name(device: &str) -> String {
    let safe: String = device
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' => c,
            _ => '_',
        })
        .collect();
    format!("{safe}.cred")
}

/// Parses a batch: the header [`CSV_HEADER`], then one device per line;
/// empty cells are none, blank lines are skipped. Cells are plain (no
/// quoting): a comma or quote inside one is an error. Lines count from 1
/// (the header).
pub fn parse_csv(text: &str) -> Result<Vec<(usize, Device)>, EnrollError> {
    // A spreadsheet's byte order mark is not part of the header.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim_end_matches('\r')));
    let header = lines.next().map(|(_, l)| l.trim()).unwrap_or_default();
    let columns: Vec<&str> = header.split(',').map(str::trim).collect();
    if columns != CSV_HEADER.split(',').collect::<Vec<_>>() {
        return Err(EnrollError::Csv {
            line: 1,
            reason: format!("the header must be {CSV_HEADER:?}, found {header:?}"),
        });
    }
    let mut devices = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut peers: BTreeMap<PeerId, usize> = BTreeMap::new();
    for (line, text) in lines {
        if text.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| EnrollError::Csv { line, reason };
        if text.contains('"') {
            return Err(bad("quoted cells are not supported".into()));
        }
        let cells: Vec<&str> = text.split(',').map(str::trim).collect();
        let [peer, device, site, hardware, serial] = cells[..] else {
            return Err(bad(format!(
                "{} cells, expected 5 ({CSV_HEADER})",
                cells.len()
            )));
        };
        let (peer, _) = parse_peer(peer).map_err(|e| bad(e.to_string()))?;
        if device.is_empty() {
            return Err(bad("device_id is empty".into()));
        }
        let cell = |s: &str| (!s.is_empty()).then(|| s.to_owned());
        let dev = Device {
            peer,
            device: device.to_owned(),
            site: cell(site),
            hardware: cell(hardware),
            serial: cell(serial),
        };
        // The same checks a device runs on the credential, named by line.
        let probe = Credential {
            key: [0; 32],
            device: dev.device.clone(),
            site: dev.site.clone(),
            hardware: dev.hardware.clone(),
            serial: dev.serial.clone(),
            issued_at: 0,
            expires_at: 0,
        };
        SignedCredential::sign(probe, &[]).map_err(|e| bad(e.to_string()))?;
        let name = file_name(device).to_ascii_lowercase();
        if let Some(first) = names.insert(name, line) {
            return Err(bad(format!(
                "device {device:?} has the same credential file name as line {first}"
            )));
        }
        if let Some(first) = peers.insert(peer, line) {
            return Err(bad(format!(
                "peer {peer} is enrolled on line {first} already"
            )));
        }
        devices.push((line, dev));
    }
    if devices.is_empty() {
        return Err(EnrollError::Csv {
            line: 1,
            reason: "no devices after the header".into(),
        });
    }
    Ok(devices)
}

/// Writes each credential to its file, all or none: nothing is written if
/// any file exists, and files written before a failure are removed.
pub fn write_all(files: &[(PathBuf, Vec<u8>)]) -> Result<(), EnrollError> {
    if let Some((path, _)) = files.iter().find(|(p, _)| p.symlink_metadata().is_ok()) {
        return Err(FileError::Exists(path.clone()).into());
    }
    for (i, (path, bytes)) in files.iter().enumerate() {
        if let Err(e) = write_new(path, bytes) {
            for (written, _) in &files[..i] {
                let _ = std::fs::remove_file(written);
            }
            return Err(e.into());
        }
    }
    Ok(())
}

/// The path of `device`'s credential in `dir`.
pub fn path_in(dir: &Path, device: &str) -> PathBuf {
    dir.join(file_name(device))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(n: u8) -> PeerId {
        let mut secret = [n; 32];
        libp2p::identity::Keypair::ed25519_from_bytes(&mut secret)
            .expect("32 bytes")
            .public()
            .to_peer_id()
    }

    #[test]
    fn only_ed25519_peer_ids_are_enrolled() {
        let (id, key) = parse_peer(&peer(1).to_string()).expect("ed25519");
        assert_eq!(id, peer(1));
        assert_eq!(pollen_node::net::identity::peer_of_key(&key), Some(id));
        let hashed = PeerId::random().to_string();
        let err = parse_peer(&hashed).expect_err("no key inside");
        assert!(err.to_string().contains("not an ed25519 peer id"), "{err}");
        assert!(parse_peer("press-7").is_err());
    }

    #[test]
    fn file_names_stay_in_their_folder() {
        assert_eq!(file_name("press-0042"), "press-0042.cred");
        assert_eq!(file_name("../../etc/passwd"), "______etc_passwd.cred");
        assert_eq!(file_name("hall a/press 7"), "hall_a_press_7.cred");
    }

    #[test]
    fn csv_rows_are_checked_and_named_by_line() {
        let good = format!(
            "{CSV_HEADER}\n{},press-1,hall-a,imx8,SN1\n\n{},press-2,,,\n",
            peer(1),
            peer(2)
        );
        let rows = parse_csv(&good).expect("valid");
        assert_eq!(
            parse_csv(&format!("\u{feff}{good}"))
                .expect("with a BOM")
                .len(),
            2
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].0, 4);
        assert_eq!(rows[1].1.site, None);
        assert_eq!(rows[0].1.serial.as_deref(), Some("SN1"));
        let cases = [
            (format!("peer,device\n{},x,,,\n", peer(1)), 1, "header"),
            (format!("{CSV_HEADER}\n{},x,,\n", peer(1)), 2, "4 cells"),
            (format!("{CSV_HEADER}\nnot-a-peer,x,,,\n"), 2, "peer id"),
            (
                format!("{CSV_HEADER}\n{},,,,\n", peer(1)),
                2,
                "device_id is empty",
            ),
            (
                format!("{CSV_HEADER}\n{},a,,,\n{},A,,,\n", peer(1), peer(2)),
                3,
                "same credential file name as line 2",
            ),
            (
                format!("{CSV_HEADER}\n{},a,,,\n{},b,,,\n", peer(1), peer(1)),
                3,
                "enrolled on line 2",
            ),
            (
                format!("{CSV_HEADER}\n{},\"a,b\",,,\n", peer(1)),
                2,
                "quoted",
            ),
            (
                format!("{CSV_HEADER}\n{},{},,,\n", peer(1), "x".repeat(200)),
                2,
                "longer than",
            ),
            (format!("{CSV_HEADER}\n"), 1, "no devices"),
        ];
        for (text, line, what) in cases {
            let err = parse_csv(&text).expect_err(what);
            assert!(
                matches!(err, EnrollError::Csv { line: l, .. } if l == line),
                "{what}: {err}"
            );
            assert!(err.to_string().contains(what), "{what}: {err}");
        }
    }

    #[test]
    fn credentials_verify_under_a_policy_with_that_enroll_key() {
        use pollen_core::manifest::TrustPolicy;
        let enroll = SecretKey::from_bytes(&[4; 32]);
        let single = |n: u8| TrustPolicy::single(SecretKey::from_bytes(&[n; 32]).public());
        let policy = FleetPolicy::new(
            1,
            u64::MAX,
            [single(1), single(2), single(3)],
            Some(single(4)),
        );
        assert!(check_enroll_key(&policy, &enroll).is_ok());
        assert!(check_enroll_key(&policy, &SecretKey::from_bytes(&[1; 32])).is_err());
        let device = Device {
            peer: peer(9),
            device: "press-9".into(),
            site: Some("hall-a".into()),
            hardware: None,
            serial: None,
        };
        let signed = credential(&device, &enroll, 100, 1_000).expect("signs");
        let key = peer_key(&peer(9)).expect("ed25519");
        let v = pollen_core::trust::VerifiedCredential::check(&signed.encode(), &key, &policy, 500)
            .expect("verifies");
        assert_eq!(v.credential().expires_at, 1_100);
    }

    #[test]
    fn a_batch_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = vec![
            (dir.path().join("a.cred"), b"a".to_vec()),
            (dir.path().join("b.cred"), b"b".to_vec()),
        ];
        std::fs::write(dir.path().join("b.cred"), b"old").expect("write");
        assert!(matches!(
            write_all(&files),
            Err(EnrollError::File(FileError::Exists(_)))
        ));
        assert!(!dir.path().join("a.cred").exists());
        std::fs::remove_file(dir.path().join("b.cred")).expect("rm");
        write_all(&files).expect("writes");
        assert_eq!(
            std::fs::read(dir.path().join("b.cred")).expect("read"),
            b"b"
        );
    }
}
