//! New releases from the origin: the channel's signed index polled every
//! `--origin-poll` with `If-None-Match` (an unchanged index is a `304` of
//! a few hundred bytes), verified under the held policy's operator role,
//! never older than the newest index held (a stale mirror is an error and
//! the next mirror is asked), never expired (a frozen mirror is an error
//! shown in status). The manifest, control and policy it names go through
//! the same intake as ones from a peer (`on_manifest`, `on_control`,
//! `offer_policy`), so every check (trust, recall, floor, rollout stage)
//! applies unchanged.

use std::time::{Duration, Instant};

use pollen_core::manifest::{ManifestId, MAX_MANIFEST_BYTES};
use pollen_core::origin::{
    control_path, index_path, manifest_path, policy_path, ControlId, VerifiedIndex, MAX_INDEX_BYTES,
};
use pollen_core::rollout::MAX_CONTROL_BYTES;
use pollen_core::trust::policy::MAX_POLICY_BYTES;

use super::origin::Done;
use super::{Driver, DriverError};
use crate::origin::{Expect, Fetched, OriginError};

/// After a failed poll (unreachable, stale, expired, bad signature) the
/// index is asked again this soon at the latest (the failed mirror rests,
/// so the next one answers).
const RETRY_SOON: Duration = Duration::from_secs(5);

/// What an origin task fetched for the index poll.
#[derive(Debug)]
pub(in crate::driver) enum IndexDone {
    Index(Result<Fetched, OriginError>),
    Manifest(ManifestId, Result<Fetched, OriginError>),
    Control(ControlId, Result<Fetched, OriginError>),
    Policy(Result<Fetched, OriginError>),
}

/// The index poll's state.
#[derive(Debug)]
pub(in crate::driver) struct IndexPoll {
    every: Duration,
    next: Instant,
    running: bool,
    /// The last index's `ETag` and the mirror (by position) that gave it.
    etag: Option<(usize, String)>,
    /// The newest index verified (a node never goes back from it).
    newest: Option<VerifiedIndex>,
    error: Option<String>,
    /// Objects being fetched (not asked for twice at once).
    manifest: Option<ManifestId>,
    control: Option<ControlId>,
    policy: Option<u64>,
    /// The control last taken from the origin.
    control_taken: Option<ControlId>,
}

impl IndexPoll {
    pub(super) fn new(every: Duration) -> Self {
        Self {
            every,
            next: Instant::now(),
            running: false,
            etag: None,
            newest: None,
            error: None,
            manifest: None,
            control: None,
            policy: None,
            control_taken: None,
        }
    }

    pub(super) fn newest_seq(&self) -> Option<u64> {
        self.newest.as_ref().map(|i| i.index().seq)
    }

    pub(super) fn error(&self) -> Option<&str> {
        self.error.as_deref()
    }
}

fn body(result: Result<Fetched, OriginError>) -> Result<(bytes::Bytes, Option<usize>), String> {
    match result {
        Ok(Fetched::Body { bytes, mirror, .. }) => Ok((bytes, Some(mirror))),
        Ok(Fetched::NotModified { .. }) => Err("not modified to an unconditional GET".into()),
        Err(e) => Err(crate::cli_support::one_line(&e)),
    }
}

impl<S: crate::store::Store + 'static> Driver<S> {
    /// Starts an index poll when one is due (called every tick).
    pub(super) fn poll_index(&mut self) {
        let channel = self.config.channel.clone();
        let Some(o) = &mut self.origins else {
            return;
        };
        let poll = &mut o.index;
        let now = Instant::now();
        if poll.running || now < poll.next {
            return;
        }
        poll.running = true;
        poll.next = now + poll.every;
        let etag = poll.etag.clone();
        let (client, tx) = (o.client.clone(), o.tx.clone());
        tokio::spawn(async move {
            let path = index_path(&channel);
            let expect = Expect::AtMost(MAX_INDEX_BYTES as u64);
            let tag = etag.as_ref().map(|(m, t)| (*m, t.as_str()));
            let result = client.fetch_retrying(&path, expect, tag).await;
            let _ = tx.send(Done::Index(IndexDone::Index(result))).await;
        });
    }

    /// GETs `path` (at most `limit` bytes) for the index poll, off the loop.
    fn fetch_object(
        &self,
        path: String,
        limit: usize,
        done: impl FnOnce(Result<Fetched, OriginError>) -> IndexDone + Send + 'static,
    ) {
        let Some(o) = &self.origins else { return };
        let (client, tx) = (o.client.clone(), o.tx.clone());
        tokio::spawn(async move {
            let result = client
                .fetch_retrying(&path, Expect::AtMost(limit as u64), None)
                .await;
            let _ = tx.send(Done::Index(done(result))).await;
        });
    }

    pub(super) fn on_index_done(&mut self, done: IndexDone) -> Result<(), DriverError> {
        let Some(peer) = self.origins.as_ref().map(|o| o.peer) else {
            return Ok(());
        };
        match done {
            IndexDone::Index(result) => self.on_index(result),
            IndexDone::Manifest(id, result) => {
                if let Some(o) = &mut self.origins {
                    o.index.manifest = None;
                }
                match body(result) {
                    Ok((bytes, _)) => {
                        self.on_manifest(peer, &bytes)?;
                        self.origin_control_step();
                    }
                    Err(e) => self.index_error(format!("manifest {id}: {e}"), None),
                }
                Ok(())
            }
            IndexDone::Control(id, result) => {
                if let Some(o) = &mut self.origins {
                    o.index.control = None;
                }
                match body(result) {
                    // The name is the control's BLAKE3: a mirror cannot swap it.
                    Ok((bytes, mirror)) if !id.matches(&bytes) => self.index_error(
                        format!("control {id}: the bytes served are not that control"),
                        mirror,
                    ),
                    Ok((bytes, _)) => {
                        if let Some(o) = &mut self.origins {
                            o.index.control_taken = Some(id);
                        }
                        self.on_control(peer, &bytes)?;
                        self.origin_control_answered();
                    }
                    Err(e) => self.index_error(format!("control {id}: {e}"), None),
                }
                Ok(())
            }
            IndexDone::Policy(result) => {
                if let Some(o) = &mut self.origins {
                    o.index.policy = None;
                }
                match body(result) {
                    Ok((bytes, _)) => self.offer_policy(Some(peer), &bytes),
                    Err(e) => self.index_error(format!("policy: {e}"), None),
                }
                Ok(())
            }
        }
    }

    /// Records an index error for status (and the log); `mirror`, if the
    /// bytes it served were at fault, rests; the poll comes again soon.
    fn index_error(&mut self, error: String, mirror: Option<usize>) {
        tracing::warn!(%error, mirror, "origin index");
        let Some(o) = &mut self.origins else { return };
        if let Some(m) = mirror {
            o.client.blame(m, error.clone());
        }
        o.index.error = Some(error);
        o.index.next = o.index.next.min(Instant::now() + RETRY_SOON);
    }

    fn on_index(&mut self, result: Result<Fetched, OriginError>) -> Result<(), DriverError> {
        let now = crate::unix_now();
        let Some(o) = &mut self.origins else {
            return Ok(());
        };
        o.index.running = false;
        let (bytes, etag, mirror) = match result {
            Ok(Fetched::Body {
                bytes,
                etag,
                mirror,
            }) => (bytes, etag, mirror),
            Ok(Fetched::NotModified { mirror }) => {
                // Unchanged: still the held index, which may have expired.
                let expired = o.index.newest.as_ref().is_some_and(|i| i.is_expired(now));
                if expired {
                    o.index.etag = None;
                    let e = "the held index has expired and the origin serves no newer one: the origin or mirror has stopped updating";
                    self.index_error(e.into(), Some(mirror));
                } else {
                    o.index.error = None;
                }
                return Ok(());
            }
            Err(e) => {
                self.index_error(crate::cli_support::one_line(&e), None);
                return Ok(());
            }
        };
        let Some(policy) = self.trust.policy() else {
            return Ok(());
        };
        let verdict = pollen_core::origin::verify(&bytes, policy, &self.config.channel, now)
            .and_then(|v| match o.index.newest_seq() {
                Some(held) => v.check_not_older(held).map(|()| v),
                None => Ok(v),
            });
        let index = match verdict {
            Ok(v) => v,
            Err(e) => {
                o.index.etag = None;
                self.index_error(e.to_string(), Some(mirror));
                return Ok(());
            }
        };
        tracing::debug!(seq = index.index().seq, manifest = %index.index().manifest, "origin index");
        o.index.etag = etag.map(|t| (mirror, t));
        o.index.error = None;
        o.index.newest = Some(index.clone());
        // An origin answered: a fetch may now finish once complete.
        self.heard_hello = true;
        let i = index.index();
        let held_policy = self.trust.policy().map_or(0, |p| p.version());
        if let Some(v) = i.policy_version.filter(|&v| v > held_policy) {
            if self.claim(|p| p.policy.replace(v).is_none()) {
                self.fetch_object(policy_path(v), MAX_POLICY_BYTES, IndexDone::Policy);
            }
        }
        let ours = self.release.as_ref().map(|r| (r.id(), r.release()));
        let current = ours.is_some_and(|(id, rel)| id == i.manifest || rel >= i.release);
        let refused = self.refused.contains(&i.manifest);
        if !current && !refused {
            let id = i.manifest;
            if self.claim(|p| p.manifest.replace(id) != Some(id)) {
                self.fetch_object(manifest_path(&id), MAX_MANIFEST_BYTES, move |r| {
                    IndexDone::Manifest(id, r)
                });
            }
        }
        self.origin_control_step();
        Ok(())
    }

    /// Marks an object fetch as started in the poll state; whether it was
    /// not already running (`mark` says so).
    fn claim(&mut self, mark: impl FnOnce(&mut IndexPoll) -> bool) -> bool {
        self.origins.as_mut().is_some_and(|o| mark(&mut o.index))
    }

    /// When the newest index names the current release: its control is
    /// fetched if new, and without one the release need not wait for a
    /// control any longer (the origin answered that there is none).
    fn origin_control_step(&mut self) {
        let Some(o) = &self.origins else { return };
        let Some(index) = o.index.newest.as_ref().map(|v| v.index().clone()) else {
            return;
        };
        if self
            .release
            .as_ref()
            .is_none_or(|r| r.id() != index.manifest)
        {
            return;
        }
        match index.control {
            Some(id) if o.index.control_taken == Some(id) => self.origin_control_answered(),
            Some(id) => {
                if o.index.control.is_none() {
                    if let Some(o) = &mut self.origins {
                        o.index.control = Some(id);
                    }
                    self.fetch_object(control_path(&id), MAX_CONTROL_BYTES, move |r| {
                        IndexDone::Control(id, r)
                    });
                }
            }
            None => self.origin_control_answered(),
        }
    }

    /// The origin said which control the current release has.
    fn origin_control_answered(&mut self) {
        self.control_asked = None;
    }
}
