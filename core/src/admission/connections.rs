//! How many connections a server keeps, and from whom, so that a fleet of
//! more devices than its limit still reaches it from every site.

/// Connections a server keeps from one site once it is half full.
pub const PER_SITE_WHEN_FULL: u32 = 2;

/// Whether a server with `connected` connections (at most `max`), of which
/// `from_site` come from a new peer's site, keeps the new connection: anyone
/// while it is under half full, then at most [`PER_SITE_WHEN_FULL`] per
/// site, so a fleet of more devices than the limit still gets a connection
/// into every site (the site's other members fetch from those). Peers that
/// name no site count as a site of their own.
pub fn keep_connection(connected: u32, max: u32, from_site: u32) -> bool {
    connected < max && (connected < max / 2 || from_site < PER_SITE_WHEN_FULL)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_server_keeps_a_connection_per_site() {
        assert!(keep_connection(10, 100, 40));
        assert!(keep_connection(60, 100, 1));
        assert!(!keep_connection(60, 100, 2));
        assert!(!keep_connection(100, 100, 0));
    }
}
