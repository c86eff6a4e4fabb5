//! What a run cost the machine: the process's peak resident memory (Linux:
//! `VmHWM` of `/proc/self/status`) and wall time, recorded in `run.json`
//! beside the command line, never in `summary.json` (which stays
//! byte-identical across runs of the same scenario and seed).

use serde::Serialize;

/// `run.json`'s record of the run's cost (written when the run ends).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Cost {
    /// Wall-clock seconds of the run (loading and writing results included).
    pub wall_s: f64,
    /// The process's peak resident memory, bytes (`None`: not on Linux).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes: Option<u64>,
    /// That divided by the simulated devices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peak_rss_bytes_per_device: Option<u64>,
}

impl Cost {
    /// The cost so far of a run of `devices` devices that took `wall_s`.
    pub fn now(wall_s: f64, devices: u64) -> Self {
        let peak = peak_rss_bytes();
        Self {
            wall_s,
            peak_rss_bytes: peak,
            peak_rss_bytes_per_device: peak.map(|p| p / devices.max(1)),
        }
    }
}

/// The process's peak resident set size in bytes, where the system says
/// (`/proc/self/status`, Linux).
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    parse_vm_hwm(&status)
}

/// `VmHWM:  1234 kB` of a `/proc/PID/status` text, in bytes.
fn parse_vm_hwm(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut parts = line["VmHWM:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next()? {
        "kB" => value.checked_mul(1024),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_hwm_is_read_in_bytes() {
        let status = "Name:\tpollen-sim\nVmPeak:\t  999 kB\nVmHWM:\t  171236 kB\nVmRSS:\t 1 kB\n";
        assert_eq!(parse_vm_hwm(status), Some(171_236 * 1024));
        assert_eq!(parse_vm_hwm("VmHWM:\t12 MB\n"), None, "unknown unit");
        assert_eq!(parse_vm_hwm("VmRSS:\t12 kB\n"), None, "no VmHWM line");
        assert_eq!(parse_vm_hwm("VmHWM:\tlots kB\n"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_has_a_peak() {
        let peak = peak_rss_bytes().expect("Linux reports VmHWM");
        assert!(peak > 0);
        let cost = Cost::now(1.5, 4);
        assert_eq!(cost.peak_rss_bytes_per_device.map(|b| b > 0), Some(true));
    }
}
