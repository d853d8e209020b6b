//! How many connections each source address holds before logging in.
//!
//! Before authentication a client costs us a socket, a task, buffers and (for TLS) a handshake,
//! and nothing yet ties it to an account. The per-address count bounds what one host can hold
//! that way, so one host cannot take all of `max_connections` with connections that never log
//! in. A connection takes a [`PreauthGuard`] at accept; the guard is given back when the session
//! authenticates or the connection ends, whichever comes first.
//!
//! Addresses are grouped the way hosts get them: an IPv4 address is one host, while an IPv6 host
//! usually has a whole /64 to pick addresses from, so the /64 prefix is the key. IPv4-mapped IPv6
//! addresses (dual-stack sockets) count as their IPv4 address.
//!
//! A site is commonly given a /48 (65 536 /64s), so the per-/64 bound alone would let one site
//! hold every slot. IPv6 connections therefore also count against their /48, which may hold
//! [`SITE_FACTOR`] times the per-source cap: a few hosts of one site can still connect at once,
//! but the site as a whole stays bounded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Arc, Mutex, PoisonError};

/// The unit one count applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKey {
    /// One IPv4 address.
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6Prefix(u64),
}

impl SourceKey {
    /// The key `ip` counts under.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(u32::from(v4)),
                None => SourceKey::V6Prefix(prefix64(&v6)),
            },
        }
    }
}

fn prefix64(v6: &Ipv6Addr) -> u64 {
    (u128::from(*v6) >> 64) as u64
}

/// How many times `max_preauth_per_ip` one IPv6 /48 may hold.
pub const SITE_FACTOR: usize = 4;

/// The /48 an IPv6 source key belongs to; IPv4 has no wider bound.
fn site_of(key: SourceKey) -> Option<u64> {
    match key {
        SourceKey::V4(_) => None,
        SourceKey::V6Prefix(prefix) => Some(prefix >> 16),
    }
}

/// Unauthenticated connections per source, shared by every listener of a server.
#[derive(Debug)]
pub struct PreauthLimiter {
    max_per_source: usize,
    /// Only sources with at least one connection: the maps never hold more entries than there
    /// are open connections.
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    sources: HashMap<SourceKey, usize>,
    /// Per IPv6 /48, bounded by `SITE_FACTOR * max_per_source`.
    sites: HashMap<u64, usize>,
}

impl PreauthLimiter {
    /// A limiter allowing `max_per_source` unauthenticated connections per source.
    pub fn new(max_per_source: usize) -> Arc<Self> {
        Arc::new(Self { max_per_source, counts: Mutex::default() })
    }

    /// Counts one more connection from `ip`, or `None` when the source is at its limit.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<PreauthGuard> {
        let key = SourceKey::of(ip);
        let site = site_of(key);
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if counts.sources.get(&key).copied().unwrap_or(0) >= self.max_per_source {
            return None;
        }
        if let Some(site) = site {
            let max_per_site = self.max_per_source.saturating_mul(SITE_FACTOR);
            if counts.sites.get(&site).copied().unwrap_or(0) >= max_per_site {
                return None;
            }
            *counts.sites.entry(site).or_insert(0) += 1;
        }
        *counts.sources.entry(key).or_insert(0) += 1;
        crate::metrics::preauth_connections(1.0);
        Some(PreauthGuard { limiter: self.clone(), key })
    }

    /// Unauthenticated connections currently counted for `ip`'s source.
    pub fn count(&self, ip: IpAddr) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.sources.get(&SourceKey::of(ip)).copied().unwrap_or(0)
    }

    fn release(&self, key: SourceKey) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        decrement(&mut counts.sources, key);
        if let Some(site) = site_of(key) {
            decrement(&mut counts.sites, site);
        }
        crate::metrics::preauth_connections(-1.0);
    }
}

/// Takes one from `key`'s count, forgetting the key at zero.
fn decrement<K: std::hash::Hash + Eq>(counts: &mut HashMap<K, usize>, key: K) {
    if let Some(count) = counts.get_mut(&key) {
        *count = count.saturating_sub(1);
        if *count == 0 {
            counts.remove(&key);
        }
    }
}

/// One unauthenticated connection; dropping it gives the slot back.
#[derive(Debug)]
pub struct PreauthGuard {
    limiter: Arc<PreauthLimiter>,
    key: SourceKey,
}

impl Drop for PreauthGuard {
    fn drop(&mut self) {
        self.limiter.release(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn counts_per_source_and_releases_on_drop() {
        let limiter = PreauthLimiter::new(2);
        let a = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        let _b = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_none());
        // Another host is not affected.
        let _c = limiter.try_acquire(ip("192.0.2.2")).unwrap();
        drop(a);
        assert_eq!(limiter.count(ip("192.0.2.1")), 1);
        let _d = limiter.try_acquire(ip("192.0.2.1")).unwrap();
        assert!(limiter.try_acquire(ip("192.0.2.1")).is_none());
    }

    #[test]
    fn forgets_sources_without_connections() {
        let limiter = PreauthLimiter::new(1);
        drop(limiter.try_acquire(ip("192.0.2.1")).unwrap());
        drop(limiter.try_acquire(ip("2001:db8::1")).unwrap());
        let counts = limiter.counts.lock().unwrap();
        assert!(counts.sources.is_empty() && counts.sites.is_empty());
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = PreauthLimiter::new(1);
        let _a = limiter.try_acquire(ip("2001:db8:1:2::1")).unwrap();
        assert!(limiter.try_acquire(ip("2001:db8:1:2:ffff::9")).is_none(), "same /64");
        assert!(limiter.try_acquire(ip("2001:db8:1:3::1")).is_some(), "another /64");
        let _b = limiter.try_acquire(ip("192.0.2.7")).unwrap();
        assert!(limiter.try_acquire(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn one_ipv6_site_is_bounded_per_48() {
        let limiter = PreauthLimiter::new(2);
        // Each /64 of the site stays under its own cap; the /48 fills after SITE_FACTOR * 2.
        let held: Vec<_> = (0..SITE_FACTOR * 2)
            .map(|i| limiter.try_acquire(ip(&format!("2001:db8:1:{:x}::1", i / 2))).unwrap())
            .collect();
        assert!(limiter.try_acquire(ip("2001:db8:1:ff::1")).is_none(), "the /48 is full");
        assert!(limiter.try_acquire(ip("2001:db8:2::1")).is_some(), "another /48");
        drop(held);
        assert!(limiter.try_acquire(ip("2001:db8:1:ff::1")).is_some());
    }
}
