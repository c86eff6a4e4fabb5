//! Checking a chunk against its id: one BLAKE3 over the bytes, against
//! `VerifiedChunk::check_id`, which for a chunk of more than one piece
//! hashes its 64 KiB pieces and merges their hashes (the same tree), and
//! keeps them for a response in pieces. Side by side, per chunk size.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use pollen_core::chunk::{ChunkId, VerifiedChunk};

fn check(c: &mut Criterion) {
    let mut g = c.benchmark_group("check");
    for kib in [256usize, 1024, 4096] {
        let mut data = vec![0u8; kib << 10];
        blake3::Hasher::new_keyed(&[kib as u8; 32])
            .finalize_xof()
            .fill(&mut data);
        let id = ChunkId::of(&data);
        let bytes = bytes::Bytes::from(data.clone());
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::new("blake3_whole", kib), &data, |b, d| {
            b.iter(|| blake3::hash(std::hint::black_box(d)))
        });
        g.bench_with_input(
            BenchmarkId::new("check_id_by_pieces", kib),
            &bytes,
            |b, d| b.iter(|| VerifiedChunk::check_id(id, d.clone()).is_ok()),
        );
    }
    g.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
