//! The publisher's side of Pollen as a library (the `pollen-seeder` binary is
//! a thin CLI over it): key files, publishing a release into a store, and
//! steering its staged rollout.

pub mod keyfile;
pub mod publish;
pub mod rollout;
pub mod view;
