//! Verifies and stores received chunks on a thread of its own, so the event
//! loop keeps the network moving while the store writes. Each chunk is
//! hashed exactly once: here ([`VerifiedChunk::check`]), or piece by piece
//! as it arrived (`net::partial`, which hands over the checked chunk), and
//! what became of it comes back as a typed [`Outcome`].
//!
//! Chunks are stored in batches ([`Store::put_chunks`], at most
//! [`BATCH`]): on a device's slot image that is one `fdatasync` for the
//! batch instead of one per chunk, and a chunk still counts as stored only
//! once it is on disk. A batch is what arrives within [`GATHER`] of its
//! first chunk (a group commit): chunks that arrive one at a time, each
//! soon after the last, would otherwise be synced one at a time. The wait
//! holds no request: the slot of a chunk frees when its bytes arrive.
//!
//! Backpressure, with nothing dropped: at most [`DEPTH`] chunks are out
//! between the driver and this thread (queued, being written, or written
//! with their result not yet taken). Both channels hold that many, so a
//! submission never finds the queue full and the thread never waits to hand
//! a result back. When [`DEPTH`] are out, the driver takes the oldest
//! result first ([`Writer::wait_for_room`]: a wait of at most one store
//! write) and handles it, then submits: the event loop takes no more chunk
//! responses than the store can keep up with.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use libp2p::PeerId;
use pollen_core::chunk::{ChunkIndex, Rejected, VerifiedChunk};
use pollen_core::manifest::{ChunkRef, ManifestId};
use tokio::sync::mpsc;

use crate::store::{Put, Store, StoreError};

/// Chunks out between the driver and the writer at most (the scheduler
/// keeps at most 64 requests in flight, chunks here included; at 1 MiB
/// chunks this bounds the memory they hold to 32 MiB).
pub const DEPTH: usize = 32;

/// A chunk to check and store. `index` was checked against the release
/// `manifest` and `chunk` is its entry there.
#[derive(Debug)]
pub struct Job {
    pub peer: PeerId,
    pub manifest: ManifestId,
    pub index: ChunkIndex,
    pub chunk: ChunkRef,
    pub data: Bytes,
    /// The chunk already checked (it arrived in pieces, each checked): not
    /// hashed again. Its bytes are the chunk's, whatever `data` holds.
    pub verified: Option<VerifiedChunk>,
}

/// What the writer made of a chunk it could check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// It is the chunk: stored (or held already).
    Stored(Put),
    /// It is not the chunk asked for: not stored.
    Rejected(Rejected),
    /// It is the chunk, but writing it failed (the disk is full, an I/O
    /// error; [`Written::error`] says which): not stored, try again later.
    NotStored,
}

/// Errors of this module: the chunk's fate is unknown, the node stops.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the writer thread is gone")]
    WriterGone,
    #[error("the store gave fewer results than chunks")]
    MissingResult,
}

/// What became of a [`Job`].
#[derive(Debug)]
pub struct Written {
    pub peer: PeerId,
    pub manifest: ManifestId,
    pub index: ChunkIndex,
    pub len: usize,
    pub outcome: Result<Outcome, WriteError>,
    /// Why a chunk was [`Outcome::NotStored`].
    pub error: Option<String>,
}

/// Chunks written with one sync at most ([`Store::put_chunks`]).
const BATCH: usize = 16;

/// How long a batch gathers chunks after its first one arrived. At the
/// transfer rates of a LAN (a chunk every millisecond or two) a batch fills
/// up to [`BATCH`]; on a slow link the one chunk waits this long in vain:
/// no request waits on it, and its peers learn of it 20 ms later.
pub const GATHER: Duration = Duration::from_millis(20);

/// Takes the next batch: the first job, then what arrives within `gather`
/// of it, at most [`BATCH`]. `None` once every sender is gone.
fn gather(rx: &Receiver<Job>, gather: Duration) -> Option<Vec<Job>> {
    let first = rx.recv().ok()?;
    let until = Instant::now() + gather;
    let mut jobs = vec![first];
    while jobs.len() < BATCH {
        let left = until.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(job) => jobs.push(job),
            Err(_) => break,
        }
    }
    Some(jobs)
}

/// Checks each job's bytes, stores those that are the chunk in one batch,
/// and gives one result per job, in order.
fn process<S: Store + ?Sized>(store: &S, jobs: Vec<Job>) -> Vec<Written> {
    let mut verified = Vec::new();
    // Each job without its bytes, and its outcome if the check decided it.
    let checked: Vec<(Written, bool)> = jobs
        .into_iter()
        .map(|job| {
            let mut written = Written {
                peer: job.peer,
                manifest: job.manifest,
                index: job.index,
                len: job.data.len(),
                outcome: Err(WriteError::MissingResult),
                error: None,
            };
            let checked = match job.verified.filter(|v| v.id() == job.chunk.id) {
                Some(v) => Ok(v),
                None => VerifiedChunk::check(&job.chunk, job.data),
            };
            match checked {
                Ok(chunk) => {
                    written.len = chunk.bytes().len();
                    verified.push(chunk);
                    (written, true)
                }
                Err(r) => {
                    written.outcome = Ok(Outcome::Rejected(r));
                    (written, false)
                }
            }
        })
        .collect();
    let mut puts = store.put_chunks(verified).into_iter();
    checked
        .into_iter()
        .map(|(mut written, stored)| {
            if stored {
                written.outcome = match puts.next() {
                    Some(Ok(put)) => Ok(Outcome::Stored(put)),
                    Some(Err(e @ (StoreError::NoSpace { .. } | StoreError::Io { .. }))) => {
                        written.error = Some(e.to_string());
                        Ok(Outcome::NotStored)
                    }
                    Some(Err(e)) => Err(WriteError::Store(e)),
                    None => Err(WriteError::MissingResult),
                };
            }
            written
        })
        .collect()
}

/// The writer's results, and how many chunks are out.
#[derive(Debug)]
pub struct Done {
    rx: mpsc::Receiver<Written>,
    in_flight: usize,
}

impl Done {
    /// The next result; `None` once the writer is gone. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Written> {
        let w = self.rx.recv().await?;
        self.in_flight = self.in_flight.saturating_sub(1);
        Some(w)
    }

    /// Chunks handed to the writer whose results have not come back.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// The writer thread's handles.
#[derive(Debug)]
pub struct Writer {
    jobs: SyncSender<Job>,
    pub done: Done,
    depth: usize,
    /// Last: the sender and the result channel are dropped first, which
    /// ends the thread, then it is joined.
    _thread: crate::driver::joined::Joined,
}

impl Writer {
    pub fn spawn<S: Store + ?Sized + 'static>(store: Arc<S>) -> std::io::Result<Self> {
        Self::with_depth(store, DEPTH, GATHER)
    }

    fn with_depth<S: Store + ?Sized + 'static>(
        store: Arc<S>,
        depth: usize,
        window: Duration,
    ) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel::<Job>(depth);
        let (done_tx, done) = mpsc::channel(depth);
        let mut thread = crate::driver::joined::Joined::default();
        thread.push(
            std::thread::Builder::new()
                .name("pollen-writer".into())
                .spawn(move || {
                    while let Some(jobs) = gather(&rx, window) {
                        for written in process(store.as_ref(), jobs) {
                            // Never waits: no more than `depth` results are out.
                            if done_tx.blocking_send(written).is_err() {
                                return;
                            }
                        }
                    }
                })?,
        );
        Ok(Self {
            jobs,
            done: Done {
                rx: done,
                in_flight: 0,
            },
            depth,
            _thread: thread,
        })
    }

    /// When the most chunks are out, waits for the oldest result and
    /// returns it, to be handled before the next [`Writer::submit`]. The
    /// wait is for one store write, and blocks the calling thread: it is
    /// the backpressure that keeps the event loop from taking chunks faster
    /// than the store writes them.
    pub fn wait_for_room(&mut self) -> Option<Written> {
        if self.done.in_flight < self.depth {
            return None;
        }
        // The writer is a thread of its own, so this cannot deadlock a
        // runtime; `unconstrained` keeps tokio's task budget from making
        // the receive yield forever inside a blocking wait.
        futures::executor::block_on(tokio::task::unconstrained(self.done.recv()))
    }

    /// Queues a chunk (call [`Writer::wait_for_room`] first). `Err` carries
    /// the result of a chunk that could not be queued: the writer is gone.
    pub fn submit(&mut self, job: Job) -> Result<(), Box<Written>> {
        debug_assert!(self.done.in_flight < self.depth);
        // Below `depth` out, so the queue has room: this does not block.
        match self.jobs.send(job) {
            Ok(()) => {
                self.done.in_flight += 1;
                Ok(())
            }
            Err(std::sync::mpsc::SendError(job)) => Err(Box::new(Written {
                peer: job.peer,
                manifest: job.manifest,
                index: job.index,
                len: job.data.len(),
                outcome: Err(WriteError::WriterGone),
                error: None,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{Fault, Faulty};
    use std::time::Duration;

    fn job(i: u32, data: Vec<u8>) -> Job {
        let chunk = ChunkRef {
            id: pollen_core::chunk::ChunkId::of(&data),
            len: data.len() as u32,
        };
        Job {
            peer: PeerId::random(),
            manifest: ManifestId([1; 32]),
            index: ChunkIndex::new(i, 1000).expect("in range"),
            chunk,
            data: data.into(),
            verified: None,
        }
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    }

    #[test]
    fn every_result_comes_back_even_when_the_queue_is_full() {
        // A slow store and a queue of 2: the driver's side must wait, and
        // every chunk submitted must come back exactly once.
        let store = Arc::new(Faulty::new(Fault::SlowPut(Duration::from_millis(3))));
        runtime().block_on(async move {
            let mut w = Writer::with_depth(store.clone(), 2, GATHER).expect("spawn");
            let mut got = Vec::new();
            for i in 0..40u32 {
                if let Some(r) = w.wait_for_room() {
                    got.push(r);
                }
                w.submit(job(i, vec![i as u8; 1000 + i as usize]))
                    .expect("writer alive");
                assert!(w.done.in_flight <= 2);
            }
            while w.done.in_flight > 0 {
                got.push(w.done.recv().await.expect("result"));
            }
            let mut indices: Vec<u32> = got.iter().map(|r| r.index.get()).collect();
            indices.sort_unstable();
            assert_eq!(indices, (0..40).collect::<Vec<_>>());
            assert!(got
                .iter()
                .all(|r| matches!(r.outcome, Ok(Outcome::Stored(Put::New)))));
        });
    }

    #[test]
    fn a_batch_takes_what_arrives_within_its_window_and_no_more_than_batch() {
        let (tx, rx) = sync_channel::<Job>(BATCH + 2);
        for i in 0..(BATCH + 2) as u32 {
            tx.send(job(i, vec![i as u8; 10])).expect("room");
        }
        // Full at once: no wait for the window.
        let first = gather(&rx, Duration::from_secs(600)).expect("jobs");
        assert_eq!(first.len(), BATCH);
        // Two left and the sender still there: the window closes on them.
        let rest = gather(&rx, Duration::from_millis(30)).expect("jobs");
        let indices: Vec<u32> = rest.iter().map(|j| j.index.get()).collect();
        assert_eq!(indices, vec![BATCH as u32, BATCH as u32 + 1]);
        // A job sent after the window closed starts the next batch.
        tx.send(job(99, vec![1; 10])).expect("room");
        drop(tx);
        let last = gather(&rx, Duration::from_secs(600)).expect("jobs");
        assert_eq!(last.len(), 1);
        assert!(gather(&rx, Duration::from_secs(600)).is_none());
    }

    #[test]
    fn outcomes_are_typed() {
        let store = Arc::new(Faulty::new(Fault::None));
        runtime().block_on(async move {
            let mut w = Writer::spawn(store.clone()).expect("spawn");
            let good = job(0, vec![7; 4000]);
            let mut bad = job(1, vec![8; 4000]);
            bad.data = Bytes::from(vec![9; 4000]);
            let mut short = job(2, vec![8; 4000]);
            short.data = Bytes::from(vec![8; 3999]);
            for j in [good, bad, short] {
                w.submit(j).expect("writer alive");
            }
            let mut by_index = std::collections::BTreeMap::new();
            for _ in 0..3 {
                let r = w.done.recv().await.expect("result");
                by_index.insert(r.index.get(), r.outcome.expect("no store error"));
            }
            assert_eq!(by_index[&0], Outcome::Stored(Put::New));
            assert!(matches!(
                by_index[&1],
                Outcome::Rejected(Rejected::WrongHash { .. })
            ));
            assert!(matches!(
                by_index[&2],
                Outcome::Rejected(Rejected::WrongLength { .. })
            ));
            assert_eq!(store.chunk_count(), 1);
        });
    }

    #[test]
    fn a_chunk_checked_in_pieces_is_stored_as_checked_and_no_other() {
        let store = Arc::new(Faulty::new(Fault::None));
        runtime().block_on(async move {
            let mut w = Writer::spawn(store.clone()).expect("spawn");
            let bytes = vec![4u8; 5000];
            let checked = VerifiedChunk::check_id(pollen_core::chunk::ChunkId::of(&bytes), bytes)
                .expect("its own id");
            // The bytes that came with it do not matter: the checked chunk is stored.
            let mut good = job(0, checked.bytes().to_vec());
            good.data = Bytes::new();
            good.verified = Some(checked.clone());
            // A checked chunk of another id is not taken for this one.
            let mut other = job(1, vec![6; 5000]);
            other.data = Bytes::from(vec![9; 5000]);
            other.verified = Some(checked);
            w.submit(good).expect("writer alive");
            w.submit(other).expect("writer alive");
            let first = w.done.recv().await.expect("result");
            let second = w.done.recv().await.expect("result");
            assert_eq!(first.outcome.expect("stored"), Outcome::Stored(Put::New));
            assert_eq!(first.len, 5000);
            assert!(matches!(
                second.outcome.expect("checked"),
                Outcome::Rejected(Rejected::WrongHash { .. })
            ));
            assert_eq!(store.chunk_count(), 1);
        });
    }

    #[test]
    fn a_write_failure_is_not_stored_and_says_why() {
        // An I/O error (a full disk among them) pauses the download; it
        // does not stop the node.
        let store = Arc::new(Faulty::new(Fault::FailPut));
        runtime().block_on(async move {
            let mut w = Writer::spawn(store).expect("spawn");
            w.submit(job(0, vec![1; 100])).expect("writer alive");
            let r = w.done.recv().await.expect("result");
            assert!(
                matches!(r.outcome, Ok(Outcome::NotStored)),
                "{:?}",
                r.outcome
            );
            assert!(r.error.is_some_and(|e| e.contains("putting a chunk")));
        });
    }
}
