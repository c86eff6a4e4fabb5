//! The text of a device's trust file: which publisher key files count and
//! the threshold. Parsing only; reading the files is the caller's (the
//! node's `trust_file`).
//!
//! ```text
//! # comments and blank lines are ignored
//! threshold 2
//! key publisher-a.pub   # paths relative to the trust file
//! key publisher-b.pub
//! key publisher-c.pub
//! ```
//!
//! A file that starts with `pollen-public-key` is a single key instead
//! ([`is_public_key`]), trusted with threshold 1.

/// The threshold of a trust file without a `threshold` line.
pub const DEFAULT_THRESHOLD: usize = 1;

/// One meaningful line of a trust file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustLine<'a> {
    /// `threshold N`
    Threshold(usize),
    /// `key FILE`: a public key file, relative to the trust file.
    Key(&'a str),
}

/// A line of a trust file that is not `threshold N` or `key FILE`.
/// Line numbers count from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrustTextError {
    #[error("line {line}: threshold {word:?} is not a number")]
    NotANumber { line: usize, word: String },
    #[error("line {line}: expected `threshold N` or `key FILE`, found {text:?}")]
    Unexpected { line: usize, text: String },
}

impl TrustTextError {
    /// The line at fault, counting from 1.
    pub fn line(&self) -> usize {
        match self {
            Self::NotANumber { line, .. } | Self::Unexpected { line, .. } => *line,
        }
    }
}

/// Whether `text` is a single public key file rather than a trust file.
pub fn is_public_key(text: &str) -> bool {
    text.trim_start().starts_with("pollen-public-key")
}

/// The meaningful lines of a trust file in order, each with its number
/// (from 1); comments (`#` to the end of a line) and blank lines are skipped.
/// A caller that acts on each line (reading key files) meets the errors in
/// file order.
pub fn lines(
    text: &str,
) -> impl Iterator<Item = Result<(usize, TrustLine<'_>), TrustTextError>> + '_ {
    text.lines().enumerate().filter_map(|(i, raw)| {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            return None;
        }
        let number = i + 1;
        let mut words = line.split_whitespace();
        Some(match (words.next(), words.next(), words.next()) {
            (Some("threshold"), Some(n), None) => n
                .parse()
                .map(|n| (number, TrustLine::Threshold(n)))
                .map_err(|_| TrustTextError::NotANumber {
                    line: number,
                    word: n.to_owned(),
                }),
            (Some("key"), Some(file), None) => Ok((number, TrustLine::Key(file))),
            _ => Err(TrustTextError::Unexpected {
                line: number,
                text: line.to_owned(),
            }),
        })
    })
}

/// A whole trust file's text, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustText<'a> {
    /// The last `threshold` line's, or [`DEFAULT_THRESHOLD`].
    pub threshold: usize,
    /// The key files, in order.
    pub keys: Vec<&'a str>,
}

impl<'a> TrustText<'a> {
    /// Parses a trust file's text; the first bad line is the error.
    pub fn parse(text: &'a str) -> Result<Self, TrustTextError> {
        let mut threshold = None;
        let mut keys = Vec::new();
        for line in lines(text) {
            match line?.1 {
                TrustLine::Threshold(n) => threshold = Some(n),
                TrustLine::Key(file) => keys.push(file),
            }
        }
        Ok(Self {
            threshold: threshold.unwrap_or(DEFAULT_THRESHOLD),
            keys,
        })
    }

    /// The canonical text of the same trust file.
    pub fn to_text(&self) -> String {
        let mut text = format!("threshold {}\n", self.threshold);
        for k in &self.keys {
            text.push_str("key ");
            text.push_str(k);
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_threshold_keys_and_comments() {
        let text = "# fleet\n\nthreshold 2\nkey a.pub\n  key b.pub # second\n";
        let parsed = TrustText::parse(text).expect("parses");
        assert_eq!(
            parsed,
            TrustText {
                threshold: 2,
                keys: vec!["a.pub", "b.pub"]
            }
        );
        assert_eq!(TrustText::parse(&parsed.to_text()), Ok(parsed));
        let numbered: Vec<_> = lines(text).map(|l| l.expect("line").0).collect();
        assert_eq!(numbered, [3, 4, 5]);
        assert_eq!(
            TrustText::parse("key a.pub\n").map(|t| t.threshold),
            Ok(DEFAULT_THRESHOLD)
        );
    }

    #[test]
    fn errors_name_the_line_and_keep_their_wording() {
        let err = TrustText::parse("key a.pub\n\ntrust everyone # really\n").expect_err("bad");
        assert_eq!(err.line(), 3);
        assert_eq!(
            err.to_string(),
            "line 3: expected `threshold N` or `key FILE`, found \"trust everyone\""
        );
        let err = TrustText::parse("threshold two\n").expect_err("bad");
        assert_eq!(
            err,
            TrustTextError::NotANumber {
                line: 1,
                word: "two".into()
            }
        );
        assert_eq!(err.to_string(), "line 1: threshold \"two\" is not a number");
        for bad in [
            "threshold",
            "threshold 1 2",
            "key",
            "key a b",
            "threshold -1",
        ] {
            assert!(TrustText::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn recognises_single_key_files() {
        assert!(is_public_key("\n pollen-public-key ed25519 00"));
        assert!(!is_public_key("threshold 1\n"));
    }
}
