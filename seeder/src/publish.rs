//! Publishing: chunk an artifact into a store (or a [`Sink`] staging it for
//! the store's running seeder), then build and sign its manifest.
//!
//! Cutting, hashing each chunk (its id) and storing run on three threads
//! joined by bounded channels, in order, so none waits for the others and
//! memory stays at a few read blocks and chunks whatever the artifact's size.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

use pollen_core::chunk::{cuts, Chunk, ChunkError, ChunkParams, Cut, VerifiedChunk};
use pollen_core::manifest::{
    verify, Artifact, ChunkRef, DecodeError, Install, Manifest, ManifestId, Rollout, SecretKey,
    SignedManifest, TrustPolicy, VerifiedManifest, VerifyContext, VerifyError,
};
use pollen_node::store::{Put, Store, StoreError};
use serde::Serialize;

/// Chunks in flight between the cutter and the hasher, and between the
/// hasher and the store writer.
const PIPELINE_DEPTH: usize = 8;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    #[error("reading {path}: {source}")]
    Artifact {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("chunking: {0}")]
    Chunk(#[from] ChunkError),
    #[error("the chunking threads stopped before the artifact's end")]
    PipelineStopped,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("release {requested} is not above release {existing} already published on channel {channel}")]
    ReleaseNotNewer {
        requested: u64,
        existing: u64,
        channel: String,
    },
    #[error("release {requested} is more than {max_step} above {newest} on channel {channel}: devices that install it take no lower release again; pass --force if this is intended, or --max-step N to allow a larger step")]
    ReleaseJump {
        requested: u64,
        newest: String,
        max_step: u64,
        channel: String,
    },
    #[error("the new manifest does not verify: {0}")]
    SelfCheck(#[from] VerifyError),
    #[error("invalid manifest field: {0}")]
    Field(#[source] DecodeError),
    #[error("staging {path}: {source}")]
    Staging {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where a publish writes chunks and the signed manifest: a store, or a
/// folder staged for the running seeder of one
/// ([`crate::publish_live::Staging`]).
pub trait Sink {
    /// Writes `chunk` unless it is already there: [`Put::New`] if it was not.
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, PublishError>;
    /// Makes the chunks written so far durable (before the manifest).
    fn sync_chunks(&self) -> Result<(), PublishError>;
    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<(), PublishError>;
}

impl<S: Store + ?Sized> Sink for S {
    fn put_chunk(&self, chunk: VerifiedChunk) -> Result<Put, PublishError> {
        // Unlogged (half the bytes written), made durable by `sync_chunks`
        // before the manifest that names these chunks is written.
        Ok(self.put_chunk_unlogged(chunk)?)
    }

    fn sync_chunks(&self) -> Result<(), PublishError> {
        Ok(Store::sync_chunks(self)?)
    }

    fn put_manifest(&self, manifest: &VerifiedManifest) -> Result<(), PublishError> {
        Store::put_manifest(self, manifest)?;
        Ok(())
    }
}

/// A publish job, typed and validated by the CLI.
#[derive(Debug)]
pub struct PublishRequest<'a> {
    pub key: &'a SecretKey,
    pub artifact: PathBuf,
    pub product: String,
    pub channel: String,
    pub version: semver::Version,
    /// `None`: one above the newest release of the channel in the store.
    pub release: Option<u64>,
    /// How far `release` may be above the channel's newest; `None`: any
    /// distance (`--force`).
    pub max_step: Option<u64>,
    pub expires_in_secs: u64,
    pub hardware: Vec<String>,
    pub chunking: ChunkParams,
    pub now: u64,
    /// Stages and the failure threshold for the automatic halt.
    pub rollout: Rollout,
    /// Releases the fleet policy recalls: they do not count as the newest.
    pub recalled: BTreeSet<ManifestId>,
}

/// What a publish did; `--json` prints this.
#[derive(Clone, Debug, Serialize)]
pub struct PublishReport {
    pub manifest_id: String,
    pub product: String,
    pub channel: String,
    pub version: String,
    pub release: u64,
    pub expires_at: u64,
    pub artifact_bytes: u64,
    pub artifact_blake3: String,
    pub chunks: usize,
    pub new_chunks: usize,
    pub new_bytes: u64,
    pub key_id: String,
    /// Handed to the store's running seeder, which serves it now.
    pub live: bool,
}

/// Newest release number published on `channel` in `store` (0 if none),
/// leaving out releases in `recalled` (a fleet policy's recall: the next
/// release follows the good one the floor was reset to).
pub fn newest_release<S: Store + ?Sized>(
    store: &S,
    channel: &str,
    recalled: &BTreeSet<ManifestId>,
) -> Result<u64, StoreError> {
    let mut newest = 0;
    for id in store.manifest_ids()? {
        if recalled.contains(&id) {
            continue;
        }
        let bytes = store.get_manifest(&id)?.unwrap_or_default();
        if let Ok(signed) = SignedManifest::decode(&bytes) {
            if signed.manifest().channel == channel {
                newest = newest.max(signed.manifest().release);
            }
        }
    }
    Ok(newest)
}

struct Chunked {
    refs: Vec<ChunkRef>,
    size: u64,
    blake3: [u8; 32],
    new_chunks: usize,
    new_bytes: u64,
}

/// Chunks `source` into `store`; `progress(bytes_done)` after every chunk.
pub fn chunk_into_store<S: Store + ?Sized, R: Read + Send>(
    store: &S,
    source: R,
    params: ChunkParams,
    mut progress: impl FnMut(u64),
) -> Result<ChunkedSummary, PublishError> {
    let c = chunk_pipeline(store, source, params, &mut progress)?;
    Ok(ChunkedSummary {
        chunks: c.refs.len(),
        size: c.size,
        new_chunks: c.new_chunks,
        new_bytes: c.new_bytes,
    })
}

/// Counts from [`chunk_into_store`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkedSummary {
    pub chunks: usize,
    pub size: u64,
    pub new_chunks: usize,
    pub new_bytes: u64,
}

/// What the hashing thread hands on: a chunk with its id, then (after the
/// last one) the whole artifact's BLAKE3.
enum Hashed {
    Chunk(Chunk),
    End([u8; 32]),
}

fn chunk_pipeline<S: Sink + ?Sized, R: Read + Send>(
    store: &S,
    source: R,
    params: ChunkParams,
    progress: &mut dyn FnMut(u64),
) -> Result<Chunked, PublishError> {
    let (cut_tx, cut_rx) = std::sync::mpsc::sync_channel::<Result<Cut, ChunkError>>(PIPELINE_DEPTH);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Hashed, ChunkError>>(PIPELINE_DEPTH);
    std::thread::scope(|scope| {
        // Cutting (read + FastCDC), hashing (each chunk's id and the whole
        // artifact's BLAKE3) and storing on three threads: the store's
        // direct writes wait for the disk, so no hashing waits with them.
        scope.spawn(move || {
            for cut in cuts(source, params) {
                let failed = cut.is_err();
                if cut_tx.send(cut).is_err() || failed {
                    break;
                }
            }
        });
        scope.spawn(move || {
            let mut whole = blake3::Hasher::new();
            for cut in cut_rx {
                let hashed = cut.map(|c| {
                    whole.update(c.data());
                    Hashed::Chunk(c.into_chunk())
                });
                let failed = hashed.is_err();
                if tx.send(hashed).is_err() || failed {
                    return;
                }
            }
            let _ = tx.send(Ok(Hashed::End(*whole.finalize().as_bytes())));
        });
        let mut out = Chunked {
            refs: Vec::new(),
            size: 0,
            blake3: [0; 32],
            new_chunks: 0,
            new_bytes: 0,
        };
        let mut ended = false;
        for hashed in rx {
            let chunk = match hashed? {
                Hashed::Chunk(c) => c.into_verified(),
                Hashed::End(blake3) => {
                    out.blake3 = blake3;
                    ended = true;
                    break;
                }
            };
            let len = chunk.len();
            // Chunk lengths are bounded by params.max (<= 16 MiB), so this cannot truncate.
            out.refs.push(ChunkRef {
                id: chunk.id(),
                len: len as u32,
            });
            // The hasher computed the id from these bytes: no second hash.
            if store.put_chunk(chunk)? == Put::New {
                out.new_chunks += 1;
                out.new_bytes += len as u64;
            }
            out.size += len as u64;
            progress(out.size);
        }
        if !ended {
            return Err(PublishError::PipelineStopped);
        }
        store.sync_chunks()?;
        Ok(out)
    })
}

/// The release number a publish on `channel` gets: `requested`, or one
/// above the newest in `store`. Refuses a number that does not rise, and
/// one more than `max_step` above the newest: release numbers only grow
/// on devices, so a typo such as `--release 18446744073709551615` would
/// leave them refusing every normal release after it.
pub fn next_release<S: Store + ?Sized>(
    store: &S,
    channel: &str,
    requested: Option<u64>,
    max_step: Option<u64>,
    recalled: &BTreeSet<ManifestId>,
) -> Result<u64, PublishError> {
    let existing = newest_release(store, channel, recalled)?;
    let Some(r) = requested else {
        return existing
            .checked_add(1)
            .ok_or(PublishError::ReleaseNotNewer {
                requested: u64::MAX,
                existing,
                channel: channel.to_owned(),
            });
    };
    if r <= existing {
        return Err(PublishError::ReleaseNotNewer {
            requested: r,
            existing,
            channel: channel.to_owned(),
        });
    }
    match max_step {
        Some(step) if r - existing > step => Err(PublishError::ReleaseJump {
            requested: r,
            newest: match existing {
                0 => "0 (the channel has no release in the store yet)".into(),
                n => format!("its newest release {n}"),
            },
            max_step: step,
            channel: channel.to_owned(),
        }),
        _ => Ok(r),
    }
}

/// Publishes `req.artifact` into `store` and returns the signed manifest.
pub fn publish<S: Store + ?Sized>(
    store: &S,
    req: &PublishRequest<'_>,
    progress: impl FnMut(u64),
) -> Result<(PublishReport, VerifiedManifest), PublishError> {
    publish_into(store, store, req, progress)
}

/// Publishes `req.artifact` into `sink`, numbered from the releases in
/// `store`, and returns the signed manifest.
pub fn publish_into<S: Store + ?Sized, K: Sink + ?Sized>(
    store: &S,
    sink: &K,
    req: &PublishRequest<'_>,
    mut progress: impl FnMut(u64),
) -> Result<(PublishReport, VerifiedManifest), PublishError> {
    let release = next_release(
        store,
        &req.channel,
        req.release,
        req.max_step,
        &req.recalled,
    )?;
    let artifact_io = |source| PublishError::Artifact {
        path: req.artifact.clone(),
        source,
    };
    let file = std::fs::File::open(&req.artifact).map_err(artifact_io)?;
    let name = req
        .artifact
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "artifact".into());
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    let chunked = chunk_pipeline(sink, reader, req.chunking, &mut progress)?;

    let manifest = Manifest {
        product: req.product.clone(),
        channel: req.channel.clone(),
        version: req.version.to_string(),
        release,
        created_at: req.now,
        expires_at: req.now.saturating_add(req.expires_in_secs),
        hardware: req.hardware.clone(),
        artifact: Artifact {
            name,
            size: chunked.size,
            blake3: chunked.blake3,
        },
        chunking: req.chunking,
        chunks: chunked.refs,
        rollout: req.rollout.clone(),
        install: Install::FullImage,
    };
    let bytes = SignedManifest::sign(manifest, &[req.key]).encode();
    // Check what we made exactly as a device will, before anyone sees it.
    let ctx = VerifyContext {
        now: req.now,
        floor: release,
        hardware: None,
        channel: Some(req.channel.clone()),
    };
    let verified =
        verify(&bytes, &TrustPolicy::single(req.key.public()), &ctx).map_err(|e| match e {
            VerifyError::Decode(d) => PublishError::Field(d),
            other => PublishError::SelfCheck(other),
        })?;
    sink.put_manifest(&verified)?;
    let m = verified.manifest();
    let report = PublishReport {
        manifest_id: verified.id().to_hex(),
        product: m.product.clone(),
        channel: m.channel.clone(),
        version: m.version.clone(),
        release,
        expires_at: m.expires_at,
        artifact_bytes: m.artifact.size,
        artifact_blake3: hex::encode(m.artifact.blake3),
        chunks: m.chunks.len(),
        new_chunks: chunked.new_chunks,
        new_bytes: chunked.new_bytes,
        key_id: req.key.public().id().to_string(),
        live: false,
    };
    tracing::info!(manifest = %verified.id(), release, new_chunks = chunked.new_chunks, "published");
    Ok((report, verified))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollen_node::store::MemStore;

    #[test]
    fn release_numbers_rise_by_at_most_the_step() {
        let store = MemStore::new();
        assert_eq!(
            next_release(&store, "stable", None, Some(1000), &BTreeSet::new()).ok(),
            Some(1)
        );
        assert_eq!(
            next_release(&store, "stable", Some(1000), Some(1000), &BTreeSet::new()).ok(),
            Some(1000)
        );
        let err = next_release(
            &store,
            "stable",
            Some(u64::MAX),
            Some(1000),
            &BTreeSet::new(),
        )
        .expect_err("jump");
        let text = err.to_string();
        assert!(
            text.contains("release 18446744073709551615 is more than 1000 above 0"),
            "{text}"
        );
        assert!(text.contains("--force"), "{text}");
        assert_eq!(
            next_release(&store, "stable", Some(u64::MAX), None, &BTreeSet::new()).ok(),
            Some(u64::MAX)
        );
    }

    fn pseudo_random(len: usize) -> Vec<u8> {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Fails once `after` bytes were read.
    struct FailsAfter<'a> {
        data: &'a [u8],
        after: usize,
    }

    impl Read for FailsAfter<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.after == 0 {
                return Err(std::io::Error::other("disk on fire"));
            }
            let n = buf.len().min(self.after).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            self.after -= n;
            Ok(n)
        }
    }

    #[test]
    fn the_pipeline_stores_every_chunk_in_order_with_the_whole_hash() {
        let data = pseudo_random(20 << 20);
        let params = ChunkParams::DEFAULT;
        let store = MemStore::new();
        let mut done = Vec::new();
        let chunked = chunk_pipeline(&store, &data[..], params, &mut |n| done.push(n))
            .expect("in-memory publish");
        let expected: Vec<ChunkRef> = pollen_core::chunk::chunks(&data[..], params)
            .map(|c| c.expect("in-memory read").into_verified().chunk_ref())
            .collect::<Option<_>>()
            .expect("chunks under 4 GiB");
        assert!(expected.len() > 20, "{} chunks", expected.len());
        assert_eq!(chunked.refs, expected);
        assert_eq!(chunked.size, data.len() as u64);
        assert_eq!(&chunked.blake3, blake3::hash(&data).as_bytes());
        assert_eq!(
            (chunked.new_chunks, chunked.new_bytes),
            (expected.len(), data.len() as u64)
        );
        assert_eq!(done.len(), expected.len());
        assert_eq!(done.last(), Some(&(data.len() as u64)));
        for r in &expected {
            let stored = store.get_chunk(&r.id).expect("store").expect("stored");
            assert!(r.id.matches(&stored));
        }
    }

    #[test]
    fn a_read_error_midway_fails_the_pipeline() {
        let data = pseudo_random(20 << 20);
        let store = MemStore::new();
        let err = chunk_pipeline(
            &store,
            FailsAfter {
                data: &data,
                after: 13 << 20,
            },
            ChunkParams::DEFAULT,
            &mut |_| {},
        )
        .err()
        .expect("the read fails");
        assert!(
            matches!(err, PublishError::Chunk(ChunkError::Io(ref e)) if e.to_string() == "disk on fire"),
            "{err}"
        );
    }
}
