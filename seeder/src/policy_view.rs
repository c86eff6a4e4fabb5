//! A readable (and JSON) view of a signed fleet policy, for `policy show`,
//! `create` and `rotate`: roles, revoked devices (as peer ids), recalls,
//! floor resets, who signed it, and whether it verifies on its own root
//! threshold and as a rotation from a held policy, with the signatures
//! each root still lacks.

use pollen_core::manifest::{KeyId, TrustPolicy};
use pollen_core::trust::{FleetPolicy, Role, SignedPolicy, VerifiedPolicy};
use pollen_node::net::identity::peer_of_key;
use serde::Serialize;

/// A policy as `policy show --json` prints it.
#[derive(Debug, Serialize)]
pub struct PolicyView {
    pub version: u64,
    pub expires_at: u64,
    /// UTC, RFC 3339.
    pub expires: String,
    pub roles: Vec<RoleView>,
    /// Peers must present credentials (the policy has an enroll role).
    pub closed_mesh: bool,
    pub revoked: Vec<DeviceView>,
    pub recalled: Vec<String>,
    pub floor_resets: Vec<ResetView>,
    pub signatures: Vec<SignatureView>,
    /// On its own root threshold, as a device provisioned with it checks it.
    pub own_root: CheckView,
    /// As a rotation from the held policy (`--held`), as a device holding
    /// that policy checks it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotation: Option<CheckView>,
}

#[derive(Debug, Serialize)]
pub struct RoleView {
    pub role: &'static str,
    pub threshold: usize,
    pub keys: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct DeviceView {
    /// `None` when the key is no ed25519 point (no peer can have it).
    pub peer_id: Option<String>,
    pub key: String,
}

#[derive(Debug, Serialize)]
pub struct ResetView {
    pub channel: String,
    pub release: u64,
    pub manifest: String,
}

#[derive(Debug, Serialize)]
pub struct SignatureView {
    pub key_id: String,
    /// The roles the key holds in this policy.
    pub roles: Vec<&'static str>,
    /// The key is a root key of the held policy.
    pub held_root: bool,
}

/// One verification and, per root threshold it needs, who signed.
#[derive(Debug, Serialize)]
pub struct CheckView {
    pub verifies: bool,
    /// Why not, as a device would say it.
    pub error: Option<String>,
    pub roots: Vec<RootView>,
}

/// A root threshold and the signatures on the policy that count toward it.
#[derive(Debug, Serialize)]
pub struct RootView {
    /// `root` (the policy's own) or `held root (version N)`.
    pub root: String,
    pub threshold: usize,
    pub signed: Vec<String>,
    pub unsigned: Vec<String>,
    /// Signatures still needed: `threshold` less those present.
    pub missing: usize,
}

fn root_view(name: String, root: &TrustPolicy, signers: &[KeyId]) -> RootView {
    let (signed, unsigned): (Vec<_>, Vec<_>) = root
        .keys()
        .map(|k| k.id())
        .partition(|id| signers.contains(id));
    RootView {
        root: name,
        threshold: root.threshold(),
        missing: root.threshold().saturating_sub(signed.len()),
        signed: signed.iter().map(KeyId::to_string).collect(),
        unsigned: unsigned.iter().map(KeyId::to_string).collect(),
    }
}

fn when(t: u64) -> String {
    if t == u64::MAX {
        return "never".into();
    }
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t.min(253_402_300_799)),
    )
    .to_string()
}

impl PolicyView {
    /// The view of policy bytes already decoded as `signed`, judged at
    /// `now`, and against `held` when given.
    pub fn new(
        bytes: &[u8],
        signed: &SignedPolicy,
        held: Option<&VerifiedPolicy>,
        now: u64,
    ) -> Self {
        let p: &FleetPolicy = signed.policy();
        let signers: Vec<KeyId> = signed.signatures().iter().map(|s| s.key_id).collect();
        let own = root_view("root".into(), &p.root, &signers);
        let own_root = CheckView {
            error: VerifiedPolicy::first(bytes, now)
                .err()
                .map(|e| e.to_string()),
            verifies: false,
            roots: vec![own],
        }
        .settled();
        let rotation = held.map(|h| {
            let name = format!("held root (version {})", h.version());
            CheckView {
                error: h.accept(bytes, now).err().map(|e| e.to_string()),
                verifies: false,
                roots: vec![
                    root_view(name, &h.policy().root, &signers),
                    root_view("root".into(), &p.root, &signers),
                ],
            }
            .settled()
        });
        Self {
            version: p.version,
            expires_at: p.expires_at,
            expires: when(p.expires_at),
            roles: Role::ALL
                .into_iter()
                .filter_map(|r| {
                    p.role(r).map(|t| RoleView {
                        role: r.as_str(),
                        threshold: t.threshold(),
                        keys: t.keys().map(|k| k.id().to_string()).collect(),
                    })
                })
                .collect(),
            closed_mesh: p.is_closed(),
            revoked: p
                .revoked
                .iter()
                .map(|k| DeviceView {
                    peer_id: peer_of_key(k).map(|id| id.to_string()),
                    key: hex::encode(k),
                })
                .collect(),
            recalled: p.recalled.iter().map(|m| m.to_hex()).collect(),
            floor_resets: p
                .floor_resets
                .values()
                .map(|r| ResetView {
                    channel: r.channel.clone(),
                    release: r.release,
                    manifest: r.manifest.to_hex(),
                })
                .collect(),
            signatures: signers
                .iter()
                .map(|id| SignatureView {
                    key_id: id.to_string(),
                    roles: p.roles_of(id).into_iter().map(Role::as_str).collect(),
                    held_root: held.is_some_and(|h| h.policy().root.key(id).is_some()),
                })
                .collect(),
            own_root,
            rotation,
        }
    }

    /// The human summary `policy show` prints without `--json`.
    pub fn summary(&self) -> String {
        let mut s = format!(
            "fleet policy version {}, expires {}\n",
            self.version, self.expires
        );
        for r in &self.roles {
            s.push_str(&format!(
                "{:<9} {} of {}: {}\n",
                r.role,
                r.threshold,
                r.keys.len(),
                r.keys.join(", ")
            ));
        }
        if !self.closed_mesh {
            s.push_str("enroll    none (an open mesh: no credentials asked)\n");
        }
        let list = |items: Vec<String>| match items.is_empty() {
            true => "none".to_owned(),
            false => items.join("\n          "),
        };
        s.push_str(&format!(
            "revoked   {}\n",
            list(
                self.revoked
                    .iter()
                    .map(|d| d.peer_id.clone().unwrap_or_else(|| d.key.clone()))
                    .collect()
            )
        ));
        s.push_str(&format!("recalled  {}\n", list(self.recalled.clone())));
        s.push_str(&format!(
            "floor     {}\n",
            list(
                self.floor_resets
                    .iter()
                    .map(|r| format!(
                        "{}: back to release {} ({})",
                        r.channel, r.release, r.manifest
                    ))
                    .collect()
            )
        ));
        s.push_str(&format!(
            "signed by {}\n",
            list(
                self.signatures
                    .iter()
                    .map(|sig| {
                        let mut roles: Vec<&str> = sig.roles.clone();
                        if sig.held_root {
                            roles.push("held root");
                        }
                        match roles.is_empty() {
                            true => format!("{} (no role)", sig.key_id),
                            false => format!("{} ({})", sig.key_id, roles.join(", ")),
                        }
                    })
                    .collect()
            )
        ));
        s.push_str(&self.own_root.summary("own root"));
        if let Some(r) = &self.rotation {
            s.push_str(&r.summary("rotation"));
        }
        s
    }

    /// Whether the policy verifies: as a rotation when a held policy was
    /// given, else on its own root.
    pub fn verifies(&self) -> bool {
        self.rotation.as_ref().unwrap_or(&self.own_root).verifies
    }
}

impl CheckView {
    fn settled(mut self) -> Self {
        self.verifies = self.error.is_none();
        self
    }

    fn summary(&self, what: &str) -> String {
        let mut s = match &self.error {
            None => format!("{what:<9} verifies\n"),
            Some(e) => format!("{what:<9} does NOT verify: {e}\n"),
        };
        for r in &self.roots {
            let needs = match (r.missing, r.unsigned.is_empty()) {
                (0, _) => "enough".to_owned(),
                (n, false) => format!("{n} more needed, from: {}", r.unsigned.join(", ")),
                (n, true) => format!("{n} more needed"),
            };
            s.push_str(&format!(
                "          {}: {} of threshold {} signed; {needs}\n",
                r.root,
                r.signed.len(),
                r.threshold
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pollen_core::manifest::SecretKey;

    fn key(n: u8) -> SecretKey {
        SecretKey::from_bytes(&[n; 32])
    }

    fn policy(version: u64, root: &[u8], threshold: usize) -> FleetPolicy {
        let keys = root.iter().map(|&n| key(n).public()).collect();
        let single = |n: u8| TrustPolicy::single(key(n).public());
        FleetPolicy::new(
            version,
            2_000_000_000,
            [
                TrustPolicy::new(keys, threshold).expect("valid"),
                single(10),
                single(20),
            ],
            None,
        )
    }

    fn view(p: FleetPolicy, by: &[u8], held: Option<&VerifiedPolicy>) -> PolicyView {
        let keys: Vec<SecretKey> = by.iter().map(|&n| key(n)).collect();
        let refs: Vec<&SecretKey> = keys.iter().collect();
        let bytes = SignedPolicy::sign(p, &refs).expect("valid").encode();
        let signed = SignedPolicy::decode(&bytes).expect("decodes");
        PolicyView::new(&bytes, &signed, held, 1_800_000_000)
    }

    #[test]
    fn missing_signatures_are_counted_per_root() {
        let v1 = view(policy(1, &[1, 2], 2), &[1, 2], None);
        assert!(v1.verifies());
        assert!(v1.summary().contains("own root  verifies"));
        let held = VerifiedPolicy::from_trust(TrustPolicy::single(key(1).public()));
        // Only the new root signed: the held root's key is missing.
        let v = view(policy(1, &[5, 6], 2), &[5, 6], Some(&held));
        assert!(v.own_root.verifies);
        assert!(!v.verifies());
        let r = v.rotation.as_ref().expect("rotation");
        assert_eq!(r.roots[0].missing, 1);
        assert_eq!(r.roots[0].unsigned, [key(1).public().id().to_string()]);
        assert_eq!(r.roots[1].missing, 0);
        let text = v.summary();
        assert!(text.contains("rotation  does NOT verify"), "{text}");
        assert!(
            text.contains("held root (version 0): 0 of threshold 1 signed; 1 more needed"),
            "{text}"
        );
        assert!(text.contains("enroll    none (an open mesh"), "{text}");
    }
}
