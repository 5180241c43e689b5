//! Readers of /proc: a process's CPU times, run-queue wait and resident
//! memory (Linux; `None` elsewhere).

/// Clock ticks per second of /proc/PID/stat times (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// CPU seconds of a process, all threads: in user space and in the kernel.
#[derive(Clone, Copy, Debug)]
pub(super) struct CpuTimes {
    pub(super) user: f64,
    pub(super) system: f64,
}

impl CpuTimes {
    pub(super) fn total(&self) -> f64 {
        self.user + self.system
    }
}

/// User and system CPU seconds of a process (`self` or a pid), all threads.
pub(super) fn proc_cpu_secs(pid: &str) -> Option<CpuTimes> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from its closing ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, utime 14, stime 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(CpuTimes {
        user: utime as f64 / USER_HZ,
        system: stime as f64 / USER_HZ,
    })
}

/// Seconds the threads of a process spent runnable but waiting for a CPU
/// (second field of /proc/PID/task/TID/schedstat), summed over its threads.
pub(super) fn proc_runq_wait_secs(pid: &str) -> Option<f64> {
    let mut total = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()? {
        let path = task.ok()?.path().join("schedstat");
        if let Ok(s) = std::fs::read_to_string(path) {
            total += s.split_whitespace().nth(1)?.parse::<u64>().ok()?;
        }
    }
    Some(total as f64 / 1e9)
}

/// Resident memory of a process in KiB (`VmRSS`).
pub(super) fn proc_rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_readers() {
        if cfg!(target_os = "linux") {
            assert!(proc_cpu_secs("self").is_some());
            assert!(proc_rss_kb(std::process::id()).is_some());
            assert!(proc_runq_wait_secs("self").is_some());
        }
    }
}
