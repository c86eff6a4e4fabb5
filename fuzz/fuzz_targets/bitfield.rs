//! Fuzzes has-sets from peers: a `swarm::Bitfield` decoded from postcard
//! bytes (as inside a `Have` response) and `checked` against the release's
//! chunk count, after which the scheduler indexes with it.
//!
//! Input: the expected chunk count (u32, little-endian), then the bitfield.
//! Checked: nothing panics; a checked bitfield has the expected length, no
//! bit at or past it, consistent counts, and survives a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollen_core::swarm::Bitfield;

fuzz_target!(|data: &[u8]| {
    let Some((expected, bytes)) = data.split_first_chunk::<4>() else {
        return;
    };
    let expected = u32::from_le_bytes(*expected);
    let Ok((have, _rest)) = postcard::take_from_bytes::<Bitfield>(bytes) else {
        return;
    };
    let Ok(mut have) = have.checked(expected) else {
        return;
    };
    assert_eq!(have.len(), expected);
    let ones: Vec<u32> = have.iter_ones().collect();
    assert!(ones.windows(2).all(|w| w[0] < w[1]));
    assert!(ones.iter().all(|&i| i < expected && have.get(i)));
    assert_eq!(ones.len() as u32, have.count());
    assert_eq!(have.is_full(), have.count() == expected);
    assert!(!have.get(expected));
    let encoded = postcard::to_stdvec(&have).expect("encodes");
    let back: Bitfield = postcard::from_bytes(&encoded).expect("decodes");
    assert_eq!(back.checked(expected).as_ref(), Ok(&have));
    // Indexing with anything, in range or not, must not panic.
    let probe = ones.first().copied().unwrap_or(0);
    assert!(!have.set(expected));
    assert!(!have.clear(expected.saturating_add(probe)));
    if expected > 0 {
        let i = probe % expected;
        have.set(i);
        assert!(have.get(i));
        assert!(have.clear(i));
        assert!(!have.get(i));
    }
});
