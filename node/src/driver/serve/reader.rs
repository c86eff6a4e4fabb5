//! Reads chunks to serve on threads of their own, off the event loop: the
//! driver queues a read and hands the response channel to the codec at
//! once ([`Reply::chunk_when_read`](crate::net::protocol::Reply::chunk_when_read)),
//! and the codec writes the bytes when they come. Each read is checked
//! against the chunk's id once ([`Store::read_chunk`]): a chunk corrupted at
//! rest is reported and not served. A store error answers that one request
//! `NotFound` and is logged; it never stops the node. The queues are
//! bounded; when they are full the caller answers `Busy`.
//!
//! Each thread has a queue of its own, and a read goes to the thread with
//! the fewest reads unfinished: an idle thread is woken once per read, and
//! no thread waits on a lock another holds while it waits for work.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use futures::channel::oneshot;
use pollen_core::chunk::VerifiedChunk;
use pollen_core::manifest::ChunkRef;

use crate::net::protocol::ChunkRead;
use crate::store::Store;

/// Reads queued at most, over all threads (admission keeps far fewer
/// responses under way).
pub const DEPTH: usize = 64;
/// Reader threads: one read waiting on a slow disk does not hold the rest.
const THREADS: usize = 2;

/// Why a read was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    #[error("the chunk read queue is full")]
    Full,
    #[error("the chunk reader threads are gone")]
    Gone,
}

struct ReadJob {
    chunk: ChunkRef,
    reply: oneshot::Sender<Option<VerifiedChunk>>,
}

/// One reader thread's queue, and how many reads it has not finished.
#[derive(Debug)]
struct Lane {
    jobs: SyncSender<ReadJob>,
    unfinished: Arc<AtomicUsize>,
}

/// Handle of the reader threads; they end when it is dropped.
#[derive(Debug)]
pub struct Reader {
    lanes: Vec<Lane>,
    /// After `lanes`: dropping the senders ends the threads, then they are
    /// joined.
    _threads: crate::driver::joined::Joined,
}

fn read_one<S: Store + ?Sized>(store: &S, chunk: &ChunkRef) -> Option<VerifiedChunk> {
    match store.read_chunk(chunk) {
        Ok(Some(c)) => Some(c),
        Ok(None) => {
            tracing::warn!(chunk = %chunk.id, "chunk to serve is not in the store; answering NotFound");
            None
        }
        Err(e) => {
            tracing::error!(chunk = %chunk.id, error = %e, "reading a chunk to serve failed; answering NotFound");
            None
        }
    }
}

fn run<S: Store + ?Sized>(store: Arc<S>, jobs: Receiver<ReadJob>, unfinished: Arc<AtomicUsize>) {
    for job in jobs {
        // A reply nobody waits for: the stream is gone already.
        if !job.reply.is_canceled() {
            let bytes = read_one(store.as_ref(), &job.chunk);
            let _ = job.reply.send(bytes);
        }
        unfinished.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Reader {
    pub fn spawn<S: Store + ?Sized + 'static>(store: Arc<S>) -> std::io::Result<Self> {
        let mut lanes = Vec::with_capacity(THREADS);
        let mut threads = crate::driver::joined::Joined::default();
        for i in 0..THREADS {
            let (jobs, rx) = sync_channel(DEPTH / THREADS);
            let unfinished = Arc::new(AtomicUsize::new(0));
            let (store, count) = (store.clone(), unfinished.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("pollen-reader-{i}"))
                    .spawn(move || run(store, rx, count))?,
            );
            lanes.push(Lane { jobs, unfinished });
        }
        Ok(Self {
            lanes,
            _threads: threads,
        })
    }

    /// Queues a read of `chunk` with the thread that has the fewest reads
    /// unfinished (another if its queue is full); its bytes (or `None`)
    /// arrive on the result.
    pub fn read(&self, chunk: ChunkRef) -> Result<ChunkRead, ReadError> {
        let (reply, rx) = oneshot::channel();
        let mut lanes: Vec<&Lane> = self.lanes.iter().collect();
        lanes.sort_by_key(|l| l.unfinished.load(Ordering::Relaxed));
        let mut job = ReadJob { chunk, reply };
        let mut gone = 0;
        for lane in lanes {
            lane.unfinished.fetch_add(1, Ordering::Relaxed);
            match lane.jobs.try_send(job) {
                Ok(()) => return Ok(rx),
                Err(TrySendError::Full(back)) => job = back,
                Err(TrySendError::Disconnected(back)) => {
                    gone += 1;
                    job = back;
                }
            }
            lane.unfinished.fetch_sub(1, Ordering::Relaxed);
        }
        Err(if gone == self.lanes.len() {
            ReadError::Gone
        } else {
            ReadError::Full
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::{Fault, Faulty};
    use pollen_core::chunk::{ChunkId, VerifiedChunk};

    fn stored(fault: Fault) -> (Arc<Faulty>, ChunkRef) {
        let store = Arc::new(Faulty::new(fault));
        let data = vec![4u8; 10_000];
        let chunk = ChunkRef {
            id: ChunkId::of(&data),
            len: 10_000,
        };
        let v = VerifiedChunk::check(&chunk, data).expect("verified");
        store.put_chunk(v).expect("put");
        (store, chunk)
    }

    #[test]
    fn reads_what_is_held_and_nothing_else() {
        let (store, chunk) = stored(Fault::None);
        let reader = Reader::spawn(store).expect("spawn");
        let got = futures::executor::block_on(reader.read(chunk).expect("queued"));
        assert_eq!(got.expect("sent").expect("read").len(), 10_000);
        let absent = ChunkRef {
            id: ChunkId([9; 32]),
            len: 5,
        };
        let got = futures::executor::block_on(reader.read(absent).expect("queued"));
        assert_eq!(got.expect("sent"), None);
    }

    #[test]
    fn a_read_goes_to_the_lane_with_the_fewest_unfinished_and_full_lanes_say_so() {
        // Lanes without threads: the test holds their queues (one job each).
        let mut queues = Vec::new();
        let lanes = (0..THREADS)
            .map(|_| {
                let (jobs, rx) = sync_channel(1);
                queues.push(rx);
                Lane {
                    jobs,
                    unfinished: Arc::new(AtomicUsize::new(0)),
                }
            })
            .collect();
        let reader = Reader {
            lanes,
            _threads: crate::driver::joined::Joined::default(),
        };
        let unfinished = |r: &Reader| -> Vec<usize> {
            r.lanes
                .iter()
                .map(|l| l.unfinished.load(Ordering::Relaxed))
                .collect()
        };
        let chunk = ChunkRef {
            id: ChunkId([3; 32]),
            len: 10,
        };
        let _first = reader.read(chunk).expect("queued");
        assert_eq!(unfinished(&reader), vec![1, 0]);
        let _second = reader.read(chunk).expect("queued");
        assert_eq!(unfinished(&reader), vec![1, 1]);
        for q in &queues {
            assert!(q.try_recv().is_ok(), "one read in each lane");
        }
        // Taken but unfinished: each lane has room again, and the count
        // (not the queue) sends the next read to the lane that finished.
        reader.lanes[1].unfinished.fetch_sub(1, Ordering::Relaxed);
        let _third = reader.read(chunk).expect("queued");
        assert_eq!(unfinished(&reader), vec![1, 1]);
        assert!(queues[1].try_recv().is_ok());
        assert!(queues[0].try_recv().is_err());
        // Every queue full: `Full`, and the failed attempt counts nothing.
        let _fourth = reader.read(chunk).expect("queued");
        let _fifth = reader.read(chunk).expect("queued");
        assert_eq!(reader.read(chunk).err(), Some(ReadError::Full));
        assert_eq!(unfinished(&reader), vec![2, 2]);
        drop(queues);
        assert_eq!(reader.read(chunk).err(), Some(ReadError::Gone));
    }

    #[test]
    fn store_errors_and_corruption_answer_none_and_the_reader_goes_on() {
        for fault in [Fault::FailRead, Fault::CorruptRead] {
            let (store, chunk) = stored(fault);
            let reader = Reader::spawn(store).expect("spawn");
            for _ in 0..3 {
                let got = futures::executor::block_on(reader.read(chunk).expect("queued"));
                assert_eq!(got.expect("answered"), None, "{fault:?}");
            }
        }
    }
}
