//! Publish-path throughput (chunk + hash + store) beside a plain BLAKE3 hash
//! of the same bytes, in the same run. `scripts/bench.sh` prints the ratios.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pollen_core::chunk::{chunks, ChunkParams};
use pollen_node::store::{MemStore, RocksStore};
use pollen_seeder::publish::chunk_into_store;

const LEN: usize = 64 << 20;

fn data() -> Vec<u8> {
    let mut out = vec![0u8; LEN];
    blake3::Hasher::new_keyed(&[9; 32])
        .finalize_xof()
        .fill(&mut out);
    out
}

fn publish_path(c: &mut Criterion) {
    let data = data();
    let params = ChunkParams::DEFAULT;
    let mut g = c.benchmark_group("publish_64MiB");
    g.throughput(Throughput::Bytes(LEN as u64));
    g.sample_size(10);
    g.bench_function("blake3_plain", |b| b.iter(|| blake3::hash(&data)));
    g.bench_function("chunk_and_hash", |b| {
        b.iter(|| {
            chunks(&data[..], params)
                .map(|c| c.map(|c| c.data().len()))
                .sum::<Result<usize, _>>()
        })
    });
    g.bench_function("publish_mem_store", |b| {
        b.iter_batched(
            MemStore::new,
            |store| chunk_into_store(&store, &data[..], params, |_| {}).map(|s| s.new_bytes),
            BatchSize::PerIteration,
        )
    });
    g.bench_function("publish_rocks_store", |b| {
        b.iter_batched(
            || {
                let dir = tempfile::tempdir().expect("tempdir");
                let store = RocksStore::open(dir.path()).expect("open");
                (dir, store)
            },
            |(dir, store)| {
                let summary =
                    chunk_into_store(&store, &data[..], params, |_| {}).map(|s| s.new_bytes);
                (summary, store, dir)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

criterion_group!(benches, publish_path);
criterion_main!(benches);
