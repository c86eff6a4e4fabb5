//! Crash injection for the lifecycle's crash-safety tests: with
//! `POLLEN_FAILPOINT=<name>` in its environment the process aborts (no
//! destructors, no flushes — as close to `kill -9` as a process can do to
//! itself) when it reaches the point of that name. Unset, it costs a lookup.

/// The points, in lifecycle order; tests walk all of them.
pub const POINTS: &[&str] = &[
    // A chunk written into the slot image, not yet synced or marked held.
    "slot-write",
    "importing",
    "verified",
    // Halfway through completing the slot image (staging).
    "staging",
    // A chunk shared with the active slot being copied into the new one
    // (reached only by a release that shares chunks with the active one).
    "local-copy",
    "staged",
    "switching",
    "switched",
    "healthy",
    "committed",
    // Clean-up after a commit, part done.
    "cleanup",
    "rolled-back",
];

/// Aborts the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var("POLLEN_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("pollen: failpoint {name}: aborting");
        std::process::abort();
    }
}
