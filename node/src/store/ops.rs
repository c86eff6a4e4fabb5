//! Operations built on any [`Store`]: what is missing for a manifest (resume),
//! and streaming reassembly with the whole-artifact hash checked.

use std::io::Write;
use std::path::Path;

use pollen_core::manifest::{ChunkRef, Manifest};

use super::{Store, StoreError};

/// The chunks of `manifest` the store lacks, in manifest order, each once.
pub fn missing_chunks<S: Store + ?Sized>(
    store: &S,
    manifest: &Manifest,
) -> Result<Vec<ChunkRef>, StoreError> {
    let mut out = Vec::new();
    for c in pollen_core::swarm::unique_chunks(manifest) {
        if !store.has_chunk(&c.id)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// Result of a reassembly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reassembled {
    pub bytes: u64,
    pub blake3: [u8; 32],
}

/// Streams the artifact of `manifest` into `out`, one chunk at a time,
/// re-checking every chunk and the BLAKE3 of the whole.
pub fn reassemble_to<S: Store + ?Sized, W: Write>(
    store: &S,
    manifest: &Manifest,
    out: &mut W,
) -> Result<Reassembled, StoreError> {
    let mut hasher = blake3::Hasher::new();
    let mut bytes = 0u64;
    for c in &manifest.chunks {
        let chunk = store.read_chunk(c)?.ok_or(StoreError::MissingChunk(c.id))?;
        let data = chunk.bytes();
        hasher.update(data);
        out.write_all(data).map_err(|source| StoreError::Io {
            context: "writing the artifact".into(),
            source,
        })?;
        bytes += data.len() as u64;
    }
    let blake3 = *hasher.finalize().as_bytes();
    if blake3 != manifest.artifact.blake3 || bytes != manifest.artifact.size {
        return Err(StoreError::ArtifactMismatch {
            expected: hex::encode(manifest.artifact.blake3),
            actual: hex::encode(blake3),
        });
    }
    Ok(Reassembled { bytes, blake3 })
}

/// Reassembles into `path` atomically: a temporary file beside it, synced,
/// then renamed. A failure leaves `path` as it was.
pub fn reassemble_to_file<S: Store + ?Sized>(
    store: &S,
    manifest: &Manifest,
    path: &Path,
) -> Result<Reassembled, StoreError> {
    let io = |context: &str| {
        let context = format!("{context} {}", path.display());
        move |source| StoreError::Io { context, source }
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.pollen-partial"));
    let file = std::fs::File::create(&tmp).map_err(io("creating"))?;
    let mut writer = std::io::BufWriter::with_capacity(1 << 20, file);
    let result = reassemble_to(store, manifest, &mut writer).and_then(|r| {
        let file = writer
            .into_inner()
            .map_err(|e| io("writing")(e.into_error()))?;
        file.sync_all().map_err(io("syncing"))?;
        std::fs::rename(&tmp, path).map_err(io("renaming into"))?;
        Ok(r)
    });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
