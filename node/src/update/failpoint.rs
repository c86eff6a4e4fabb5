//! Crash injection for the lifecycle's crash-safety tests: with
//! `POLLEN_FAILPOINT=<name>` in its environment the process aborts (no
//! destructors, no flushes — as close to `kill -9` as a process can do to
//! itself) when it reaches the point of that name. Unset, it costs a lookup.

/// The points, in lifecycle order; tests walk all of them.
pub const POINTS: &[&str] = &[
    "importing",
    "verified",
    "staging",
    "staged",
    "switching",
    "switched",
    "healthy",
    "committed",
    "rolled-back",
];

/// Aborts the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if std::env::var("POLLEN_FAILPOINT").is_ok_and(|v| v == name) {
        eprintln!("pollen: failpoint {name}: aborting");
        std::process::abort();
    }
}
