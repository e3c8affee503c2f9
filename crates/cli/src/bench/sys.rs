//! CPU time and memory: the generator's own (getrusage) and the broker's (/proc/PID).

use std::time::Duration;

use nix::sys::resource::{getrlimit, getrusage, setrlimit, Resource, UsageWho};

/// The generator's user + system CPU time so far.
pub fn self_cpu() -> Duration {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => {
            let t = |tv: nix::sys::time::TimeVal| {
                Duration::new(
                    tv.tv_sec().max(0) as u64,
                    (tv.tv_usec().max(0) as u32) * 1000,
                )
            };
            t(u.user_time()) + t(u.system_time())
        }
        Err(_) => Duration::ZERO,
    }
}

/// Kernel clock ticks per second of /proc/PID/stat (USER_HZ, 100 on every Linux ABI).
const USER_HZ: u64 = 100;

/// A process's user + system CPU time from /proc/PID/stat.
pub fn proc_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: count fields after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_ascii_whitespace();
    // Fields 14 and 15 of the file (utime, stime) are the 12th and 13th after the name.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 1000 / USER_HZ))
}

/// A process's resident memory in KiB (VmRSS of /proc/PID/status).
pub fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Raises the open-file limit so that `want` sockets fit; returns the limit in force.
pub fn raise_nofile(want: u64) -> u64 {
    let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) else {
        return 0;
    };
    if soft >= want {
        return soft;
    }
    // Root may raise the hard limit too; otherwise go as far as the hard limit allows.
    if want > hard && setrlimit(Resource::RLIMIT_NOFILE, want, want).is_ok() {
        return want;
    }
    let new = want.min(hard);
    if setrlimit(Resource::RLIMIT_NOFILE, new, hard).is_ok() {
        new
    } else {
        soft
    }
}

/// CPU used by the generator and (with a PID) the broker over one measured interval.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    own: Duration,
    broker: Option<(u32, Duration)>,
}

/// The result of a [`CpuMeter`]: seconds of CPU and the broker's memory at the end.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuUse {
    pub generator_secs: f64,
    pub broker_secs: Option<f64>,
    pub broker_rss_kib: Option<u64>,
}

impl CpuMeter {
    pub fn start(broker_pid: Option<u32>) -> CpuMeter {
        CpuMeter {
            own: self_cpu(),
            broker: broker_pid.and_then(|p| proc_cpu(p).map(|c| (p, c))),
        }
    }

    pub fn stop(&self) -> CpuUse {
        CpuUse {
            generator_secs: (self_cpu().saturating_sub(self.own)).as_secs_f64(),
            broker_secs: self.broker.and_then(|(pid, before)| {
                proc_cpu(pid).map(|now| now.saturating_sub(before).as_secs_f64())
            }),
            broker_rss_kib: self.broker.and_then(|(pid, _)| proc_rss_kib(pid)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let pid = std::process::id();
        assert!(proc_rss_kib(pid).unwrap() > 0);
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        assert_ne!(x, 1);
        assert!(proc_cpu(pid).is_some());
        assert!(self_cpu() > Duration::ZERO);
    }
}
