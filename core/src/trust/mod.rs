//! Fleet trust (DESIGN §11): who may sign what, and who may join the mesh.
//!
//! - [`policy`]: the signed, versioned fleet policy naming the keys and
//!   thresholds of each role (root, release, operator, enroll), revoked
//!   device keys, recalled releases and per-channel floor resets; its
//!   rotation rule (TUF: the held root threshold *and* the new one sign).
//! - [`credential`]: a device's enrollment, signed by the enroll role,
//!   binding its mesh identity key to device id, site, hardware and expiry.
//! - [`cosign`]: one more signature on any signed Pollen object, so a
//!   threshold role is signed on separate machines.
//!
//! Each role signs under its own domain-separation context: manifests
//! "pollen manifest v1" (release), controls "pollen rollout v1" (operator),
//! policies "pollen policy v1" (root), credentials "pollen credential v1"
//! (enroll); the operator also signs origins' channel indexes under
//! "pollen index v1" (`crate::origin`). A signature of one role never
//! passes as another's.

pub mod cosign;
pub mod credential;
pub mod policy;

pub use credential::{Credential, CredentialError, SignedCredential, VerifiedCredential};
pub use policy::{FleetPolicy, FloorReset, PolicyError, Role, SignedPolicy, VerifiedPolicy};

/// Longest text field (device id, site, hardware, serial, channel) in a
/// policy or credential.
pub const MAX_NAME_LEN: usize = 128;
