//! The bench client's own CPU use (getrusage), reported beside the numbers so a reader can tell
//! whether the client, not the server, was the bottleneck; and the machine's load average.

use std::time::Duration;

/// User and system CPU time consumed by this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time in user mode.
    pub user: Duration,
    /// Time in the kernel on our behalf.
    pub system: Duration,
}

/// getrusage(RUSAGE_SELF). Zero if the call fails (it cannot for RUSAGE_SELF on Linux).
#[allow(unsafe_code)]
pub fn cpu_time() -> CpuTime {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` points to writable memory of the right type for the duration of the call;
    // getrusage fully initialises it on success, and we read it only then.
    let ok = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) } == 0;
    if !ok {
        return CpuTime::default();
    }
    // SAFETY: initialised by the successful call above (and zeroed before it in any case).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    CpuTime {
        user: tv(ru.ru_utime),
        system: tv(ru.ru_stime),
    }
}

impl CpuTime {
    /// CPU used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }

    /// User + system.
    pub fn total(self) -> Duration {
        self.user + self.system
    }
}

/// The 1, 5 and 15 minute load averages from /proc/loadavg (zeros where unavailable).
pub fn load_average() -> [f64; 3] {
    let text = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut out = [0.0; 3];
    for (slot, word) in out.iter_mut().zip(text.split_whitespace()) {
        *slot = word.parse().unwrap_or(0.0);
    }
    out
}

/// Number of CPUs the machine reports.
pub fn cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
