//! Running the operator's hooks: a shell command with a timeout, the slot
//! and release in its environment, its stderr kept for the status record.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Errors of a hook run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HookError {
    #[error("{hook} hook could not start: {source}")]
    Spawn {
        hook: &'static str,
        source: std::io::Error,
    },
    #[error("{hook} hook exited with {code}{}", tail(stderr))]
    Failed {
        hook: &'static str,
        code: String,
        stderr: String,
    },
    #[error("{hook} hook did not finish within {}s and was killed", after.as_secs())]
    TimedOut { hook: &'static str, after: Duration },
}

fn tail(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// Longest stderr kept from a hook.
const STDERR_KEPT: usize = 300;

/// Runs `command` with `sh -c` in its own process group; kills the group
/// after `timeout`. Success is exit status 0.
pub fn run(
    hook: &'static str,
    command: &str,
    env: &[(&str, String)],
    timeout: Duration,
) -> Result<(), HookError> {
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(command)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|source| HookError::Spawn { hook, source })?;
    let stderr = child.stderr.take();
    // Drain stderr on a thread so a chatty hook cannot block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        if let Some(mut s) = stderr {
            let mut buf = [0u8; 4096];
            while let Ok(n) = s.read(&mut buf) {
                if n == 0 {
                    break;
                }
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 4 * STDERR_KEPT {
                    kept.drain(..kept.len() - STDERR_KEPT);
                }
            }
        }
        let text = String::from_utf8_lossy(&kept).into_owned();
        let start = text.len().saturating_sub(STDERR_KEPT);
        let start = (start..text.len())
            .find(|&i| text.is_char_boundary(i))
            .unwrap_or(text.len());
        text[start..].to_owned()
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => break None,
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(source) => return Err(HookError::Spawn { hook, source }),
        }
    };
    let Some(status) = status else {
        // The whole group (the hook leads it): its children must not outlive it.
        if let Ok(pgid) = i32::try_from(child.id()) {
            if pgid > 1 {
                let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::TimedOut {
            hook,
            after: timeout,
        });
    };
    let stderr = reader.join().unwrap_or_default();
    if status.success() {
        tracing::debug!(hook, "hook succeeded");
        Ok(())
    } else {
        Err(HookError::Failed {
            hook,
            code: status
                .code()
                .map_or_else(|| "a signal".to_owned(), |c| format!("status {c}")),
            stderr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_failure_env_and_timeout() {
        let t = Duration::from_secs(10);
        run("health", "exit 0", &[], t).expect("exit 0 succeeds");
        let env = [("POLLEN_SLOT", "/x/slot-b".to_owned())];
        run("health", r#"test "$POLLEN_SLOT" = /x/slot-b"#, &env, t).expect("env passed");
        match run("health", "echo broken >&2; exit 3", &[], t) {
            Err(HookError::Failed { code, stderr, .. }) => {
                assert_eq!(code, "status 3");
                assert_eq!(stderr.trim(), "broken");
            }
            other => panic!("{other:?}"),
        }
        let started = Instant::now();
        match run("install", "sleep 30", &[], Duration::from_millis(300)) {
            Err(HookError::TimedOut { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "hook not killed"
        );
    }
}
