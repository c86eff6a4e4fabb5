//! Fuzzes the device's trust file text (`manifest::trust_text`, what the
//! node's `trust_file` parses at start) and the public key text form a
//! single-key trust file holds.
//!
//! Checked beyond "no panic": errors name a line of the text; a parsed file
//! written back canonically parses to the same thing; a key that parses
//! round-trips through its text form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::manifest::trust_text::{self, TrustText};
use pollen_core::manifest::PublicKey;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if trust_text::is_public_key(&text) {
        if let Ok(key) = PublicKey::from_text(&text) {
            assert_eq!(PublicKey::from_text(&key.to_text()), Ok(key));
        }
        return;
    }
    let lines = text.lines().count();
    for line in trust_text::lines(&text) {
        let number = match line {
            Ok((n, _)) => n,
            Err(e) => e.line(),
        };
        assert!((1..=lines).contains(&number));
    }
    match TrustText::parse(&text) {
        Ok(parsed) => assert_eq!(TrustText::parse(&parsed.to_text()).as_ref(), Ok(&parsed)),
        Err(e) => assert!((1..=lines).contains(&e.line())),
    }
});
