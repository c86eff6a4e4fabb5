//! Store throughput: writing verified 256 KiB chunks into RocksDB, and
//! streaming them back out as an artifact.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pollen_core::chunk::{ChunkId, VerifiedChunk};
use pollen_core::manifest::{Artifact, ChunkRef, Install, Manifest, Rollout};
use pollen_core::ChunkParams;
use pollen_node::store::{reassemble_to, RocksStore, Store};

const CHUNK: usize = 256 << 10;
const COUNT: usize = 256; // 64 MiB

fn chunk_set() -> Vec<(ChunkId, VerifiedChunk)> {
    (0..COUNT)
        .map(|i| {
            let mut data = vec![0u8; CHUNK];
            blake3::Hasher::new_keyed(&[i as u8; 32])
                .finalize_xof()
                .fill(&mut data);
            let id = ChunkId::of(&data);
            (id, VerifiedChunk::check_id(id, data).expect("its own id"))
        })
        .collect()
}

fn store_throughput(c: &mut Criterion) {
    let set = chunk_set();
    let mut g = c.benchmark_group("store_64MiB");
    g.throughput(Throughput::Bytes((CHUNK * COUNT) as u64));
    g.sample_size(10);
    g.bench_function("rocks_put_chunks", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = RocksStore::open(dir.path()).expect("open");
                (dir, store)
            },
            |(dir, store)| {
                for (_, chunk) in &set {
                    store.put_chunk(chunk.clone()).expect("put");
                }
                store.sync_chunks().expect("sync");
                (store, dir)
            },
            BatchSize::PerIteration,
        )
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let store = RocksStore::open(dir.path()).expect("open");
    let mut whole = blake3::Hasher::new();
    for (_, chunk) in &set {
        store.put_chunk(chunk.clone()).expect("put");
        whole.update(chunk.bytes());
    }
    let manifest = Manifest {
        product: "bench".into(),
        channel: "bench".into(),
        version: "1.0.0".into(),
        release: 1,
        created_at: 0,
        expires_at: u64::MAX,
        hardware: vec![],
        artifact: Artifact {
            name: "a".into(),
            size: (CHUNK * COUNT) as u64,
            blake3: *whole.finalize().as_bytes(),
        },
        chunking: ChunkParams::DEFAULT,
        chunks: set
            .iter()
            .map(|(id, d)| ChunkRef {
                id: *id,
                len: d.len() as u32,
            })
            .collect(),
        rollout: Rollout::default(),
        install: Install::FullImage,
    };
    g.bench_function("rocks_reassemble", |b| {
        b.iter(|| reassemble_to(&store, &manifest, &mut std::io::sink()).expect("reassemble"))
    });
    g.finish();
}

criterion_group!(benches, store_throughput);
criterion_main!(benches);
