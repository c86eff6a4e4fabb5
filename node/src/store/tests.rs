//! Behaviour both store implementations must share.

use pollen_core::chunk::{chunks, ChunkId, ChunkParams, VerifiedChunk};
use pollen_core::manifest::{
    verify, Artifact, ChunkRef, Install, Manifest, Rollout, SecretKey, SignedManifest, TrustPolicy,
    VerifyContext,
};

use super::*;

pub(crate) fn artifact(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

/// `len` pseudo-random bytes (xorshift); different seeds share nothing,
/// unlike [`artifact`], whose outputs are prefixes of one another.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// `m` signed with a fixed test key and verified.
pub(crate) fn verified(m: Manifest) -> VerifiedManifest {
    let key = SecretKey::from_bytes(&[5; 32]);
    let bytes = SignedManifest::sign(m, &[&key]).encode();
    verify(
        &bytes,
        &TrustPolicy::single(key.public()),
        &VerifyContext::default(),
    )
    .expect("verify")
}

pub(crate) fn manifest_for(data: &[u8]) -> (Manifest, Vec<pollen_core::chunk::Chunk>) {
    let params = ChunkParams::new(16 * 1024, 32 * 1024, 64 * 1024).expect("params");
    manifest_chunked(data, params)
}

/// The same, cut with `params`.
pub(crate) fn manifest_chunked(
    data: &[u8],
    params: ChunkParams,
) -> (Manifest, Vec<pollen_core::chunk::Chunk>) {
    let cs: Vec<_> = chunks(data, params)
        .collect::<Result<_, _>>()
        .expect("chunks");
    let m = Manifest {
        product: "p".into(),
        channel: "stable".into(),
        version: "1.0.0".into(),
        release: 1,
        created_at: 0,
        expires_at: u64::MAX,
        hardware: vec![],
        artifact: Artifact {
            name: "a".into(),
            size: data.len() as u64,
            blake3: *blake3::hash(data).as_bytes(),
        },
        chunking: params,
        chunks: cs
            .iter()
            .map(|c| ChunkRef {
                id: c.id(),
                len: c.data().len() as u32,
            })
            .collect(),
        rollout: Rollout::default(),
        install: Install::FullImage,
    };
    (m, cs)
}

fn exercise(store: &dyn Store) {
    let data = artifact(300_000);
    let (m, cs) = manifest_for(&data);
    assert_eq!(missing_chunks(store, &m).expect("missing").len(), cs.len());

    // Wrong bytes never become a `VerifiedChunk`, so no store can take them.
    let bad = ChunkId::of(b"something else");
    assert!(VerifiedChunk::check_id(bad, cs[0].data().to_vec()).is_err());
    assert!(!store.has_chunk(&bad).expect("has"));

    assert_eq!(
        store.put_chunk(cs[0].clone().into_verified()).expect("put"),
        Put::New
    );
    assert_eq!(
        store.put_chunk(cs[0].clone().into_verified()).expect("put"),
        Put::AlreadyHeld
    );
    let first = m.chunks[0];
    let read = store.read_chunk(&first).expect("read").expect("held");
    assert_eq!(read.bytes().as_ref(), cs[0].data());
    assert!(store.read_chunk(&m.chunks[1]).expect("read").is_none());
    // Read against the wrong manifest entry: reported, not returned.
    let wrong = ChunkRef {
        id: first.id,
        len: first.len + 1,
    };
    assert!(matches!(
        store.read_chunk(&wrong),
        Err(StoreError::CorruptChunk { .. })
    ));
    assert_eq!(
        missing_chunks(store, &m).expect("missing").len(),
        cs.len() - 1
    );
    assert!(matches!(
        reassemble_to(store, &m, &mut Vec::new()),
        Err(StoreError::MissingChunk(_))
    ));

    for c in &cs {
        store.put_chunk(c.clone().into_verified()).expect("put");
    }
    store.sync_chunks().expect("sync");
    assert!(missing_chunks(store, &m).expect("missing").is_empty());
    let mut out = Vec::new();
    let r = reassemble_to(store, &m, &mut out).expect("reassemble");
    assert_eq!(out, data);
    assert_eq!(r.bytes, data.len() as u64);

    let v = verified(m);
    let bytes = v.to_bytes();
    assert_eq!(store.put_manifest(&v).expect("put"), Put::New);
    assert_eq!(store.put_manifest(&v).expect("put"), Put::AlreadyHeld);
    assert_eq!(store.get_manifest(&v.id()).expect("get"), Some(bytes));
    assert_eq!(store.manifest_ids().expect("ids"), vec![v.id()]);

    assert_eq!(floor(store, "stable").expect("floor"), 0);
    assert_eq!(raise_floor(store, "stable", 7).expect("raise"), 7);
    assert_eq!(
        raise_floor(store, "stable", 3).expect("raise"),
        7,
        "floor never lowers"
    );
}

#[test]
fn memory_store_behaves() {
    exercise(&MemStore::new());
}

#[test]
fn rocks_store_behaves_and_persists() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Shares no chunk with what `exercise` stores.
    let data = noise(200_000, 9);
    let (m, cs) = manifest_for(&data);
    {
        let store = RocksStore::open(dir.path()).expect("open");
        exercise(&store);
        // Half logged, half not, no sync: what skipped the log is not
        // indexed until a sync, so a close without one loses it.
        for (i, c) in cs.iter().enumerate() {
            let c = c.clone().into_verified();
            if i % 2 == 0 {
                store.put_chunk(c).expect("put");
            } else {
                store.put_chunk_unlogged(c).expect("put");
            }
        }
    }
    let store = RocksStore::open_read_only(dir.path()).expect("reopen");
    assert_eq!(floor(&store, "stable").expect("floor"), 7);
    for (i, c) in m.chunks.iter().enumerate() {
        let held = store.read_chunk(c).expect("read").is_some();
        assert_eq!(held, i % 2 == 0, "chunk {i}: logged ones only");
    }
    drop(store);
    let store = RocksStore::open(dir.path()).expect("reopen");
    for c in &cs {
        store
            .put_chunk_unlogged(c.clone().into_verified())
            .expect("put");
    }
    store.sync_chunks().expect("sync");
    drop(store);
    let store = RocksStore::open_read_only(dir.path()).expect("reopen");
    let mut out = Vec::new();
    reassemble_to(&store, &m, &mut out).expect("reassemble after reopen");
    assert_eq!(out, data);
}

#[test]
fn a_co_signed_manifest_replaces_only_the_same_body() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path()).expect("open");
    let (m, _) = manifest_for(&artifact(50_000));
    let (a, b) = (
        SecretKey::from_bytes(&[1; 32]),
        SecretKey::from_bytes(&[2; 32]),
    );
    let both = TrustPolicy::new(vec![a.public(), b.public()], 1).expect("policy");
    let check = |bytes: &[u8]| verify(bytes, &both, &VerifyContext::default()).expect("verify");
    let one = SignedManifest::sign(m.clone(), &[&a]).encode();
    let two = SignedManifest::sign(m.clone(), &[&a, &b]).encode();
    assert!(
        !store.replace_manifest(&check(&two)).expect("replace"),
        "not held"
    );
    assert!(store.manifest_ids().expect("ids").is_empty());
    store.put_manifest(&check(&one)).expect("put");
    assert!(store.replace_manifest(&check(&two)).expect("replace"));
    assert_eq!(
        store.get_manifest(&check(&one).id()).expect("get"),
        Some(two)
    );
    let mut other = m;
    other.release = 2;
    let other = SignedManifest::sign(other, &[&a]).encode();
    assert!(!store.replace_manifest(&check(&other)).expect("replace"));
}

#[test]
fn rocks_store_works_on_tmpfs() {
    // tmpfs refused O_DIRECT before Linux 6.6: there the store must notice
    // and write buffered (on newer kernels this only checks tmpfs works).
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        return;
    }
    let dir = tempfile::tempdir_in(shm).expect("tempdir on tmpfs");
    let data = artifact(150_000);
    let (m, cs) = manifest_for(&data);
    {
        let store = RocksStore::open(dir.path()).expect("open");
        for c in &cs {
            store.put_chunk(c.clone().into_verified()).expect("put");
        }
        store.sync_chunks().expect("flush");
    }
    let store = RocksStore::open(dir.path()).expect("reopen");
    let mut out = Vec::new();
    reassemble_to(&store, &m, &mut out).expect("reassemble");
    assert_eq!(out, data);
}

#[test]
fn read_only_open_changes_no_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    drop(RocksStore::open(dir.path()).expect("create"));
    let before = snapshot(dir.path());
    let store = RocksStore::open_read_only(dir.path()).expect("open ro");
    let _ = floor(&store, "x");
    drop(store);
    assert_eq!(before, snapshot(dir.path()));
}

fn snapshot(dir: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// What a [`Faulty`] store gets wrong.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    None,
    /// Every chunk put takes this long.
    SlowPut(std::time::Duration),
    /// Every chunk put fails.
    FailPut,
    /// Every chunk read fails.
    FailRead,
    /// Every chunk read returns other bytes than were stored.
    CorruptRead,
}

/// A [`MemStore`] with a fault, for the driver's tests.
#[derive(Debug)]
pub(crate) struct Faulty {
    inner: MemStore,
    fault: Fault,
}

impl Faulty {
    pub(crate) fn new(fault: Fault) -> Self {
        Self {
            inner: MemStore::new(),
            fault,
        }
    }

    pub(crate) fn chunk_count(&self) -> usize {
        self.inner.chunk_ids().map(|ids| ids.len()).unwrap_or(0)
    }

    fn io_error(what: &str) -> StoreError {
        StoreError::Io {
            context: what.into(),
            source: std::io::Error::other("injected fault"),
        }
    }
}

impl Store for Faulty {
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, StoreError> {
        match self.fault {
            Fault::SlowPut(d) => std::thread::sleep(d),
            Fault::FailPut => return Err(Self::io_error("putting a chunk")),
            _ => {}
        }
        self.inner.put_chunk(chunk)
    }
    fn sync_chunks(&self) -> Result<(), StoreError> {
        self.inner.sync_chunks()
    }
    fn get_chunk(&self, id: &ChunkId) -> Result<Option<Vec<u8>>, StoreError> {
        match self.fault {
            Fault::FailRead => Err(Self::io_error("reading a chunk")),
            Fault::CorruptRead => Ok(self.inner.get_chunk(id)?.map(|mut b| {
                if let Some(x) = b.first_mut() {
                    *x ^= 1;
                }
                b
            })),
            _ => self.inner.get_chunk(id),
        }
    }
    fn has_chunk(&self, id: &ChunkId) -> Result<bool, StoreError> {
        self.inner.has_chunk(id)
    }
    fn chunk_ids(&self) -> Result<Vec<ChunkId>, StoreError> {
        self.inner.chunk_ids()
    }
    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<Put, StoreError> {
        self.inner.put_manifest(manifest)
    }
    fn get_manifest(&self, id: &ManifestId) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_manifest(id)
    }
    fn manifest_ids(&self) -> Result<Vec<ManifestId>, StoreError> {
        self.inner.manifest_ids()
    }
    fn get_state(&self, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get_state(key)
    }
    fn put_state(&self, key: &str, value: &[u8]) -> Result<(), StoreError> {
        self.inner.put_state(key, value)
    }
    fn state_with_prefix(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        self.inner.state_with_prefix(prefix)
    }
}
