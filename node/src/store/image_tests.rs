//! The image store against real slot directories and a real RocksDB.

use std::sync::Arc;
use std::time::Duration;

use pollen_core::chunk::Chunk;
use pollen_core::status::Phase;

use super::*;
use crate::store::tests::{manifest_for, noise, verified};
use crate::update::{Hooks, Outcome, UpdateConfig, Updater};

struct Device {
    tmp: tempfile::TempDir,
    store: Arc<ImageStore>,
}

fn open(dir: &Path, budget: Option<u64>) -> ImageStore {
    let db = RocksStore::open(&dir.join("store")).expect("db");
    ImageStore::open(db, Places::Slots(Slots::new(dir)), budget).expect("open")
}

fn device(budget: Option<u64>) -> Device {
    let tmp = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(open(tmp.path(), budget));
    Device { tmp, store }
}

impl Device {
    fn updater(&self) -> Updater {
        let config = UpdateConfig {
            data_dir: self.tmp.path().to_owned(),
            channel: "stable".into(),
            hooks: Hooks {
                timeout: Duration::from_secs(20),
                ..Hooks::default()
            },
            max_attempts: 2,
        };
        Updater::open(self.store.clone(), config).expect("updater")
    }

    fn slot_bytes(&self, slot: Slot) -> Vec<u8> {
        std::fs::read(Slots::new(self.tmp.path()).artifact(slot)).expect("slot artifact")
    }
}

/// Release `n` of `data`, signed and verified, and its chunks.
fn release(data: &[u8], n: u64) -> (VerifiedManifest, Vec<Chunk>) {
    let (mut m, cs) = manifest_for(data);
    m.release = n;
    m.version = format!("{n}.0.0");
    (verified(m), cs)
}

fn artifact(len: usize) -> Vec<u8> {
    noise(len, len as u64)
}

fn chunk_ref(c: &Chunk) -> pollen_core::manifest::ChunkRef {
    pollen_core::manifest::ChunkRef {
        id: c.id(),
        len: c.data().len() as u32,
    }
}

/// Takes the release up and puts every chunk the store lacks; how many it put.
fn fetch(store: &ImageStore, v: &VerifiedManifest, cs: &[Chunk]) -> usize {
    store.put_manifest(v).expect("manifest");
    store.take_up(v).expect("take up");
    let mut put = 0;
    for c in cs {
        if !store.has_chunk(&c.id()).expect("has") {
            assert_eq!(
                store.put_chunk(c.clone().into_verified()).expect("put"),
                Put::New
            );
            put += 1;
        }
    }
    put
}

/// Release 2: release 1 with 20 000 bytes in the middle replaced.
fn patched(v1: &[u8]) -> Vec<u8> {
    let mut v2 = v1.to_vec();
    let mid = v2.len() / 2;
    v2[mid..mid + 20_000].copy_from_slice(&noise(20_000, 77));
    v2
}

#[test]
fn a_release_is_written_into_the_inactive_slot_and_staged_in_place() {
    let d = device(None);
    let data1 = artifact(400_000);
    let (v1, cs1) = release(&data1, 1);
    assert_eq!(fetch(&d.store, &v1, &cs1), cs1.len());
    let mut u = d.updater();
    assert_eq!(u.install(&v1, false).expect("install"), Outcome::Committed);
    assert_eq!(d.slot_bytes(Slot::A), data1);
    // No chunk byte is kept in the database.
    assert!(d.store.db().chunk_ids().expect("ids").is_empty());

    // Release 2 shares most chunks with the active slot: only the rest is
    // fetched, the shared ones are copied locally when it is staged.
    let data2 = patched(&data1);
    let (v2, cs2) = release(&data2, 2);
    let put = fetch(&d.store, &v2, &cs2);
    assert!(put > 0 && put < cs2.len() / 2, "{put} of {}", cs2.len());
    assert_eq!(u.install(&v2, false).expect("install"), Outcome::Committed);
    assert_eq!(u.record().phase, Phase::Committed);
    assert_eq!(d.slot_bytes(Slot::B), data2);
    assert_eq!(d.slot_bytes(Slot::A), data1, "the previous slot is intact");
    // Every chunk of the installed release is served from the active slot.
    for c in &cs2 {
        let r = chunk_ref(c);
        let got = d.store.read_chunk(&r).expect("read").expect("held");
        assert_eq!(got.bytes(), c.data());
    }
}

#[test]
fn staging_completes_a_release_the_slot_already_holds_in_place() {
    // A device takes release 3 into slot A, which holds release 1: where
    // release 3 has release 1's bytes at the same place, nothing is written.
    let d = device(None);
    let data1 = artifact(300_000);
    let (v1, cs1) = release(&data1, 1);
    fetch(&d.store, &v1, &cs1);
    let mut u = d.updater();
    u.install(&v1, false).expect("install 1");
    let (v2, cs2) = release(&artifact(300_001), 2);
    fetch(&d.store, &v2, &cs2);
    u.install(&v2, false).expect("install 2");
    let data3 = patched(&data1);
    let (v3, cs3) = release(&data3, 3);
    let put = fetch(&d.store, &v3, &cs3);
    assert!(
        put < cs3.len(),
        "release 1's chunks in slot A are not fetched? {put}"
    );
    assert_eq!(
        u.install(&v3, false).expect("install 3"),
        Outcome::Committed
    );
    assert_eq!(d.slot_bytes(Slot::A), data3);
}

#[test]
fn held_chunks_survive_a_restart_and_never_count_for_another_release() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = artifact(200_000);
    let (v1, cs1) = release(&data, 1);
    let half = cs1.len() / 2;
    {
        let store = open(tmp.path(), None);
        store.put_manifest(&v1).expect("manifest");
        store.take_up(&v1).expect("take up");
        for c in &cs1[..half] {
            store.put_chunk(c.clone().into_verified()).expect("put");
        }
    }
    let d = Device {
        store: Arc::new(open(tmp.path(), None)),
        tmp,
    };
    for (i, c) in cs1.iter().enumerate() {
        assert_eq!(
            d.store.has_chunk(&c.id()).expect("has"),
            i < half,
            "chunk {i}"
        );
    }
    // Another release in the same slot: the first one's chunks are gone
    // (their bytes are being overwritten), and its late chunks are not taken.
    let (v2, cs2) = release(&artifact(200_003), 2);
    d.store.put_manifest(&v2).expect("manifest");
    d.store.take_up(&v2).expect("take up");
    assert!(!d.store.has_chunk(&cs1[0].id()).expect("has"));
    assert_eq!(
        d.store
            .put_chunk(cs1[half].clone().into_verified())
            .expect("put"),
        Put::Unwanted
    );
    assert!(!d.store.has_chunk(&cs2[0].id()).expect("has"));
}

#[test]
fn a_batch_of_chunks_is_stored_with_each_result_in_order() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = artifact(300_000);
    let (v1, cs1) = release(&data, 1);
    let (_, other) = release(&artifact(100_001), 2);
    assert!(cs1.len() >= 3, "{} chunks", cs1.len());
    {
        let store = open(tmp.path(), None);
        store.put_manifest(&v1).expect("manifest");
        store.take_up(&v1).expect("take up");
        let batch = vec![
            cs1[0].clone().into_verified(),
            other[0].clone().into_verified(), // not in this release
            cs1[1].clone().into_verified(),
            cs1[0].clone().into_verified(), // twice in one batch
        ];
        let puts: Vec<Put> = store
            .put_chunks(batch)
            .into_iter()
            .map(|r| r.expect("put"))
            .collect();
        assert_eq!(puts, [Put::New, Put::Unwanted, Put::New, Put::AlreadyHeld]);
        let again = store.put_chunks(vec![cs1[1].clone().into_verified()]);
        assert!(matches!(again[..], [Ok(Put::AlreadyHeld)]), "{again:?}");
    }
    // Held, with the right bytes, after a restart.
    let store = open(tmp.path(), None);
    for (i, c) in cs1.iter().enumerate() {
        assert_eq!(store.has_chunk(&c.id()).expect("has"), i < 2, "chunk {i}");
    }
    let back = store.read_chunk(&chunk_ref(&cs1[1])).expect("read");
    assert_eq!(back.expect("held").bytes().as_ref(), cs1[1].data());
}

#[test]
fn a_release_fetched_into_an_output_file_is_fetched_again_into_a_slot() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = artifact(200_000);
    let (v1, cs1) = release(&data, 1);
    let out = tmp.path().join("out.img");
    {
        // `fetch --out` with this data directory first.
        let db = RocksStore::open(&tmp.path().join("store")).expect("db");
        let store = ImageStore::open(db, Places::Output(out.clone()), None).expect("open");
        assert_eq!(fetch(&store, &v1, &cs1), cs1.len());
        store.complete_image(&v1).expect("complete").expect("whole");
    }
    assert_eq!(std::fs::read(&out).expect("output"), data);
    // Then a daemon on the same directory: the output file is no slot, so
    // nothing in it counts as held, and the release goes into slot A.
    let d = Device {
        store: Arc::new(open(tmp.path(), None)),
        tmp,
    };
    assert!(!d.store.has_chunk(&cs1[0].id()).expect("has"));
    assert_eq!(fetch(&d.store, &v1, &cs1), cs1.len(), "fetched again");
    let mut u = d.updater();
    assert_eq!(u.install(&v1, false).expect("install"), Outcome::Committed);
    assert_eq!(d.slot_bytes(Slot::A), data);
    assert_eq!(std::fs::read(&out).expect("output"), data, "left alone");
}

#[test]
fn a_flipped_byte_in_a_slot_is_detected_on_read_and_by_check() {
    let d = device(None);
    let data = artifact(200_000);
    let (v1, cs1) = release(&data, 1);
    fetch(&d.store, &v1, &cs1);
    d.updater().install(&v1, false).expect("install");
    assert!(d.store.check_images().expect("check").2.is_empty());
    let path = Slots::new(d.tmp.path()).artifact(Slot::A);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[5] ^= 0x40;
    std::fs::write(&path, &bytes).expect("write");
    let first = chunk_ref(&cs1[0]);
    assert!(matches!(
        d.store.read_chunk(&first),
        Err(StoreError::CorruptChunk { .. })
    ));
    let second = chunk_ref(&cs1[1]);
    assert!(d.store.read_chunk(&second).expect("read").is_some());
    let problems = d.store.check_images().expect("check").2;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("does not match"), "{problems:?}");
}

#[test]
fn a_release_over_the_budget_is_refused_before_any_byte_is_written() {
    // Two releases of ~300 kB and the database's own files.
    let budget = 600_000 + (3 << 20);
    let d = device(Some(budget));
    let (v1, cs1) = release(&artifact(300_000), 1);
    fetch(&d.store, &v1, &cs1);
    d.updater().install(&v1, false).expect("install");
    let (big, _) = release(&artifact(3_400_000), 2);
    d.store.put_manifest(&big).expect("manifest");
    let err = d.store.take_up(&big).expect_err("over budget");
    assert!(
        matches!(err, StoreError::OverBudget { release: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("does not fit the store budget"));
    let slot_b = Slots::new(d.tmp.path()).artifact(Slot::B);
    assert!(!slot_b.exists(), "nothing written for a refused release");
    // One that fits is taken.
    let (v3, cs3) = release(&artifact(290_000), 3);
    fetch(&d.store, &v3, &cs3);
    d.updater().install(&v3, false).expect("install");
    assert!(
        disk_usage(d.tmp.path()) <= budget,
        "{}",
        disk_usage(d.tmp.path())
    );
}

#[test]
fn clean_up_keeps_the_manifests_of_the_releases_in_the_slots() {
    let d = device(None);
    let mut ids = Vec::new();
    let mut u = d.updater();
    for n in 1..=4u64 {
        let (v, cs) = release(&artifact(100_000 + n as usize), n);
        fetch(&d.store, &v, &cs);
        assert_eq!(u.install(&v, false).expect("install"), Outcome::Committed);
        ids.push(v.id());
    }
    let held = d.store.manifest_ids().expect("ids");
    assert!(
        held.contains(&ids[3]) && held.contains(&ids[2]),
        "installed and previous kept"
    );
    assert!(
        !held.contains(&ids[0]) && !held.contains(&ids[1]),
        "older ones dropped"
    );
}

#[test]
fn the_whole_hash_on_its_own_thread_is_the_hash_of_what_was_fed_in_order() {
    let pieces: Vec<Vec<u8>> = (0..40u8)
        .map(|i| noise(1000 + 977 * i as usize, i.into()))
        .collect();
    let whole: Vec<u8> = pieces.concat();
    let (digest, n) = hashed_in_order(|hash| {
        for p in &pieces {
            assert!(hash(p.clone()), "the hashing thread is there");
        }
        Ok(())
    })
    .expect("fed");
    assert_eq!(digest, *blake3::hash(&whole).as_bytes());
    assert_eq!(n, whole.len() as u64);
    // An error while feeding is the result, whatever was hashed so far.
    let failed = hashed_in_order(|hash| {
        hash(pieces[0].clone());
        Err(StoreError::NotWriting(7))
    });
    assert!(matches!(failed, Err(StoreError::NotWriting(7))));
}
