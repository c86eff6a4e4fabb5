//! Canonical postcard encoding of what Pollen signs and sends: manifest
//! bodies, signature envelopes, rollout controls and status records.
//!
//! Every type encoded here is plain owned data (no maps with unordered
//! keys, no sequences of unknown length, no custom serialisers), for which
//! postcard cannot fail. Should that invariant ever break, encoding stops
//! loudly rather than signing or sending an empty body.

use serde::Serialize;

/// `prefix` (a format version byte, or nothing), then `value` in postcard.
pub(crate) fn canonical<T: Serialize + ?Sized>(prefix: &[u8], value: &T) -> Vec<u8> {
    let out = prefix.to_vec();
    match postcard::to_extend(value, out) {
        Ok(bytes) => bytes,
        // Unreachable for the plain data types of this crate (see above).
        Err(e) => panic!("canonical encoding of a plain value failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Plain {
        a: u64,
        b: Vec<u8>,
        c: Option<String>,
    }

    #[test]
    fn prefix_then_postcard() {
        let v = Plain {
            a: 300,
            b: vec![1, 2],
            c: Some("x".into()),
        };
        let bytes = canonical(&[7], &v);
        assert_eq!(bytes[0], 7);
        assert_eq!(
            &bytes[1..],
            postcard::to_stdvec(&v).expect("plain").as_slice()
        );
        assert!(canonical(&[], &v).len() > 4);
    }
}
