//! Rate limit of failed authentications per source address: a token bucket per address
//! (an IPv6 address counts by its /64, which one host usually owns whole). Every failed
//! attempt takes a token; a successful one takes nothing. While an address's bucket is
//! empty, every attempt from it is refused before its key is looked at, good keys included:
//! answering a correct guess differently would let guessing go on at full speed.
//!
//! The check and the failure are two steps (a successful caller never writes), so
//! concurrent failures can pass one check together; the bucket then goes into debt (down to
//! minus one burst) and the address waits that much longer.
//!
//! The map is bounded: when it is full, buckets that have refilled completely (the same as
//! no bucket) are dropped, then the longest-untouched one.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// The limit's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AuthLimits {
    /// Failed attempts an address may make at once.
    pub burst: u32,
    /// Failed attempts per second an address regains.
    pub per_second: f64,
    /// Most addresses tracked at once.
    pub max_sources: usize,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 5.0,
            max_sources: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub(crate) struct AuthLimiter {
    limits: AuthLimits,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

/// The address a bucket belongs to: IPv4 (also when mapped into IPv6), or an IPv6 /64.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !((1u128 << 64) - 1)).into()),
        },
    }
}

impl AuthLimiter {
    pub fn new(limits: AuthLimits) -> Self {
        Self {
            limits,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn burst(&self) -> f64 {
        f64::from(self.limits.burst.max(1))
    }

    fn refilled(&self, b: &Bucket, now: Instant) -> f64 {
        let gained =
            now.saturating_duration_since(b.updated).as_secs_f64() * self.limits.per_second;
        (b.tokens + gained).min(self.burst())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Bucket>> {
        // Each critical section is a few map operations: a poisoned map is consistent.
        self.buckets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `source` may try to authenticate now.
    pub fn allows(&self, source: IpAddr, now: Instant) -> bool {
        match self.lock().get(&source_key(source)) {
            None => true,
            Some(b) => self.refilled(b, now) >= 1.0,
        }
    }

    /// Records a failed attempt from `source`.
    pub fn failed(&self, source: IpAddr, now: Instant) {
        let key = source_key(source);
        let mut buckets = self.lock();
        if !buckets.contains_key(&key) && buckets.len() >= self.limits.max_sources {
            let full = self.burst();
            buckets.retain(|_, b| self.refilled(b, now) < full);
            if buckets.len() >= self.limits.max_sources {
                if let Some(oldest) = buckets
                    .iter()
                    .min_by_key(|(_, b)| b.updated)
                    .map(|(k, _)| *k)
                {
                    buckets.remove(&oldest);
                }
            }
        }
        let tokens = match buckets.get(&key) {
            Some(b) => self.refilled(b, now),
            None => self.burst(),
        };
        buckets.insert(
            key,
            Bucket {
                tokens: (tokens - 1.0).max(-self.burst()),
                updated: now,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
    }

    #[test]
    fn a_burst_of_failures_then_refused_until_refilled() {
        let l = AuthLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(l.allows(v4(1), t0));
            l.failed(v4(1), t0);
        }
        assert!(!l.allows(v4(1), t0));
        // Other addresses are not affected.
        assert!(l.allows(v4(2), t0));
        // One token comes back every 200 ms.
        assert!(!l.allows(v4(1), t0 + Duration::from_millis(150)));
        assert!(l.allows(v4(1), t0 + Duration::from_millis(200)));
    }

    #[test]
    fn concurrent_failures_go_into_debt() {
        let l = AuthLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        for _ in 0..60 {
            l.failed(v4(1), t0);
        }
        // Twenty over the burst: 20 tokens of debt plus one to allow = 4.2 s.
        assert!(!l.allows(v4(1), t0 + Duration::from_secs(4)));
        assert!(l.allows(v4(1), t0 + Duration::from_millis(4200)));
    }

    #[test]
    fn ipv6_counts_by_its_64_and_mapped_ipv4_as_ipv4() {
        let l = AuthLimiter::new(AuthLimits {
            burst: 1,
            ..AuthLimits::default()
        });
        let t0 = Instant::now();
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        let b: Ipv6Addr = "2001:db8:1:2:ffff::9"
            .parse()
            .unwrap_or(Ipv6Addr::LOCALHOST);
        let c: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap_or(Ipv6Addr::LOCALHOST);
        l.failed(IpAddr::V6(a), t0);
        assert!(!l.allows(IpAddr::V6(b), t0));
        assert!(l.allows(IpAddr::V6(c), t0));
        l.failed(v4(7), t0);
        assert!(!l.allows(IpAddr::V6(Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped()), t0));
    }

    #[test]
    fn the_map_stays_bounded() {
        let l = AuthLimiter::new(AuthLimits {
            burst: 2,
            per_second: 1.0,
            max_sources: 3,
        });
        let t0 = Instant::now();
        for i in 0..3 {
            l.failed(v4(i), t0 + Duration::from_millis(u64::from(i)));
        }
        l.failed(v4(3), t0 + Duration::from_millis(10));
        assert_eq!(l.lock().len(), 3);
        // The oldest went; the newest are still counted.
        assert!(!l.lock().contains_key(&v4(0)));
        assert!(l.lock().contains_key(&v4(3)));
        // Refilled buckets are dropped first.
        l.failed(v4(4), t0 + Duration::from_secs(5));
        assert_eq!(l.lock().len(), 1);
    }
}
