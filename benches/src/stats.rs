//! Shared measurements of a run: per-operation latency histograms (HDR, microseconds),
//! per-second counts for imaptest-style lines, errors by kind and consistency violations.
//!
//! Sessions call [`Recorder::record`] after each command; a mutex is enough at the rates two
//! cores can generate (a lock costs tens of nanoseconds against a network round trip).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::checks::Violation;
use crate::rusage::CpuTime;

/// Operations measured; the first eleven are imaptest's `mix` columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Op {
    /// LOGIN / AUTHENTICATE.
    Login,
    /// LIST "" *.
    List,
    /// STATUS.
    Status,
    /// SELECT.
    Select,
    /// FETCH of flags/uid for a range.
    Fetch,
    /// FETCH of one whole message.
    Fetch2,
    /// STORE flags.
    Store,
    /// STORE \Deleted.
    Delete,
    /// EXPUNGE.
    Expunge,
    /// APPEND.
    Append,
    /// LOGOUT.
    Logout,
    /// LMTP delivery.
    Lmtp,
    /// Time from a writer's tagged OK to an IDLE session's EXISTS.
    Notify,
    /// SEARCH.
    Search,
    /// CONDSTORE/QRESYNC resync.
    Resync,
}

impl Op {
    /// Every op, in column order.
    pub const ALL: [Op; 15] = [
        Op::Login,
        Op::List,
        Op::Status,
        Op::Select,
        Op::Fetch,
        Op::Fetch2,
        Op::Store,
        Op::Delete,
        Op::Expunge,
        Op::Append,
        Op::Logout,
        Op::Lmtp,
        Op::Notify,
        Op::Search,
        Op::Resync,
    ];

    /// imaptest's 4-letter column header.
    pub fn short(self) -> &'static str {
        match self {
            Op::Login => "Logi",
            Op::List => "List",
            Op::Status => "Stat",
            Op::Select => "Sele",
            Op::Fetch => "Fetc",
            Op::Fetch2 => "Fet2",
            Op::Store => "Stor",
            Op::Delete => "Dele",
            Op::Expunge => "Expu",
            Op::Append => "Appe",
            Op::Logout => "Logo",
            Op::Lmtp => "Lmtp",
            Op::Notify => "Noti",
            Op::Search => "Srch",
            Op::Resync => "Rsyn",
        }
    }

    /// A lowercase name for JSON and tables.
    pub fn name(self) -> &'static str {
        match self {
            Op::Login => "login",
            Op::List => "list",
            Op::Status => "status",
            Op::Select => "select",
            Op::Fetch => "fetch",
            Op::Fetch2 => "fetch2",
            Op::Store => "store",
            Op::Delete => "delete",
            Op::Expunge => "expunge",
            Op::Append => "append",
            Op::Logout => "logout",
            Op::Lmtp => "lmtp",
            Op::Notify => "notify",
            Op::Search => "search",
            Op::Resync => "resync",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How many violations are kept with details; all are counted.
const KEEP_VIOLATIONS: usize = 1000;

/// Everything measured, behind one lock.
#[derive(Debug)]
pub struct Data {
    /// Latency per op, microseconds.
    pub hist: BTreeMap<Op, Histogram<u64>>,
    /// Completed ops per second of the run, indexed by `Op as usize`.
    pub per_sec: Vec<[u64; Op::ALL.len()]>,
    /// Errors by kind (e.g. `timeout`, `NO append`).
    pub errors: BTreeMap<String, u64>,
    /// Kept violations (first [`KEEP_VIOLATIONS`]).
    pub violations: Vec<Violation>,
    /// Number of violations, including those not kept.
    pub violation_count: u64,
    /// Named counters (e.g. `notifications missed`).
    pub counters: BTreeMap<String, u64>,
    /// Named one-off timings in microseconds (bigbox phases).
    pub timings: BTreeMap<String, Vec<u64>>,
}

/// The shared recorder.
#[derive(Debug)]
pub struct Recorder {
    /// When the measured phase started (reset by [`Recorder::begin`] after a workload's setup).
    start: Mutex<Instant>,
    /// Flips to true at [`Recorder::begin`]; the ticker waits for it.
    began: tokio::sync::watch::Sender<bool>,
    /// Set by [`Recorder::end`].
    end: Mutex<Option<Instant>>,
    /// The client's CPU time at [`Recorder::begin`] and at [`Recorder::end`].
    cpu: Mutex<(CpuTime, Option<CpuTime>)>,
    data: Mutex<Data>,
}

impl Recorder {
    /// A recorder whose second 0 starts now.
    pub fn new() -> Recorder {
        Recorder {
            start: Mutex::new(Instant::now()),
            began: tokio::sync::watch::Sender::new(false),
            end: Mutex::new(None),
            cpu: Mutex::new((crate::rusage::cpu_time(), None)),
            data: Mutex::new(Data {
                hist: BTreeMap::new(),
                per_sec: Vec::new(),
                errors: BTreeMap::new(),
                violations: Vec::new(),
                violation_count: 0,
                counters: BTreeMap::new(),
                timings: BTreeMap::new(),
            }),
        }
    }

    /// Starts the measured phase now: second 0 of the per-second lines, and the deadline.
    pub fn begin(&self) {
        *self.start.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        *self.cpu.lock().unwrap_or_else(|p| p.into_inner()) = (crate::rusage::cpu_time(), None);
        // Setup commands counted so far would land in wrong seconds; their latencies stay.
        self.lock().per_sec.clear();
        self.began.send_replace(true);
    }

    /// Ends the measured phase now (end-of-run checks that follow do not dilute rates).
    pub fn end(&self) {
        let mut end = self.end.lock().unwrap_or_else(|p| p.into_inner());
        if end.is_none() {
            *end = Some(Instant::now());
            self.cpu.lock().unwrap_or_else(|p| p.into_inner()).1 = Some(crate::rusage::cpu_time());
        }
    }

    /// The client's own CPU use during the measured phase.
    pub fn cpu_used(&self) -> CpuTime {
        let (start, end) = *self.cpu.lock().unwrap_or_else(|p| p.into_inner());
        end.unwrap_or_else(crate::rusage::cpu_time).since(start)
    }

    /// Length of the measured phase: start to [`Recorder::end`], or to now if not ended.
    pub fn measured(&self) -> Duration {
        let end =
            (*self.end.lock().unwrap_or_else(|p| p.into_inner())).unwrap_or_else(Instant::now);
        end.saturating_duration_since(self.start())
    }

    /// When the measured phase started (creation time until [`Recorder::begin`]).
    pub fn start(&self) -> Instant {
        *self.start.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Resolves once [`Recorder::begin`] was called.
    pub async fn began(&self) {
        let mut rx = self.began.subscribe();
        let _ = rx.wait_for(|b| *b).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        // A panicking session must not stop the measurement of the others.
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records one completed op that took `took`, finishing now.
    pub fn record(&self, op: Op, took: Duration) {
        let sec = self.start().elapsed().as_secs() as usize;
        let us = (took.as_micros() as u64).max(1);
        let mut d = self.lock();
        if let Some(h) = hist_entry(&mut d.hist, op) {
            // Values above the histogram's range are clamped rather than lost.
            let _ = h.record(us.min(h.high()));
        }
        if d.per_sec.len() <= sec {
            d.per_sec.resize(sec + 1, [0; Op::ALL.len()]);
        }
        d.per_sec[sec][op.index()] += 1;
    }

    /// Counts an error of `kind`.
    pub fn error(&self, kind: impl Into<String>) {
        *self.lock().errors.entry(kind.into()).or_insert(0) += 1;
    }

    /// Records violations.
    pub fn violations(&self, v: Vec<Violation>) {
        if v.is_empty() {
            return;
        }
        let mut d = self.lock();
        for x in v {
            d.violation_count += 1;
            if d.violations.len() < KEEP_VIOLATIONS {
                d.violations.push(x);
            }
        }
    }

    /// Adds to a named counter.
    pub fn count(&self, name: &str, n: u64) {
        *self.lock().counters.entry(name.to_string()).or_insert(0) += n;
    }

    /// Records a named one-off timing.
    pub fn timing(&self, name: &str, took: Duration) {
        self.lock()
            .timings
            .entry(name.to_string())
            .or_default()
            .push(took.as_micros() as u64);
    }

    /// Counts of second `sec` (zeros if nothing happened).
    pub fn second(&self, sec: usize) -> [u64; Op::ALL.len()] {
        self.lock()
            .per_sec
            .get(sec)
            .copied()
            .unwrap_or([0; Op::ALL.len()])
    }

    /// Number of violations so far.
    pub fn violation_count(&self) -> u64 {
        self.lock().violation_count
    }

    /// A copy of everything, for the report.
    pub fn snapshot(&self) -> Data {
        let d = self.lock();
        Data {
            hist: d.hist.clone(),
            per_sec: d.per_sec.clone(),
            errors: d.errors.clone(),
            violations: d.violations.clone(),
            violation_count: d.violation_count,
            counters: d.counters.clone(),
            timings: d.timings.clone(),
        }
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// The histogram of `op`, created on first use (1 µs .. 10 min at 3 significant digits).
fn hist_entry(map: &mut BTreeMap<Op, Histogram<u64>>, op: Op) -> Option<&mut Histogram<u64>> {
    use std::collections::btree_map::Entry;
    match map.entry(op) {
        Entry::Occupied(e) => Some(e.into_mut()),
        Entry::Vacant(v) => Histogram::new_with_bounds(1, 600_000_000, 3)
            .ok()
            .map(|h| v.insert(h)),
    }
}
