//! Verifies and stores received chunks on a thread of its own, so the event
//! loop keeps the network moving while RocksDB writes. Both queues are
//! bounded above the number of chunk requests that can be in flight, so a
//! submission never waits in practice (and falls back to an inline write if
//! it ever would).

use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;

use libp2p::PeerId;
use pollen_core::manifest::{ChunkRef, ManifestId};
use tokio::sync::mpsc;

use crate::store::{RocksStore, Store};

/// Jobs and results queued at most (the scheduler keeps far fewer in flight).
const DEPTH: usize = 256;

/// A chunk to check and store.
#[derive(Debug)]
pub struct Job {
    pub peer: PeerId,
    pub manifest: ManifestId,
    pub index: u32,
    pub chunk: ChunkRef,
    pub data: Vec<u8>,
}

/// What became of a [`Job`].
#[derive(Debug)]
pub struct Written {
    pub peer: PeerId,
    pub manifest: ManifestId,
    pub index: u32,
    pub len: usize,
    /// `Ok(true)`: verified and stored; `Ok(false)`: failed its hash, not stored.
    pub outcome: Result<bool, String>,
}

fn process(store: &RocksStore, job: Job) -> Written {
    let verified = job.data.len() == job.chunk.len as usize && job.chunk.id.matches(&job.data);
    let outcome = if verified {
        store
            .put_chunk(&job.chunk.id, &job.data)
            .map(|_| true)
            .map_err(|e| e.to_string())
    } else {
        Ok(false)
    };
    Written {
        peer: job.peer,
        manifest: job.manifest,
        index: job.index,
        len: job.data.len(),
        outcome,
    }
}

/// The writer thread's handles.
#[derive(Debug)]
pub struct Writer {
    jobs: SyncSender<Job>,
    pub done: mpsc::Receiver<Written>,
    done_tx: mpsc::Sender<Written>,
    store: Arc<RocksStore>,
}

impl Writer {
    pub fn spawn(store: Arc<RocksStore>) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(DEPTH);
        let (done_tx, done) = mpsc::channel(DEPTH * 2);
        let thread_store = store.clone();
        let thread_done = done_tx.clone();
        std::thread::Builder::new()
            .name("pollen-writer".into())
            .spawn(move || {
                for job in rx {
                    if thread_done
                        .blocking_send(process(&thread_store, job))
                        .is_err()
                    {
                        break;
                    }
                }
            })?;
        Ok(Self {
            jobs,
            done,
            done_tx,
            store,
        })
    }

    /// Queues a chunk; if the queue is ever full, checks and stores it here.
    pub fn submit(&self, job: Job) {
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(job)) | Err(TrySendError::Disconnected(job)) => {
                let written = process(&self.store, job);
                if let Err(e) = self.done_tx.try_send(written) {
                    tracing::error!(error = %e, "chunk result dropped");
                }
            }
        }
    }
}
