//! Threads the driver owns, joined when their owner is dropped: the store
//! they hold is then closed before the process exits. A RocksDB left open
//! at exit races its own background threads against the C++ static
//! destructors (seen as a segfault or "pthread lock: Invalid argument"
//! after a clean SIGTERM).

use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Join handles, joined on drop (declare it after the channels that tell
/// the threads to end, so those are dropped first).
#[derive(Debug, Default)]
pub struct Joined(Vec<JoinHandle<()>>);

impl Joined {
    pub fn push(&mut self, handle: JoinHandle<()>) {
        self.0.push(handle);
    }
}

impl Drop for Joined {
    fn drop(&mut self) {
        for h in self.0.drain(..) {
            // A thread that panicked has already reported it.
            let _ = h.join();
        }
    }
}

/// One thread that may be busy for long (the update lifecycle, inside an
/// install hook): on drop it is waited for up to `grace` and joined if it
/// ended, else left to finish on its own (the lifecycle's crash recovery
/// covers an install cut off by the exit).
#[derive(Debug)]
pub struct Bounded {
    ended: Receiver<()>,
    handle: Option<JoinHandle<()>>,
    grace: Duration,
}

impl Bounded {
    pub fn spawn(
        name: &str,
        grace: Duration,
        f: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<Self> {
        let (tx, ended) = sync_channel(1);
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                f();
                let _ = tx.send(());
            })?;
        Ok(Self {
            ended,
            handle: Some(handle),
            grace,
        })
    }
}

impl Drop for Bounded {
    fn drop(&mut self) {
        match self.ended.recv_timeout(self.grace) {
            // Ended, or panicked (the sender is gone): it is done.
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if let Some(h) = self.handle.take() {
                    let _ = h.join();
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(grace = ?self.grace, "a lifecycle step (an install hook) is still running; it is left to crash recovery at the next start");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Bounded, Joined};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    #[test]
    fn dropping_waits_for_the_threads() {
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let mut joined = Joined::default();
        let flag = done.clone();
        joined.push(std::thread::spawn(move || {
            // Ends when the sender is dropped.
            while rx.recv().is_ok() {}
            flag.store(true, Ordering::SeqCst);
        }));
        drop(tx);
        drop(joined);
        assert!(done.load(Ordering::SeqCst));
    }

    #[test]
    fn a_bounded_thread_is_joined_when_it_ends_and_left_when_busy() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let done = Arc::new(AtomicBool::new(false));
        let flag = done.clone();
        let t = Bounded::spawn("t", std::time::Duration::from_secs(30), move || {
            while rx.recv().is_ok() {}
            flag.store(true, Ordering::SeqCst);
        })
        .expect("spawn");
        drop(tx);
        drop(t);
        assert!(done.load(Ordering::SeqCst));

        // Busy until told: the drop returns after the grace period.
        let (go, wait) = std::sync::mpsc::channel::<()>();
        let t = Bounded::spawn("t", std::time::Duration::from_millis(50), move || {
            let _ = wait.recv();
        })
        .expect("spawn");
        drop(t);
        let _ = go.send(());
    }
}
