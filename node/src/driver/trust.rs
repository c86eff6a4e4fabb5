//! Fleet trust in the driver: the policy this node holds (persisted, never
//! going back, passed on), its own credential, and which peers completed
//! the credential exchange.
//!
//! In a closed mesh (the held policy has an enroll role) a peer gets no
//! answer of any kind, and is disconnected, until its hello carried a
//! credential that verifies under the policy for the very key Noise
//! authenticated on the connection. A newer policy (from a hello, a push
//! or the local endpoint) re-checks every admitted peer: a revoked one is
//! cut off at once.

use std::collections::HashMap;
use std::time::Duration;

use libp2p::PeerId;
use pollen_core::manifest::TrustPolicy;
use pollen_core::trust::VerifiedPolicy;
use pollen_core::trust::{Credential, CredentialError, SignedCredential, VerifiedCredential};
use pollen_core::wire::{Hello, Request};
use serde_bytes::ByteBuf;

use super::{Driver, DriverError, Pending};
use crate::net::identity::peer_key;
use crate::policy_store::{self, PolicyStoreError};

/// How long a connection in a closed mesh may stay without an admitting
/// hello (a dialer speaks at once, and the listener answers at once).
pub(super) const HELLO_DEADLINE: Duration = Duration::from_secs(10);

/// Why a peer was not admitted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    #[error("no credential presented in a closed mesh")]
    NoCredential,
    #[error("its peer id is not an ed25519 key, which no credential can bind")]
    NotEd25519,
    #[error(transparent)]
    Credential(#[from] CredentialError),
}

/// The node's trust state.
#[derive(Debug)]
pub(super) struct Trust {
    /// `None` only on a seeder started without a policy (legacy, open).
    policy: Option<VerifiedPolicy>,
    /// The signed bytes of `policy`, sent in every hello.
    policy_bytes: Option<ByteBuf>,
    own: Option<SignedCredential>,
    /// Peers that passed the exchange, with their credential in a closed mesh.
    admitted: HashMap<PeerId, Option<VerifiedCredential>>,
    /// Peers refused so far (for the report).
    pub refused: u64,
}

impl Trust {
    pub fn new(policy: Option<VerifiedPolicy>, own: Option<SignedCredential>) -> Self {
        Self {
            policy_bytes: policy
                .as_ref()
                .and_then(|p| p.to_bytes())
                .map(ByteBuf::from),
            policy,
            own,
            admitted: HashMap::new(),
            refused: 0,
        }
    }

    pub fn policy(&self) -> Option<&VerifiedPolicy> {
        self.policy.as_ref()
    }

    /// Whether peers must present credentials.
    pub fn closed(&self) -> bool {
        self.policy.as_ref().is_some_and(|p| p.policy().is_closed())
    }

    /// The role that signs manifests (`None`: a legacy seeder, which trusts its store).
    pub fn release_role(&self) -> Option<&TrustPolicy> {
        self.policy.as_ref().map(|p| &p.policy().release)
    }

    /// The role that signs rollout controls.
    pub fn operator_role(&self) -> Option<&TrustPolicy> {
        self.policy.as_ref().map(|p| &p.policy().operator)
    }

    /// What this node puts in its hello: its policy and credential.
    pub fn fill_hello(&self, hello: &mut Hello) {
        hello.policy = self.policy_bytes.clone();
        hello.credential = self.own_bytes();
    }

    pub fn own_bytes(&self) -> Option<ByteBuf> {
        self.own.as_ref().map(|c| ByteBuf::from(c.encode()))
    }

    /// Checks this node's own credential at start: a node that would be
    /// refused by every peer says so at once, with the cause.
    pub fn check_own(&self, me: &PeerId, now: u64) -> Result<(), Refusal> {
        let (Some(policy), Some(own)) = (&self.policy, &self.own) else {
            return if self.closed() {
                Err(Refusal::NoCredential)
            } else {
                Ok(())
            };
        };
        if !policy.policy().is_closed() {
            return Ok(());
        }
        let key = peer_key(me).ok_or(Refusal::NotEd25519)?;
        VerifiedCredential::check(&own.encode(), &key, policy.policy(), now)?;
        Ok(())
    }

    /// A peer's hello: admitted if the mesh is open, or if its credential
    /// verifies for its own key. Nothing changes on a refusal.
    pub fn admit(
        &mut self,
        peer: PeerId,
        credential: Option<&[u8]>,
        now: u64,
    ) -> Result<(), Refusal> {
        let policy = match &self.policy {
            Some(p) if p.policy().is_closed() => p.policy(),
            _ => {
                self.admitted.insert(peer, None);
                return Ok(());
            }
        };
        let bytes = credential.ok_or(Refusal::NoCredential)?;
        let key = peer_key(&peer).ok_or(Refusal::NotEd25519)?;
        let verified = VerifiedCredential::check(bytes, &key, policy, now)?;
        self.admitted.insert(peer, Some(verified));
        Ok(())
    }

    pub fn is_admitted(&self, peer: &PeerId) -> bool {
        !self.closed() || self.admitted.contains_key(peer)
    }

    /// What an admitted peer's credential says of it (closed mesh only).
    pub fn credential(&self, peer: &PeerId) -> Option<&Credential> {
        self.admitted
            .get(peer)
            .and_then(|c| c.as_ref())
            .map(|c| c.credential())
    }

    pub fn forget(&mut self, peer: &PeerId) {
        self.admitted.remove(peer);
    }

    /// Signed policy bytes from a peer or the endpoint. `Ok(true)` when
    /// they were a valid rotation and are now held (and stored); `Ok(false)`
    /// for the policy already held or an older one (every hello carries
    /// one: not worth a log line); on an error nothing changed.
    pub fn offer(
        &mut self,
        store: &dyn crate::store::Store,
        bytes: &[u8],
        now: u64,
    ) -> Result<bool, PolicyStoreError> {
        let Some(held) = &self.policy else {
            return Ok(false);
        };
        if self.policy_bytes.as_deref().map(|b| b.as_slice()) == Some(bytes) {
            return Ok(false);
        }
        let next = match policy_store::adopt(store, held, bytes, now) {
            Ok(next) => next,
            Err(PolicyStoreError::Policy(pollen_core::trust::PolicyError::NotNewer { .. })) => {
                return Ok(false)
            }
            Err(e) => return Err(e),
        };
        self.policy_bytes = Some(ByteBuf::from(bytes.to_vec()));
        self.policy = Some(next);
        Ok(true)
    }

    /// After a new policy: the admitted peers whose credential no longer
    /// holds (revoked, or its enroll key rotated away), forgotten here.
    pub fn recheck(&mut self, now: u64) -> Vec<(PeerId, CredentialError)> {
        let Some(policy) = self.policy.as_ref().map(|p| p.policy().clone()) else {
            return Vec::new();
        };
        let closed = policy.is_closed();
        let mut cut = Vec::new();
        for (peer, cred) in &self.admitted {
            let verdict = match cred {
                Some(c) => c.still_valid(&policy, now),
                None if closed => Err(CredentialError::OpenMesh),
                None => Ok(()),
            };
            if let Err(e) = verdict {
                cut.push((*peer, e));
            }
        }
        for (peer, _) in &cut {
            self.admitted.remove(peer);
        }
        cut
    }
}

impl<S: crate::store::Store + 'static> Driver<S> {
    /// A peer's hello (asked or answered): first its policy, if newer,
    /// then its credential. `false`: refused and disconnected.
    pub(super) fn admit_hello(&mut self, peer: PeerId, hello: &Hello) -> bool {
        if let Some(bytes) = &hello.policy {
            self.offer_policy(Some(peer), bytes);
        }
        let now = crate::unix_now();
        match self
            .trust
            .admit(peer, hello.credential.as_deref().map(|b| b.as_slice()), now)
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "peer refused: not admitted to the mesh");
                self.refuse(peer);
                false
            }
        }
    }

    /// Answers nothing more to `peer` and disconnects it.
    /// Closed mesh: a connection whose peer has not been admitted by a
    /// hello within [`HELLO_DEADLINE`] is cut (it would otherwise hold a
    /// connection slot until the idle timeout, saying nothing).
    pub(super) fn expire_unadmitted(&mut self, now: Duration) {
        if !self.trust.closed() {
            return;
        }
        let late: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(peer, info)| {
                info.connected_at
                    .is_some_and(|t| now.saturating_sub(t) >= HELLO_DEADLINE)
                    && !self.trust.is_admitted(peer)
            })
            .map(|(peer, _)| *peer)
            .collect();
        for peer in late {
            tracing::info!(%peer, deadline = ?HELLO_DEADLINE, "no admitting hello in time: disconnected");
            self.refuse(peer);
        }
    }

    pub(super) fn refuse(&mut self, peer: PeerId) {
        self.trust.refused += 1;
        self.report.peers_refused = self.trust.refused;
        self.trust.forget(&peer);
        self.emit(super::NodeEvent::PeerRefused(peer));
        let _ = self.swarm.disconnect_peer_id(peer);
    }

    /// A policy from a peer (`from`) or the local endpoint (`None`): taken
    /// if it is a valid rotation, then passed on to every admitted peer,
    /// and every peer whose credential it voids is cut off.
    pub(super) fn offer_policy(&mut self, from: Option<PeerId>, bytes: &[u8]) {
        let now = crate::unix_now();
        match self.trust.offer(self.store.as_ref(), bytes, now) {
            Ok(false) => {}
            Ok(true) => {
                let version = self.trust.policy().map_or(0, |p| p.version());
                tracing::info!(version, from = ?from, "took a newer fleet policy");
                for (peer, e) in self.trust.recheck(now) {
                    tracing::warn!(%peer, error = %e, "peer cut off by the new fleet policy");
                    self.refuse(peer);
                }
                if let Err(e) = self.recall_current() {
                    tracing::error!(error = %e, "taking up a release after a recall failed");
                }
                let me = self.peer_id();
                if let Err(e) = self.trust.check_own(&me, now) {
                    tracing::error!(error = %e, "this node's own credential does not hold under the new fleet policy: peers will refuse it");
                }
                let push = ByteBuf::from(bytes.to_vec());
                for p in self.hello_peer_ids() {
                    if Some(p) != from && self.trust.is_admitted(&p) {
                        self.send(p, Request::Policy(push.clone()), Pending::Notice);
                    }
                }
            }
            Err(e) => tracing::warn!(from = ?from, error = %e, "refused a fleet policy"),
        }
    }

    /// Under a new policy: a current release it recalls is dropped, and the
    /// newest stored release it allows is taken up instead (a seeder
    /// serves, a device installs, the channel's floor reset).
    fn recall_current(&mut self) -> Result<(), DriverError> {
        let recalled = match (&self.release, self.trust.policy()) {
            (Some(r), Some(p)) => p.policy().is_recalled(&r.id()),
            _ => false,
        };
        if !recalled {
            return Ok(());
        }
        if let Some(r) = &self.release {
            tracing::warn!(manifest = %r.id(), release = r.release(), "current release recalled by the fleet policy");
        }
        self.release = None;
        // A stored release it allows, if any; otherwise the next peer to
        // announce one (a seeder announces the reset release when it takes
        // it up) is asked for it.
        self.take_up_stored_release()
    }

    /// The local endpoint's `POST /policy` (an operator pushing a rotation).
    pub(super) fn on_api_policy(&mut self, bytes: &[u8]) -> Result<(), DriverError> {
        self.offer_policy(None, bytes);
        Ok(())
    }
}
