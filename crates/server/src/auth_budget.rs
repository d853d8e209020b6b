//! Failure budgets against password guessing, per source address and per login.
//!
//! Every Authenticate that fails costs its source (the client IP the front-end reports; IPv6
//! by /64, since one host usually owns a whole /64) and its login one failure. Failures are
//! forgotten `window` after the last one. Once a key has `delay_after` failures, each further
//! attempt of that key waits for a slot: slots are `delay` apart, the delay doubling with every
//! failure up to `max_delay`, so parallel guesses from one key are serialized instead of
//! racing. An attempt whose slot is further off than `max_delay` is refused at once. At
//! `block_after` failures the key is blocked for `block_for`. A blocked, or too-far-queued,
//! attempt is answered without any argon2 work (RFC 5530 `UNAVAILABLE` on the IMAP side).
//!
//! A success clears the login's record (its owner is back), never the source's: otherwise an
//! attacker with one valid account could reset its own address between guesses.
//!
//! Where it holds: every Authenticate is served by the group's leader (a follower answers
//! NOT_LEADER before any of this runs), so all front-ends feed one table and spreading the
//! guesses over front-ends gains nothing. The table lives in the leader's memory: a new leader
//! starts empty, which an operator sees as the blocks disappearing from `auth-blocks`.
//!
//! Memory: at most `max_tracked` keys. Expired records are swept when the table is full; if it
//! is still full, new keys are not tracked (counted in `mailraft_auth_untracked_total`): the
//! keys already known keep their budgets, and the login budget still applies to new sources.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::metrics;

/// Budgets and delays; see the module docs. Configured under `[limits]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthBudgetConfig {
    /// Failures of a key before its attempts are spaced by a delay.
    pub delay_after: u32,
    /// The first delay; doubles with each further failure.
    pub delay: Duration,
    /// Longest delay between two attempts of one key, and longest wait for a slot.
    pub max_delay: Duration,
    /// Failures from one source address before it is blocked.
    pub source_block_after: u32,
    /// Failures on one login (from any source) before it is blocked.
    pub login_block_after: u32,
    /// How long a block lasts.
    pub block_for: Duration,
    /// Failures are forgotten this long after a key's last one.
    pub window: Duration,
    /// Most keys (sources plus logins) remembered at once.
    pub max_tracked: usize,
}

impl Default for AuthBudgetConfig {
    fn default() -> Self {
        AuthBudgetConfig {
            delay_after: 3,
            delay: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            source_block_after: 30,
            login_block_after: 15,
            block_for: Duration::from_secs(15 * 60),
            window: Duration::from_secs(15 * 60),
            max_tracked: 100_000,
        }
    }
}

/// What a budget is kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A client address (IPv4, or an IPv6 /64 prefix with the host bits zeroed).
    Source(IpAddr),
    /// A canonical login, `user@domain`, whether or not it exists.
    Login(String),
}

impl Key {
    /// The source key of `ip`: IPv4 as is (also when mapped into IPv6), IPv6 by /64.
    pub fn source(ip: IpAddr) -> Key {
        match ip {
            IpAddr::V4(v4) => Key::Source(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Key::Source(IpAddr::V4(v4)),
                None => {
                    let bits = u128::from(v6) & !((1u128 << 64) - 1);
                    Key::Source(IpAddr::V6(bits.into()))
                }
            },
        }
    }

    /// `source` or `login`, for metrics labels and the admin listing.
    pub fn kind(&self) -> &'static str {
        match self {
            Key::Source(_) => "source",
            Key::Login(_) => "login",
        }
    }

    /// The address (`/64` for IPv6) or the login, for the admin listing.
    pub fn value(&self) -> String {
        match self {
            Key::Source(IpAddr::V4(v4)) => v4.to_string(),
            Key::Source(IpAddr::V6(v6)) => format!("{v6}/64"),
            Key::Login(login) => login.clone(),
        }
    }
}

/// One key's failures.
#[derive(Debug, Clone)]
struct Record {
    failures: u32,
    last_failure: Instant,
    /// The earliest start of the next attempt.
    next_slot: Instant,
    blocked_until: Option<Instant>,
    /// Wall-clock end of the block, for operators.
    blocked_until_wall: Option<SystemTime>,
}

/// The verdict on one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// Check the password after waiting this long (zero for keys without failures).
    Proceed(Duration),
    /// Answer without checking: the key is blocked, or its queue is too long.
    Refuse(&'static str),
}

/// A blocked key, as the admin listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// Which key.
    pub key: Key,
    /// Its failures in the current window.
    pub failures: u32,
    /// When the block ends.
    pub until: SystemTime,
}

/// The failure table; see the module docs.
#[derive(Debug)]
pub struct AuthBudget {
    config: AuthBudgetConfig,
    records: Mutex<HashMap<Key, Record>>,
}

impl AuthBudget {
    /// An empty table.
    pub fn new(config: AuthBudgetConfig) -> Self {
        AuthBudget { config, records: Mutex::new(HashMap::new()) }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Record>> {
        // Every update leaves the map consistent, so a panic elsewhere cannot corrupt it.
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The delay a key with `failures` failures puts between its attempts.
    fn delay_for(&self, failures: u32) -> Duration {
        let Some(over) = failures.checked_sub(self.config.delay_after) else {
            return Duration::ZERO;
        };
        let factor = 1u32.checked_shl(over.min(31)).unwrap_or(u32::MAX);
        self.config.delay.saturating_mul(factor).min(self.config.max_delay)
    }

    /// Decides on an attempt by all of `keys` (its source and login) and, when it may proceed
    /// after a delay, reserves its slot in every delayed key.
    pub fn admit(&self, keys: &[Key], now: Instant) -> Admission {
        let mut records = self.records();
        let mut start = now;
        for key in keys {
            let Some(r) = records.get_mut(key) else { continue };
            if now.duration_since(r.last_failure) > self.config.window && r.blocked_until.is_none_or(|b| b <= now) {
                records.remove(key);
                continue;
            }
            if let Some(until) = r.blocked_until {
                if until > now {
                    metrics::auth_refused(key.kind(), "blocked");
                    return Admission::Refuse("blocked");
                }
                // The block is over: the key starts again with a clean budget.
                records.remove(key);
                continue;
            }
            if self.delay_for(r.failures) > Duration::ZERO {
                start = start.max(r.next_slot);
            }
        }
        let wait = start.saturating_duration_since(now);
        if wait > self.config.max_delay {
            metrics::auth_refused("any", "queue");
            return Admission::Refuse("too many attempts queued");
        }
        for key in keys {
            if let Some(r) = records.get_mut(key) {
                let delay = self.delay_for(r.failures);
                if delay > Duration::ZERO {
                    r.next_slot = start + delay;
                }
            }
        }
        if wait > Duration::ZERO {
            metrics::auth_delayed(wait);
        }
        Admission::Proceed(wait)
    }

    /// Records a failed attempt of `keys`; blocks keys that reach their budget.
    pub fn failed(&self, keys: &[Key], now: Instant) {
        let mut records = self.records();
        for key in keys {
            if !records.contains_key(key) && !self.make_room(&mut records, now) {
                metrics::auth_untracked();
                continue;
            }
            let r = records.entry(key.clone()).or_insert(Record {
                failures: 0,
                last_failure: now,
                next_slot: now,
                blocked_until: None,
                blocked_until_wall: None,
            });
            if now.duration_since(r.last_failure) > self.config.window {
                r.failures = 0;
            }
            r.failures = r.failures.saturating_add(1);
            r.last_failure = now;
            r.next_slot = r.next_slot.max(now + self.delay_for(r.failures));
            let limit = match key {
                Key::Source(_) => self.config.source_block_after,
                Key::Login(_) => self.config.login_block_after,
            };
            if r.failures >= limit && r.blocked_until.is_none() {
                r.blocked_until = Some(now + self.config.block_for);
                r.blocked_until_wall = Some(SystemTime::now() + self.config.block_for);
                metrics::auth_blocked(key.kind());
                // The login may be an attacker's guess, but it is what the operator needs to see.
                tracing::warn!(kind = key.kind(), key = %key.value(), failures = r.failures, "authentication blocked");
            }
        }
    }

    /// Records a success for `login`: its owner proved the password, so its record goes.
    pub fn succeeded(&self, login: &Key) {
        if matches!(login, Key::Login(_)) {
            self.records().remove(login);
        }
    }

    /// Frees a slot for a new key if the table is full; false when it stays full.
    fn make_room(&self, records: &mut HashMap<Key, Record>, now: Instant) -> bool {
        if records.len() < self.config.max_tracked {
            return true;
        }
        let window = self.config.window;
        records.retain(|_, r| {
            let blocked = r.blocked_until.is_some_and(|b| b > now);
            blocked || now.duration_since(r.last_failure) <= window
        });
        records.len() < self.config.max_tracked
    }

    /// The keys blocked now, most recent block first.
    pub fn blocked(&self, now: Instant) -> Vec<Blocked> {
        let records = self.records();
        let mut out: Vec<Blocked> = records
            .iter()
            .filter(|(_, r)| r.blocked_until.is_some_and(|b| b > now))
            .filter_map(|(k, r)| Some(Blocked { key: k.clone(), failures: r.failures, until: r.blocked_until_wall? }))
            .collect();
        out.sort_by(|a, b| b.until.cmp(&a.until).then_with(|| a.key.cmp(&b.key)));
        out
    }

    /// Forgets `key` (block and failures); true if it was known.
    pub fn lift(&self, key: &Key) -> bool {
        let lifted = self.records().remove(key).is_some();
        if lifted {
            tracing::info!(kind = key.kind(), key = %key.value(), "authentication block lifted by an operator");
        }
        lifted
    }

    /// Forgets every record; returns how many there were.
    pub fn lift_all(&self) -> usize {
        let mut records = self.records();
        let n = records.len();
        records.clear();
        tracing::info!(records = n, "all authentication blocks lifted by an operator");
        n
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> AuthBudgetConfig {
        AuthBudgetConfig {
            delay_after: 2,
            delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            source_block_after: 6,
            login_block_after: 4,
            block_for: Duration::from_secs(60),
            window: Duration::from_secs(300),
            max_tracked: 100,
        }
    }

    fn ip(s: &str) -> Key {
        Key::source(s.parse().unwrap())
    }

    fn login(s: &str) -> Key {
        Key::Login(s.into())
    }

    #[test]
    fn ipv6_counts_by_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
        assert_eq!(ip("::ffff:192.0.2.7"), ip("192.0.2.7"));
        assert_eq!(ip("2001:db8:1:2:aaaa::1").value(), "2001:db8:1:2::/64");
    }

    #[test]
    fn delays_grow_serialize_and_block() {
        let b = AuthBudget::new(config());
        let t = Instant::now();
        let keys = [ip("192.0.2.1"), login("a@x")];
        // Two free failures.
        for _ in 0..2 {
            assert_eq!(b.admit(&keys, t), Admission::Proceed(Duration::ZERO));
            b.failed(&keys, t);
        }
        // Third attempt: the key is over `delay_after`, so attempts are 100 ms apart.
        assert_eq!(b.admit(&keys, t), Admission::Proceed(Duration::from_millis(100)));
        // A parallel attempt gets the next slot, not the same one.
        assert_eq!(b.admit(&keys, t), Admission::Proceed(Duration::from_millis(200)));
        b.failed(&keys, t);
        b.failed(&keys, t);
        // Four failures: the login is blocked, whatever the source.
        assert_eq!(b.admit(&[ip("198.51.100.1"), login("a@x")], t), Admission::Refuse("blocked"));
        // Another login from the same source is only delayed (the source has 4 of its 6).
        assert!(matches!(b.admit(&[ip("192.0.2.1"), login("b@x")], t), Admission::Proceed(_)));
        let blocked = b.blocked(t);
        assert_eq!(blocked.len(), 1);
        assert_eq!(blocked[0].key, login("a@x"));
        assert_eq!(blocked[0].failures, 4);
        // The block ends after `block_for`.
        assert_eq!(b.admit(&[login("a@x")], t + Duration::from_secs(61)), Admission::Proceed(Duration::ZERO));
    }

    #[test]
    fn a_long_queue_is_refused_without_waiting() {
        let b = AuthBudget::new(config());
        let t = Instant::now();
        let keys = [ip("192.0.2.2")];
        for _ in 0..3 {
            b.failed(&keys, t);
        }
        // 200 ms per attempt, at most 1 s of queue.
        let mut admitted = 0;
        while let Admission::Proceed(_) = b.admit(&keys, t) {
            admitted += 1;
            assert!(admitted < 100, "the queue never filled");
        }
        assert_eq!(b.admit(&keys, t), Admission::Refuse("too many attempts queued"));
        assert!(admitted <= 6, "{admitted}");
    }

    #[test]
    fn success_clears_the_login_but_not_the_source() {
        let b = AuthBudget::new(config());
        let t = Instant::now();
        let keys = [ip("192.0.2.3"), login("c@x")];
        for _ in 0..3 {
            b.failed(&keys, t);
        }
        b.succeeded(&login("c@x"));
        assert_eq!(b.admit(&[ip("203.0.113.9"), login("c@x")], t), Admission::Proceed(Duration::ZERO));
        assert!(matches!(b.admit(&[ip("192.0.2.3")], t), Admission::Proceed(d) if d > Duration::ZERO));
    }

    #[test]
    fn failures_expire_and_operators_can_lift_blocks() {
        let b = AuthBudget::new(config());
        let t = Instant::now();
        let keys = [ip("192.0.2.4")];
        for _ in 0..6 {
            b.failed(&keys, t);
        }
        assert_eq!(b.admit(&keys, t), Admission::Refuse("blocked"));
        assert!(b.lift(&ip("192.0.2.4")));
        assert!(!b.lift(&ip("192.0.2.4")));
        assert_eq!(b.admit(&keys, t), Admission::Proceed(Duration::ZERO));
        b.failed(&keys, t);
        b.failed(&keys, t);
        b.failed(&keys, t);
        assert!(matches!(b.admit(&keys, t), Admission::Proceed(d) if d > Duration::ZERO));
        assert_eq!(b.admit(&keys, t + Duration::from_secs(301)), Admission::Proceed(Duration::ZERO));
    }

    #[test]
    fn a_full_table_keeps_its_keys_and_sweeps_expired_ones() {
        let b = AuthBudget::new(AuthBudgetConfig { max_tracked: 2, ..config() });
        let t = Instant::now();
        b.failed(&[login("1@x"), login("2@x")], t);
        b.failed(&[login("3@x")], t);
        assert_eq!(b.records().len(), 2);
        assert!(!b.records().contains_key(&login("3@x")));
        // Once the old records expire, new keys fit again.
        b.failed(&[login("3@x")], t + Duration::from_secs(301));
        assert!(b.records().contains_key(&login("3@x")));
    }
}
