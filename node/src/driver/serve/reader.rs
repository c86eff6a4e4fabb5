//! Reads chunks to serve on threads of their own, off the event loop: the
//! driver queues a read and hands the response channel to the codec at
//! once ([`Reply::chunk_when_read`](crate::net::protocol::Reply::chunk_when_read)),
//! and the codec writes the bytes when they come. Each read is checked
//! against the chunk's id once ([`Store::read_chunk`]): a chunk corrupted at
//! rest is reported and not served. A store error answers that one request
//! `NotFound` and is logged; it never stops the node. The queue is bounded;
//! when it is full the caller answers `Busy`.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::channel::oneshot;
use pollen_core::manifest::ChunkRef;

use crate::net::protocol::ChunkRead;
use crate::store::Store;

/// Reads queued at most (admission keeps far fewer responses under way).
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
    reply: oneshot::Sender<Option<Bytes>>,
}

/// Handle of the reader threads; they end when it is dropped.
#[derive(Debug)]
pub struct Reader {
    jobs: SyncSender<ReadJob>,
    /// After `jobs`: dropping the sender ends the threads, then they are joined.
    _threads: crate::driver::joined::Joined,
}

fn read_one<S: Store + ?Sized>(store: &S, chunk: &ChunkRef) -> Option<Bytes> {
    match store.read_chunk(chunk) {
        Ok(Some(c)) => Some(c.into_bytes()),
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

fn run<S: Store + ?Sized>(store: Arc<S>, jobs: Arc<Mutex<Receiver<ReadJob>>>) {
    loop {
        // A panic elsewhere cannot leave the receiver half-used.
        let job = match jobs.lock().unwrap_or_else(|e| e.into_inner()).recv() {
            Ok(job) => job,
            Err(_) => return,
        };
        if job.reply.is_canceled() {
            continue; // the stream is gone already
        }
        let bytes = read_one(store.as_ref(), &job.chunk);
        let _ = job.reply.send(bytes);
    }
}

impl Reader {
    pub fn spawn<S: Store + ?Sized + 'static>(store: Arc<S>) -> std::io::Result<Self> {
        let (jobs, rx) = sync_channel(DEPTH);
        let rx = Arc::new(Mutex::new(rx));
        let mut threads = crate::driver::joined::Joined::default();
        for i in 0..THREADS {
            let (store, rx) = (store.clone(), rx.clone());
            threads.push(
                std::thread::Builder::new()
                    .name(format!("pollen-reader-{i}"))
                    .spawn(move || run(store, rx))?,
            );
        }
        Ok(Self {
            jobs,
            _threads: threads,
        })
    }

    /// Queues a read of `chunk`; its bytes (or `None`) arrive on the result.
    pub fn read(&self, chunk: ChunkRef) -> Result<ChunkRead, ReadError> {
        let (reply, rx) = oneshot::channel();
        match self.jobs.try_send(ReadJob { chunk, reply }) {
            Ok(()) => Ok(rx),
            Err(TrySendError::Full(_)) => Err(ReadError::Full),
            Err(TrySendError::Disconnected(_)) => Err(ReadError::Gone),
        }
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
