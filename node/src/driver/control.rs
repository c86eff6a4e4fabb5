//! Rollout controls in the driver: verifying those from peers and the
//! local endpoint, keeping the newest per release and passing it on, and a
//! seeder's automatic halt when a stage's failure rate passes the
//! manifest's threshold.

use libp2p::PeerId;
use pollen_core::fleet::{over_threshold, stage_counts};
use pollen_core::rollout::{ControlError, RolloutControl, SignedControl, VerifiedControl};
use pollen_core::wire::Request;
use serde_bytes::ByteBuf;

use super::{Driver, DriverError, Pending};
use crate::api::ApiCommand;

impl<S: crate::store::Store + 'static> Driver<S> {
    /// A rollout control from a peer (devices verify it; a seeder relays only its own).
    pub(super) fn on_control(&mut self, peer: PeerId, bytes: &[u8]) -> Result<(), DriverError> {
        // A legacy seeder (no policy) relays only its own controls.
        if self.trust.operator_role().is_none() {
            return Ok(());
        }
        match self.judge_control(bytes) {
            Ok(c) => self.adopt_control(c, Some(peer))?,
            Err(e) => tracing::warn!(%peer, error = %e, "refused a rollout control"),
        }
        Ok(())
    }

    /// Control bytes verified under the operator role of the held policy,
    /// with a seq no later control could not pass. A legacy seeder (no
    /// policy) relays what its publisher hands it locally: devices judge it.
    fn judge_control(&self, bytes: &[u8]) -> Result<VerifiedControl, ControlError> {
        let signed = SignedControl::decode(bytes)?;
        signed.control().check_seq(crate::unix_now())?;
        match self.trust.operator_role() {
            Some(operator) => signed.verify(operator),
            None => Ok(VerifiedControl::assume_verified(signed)),
        }
    }

    pub(super) fn on_api(&mut self, cmd: ApiCommand) -> Result<(), DriverError> {
        match cmd {
            ApiCommand::Control(bytes) => match self.judge_control(&bytes) {
                Ok(control) => self.adopt_control(control, None),
                Err(e) => {
                    tracing::warn!(error = %e, "refused a local rollout control");
                    Ok(())
                }
            },
            ApiCommand::Policy(bytes) => self.on_api_policy(&bytes),
            ApiCommand::Release { dir, reply } => {
                self.on_staged_release(dir, reply);
                Ok(())
            }
        }
    }

    /// Keeps `control` if it is the newest of its release and passes it on.
    fn adopt_control(
        &mut self,
        control: VerifiedControl,
        from: Option<PeerId>,
    ) -> Result<(), DriverError> {
        if !crate::controls::save_if_newer(self.store.as_ref(), &control)? {
            return Ok(());
        }
        let c = control.control();
        tracing::info!(release = %c.release, seq = c.seq, halted = c.halted, promoted = ?c.promoted, "rollout control");
        let bytes = ByteBuf::from(control.to_bytes());
        if self.release.as_ref().is_some_and(|r| r.id() == c.release) {
            self.control = Some(control);
        }
        for p in self.hello_peer_ids() {
            if Some(p) != from {
                self.send(p, Request::Control(bytes.clone()), Pending::Notice);
            }
        }
        Ok(())
    }

    /// On a seeder with the publisher key: halts the current release when
    /// a stage's failure rate passes the manifest's `max_failures`.
    pub(super) fn check_auto_halt(&mut self) -> Result<(), DriverError> {
        let (Some(key), Some(r)) = (&self.config.publisher_key, &self.release) else {
            return Ok(());
        };
        let rollout = &r.manifest.manifest().rollout;
        let Some(max) = rollout.max_failures else {
            return Ok(());
        };
        if self.control.as_ref().is_some_and(|c| c.control().halted) {
            return Ok(());
        }
        let id = r.id();
        let stages = stage_counts(&id, rollout, self.fleet.records());
        let Some(stage) = over_threshold(&stages, max) else {
            return Ok(());
        };
        let base = self
            .control
            .as_ref()
            .map(|c| c.control().clone())
            .unwrap_or_else(|| RolloutControl::initial(&self.config.channel, id));
        let halt = RolloutControl {
            halted: true,
            ..base.next(crate::unix_now())
        };
        tracing::warn!(
            release = %id,
            stage,
            failed = stages[stage].failed + stages[stage].rolled_back,
            seen = stages[stage].seen,
            max_failures_bp = max,
            "failure rate over the threshold: halting the rollout"
        );
        let signed = SignedControl::sign(halt, &[key.as_ref()]);
        self.adopt_control(VerifiedControl::assume_verified(signed), None)
    }
}
