//! DESIGN.md §4 threats 1–4 and 7: each bad manifest is fed both to
//! `pollen_core::verify` and to `pollen-node import`. Each must be refused
//! with a message naming the cause, and leave the node's store byte-for-byte
//! unchanged.

use std::path::{Path, PathBuf};

use pollen_core::chunk::{chunks, ChunkParams};
use pollen_core::manifest::{
    verify, Artifact, ChunkRef, Install, Manifest, Rollout, SecretKey, SignedManifest, TrustPolicy,
    VerifyContext, VerifyError,
};
use pollen_e2e::{random_bytes, run, s, snapshot};

const HW: &str = "press-v2";

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    a: SecretKey,
    b: SecretKey,
    stranger: SecretKey,
    policy: TrustPolicy,
    template: Manifest,
    now: u64,
}

impl Fixture {
    /// A node that trusts keys A and B (threshold 2) and has release 5 installed.
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        let a = SecretKey::from_bytes(&[0xa1; 32]);
        let b = SecretKey::from_bytes(&[0xb2; 32]);
        let stranger = SecretKey::from_bytes(&[0x57; 32]);
        std::fs::write(dir.join("a.pub"), a.public().to_text()).expect("write");
        std::fs::write(dir.join("b.pub"), b.public().to_text()).expect("write");
        std::fs::write(dir.join("trust"), "threshold 2\nkey a.pub\nkey b.pub\n").expect("write");
        let policy = TrustPolicy::new(vec![a.public(), b.public()], 2).expect("policy");

        let data = random_bytes(3 << 20, 42);
        let params = ChunkParams::DEFAULT;
        let chunk_dir = dir.join("chunks");
        std::fs::create_dir_all(&chunk_dir).expect("mkdir");
        let mut refs = Vec::new();
        for c in chunks(&data[..], params) {
            let c = c.expect("chunk");
            std::fs::write(chunk_dir.join(c.id().to_hex()), c.data()).expect("write chunk");
            refs.push(ChunkRef {
                id: c.id(),
                len: c.data().len() as u32,
            });
        }
        let now = pollen_node::unix_now();
        let template = Manifest {
            product: "press".into(),
            channel: "stable".into(),
            version: "5.0.0".into(),
            release: 5,
            created_at: now,
            expires_at: now + 86_400,
            hardware: vec![HW.into()],
            artifact: Artifact {
                name: "image.bin".into(),
                size: data.len() as u64,
                blake3: *blake3::hash(&data).as_bytes(),
            },
            chunking: params,
            chunks: refs,
            rollout: Rollout::default(),
            install: Install::FullImage,
        };
        let f = Fixture {
            _tmp: tmp,
            dir,
            a,
            b,
            stranger,
            policy,
            template,
            now,
        };
        let genuine = f.sign(f.template.clone(), &[&f.a, &f.b]);
        let out = f.import(&genuine);
        assert!(
            out.status.success(),
            "genuine import failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        f
    }

    fn sign(&self, m: Manifest, keys: &[&SecretKey]) -> Vec<u8> {
        SignedManifest::sign(m, keys).encode()
    }

    fn release(&self, n: u64) -> Manifest {
        Manifest {
            release: n,
            version: format!("{n}.0.0"),
            ..self.template.clone()
        }
    }

    fn ctx(&self) -> VerifyContext {
        VerifyContext {
            now: self.now,
            floor: 5,
            hardware: Some(HW.into()),
            channel: Some("stable".into()),
        }
    }

    fn store(&self) -> PathBuf {
        self.dir.join("node").join("store")
    }

    fn import_from(&self, manifest: &[u8], chunk_dir: &Path) -> std::process::Output {
        let path = self.dir.join("candidate.pollen");
        std::fs::write(&path, manifest).expect("write manifest");
        run(
            "pollen-node",
            &[
                "import",
                "--data",
                s(&self.dir.join("node")),
                "--trust",
                s(&self.dir.join("trust")),
                "--manifest",
                s(&path),
                "--chunks",
                s(chunk_dir),
                "--channel",
                "stable",
                "--hardware",
                HW,
            ],
        )
    }

    fn import(&self, manifest: &[u8]) -> std::process::Output {
        self.import_from(manifest, &self.dir.join("chunks"))
    }

    /// The whole contract for one bad manifest.
    fn refuse(&self, name: &str, bytes: &[u8], variant: fn(&VerifyError) -> bool, phrase: &str) {
        let verdict = verify(bytes, &self.policy, &self.ctx());
        match &verdict {
            Err(e) if variant(e) => {}
            other => panic!("{name}: verify gave {other:?}"),
        }
        let before = snapshot(&self.store());
        let out = self.import(bytes);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: import accepted it");
        assert!(
            stderr.contains(phrase),
            "{name}: message {stderr:?} does not name the cause ({phrase:?})"
        );
        assert_eq!(before, snapshot(&self.store()), "{name}: the store changed");
        println!("{name}: refused — {}", stderr.trim());
    }
}

#[test]
fn threat1_signatures() {
    let f = Fixture::new();
    let m = f.release(6);
    f.refuse(
        "unknown key",
        &f.sign(m.clone(), &[&f.stranger]),
        |e| matches!(e, VerifyError::UnknownKey { .. }),
        "unknown key",
    );
    f.refuse(
        "below threshold",
        &f.sign(m.clone(), &[&f.a]),
        |e| {
            matches!(
                e,
                VerifyError::BelowThreshold {
                    valid: 1,
                    required: 2
                }
            )
        },
        "policy needs 2",
    );
    f.refuse(
        "unknown key does not make up the threshold",
        &f.sign(m.clone(), &[&f.a, &f.stranger]),
        |e| matches!(e, VerifyError::BelowThreshold { valid: 1, .. }),
        "policy needs 2",
    );
    f.refuse(
        "one key counted twice",
        &f.sign(m, &[&f.a, &f.a]),
        |e| matches!(e, VerifyError::DuplicateSignature { .. }),
        "more than once",
    );
}

#[test]
fn threat2_integrity_and_channel() {
    let f = Fixture::new();
    let genuine = f.sign(f.release(6), &[&f.a, &f.b]);
    assert!(verify(&genuine, &f.policy, &f.ctx()).is_ok());

    let mut altered = genuine.clone();
    let at = altered
        .windows(9)
        .position(|w| w == b"image.bin")
        .expect("artifact name in bytes");
    altered[at] = b'I';
    f.refuse(
        "byte altered after signing",
        &altered,
        |e| matches!(e, VerifyError::BadSignature { .. }),
        "altered after signing",
    );

    f.refuse(
        "truncated",
        &genuine[..genuine.len() - 20],
        |e| matches!(e, VerifyError::Decode(_)),
        "truncated",
    );
    let mut huge = genuine.clone();
    huge.resize(9 << 20, 0);
    f.refuse(
        "oversized",
        &huge,
        |e| matches!(e, VerifyError::Decode(_)),
        "limit",
    );
    let mut version = genuine.clone();
    version[0] = 2;
    f.refuse(
        "unknown format version",
        &version,
        |e| matches!(e, VerifyError::Decode(_)),
        "unknown manifest format version 2",
    );

    let other_channel = Manifest {
        channel: "nightly".into(),
        ..f.release(6)
    };
    f.refuse(
        "another channel",
        &f.sign(other_channel, &[&f.a, &f.b]),
        |e| matches!(e, VerifyError::WrongChannel { .. }),
        "channel \"nightly\"",
    );
}

#[test]
fn threat3_rollback_and_freeze() {
    let f = Fixture::new();
    f.refuse(
        "rollback",
        &f.sign(f.release(4), &[&f.a, &f.b]),
        |e| {
            matches!(
                e,
                VerifyError::Rollback {
                    release: 4,
                    floor: 5
                }
            )
        },
        "rollback refused",
    );
    let expired = Manifest {
        expires_at: f.now - 60,
        created_at: f.now - 3600,
        ..f.release(6)
    };
    f.refuse(
        "expired",
        &f.sign(expired, &[&f.a, &f.b]),
        |e| matches!(e, VerifyError::Expired { .. }),
        "expired",
    );
}

#[test]
fn threat4_wrong_hardware() {
    let f = Fixture::new();
    let m = Manifest {
        hardware: vec!["press-v1".into(), "lathe".into()],
        ..f.release(6)
    };
    f.refuse(
        "wrong hardware",
        &f.sign(m, &[&f.a, &f.b]),
        |e| matches!(e, VerifyError::WrongHardware { .. }),
        "hardware",
    );
}

#[test]
fn threat7_mix_and_match() {
    let f = Fixture::new();
    let mut appended = f.sign(f.release(6), &[&f.a, &f.b]);
    appended.extend_from_slice(&postcard_chunk_list(&f.template.chunks));
    f.refuse(
        "chunk list appended outside the signature",
        &appended,
        |e| matches!(e, VerifyError::Trailing(_)),
        "not covered",
    );

    let six = SignedManifest::sign(f.release(6), &[&f.a, &f.b]);
    let mut m7 = f.release(7);
    m7.chunks.reverse();
    let seven = SignedManifest::sign(m7, &[&f.a, &f.b]);
    let spliced = seven.with_signatures_of(&six).encode();
    f.refuse(
        "chunk list of one release, signatures of another",
        &spliced,
        |e| matches!(e, VerifyError::BadSignature { .. }),
        "does not match",
    );

    let mut padded = f.release(6);
    let extra = padded.chunks[0];
    padded.chunks.push(extra);
    f.refuse(
        "chunk list not covering the artifact",
        &f.sign(padded, &[&f.a, &f.b]),
        |e| matches!(e, VerifyError::ChunkList(_)),
        "not covered",
    );

    // A genuine manifest, but a chunk folder that slips in bytes of another
    // artifact under a listed id: the chunk is refused before it is stored.
    let data = random_bytes(3 << 20, 43);
    let new: Vec<_> = chunks(&data[..], ChunkParams::DEFAULT)
        .map(|c| c.expect("chunk"))
        .collect();
    let m8 = Manifest {
        release: 8,
        artifact: Artifact {
            name: "image.bin".into(),
            size: data.len() as u64,
            blake3: *blake3::hash(&data).as_bytes(),
        },
        chunks: new
            .iter()
            .map(|c| ChunkRef {
                id: c.id(),
                len: c.data().len() as u32,
            })
            .collect(),
        ..f.release(8)
    };
    let mixed = f.dir.join("mixed");
    std::fs::create_dir_all(&mixed).expect("mkdir");
    let impostor = &f.template.chunks[0];
    let impostor_bytes =
        std::fs::read(f.dir.join("chunks").join(impostor.id.to_hex())).expect("read");
    for c in &new {
        std::fs::write(mixed.join(c.id().to_hex()), c.data()).expect("write");
    }
    let target = new
        .iter()
        .find(|c| c.data().len() == impostor_bytes.len())
        .map(|c| c.id());
    let victim = target.unwrap_or(new[0].id());
    let mut forged = impostor_bytes.clone();
    forged.resize(
        new.iter()
            .find(|c| c.id() == victim)
            .map(|c| c.data().len())
            .unwrap_or(0),
        0,
    );
    std::fs::write(mixed.join(victim.to_hex()), &forged).expect("write");
    let out = f.import_from(&f.sign(m8, &[&f.a, &f.b]), &mixed);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "mixed chunks accepted");
    assert!(
        stderr.contains(&victim.to_hex()) && stderr.contains("does not match its id"),
        "{stderr}"
    );
    let store = pollen_node::store::RocksStore::open_read_only(&f.store()).expect("open store");
    use pollen_node::store::Store;
    assert!(
        !store.has_chunk(&victim).expect("has"),
        "the forged chunk was stored"
    );
    assert_eq!(
        pollen_node::store::floor(&store, "stable").expect("floor"),
        5,
        "floor moved"
    );
    println!("chunk from another artifact: refused — {}", stderr.trim());
}

fn postcard_chunk_list(list: &[ChunkRef]) -> Vec<u8> {
    list.iter()
        .flat_map(|c| c.id.0.iter().copied().chain(c.len.to_le_bytes()))
        .collect()
}
