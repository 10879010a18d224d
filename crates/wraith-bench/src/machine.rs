//! Facts about the machine and the limits the bench runs under, recorded
//! with the results so that figures from different machines are not
//! compared blindly.

use serde::Serialize;

#[derive(Debug, Serialize)]
pub(crate) struct Machine {
    pub(crate) cpu_model: String,
    /// Logical CPUs available to the bench.
    pub(crate) cpus: usize,
    /// Whether /proc/cpuinfo lists the `aes` flag (AES-NI or equivalent).
    pub(crate) aes_flag: bool,
    pub(crate) kernel: String,
    pub(crate) mem_total_kib: Option<u64>,
}

impl Machine {
    pub(crate) fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        Self {
            cpu_model: cpu_model(&cpuinfo).unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            aes_flag: has_aes_flag(&cpuinfo),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "unknown".into()),
            mem_total_kib: std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))?
                    .split_whitespace()
                    .next()?
                    .parse()
                    .ok()
            }),
        }
    }
}

fn cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// The `aes` flag on a `flags` (x86) or `Features` (arm) line.
fn has_aes_flag(cpuinfo: &str) -> bool {
    cpuinfo
        .lines()
        .filter(|l| l.starts_with("flags") || l.starts_with("Features"))
        .filter_map(|l| l.split_once(':'))
        .any(|(_, v)| v.split_whitespace().any(|f| f == "aes"))
}

/// Raises the soft RLIMIT_NOFILE as far as allowed (the hard limit too when
/// privileged), so the idle figure can hold many connections; the tunnel
/// processes inherit it. Returns the soft limit in force afterwards.
pub(crate) fn raise_nofile(wanted: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 1024;
    };
    if wanted > hard && setrlimit(Resource::RLIMIT_NOFILE, wanted, wanted).is_ok() {
        return wanted;
    }
    if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        return hard;
    }
    soft
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpuinfo_model_and_aes_flag() {
        let x86 = "processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu sse2 aes avx\n";
        assert_eq!(cpu_model(x86).as_deref(), Some("AMD EPYC"));
        assert!(has_aes_flag(x86));
        assert!(!has_aes_flag("flags\t\t: fpu sse2 vaes_x avx\n"));
        assert!(has_aes_flag("Features\t: fp asimd aes pmull\n"));
    }
}
