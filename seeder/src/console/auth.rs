//! Bearer tokens of the operator console: the tokens file (one token a
//! line with its scope and the name the audit log records) and the lookup
//! of a presented token, compared in constant time.

use std::path::Path;

use subtle::ConstantTimeEq;

/// Shortest token accepted in the file.
pub const MIN_TOKEN_LEN: usize = 16;

/// What a token may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every `GET`.
    Read,
    /// Reads, and promote / halt / resume.
    Operator,
}

/// Who presented a valid token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("line {line}: expected `SCOPE NAME TOKEN` (SCOPE read or operator)")]
    Syntax { line: usize },
    #[error("line {line}: unknown scope {scope:?} (read or operator)")]
    Scope { line: usize, scope: String },
    #[error("line {line}: the token is shorter than {MIN_TOKEN_LEN} characters")]
    Short { line: usize },
    #[error("line {line}: the token is already on line {first}")]
    Duplicate { line: usize, first: usize },
    #[error("the tokens file holds no token")]
    Empty,
}

#[derive(Clone)]
struct Entry {
    digest: [u8; 32],
    caller: Caller,
}

/// The tokens the console accepts.
#[derive(Clone)]
pub struct Tokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the digests.
        f.debug_struct("Tokens")
            .field("count", &self.entries.len())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    *blake3::hash(token).as_bytes()
}

impl Tokens {
    /// Parses the file's text: `SCOPE NAME TOKEN` a line, `#` comments
    /// and blank lines ignored.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let mut entries: Vec<(usize, Entry)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let content = raw.trim();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            let parts: Vec<&str> = content.split_whitespace().collect();
            let [scope, name, token] = parts[..] else {
                return Err(AuthError::Syntax { line });
            };
            let scope = match scope {
                "read" => Scope::Read,
                "operator" => Scope::Operator,
                other => {
                    return Err(AuthError::Scope {
                        line,
                        scope: other.to_owned(),
                    })
                }
            };
            if token.len() < MIN_TOKEN_LEN {
                return Err(AuthError::Short { line });
            }
            let digest = digest(token.as_bytes());
            if let Some((first, _)) = entries.iter().find(|(_, e)| e.digest == digest) {
                return Err(AuthError::Duplicate {
                    line,
                    first: *first,
                });
            }
            entries.push((
                line,
                Entry {
                    digest,
                    caller: Caller {
                        name: name.to_owned(),
                        scope,
                    },
                },
            ));
        }
        if entries.is_empty() {
            return Err(AuthError::Empty);
        }
        Ok(Self {
            entries: entries.into_iter().map(|(_, e)| e).collect(),
        })
    }

    /// Reads and parses the tokens file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// The caller `token` belongs to. Every entry is compared, each in
    /// constant time over equal-length digests, so the time taken says
    /// nothing about which token (or how much of one) matched.
    pub fn check(&self, token: &str) -> Option<Caller> {
        let presented = digest(token.as_bytes());
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.digest.ct_eq(&presented)) {
                found = Some(e);
            }
        }
        found.map(|e| e.caller.clone())
    }

    /// The token of an `Authorization: Bearer TOKEN` header value.
    pub fn bearer(header: &str) -> Option<&str> {
        let (kind, token) = header.trim().split_once(' ')?;
        kind.eq_ignore_ascii_case("bearer")
            .then(|| token.trim())
            .filter(|t| !t.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# console tokens\n\
        read   dashboard  rrrrrrrrrrrrrrrrrrrr\n\
        \n\
        operator alice     oooooooooooooooooooo\n";

    #[test]
    fn tokens_map_to_their_callers() {
        let t = Tokens::parse(FILE).expect("parses");
        let alice = t.check("oooooooooooooooooooo").expect("alice");
        assert_eq!(
            (alice.name.as_str(), alice.scope),
            ("alice", Scope::Operator)
        );
        let dash = t.check("rrrrrrrrrrrrrrrrrrrr").expect("dashboard");
        assert_eq!(dash.scope, Scope::Read);
        assert_eq!(t.check("oooooooooooooooooooO"), None);
        assert_eq!(t.check(""), None);
        assert_eq!(t.check("oooooooooooooooooooo "), None);
        assert!(!format!("{t:?}").contains("ooo"));
    }

    #[test]
    fn bad_files_are_refused_with_the_line() {
        let err = |text: &str| Tokens::parse(text).expect_err("refused").to_string();
        assert!(err("read alice").contains("line 1"));
        assert!(err("\nadmin bob bbbbbbbbbbbbbbbbbbbbbb").contains("line 2: unknown scope"));
        assert!(err("read bob short").contains("shorter"));
        assert!(
            err("read a xxxxxxxxxxxxxxxxxx\noperator b xxxxxxxxxxxxxxxxxx")
                .contains("already on line 1")
        );
        assert!(err("# nothing\n").contains("no token"));
    }

    #[test]
    fn bearer_header() {
        assert_eq!(Tokens::bearer("Bearer abc"), Some("abc"));
        assert_eq!(Tokens::bearer("bearer  abc "), Some("abc"));
        assert_eq!(Tokens::bearer("Basic abc"), None);
        assert_eq!(Tokens::bearer("Bearer "), None);
    }
}
