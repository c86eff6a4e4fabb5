//! The publisher's side of Pollen as a library (the `pollen-seeder` binary is
//! a thin CLI over it): key files, publishing a release into a store,
//! steering its staged rollout, fleet trust (policies, device
//! credentials, co-signed releases), and the static origin tree a web
//! server or CDN serves (`origin_export`, `origin_tree`).

pub mod console;
pub mod cosigned;
pub mod enroll;
pub mod files;
pub mod fleet_policy;
pub mod keyfile;
pub mod origin_export;
pub mod origin_tree;
pub mod policy_view;
pub mod publish;
pub mod publish_live;
pub mod rollout;
pub mod view;
