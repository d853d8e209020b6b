//! CPU seconds of a server's whole process tree from /proc (Linux), so the table can show what
//! each server spent per command. Dovecot forks a process per role and per session; a process
//! that exited and was reaped moves its time into its parent's `cutime`/`cstime`, so summing
//! utime+stime+cutime+cstime over the live tree stays consistent between two snapshots.

use std::collections::HashMap;

/// Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds used so far by `root` and its live descendants (and reaped ones via c*time).
pub fn tree_cpu(root: u32) -> f64 {
    tree_ticks(root) as f64 / TICKS_PER_SEC
}

/// [`tree_cpu`] in whole clock ticks: sums of parts compare exactly, with no float rounding
/// (0.69 s + 5.36 s is not 6.05 s in f64).
pub fn tree_ticks(root: u32) -> u64 {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    let mut ticks: HashMap<u32, u64> = HashMap::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if let Some((ppid, t)) = parse_stat(&stat) {
            children.entry(ppid).or_default().push(pid);
            ticks.insert(pid, t);
        }
    }
    let mut total = 0u64;
    let mut stack = vec![root];
    // Bounded by the number of processes read above.
    let mut budget = ticks.len() + 1;
    while let Some(p) = stack.pop() {
        if budget == 0 {
            break;
        }
        budget -= 1;
        total += ticks.get(&p).copied().unwrap_or(0);
        if let Some(c) = children.get(&p) {
            stack.extend(c);
        }
    }
    total
}

/// CPU seconds used so far by `pid` alone (with its reaped children), 0 when it is gone.
pub fn process_cpu(pid: u32) -> f64 {
    process_ticks(pid) as f64 / TICKS_PER_SEC
}

/// [`process_cpu`] in whole clock ticks.
pub fn process_ticks(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .map_or(0, |(_, t)| t)
}

/// (ppid, utime+stime+cutime+cstime) from one /proc/<pid>/stat line (proc(5)).
fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): ppid is field 4, utime..cstime are fields 14..=17.
    let ppid = f.get(1)?.parse().ok()?;
    let sum = (11..=14)
        .filter_map(|i| f.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    Some((ppid, sum))
}

/// A one-line description of the machine for the table's caption.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    format!(
        "{} cores of {model}, {} GiB RAM",
        crate::rusage::cpus(),
        mem_kb / (1024 * 1024)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_spaces_in_name() {
        let line = "42 (imap-login (x)) S 7 42 42 0 -1 4194560 100 0 0 0 15 5 3 2 20 0 1 0 100 0 0";
        assert_eq!(parse_stat(line), Some((7, 15 + 5 + 3 + 2)));
    }

    /// The tree total includes the root's own CPU, as getrusage (an independent source) counts
    /// it. Burns CPU until getrusage shows a clearly measurable amount (bounded by a deadline),
    /// then reads the tree: both only grow, so the tree must hold at least that much, less the
    /// rounding of /proc's clock ticks.
    #[test]
    fn own_tree_counts_this_process_cpu() {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let mut x = 0u64;
        while crate::rusage::cpu_time().total() < std::time::Duration::from_millis(300)
            && std::time::Instant::now() < deadline
        {
            for i in 0..100_000u64 {
                x = x.wrapping_add(i.wrapping_mul(i));
            }
            std::hint::black_box(x);
        }
        let used = crate::rusage::cpu_time().total().as_secs_f64();
        let tree = tree_cpu(std::process::id());
        assert!(used >= 0.3, "burned only {used} s of CPU before the deadline");
        // utime and stime are each truncated to whole ticks.
        let rounding = 2.0 / TICKS_PER_SEC;
        assert!(
            tree + rounding >= used,
            "tree {tree} s < this process's {used} s (getrusage)"
        );
    }

    /// `mailraft dev --nodes N` runs its storage nodes as direct children: their CPU must be in
    /// the parent's tree total while they are alive (not only after they are reaped).
    #[test]
    fn tree_counts_live_direct_children() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "while :; do :; done"])
            .spawn()
            .expect("spawn sh");
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        // Wait (bounded) until the child has used a clearly measurable amount of CPU.
        while process_cpu(pid) < 0.3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let me = std::process::id();
        // Read in this order: both times only grow, so tree >= own + child must hold.
        let own = process_ticks(me);
        let theirs = process_ticks(pid);
        let tree = tree_ticks(me);
        let _ = child.kill();
        let _ = child.wait();
        assert!(theirs >= 30, "child used only {theirs} ticks");
        assert!(
            tree >= own + theirs,
            "tree {tree} ticks < own {own} + child {theirs} ticks"
        );
    }
}
