//! Pack files under a [`RocksStore`]: round trip, dedup, damage at rest,
//! crash recovery (an open after a close without sync), the old layout.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pollen_core::chunk::Chunk;

use super::packs::{Loc, Packs};
use super::tests::{manifest_for, noise};
use super::*;

fn pack_files(store: &Path) -> Vec<PathBuf> {
    let mut out: Vec<_> = match std::fs::read_dir(store.join("packs")) {
        Ok(d) => d.map(|e| e.expect("entry").path()).collect(),
        Err(_) => Vec::new(),
    };
    out.sort();
    out
}

fn pack_bytes(store: &Path) -> u64 {
    pack_files(store)
        .iter()
        .map(|p| std::fs::metadata(p).expect("meta").len())
        .sum()
}

fn unique_len(cs: &[Chunk]) -> u64 {
    let mut seen = HashSet::new();
    cs.iter()
        .filter(|c| seen.insert(c.id()))
        .map(|c| c.data().len() as u64)
        .sum()
}

#[test]
fn chunks_round_trip_through_packs_and_are_written_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The same 100 kB twice: the second half dedups against the first.
    let half = noise(100_000, 1);
    let data = [half.clone(), half].concat();
    let (m, cs) = manifest_for(&data);
    {
        let store = RocksStore::open(dir.path()).expect("open");
        let mut new = 0;
        for c in &cs {
            if store
                .put_chunk_unlogged(c.clone().into_verified())
                .expect("put")
                == Put::New
            {
                new += 1;
            }
        }
        assert!(new < cs.len(), "some chunks repeat");
        // Readable before the sync (from the write buffer).
        let mut out = Vec::new();
        reassemble_to(&store, &m, &mut out).expect("reassemble before sync");
        assert_eq!(out, data);
        store.sync_chunks().expect("sync");
        for c in &cs {
            assert_eq!(
                store
                    .put_chunk_unlogged(c.clone().into_verified())
                    .expect("put"),
                Put::AlreadyHeld
            );
        }
        store.sync_chunks().expect("sync");
        assert_eq!(store.chunk_ids().expect("ids").len(), new);
    }
    // Each byte once, and direct writes pad the last block of a sync.
    let (on_disk, unique) = (pack_bytes(dir.path()), unique_len(&cs));
    assert!(
        (unique..unique + 4096).contains(&on_disk),
        "{on_disk} for {unique}"
    );
    let store = RocksStore::open_read_only(dir.path()).expect("reopen");
    let mut out = Vec::new();
    reassemble_to(&store, &m, &mut out).expect("reassemble after reopen");
    assert_eq!(out, data);
}

#[test]
fn packs_roll_over_and_read_back_across_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let packs = Packs::open(dir.path(), true)
        .expect("open")
        .with_limit(10_000);
    let blobs: Vec<Vec<u8>> = (0..10).map(|i| noise(3_000, i)).collect();
    let locs: Vec<Loc> = blobs
        .iter()
        .map(|b| packs.append(b).expect("append"))
        .collect();
    assert!(locs.iter().any(|l| l.pack > 0), "rolled over: {locs:?}");
    for (b, l) in blobs.iter().zip(&locs) {
        assert_eq!(packs.read_buffered(*l).expect("read").as_ref(), Some(b));
    }
    packs.sync().expect("sync");
    for (b, l) in blobs.iter().zip(&locs) {
        assert_eq!(packs.read(*l).expect("read").as_ref(), Some(b));
    }
    assert!(pack_files(dir.path()).len() > 1);
    let keep: HashSet<u32> = [locs[0].pack].into();
    packs.remove_unreferenced(&keep).expect("remove");
    assert_eq!(pack_files(dir.path()).len(), 1);
    assert_eq!(packs.read(locs[9]).expect("read"), None, "its pack is gone");
    assert_eq!(packs.read(locs[0]).expect("read").as_ref(), Some(&blobs[0]));
    assert_eq!(Loc::decode(&locs[3].encode()), Some(locs[3]));
    assert_eq!(Loc::decode(&[0; 15]), None);
}

/// A store holding `cs` (synced) and closed: chunk `i` lies at the sum of
/// the lengths before it in pack 0.
fn stored(dir: &Path, cs: &[Chunk]) {
    let store = RocksStore::open(dir).expect("open");
    for c in cs {
        store
            .put_chunk_unlogged(c.clone().into_verified())
            .expect("put");
    }
    store.sync_chunks().expect("sync");
}

#[test]
fn a_flipped_pack_byte_is_caught_and_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, cs) = manifest_for(&noise(200_000, 2));
    stored(dir.path(), &cs);
    let pack = &pack_files(dir.path())[0];
    let mut bytes = std::fs::read(pack).expect("read pack");
    let second = cs[0].data().len() + 5;
    bytes[second] ^= 0x40;
    std::fs::write(pack, &bytes).expect("write pack");

    // Read-only: not served; what `check` reads does not match the id.
    let ro = RocksStore::open_read_only(dir.path()).expect("open ro");
    assert!(ro.read_chunk(&m.chunks[1]).expect("read").is_none());
    let raw = ro.get_chunk(&m.chunks[1].id).expect("get").expect("listed");
    assert!(!m.chunks[1].id.matches(&raw), "check reports it");
    assert!(
        ro.has_chunk(&m.chunks[1].id).expect("has"),
        "ro changes nothing"
    );
    drop(ro);

    let store = RocksStore::open(dir.path()).expect("open");
    assert!(store.read_chunk(&m.chunks[0]).expect("read").is_some());
    assert!(store.read_chunk(&m.chunks[1]).expect("read").is_none());
    assert!(
        !store.has_chunk(&m.chunks[1].id).expect("has"),
        "its index entry went"
    );
    assert_eq!(
        missing_chunks(&store, &m).expect("missing"),
        vec![m.chunks[1]]
    );
    // Fetched again, it is appended anew and served.
    store
        .put_chunk(cs[1].clone().into_verified())
        .expect("put again");
    let back = store.read_chunk(&m.chunks[1]).expect("read").expect("held");
    assert_eq!(back.bytes().as_ref(), cs[1].data());
}

#[test]
fn a_truncated_pack_is_caught_and_not_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, cs) = manifest_for(&noise(200_000, 3));
    stored(dir.path(), &cs);
    let pack = &pack_files(dir.path())[0];
    // One sync: the chunks lie one after the other from offset 0.
    let end: u64 = cs.iter().map(|c| c.data().len() as u64).sum();
    std::fs::OpenOptions::new()
        .write(true)
        .open(pack)
        .and_then(|f| f.set_len(end - 10))
        .expect("truncate");
    let last = *m.chunks.last().expect("chunks");
    let ro = RocksStore::open_read_only(dir.path()).expect("open ro");
    assert_eq!(ro.get_chunk(&last.id).expect("get"), None, "short read");
    assert!(ro.read_chunk(&last).expect("read").is_none());
    drop(ro);
    let store = RocksStore::open(dir.path()).expect("open");
    assert!(store.read_chunk(&last).expect("read").is_none());
    assert!(!store.has_chunk(&last.id).expect("has"));
    assert!(store.read_chunk(&m.chunks[0]).expect("read").is_some());
}

#[test]
fn a_close_without_sync_keeps_synced_chunks_and_names_no_unsynced_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ma, a) = manifest_for(&noise(150_000, 4));
    let (mb, b) = manifest_for(&noise(150_000, 5));
    {
        let store = RocksStore::open(dir.path()).expect("open");
        for c in &a {
            store
                .put_chunk_unlogged(c.clone().into_verified())
                .expect("put");
        }
        store.sync_chunks().expect("sync");
        // Appended after them, never indexed.
        for c in &b {
            store
                .put_chunk_unlogged(c.clone().into_verified())
                .expect("put");
        }
        assert!(store.has_chunk(&mb.chunks[0].id).expect("has"));
    }
    {
        let store = RocksStore::open(dir.path()).expect("reopen");
        assert!(missing_chunks(&store, &ma).expect("missing").is_empty());
        assert_eq!(missing_chunks(&store, &mb).expect("missing").len(), b.len());
        let mut out = Vec::new();
        reassemble_to(&store, &ma, &mut out).expect("reassemble");
        // A run that appends and never syncs leaves a pack nothing names.
        for c in &b {
            store
                .put_chunk_unlogged(c.clone().into_verified())
                .expect("put");
        }
        store.sync_chunks().expect("sync");
        drop(store);
    }
    // The run above did sync: its pack stays. One that does not:
    let before = pack_files(dir.path());
    {
        let store = RocksStore::open(dir.path()).expect("reopen");
        let (_, c) = manifest_for(&noise(80_000, 6));
        for c in &c {
            store
                .put_chunk_unlogged(c.clone().into_verified())
                .expect("put");
        }
        // Force the buffer out, as a large publish would.
        store.packs_flush_for_tests();
    }
    assert_eq!(pack_files(dir.path()).len(), before.len() + 1);
    let store = RocksStore::open(dir.path()).expect("reopen");
    assert_eq!(pack_files(dir.path()), before, "the unindexed pack went");
    assert!(missing_chunks(&store, &mb).expect("missing").is_empty());
}

#[test]
fn drop_chunks_deletes_every_pack() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (m, cs) = manifest_for(&noise(100_000, 7));
    stored(dir.path(), &cs);
    let store = RocksStore::open(dir.path()).expect("open");
    assert!(!pack_files(dir.path()).is_empty());
    assert_eq!(store.drop_chunks().expect("drop"), store_len(&cs));
    assert!(pack_files(dir.path()).is_empty());
    assert_eq!(
        missing_chunks(&store, &m).expect("missing").len(),
        store_len(&cs)
    );
    assert_eq!(store.drop_chunks().expect("drop"), 0);
}

fn store_len(cs: &[Chunk]) -> usize {
    cs.iter().map(|c| c.id()).collect::<HashSet<_>>().len()
}

/// A store as the previous version wrote it: chunk bytes in `chunks-0`,
/// lengths in `have-0`, one state entry.
fn old_layout(dir: &Path, cs: &[Chunk], bad: Option<usize>) {
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let db = rocksdb::DB::open_cf(
        &opts,
        dir,
        ["chunks-0", "have-0", "manifests-0", "state-0", "held-0"],
    )
    .expect("old db");
    let (bytes, have, state) = (
        db.cf_handle("chunks-0").expect("cf"),
        db.cf_handle("have-0").expect("cf"),
        db.cf_handle("state-0").expect("cf"),
    );
    for (i, c) in cs.iter().enumerate() {
        let mut data = c.data().to_vec();
        if Some(i) == bad {
            data[0] ^= 1;
        }
        db.put_cf(bytes, c.id().as_bytes(), &data).expect("put");
        db.put_cf(have, c.id().as_bytes(), (data.len() as u64).to_be_bytes())
            .expect("put");
    }
    db.put_cf(state, "floor/stable", 4u64.to_be_bytes())
        .expect("put");
}

#[test]
fn an_old_layout_store_is_moved_into_packs_on_a_read_write_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = noise(250_000, 8);
    let (m, cs) = manifest_for(&data);
    old_layout(dir.path(), &cs, Some(2));
    assert!(matches!(
        RocksStore::open_read_only(dir.path()),
        Err(StoreError::OldLayout { .. })
    ));
    {
        let store = RocksStore::open(dir.path()).expect("open migrates");
        assert_eq!(floor(&store, "stable").expect("floor"), 4);
        // The corrupt one was not moved: missing, to be fetched again.
        assert_eq!(
            missing_chunks(&store, &m).expect("missing"),
            vec![m.chunks[2]]
        );
    }
    let cfs = rocksdb::DB::list_cf(&rocksdb::Options::default(), dir.path()).expect("cfs");
    assert!(
        !cfs.iter().any(|c| c == "chunks-0" || c == "have-0"),
        "{cfs:?}"
    );
    let store = RocksStore::open_read_only(dir.path()).expect("open ro");
    for (i, c) in m.chunks.iter().enumerate() {
        let got = store.read_chunk(c).expect("read");
        assert_eq!(got.is_some(), i != 2, "chunk {i}");
    }
}

#[test]
fn an_empty_old_layout_opens_read_only_and_read_write() {
    let dir = tempfile::tempdir().expect("tempdir");
    old_layout(dir.path(), &[], None);
    let ro = RocksStore::open_read_only(dir.path()).expect("ro");
    assert!(ro.chunk_ids().expect("ids").is_empty());
    assert_eq!(floor(&ro, "stable").expect("floor"), 4);
    drop(ro);
    drop(RocksStore::open(dir.path()).expect("rw"));
    assert!(pack_files(dir.path()).is_empty(), "nothing to move");
}

#[test]
fn a_chunk_split_between_the_file_and_the_buffer_reads_back_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let packs = Packs::open(dir.path(), true).expect("open");
    // The first append leaves 1 000 bytes of the 8 MiB buffer; the second
    // fills it (its head goes to the file) and its tail stays buffered.
    let first = noise((8 << 20) - 1_000, 1);
    let second = noise(5_000, 2);
    let a = packs.append(&first).expect("append");
    let b = packs.append(&second).expect("append");
    assert_eq!(b.offset, a.offset + first.len() as u64);
    assert_eq!(
        packs.read_buffered(b).expect("read").as_deref(),
        Some(&second[..])
    );
    assert_eq!(
        packs.read_buffered(a).expect("read").as_deref(),
        Some(&first[..])
    );
    packs.flush().expect("flush");
    assert_eq!(packs.read(b).expect("read").as_deref(), Some(&second[..]));
}

#[test]
fn full_buffers_written_in_the_background_read_back_before_and_after_sync() {
    let dir = tempfile::tempdir().expect("tempdir");
    let packs = Packs::open(dir.path(), true).expect("open");
    // 30 appends of ~1 MiB: three full 8 MiB buffers go to the writing
    // thread one after another while the next fills.
    let parts: Vec<Vec<u8>> = (0..30)
        .map(|i| noise(1_000_000 + i * 7_919, i as u64 + 10))
        .collect();
    let locs: Vec<Loc> = parts
        .iter()
        .map(|p| packs.append(p).expect("append"))
        .collect();
    for w in locs.windows(2) {
        assert_eq!(w[1].offset, w[0].offset + u64::from(w[0].len));
    }
    // Before any flush: every part, whether in the file, being written or
    // still buffered, reads back whole (newest first, then oldest).
    for (loc, part) in locs.iter().zip(&parts).rev() {
        assert_eq!(
            packs.read_buffered(*loc).expect("read").as_deref(),
            Some(&part[..])
        );
    }
    packs.sync().expect("sync");
    drop(packs);
    let again = Packs::open(dir.path(), false).expect("reopen");
    for (loc, part) in locs.iter().zip(&parts) {
        assert_eq!(again.read(*loc).expect("read").as_deref(), Some(&part[..]));
    }
}
