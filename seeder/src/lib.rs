//! The publisher's side of Pollen as a library (the `pollen-seeder` binary is
//! a thin CLI over it): key files and publishing a release into a store.

pub mod keyfile;
pub mod publish;
pub mod view;
