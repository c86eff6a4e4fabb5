//! What the driver exchanges with its neighbours in the process: the
//! local endpoint (commands in, a rendered [`crate::api::View`] out) and
//! the lifecycle thread (progress in); and the device's status-signing key.

use libp2p::identity::Keypair;
use pollen_core::fleet::stage_counts;
use pollen_core::manifest::SecretKey;
use tokio::sync::mpsc;

use super::lifecycle::{Lifecycle, Progress};
use super::{Driver, Mode};
use crate::api::{ApiCommand, ReleaseView, Shared, View};
use crate::net::NetError;

/// The device's status-signing key: its mesh identity's ed25519 key.
pub(super) fn device_key(key: &Keypair) -> Result<SecretKey, NetError> {
    let ed = key
        .clone()
        .try_into_ed25519()
        .map_err(NetError::NotEd25519)?;
    let bytes: [u8; 32] = ed
        .secret()
        .as_ref()
        .try_into()
        .map_err(|_| NetError::SecretLength)?;
    Ok(SecretKey::from_bytes(&bytes))
}

pub(super) async fn recv_progress(l: &mut Option<Lifecycle>) -> Option<Progress> {
    match l {
        Some(l) => l.progress.recv().await,
        None => std::future::pending().await,
    }
}

pub(super) async fn recv_api(
    api: &mut Option<(Shared, mpsc::Receiver<ApiCommand>)>,
) -> Option<ApiCommand> {
    match api {
        Some((_, rx)) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl<S: crate::store::Store + 'static> Driver<S> {
    /// What the local endpoint shows of this node.
    fn view(&self) -> View<'_> {
        let release = self
            .release
            .as_ref()
            .zip(self.sched())
            .map(|(r, s)| ReleaseView {
                manifest: r.id().to_hex(),
                release: r.release(),
                version: r.manifest.manifest().version.clone(),
                chunks_total: r.chunks.len(),
                chunks_held: s.have().count(),
                complete: s.is_complete(),
                stats: s.stats().clone(),
            });
        let stages = match (self.config.mode, &self.release) {
            (Mode::Seed, Some(r)) => Some(stage_counts(
                &r.id(),
                &r.manifest.manifest().rollout,
                self.fleet.records(),
            )),
            _ => None,
        };
        View {
            peer_id: self.peer_id().to_string(),
            device_id: &self.device_id,
            channel: &self.config.channel,
            site: self.config.site.as_deref(),
            peers: self.hello_peer_ids().len(),
            connections_opened: self.report.connections_opened,
            release,
            control: self.control.as_ref().map(|c| c.control()),
            lifecycle: self.lifecycle.as_ref().map(|l| &l.record),
            fleet_devices: self.fleet.records().count(),
            stages,
            manifests_refused: self.report.manifests_refused,
            bytes_served: self.report.bytes_served,
            origin: self.origin_view(),
        }
    }

    pub(super) fn update_snapshot(&mut self) {
        let Some((shared, _)) = &self.api else {
            return;
        };
        let view = self.view();
        let (status, metrics) = (view.status_json(), view.metrics_text());
        if let Ok(mut snap) = shared.lock() {
            snap.status = status;
            snap.metrics = metrics;
        }
    }
}
