//! The release a scenario distributes: a synthetic chunk list, or the
//! real FastCDC chunk list of a file (with the chunks of an older file
//! already held, for delta updates).

use std::collections::HashSet;
use std::path::Path;

use pollen_core::chunk::{chunks, ChunkId, ChunkParams};
use pollen_core::manifest::ChunkRef;
use pollen_core::swarm::Bitfield;

use crate::scenario::Scenario;

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReleaseError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("chunking: {0}")]
    Chunk(String),
}

/// The unique chunks to move and the ones every device holds at start.
pub fn build(sc: &Scenario, base: &Path) -> Result<(Vec<ChunkRef>, Bitfield), ReleaseError> {
    let Some(files) = &sc.files else {
        let chunk = u64::from(sc.chunk_kib) * 1024;
        let total = (sc.release_mib * 1024.0 * 1024.0).round() as u64;
        let n = total.div_ceil(chunk).max(1);
        let list: Vec<ChunkRef> = (0..n)
            .map(|i| ChunkRef {
                id: ChunkId::of(&i.to_le_bytes()),
                len: chunk.min(total - i * chunk).max(1) as u32,
            })
            .collect();
        let have = Bitfield::new(list.len() as u32);
        return Ok((list, have));
    };
    let avg = sc.chunk_kib * 1024;
    let params = ChunkParams::new(avg / 4, avg, avg.saturating_mul(4))
        .map_err(|e| ReleaseError::Chunk(e.to_string()))?;
    let list = chunk_file(&base.join(&files.new), params)?;
    let mut seen = HashSet::new();
    let list: Vec<ChunkRef> = list.into_iter().filter(|c| seen.insert(c.id)).collect();
    let mut have = Bitfield::new(list.len() as u32);
    if let Some(old) = &files.old {
        let old: HashSet<ChunkId> = chunk_file(&base.join(old), params)?
            .into_iter()
            .map(|c| c.id)
            .collect();
        for (i, c) in list.iter().enumerate() {
            if old.contains(&c.id) {
                have.set(i as u32);
            }
        }
    }
    Ok((list, have))
}

fn chunk_file(path: &Path, params: ChunkParams) -> Result<Vec<ChunkRef>, ReleaseError> {
    let io = |source| ReleaseError::Io {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    chunks(std::io::BufReader::with_capacity(1 << 20, file), params)
        .map(|c| {
            let c = c.map_err(|e| ReleaseError::Chunk(e.to_string()))?;
            Ok(ChunkRef {
                id: c.id(),
                len: c.data().len() as u32,
            })
        })
        .collect()
}
