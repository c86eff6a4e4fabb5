//! The publisher's side of Pollen as a library (the `pollen-seeder` binary is
//! a thin CLI over it): key files, publishing a release into a store,
//! steering its staged rollout, and fleet trust (policies, device
//! credentials, co-signed releases).

pub mod cosigned;
pub mod enroll;
pub mod files;
pub mod fleet_policy;
pub mod keyfile;
pub mod policy_view;
pub mod publish;
pub mod publish_live;
pub mod rollout;
pub mod view;
