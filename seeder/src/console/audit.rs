//! The console's audit trail: every action asked through the API (who,
//! what, which release, when, and how it ended), appended as one JSON line
//! to the audit file and synced before the answer goes out, and the recent
//! ones kept in memory for the control history view.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Entries the control history keeps in memory.
pub const HISTORY: usize = 1000;

/// One action as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Seconds since the Unix epoch.
    pub time: u64,
    /// The token's name.
    pub who: String,
    /// `promote`, `halt` or `resume`.
    pub action: String,
    pub channel: String,
    pub release: u64,
    /// `ok`, or why it was refused.
    pub result: String,
    /// The control issued, if any.
    pub seq: Option<u64>,
}

/// Errors of this module.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("audit log {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The audit file (if configured) and the recent entries.
#[derive(Debug)]
pub struct AuditLog {
    file: Option<(PathBuf, Mutex<std::fs::File>)>,
    recent: Mutex<VecDeque<AuditEntry>>,
}

impl AuditLog {
    /// Opens `path` for appending (created if missing, mode 0600) and reads
    /// back its last [`HISTORY`] entries; without a path, memory only.
    pub fn open(path: Option<&Path>) -> Result<Self, AuditError> {
        let mut recent = VecDeque::new();
        let file = match path {
            None => None,
            Some(p) => {
                let io = |source| AuditError::Io {
                    path: p.to_owned(),
                    source,
                };
                if let Ok(text) = std::fs::read_to_string(p) {
                    for line in text.lines() {
                        // A line this version cannot read stays in the file, out of the view.
                        if let Ok(e) = serde_json::from_str::<AuditEntry>(line) {
                            if recent.len() == HISTORY {
                                recent.pop_front();
                            }
                            recent.push_back(e);
                        }
                    }
                }
                let mut options = std::fs::OpenOptions::new();
                options.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                Some((p.to_owned(), Mutex::new(options.open(p).map_err(io)?)))
            }
        };
        Ok(Self {
            file,
            recent: Mutex::new(recent),
        })
    }

    /// Appends `entry`: written and synced to the file before it returns.
    pub fn append(&self, entry: AuditEntry) -> Result<(), AuditError> {
        if let Some((path, file)) = &self.file {
            let mut line = serde_json::to_vec(&entry).unwrap_or_default();
            line.push(b'\n');
            let mut f = file.lock().unwrap_or_else(|p| p.into_inner());
            f.write_all(&line)
                .and_then(|()| f.sync_data())
                .map_err(|source| AuditError::Io {
                    path: path.clone(),
                    source,
                })?;
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == HISTORY {
            recent.pop_front();
        }
        recent.push_back(entry);
        Ok(())
    }

    /// The recent entries, newest first.
    pub fn recent(&self) -> Vec<AuditEntry> {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: u64) -> AuditEntry {
        AuditEntry {
            time: n,
            who: "alice".into(),
            action: "halt".into(),
            channel: "stable".into(),
            release: 2,
            result: "ok".into(),
            seq: Some(n),
        }
    }

    #[test]
    fn entries_are_appended_as_json_lines_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "not json\n").expect("seed a foreign line");
        let log = AuditLog::open(Some(&path)).expect("open");
        log.append(entry(1)).expect("append");
        log.append(entry(2)).expect("append");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "appended, the old line kept: {text}");
        let back: AuditEntry = serde_json::from_str(lines[2]).expect("json line");
        assert_eq!(back, entry(2));
        assert_eq!(log.recent(), vec![entry(2), entry(1)]);
        drop(log);
        let again = AuditLog::open(Some(&path)).expect("reopen");
        assert_eq!(again.recent(), vec![entry(2), entry(1)]);
    }

    #[test]
    fn memory_only_without_a_file() {
        let log = AuditLog::open(None).expect("open");
        for n in 0..(HISTORY as u64 + 5) {
            log.append(entry(n)).expect("append");
        }
        let r = log.recent();
        assert_eq!(r.len(), HISTORY);
        assert_eq!(r[0].time, HISTORY as u64 + 4);
    }

    #[test]
    fn an_unwritable_path_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = AuditLog::open(Some(&dir.path().join("missing/audit.jsonl")))
            .expect_err("no such folder");
        assert!(err.to_string().contains("audit log"));
    }
}
