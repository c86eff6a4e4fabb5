//! The operator console's data functions on a fleet of 10 000 status
//! records (`console::fixture`): the release view (stage and site counts),
//! a filtered page of the devices view, and the store read with every
//! record's signature checked (the first refresh) and with all of them
//! unchanged (every later one). BENCHMARKS.md, "Operator console".

use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use pollen_core::manifest::SecretKey;
use pollen_core::status::SignedStatus;
use pollen_node::store::{keys, MemStore, Store};
use pollen_seeder::console::fixture;
use pollen_seeder::console::fleet::Reader;
use pollen_seeder::console::views::{devices, release_progress, savings, DeviceQuery};

const DEVICES: usize = 10_000;

fn views(c: &mut Criterion) {
    let entry = fixture::release(3);
    let records = fixture::records(&entry, DEVICES);
    let mut g = c.benchmark_group("console_10k");
    g.sample_size(20);
    g.bench_function("release_view", |b| {
        b.iter(|| release_progress(&entry, &records, 5_000))
    });
    g.bench_function("devices_page_filtered", |b| {
        let q = DeviceQuery {
            site: Some("site-07".into()),
            phase: Some("committed".into()),
            offset: Some(100),
            limit: Some(50),
            ..DeviceQuery::default()
        };
        b.iter(|| devices(&records, &q, 5_000))
    });
    g.bench_function("savings", |b| b.iter(|| savings(&records)));
    let store = Arc::new(MemStore::new());
    for (i, r) in records.iter().enumerate() {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let key = SecretKey::from_bytes(&seed);
        let signed = SignedStatus::sign(r.clone(), &key);
        store
            .put_state(&keys::status(&key.public().id()), signed.to_bytes())
            .expect("record");
    }
    g.bench_function("store_read_first", |b| {
        b.iter(|| Reader::new(store.clone()).read().map(|f| f.records.len()))
    });
    let mut reader = Reader::new(store.clone());
    let _ = reader.read();
    g.bench_function("store_read_unchanged", |b| {
        b.iter(|| reader.read().map(|f| f.records.len()))
    });
    g.finish();
}

criterion_group!(benches, views);
criterion_main!(benches);
