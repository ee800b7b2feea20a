//! Who gets a connection slot: the listener-wide cap
//! ([`Limits::max_connections`]) and the optional per-address caps
//! ([`Limits::max_connections_per_ip`], [`Limits::connection_rate_per_ip`]).
//!
//! Addresses are grouped the way one client holds them: an IPv4 address
//! alone, an IPv6 address by its /64 prefix (one host or LAN usually gets a
//! whole /64, so counting single IPv6 addresses would bound nothing), an
//! IPv4-mapped IPv6 address as the IPv4 address. Unix sockets have no
//! address and meet only the listener-wide cap.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::limits::{ConnectionRate, Limits};

/// One client's key: an IPv4 address, or the /64 of an IPv6 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum AddrKey {
    V4(u32),
    V6(u64),
}

impl AddrKey {
    fn of(ip: IpAddr) -> AddrKey {
        match ip {
            IpAddr::V4(v4) => AddrKey::V4(u32::from(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddrKey::V4(u32::from(v4)),
                None => AddrKey::V6((u128::from(v6) >> 64) as u64),
            },
        }
    }
}

/// What is known of one address: its open connections and its bucket.
#[derive(Debug)]
struct AddrState {
    open: usize,
    /// Tokens left (connection starts allowed now), up to the burst.
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl AddrState {
    /// Refills the bucket for the time since `at`.
    fn refill(&mut self, rate: ConnectionRate, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * f64::from(rate.per_second)).min(f64::from(rate.burst));
        self.at = now;
    }

    /// Whether the entry holds nothing worth keeping: no connection open
    /// and a bucket that would be full by now.
    fn is_spent(&self, rate: Option<ConnectionRate>, now: Instant) -> bool {
        self.open == 0
            && rate.is_none_or(|r| {
                let dt = now.saturating_duration_since(self.at).as_secs_f64();
                self.tokens + dt * f64::from(r.per_second) >= f64::from(r.burst)
            })
    }
}

/// The per-address table. Entries exist while an address has connections
/// open or a bucket still refilling; the table is swept of the others when
/// it grows past what the open connections explain, so its size is bounded
/// by the connections open plus the addresses seen within one refill time.
#[derive(Debug)]
struct AddrTable {
    max_open: Option<usize>,
    rate: Option<ConnectionRate>,
    map: Mutex<HashMap<AddrKey, AddrState>>,
    /// Table size at which the next admission sweeps spent entries.
    sweep_at: Mutex<usize>,
}

impl AddrTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<AddrKey, AddrState>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits one connection from `key`, or `None` if the address is over
    /// its count or rate.
    fn admit(self: &Arc<Self>, key: AddrKey, now: Instant) -> Option<AddrTicket> {
        let mut map = self.lock();
        self.maybe_sweep(&mut map, now);
        let burst = self.rate.map_or(0.0, |r| f64::from(r.burst));
        let state = map.entry(key).or_insert(AddrState {
            open: 0,
            tokens: burst,
            at: now,
        });
        if self.max_open.is_some_and(|max| state.open >= max) {
            return None;
        }
        if let Some(rate) = self.rate {
            state.refill(rate, now);
            if state.tokens < 1.0 {
                return None;
            }
            state.tokens -= 1.0;
        }
        state.open += 1;
        Some(AddrTicket {
            table: Arc::clone(self),
            key,
        })
    }

    fn maybe_sweep(&self, map: &mut HashMap<AddrKey, AddrState>, now: Instant) {
        let mut sweep_at = self.sweep_at.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() < *sweep_at {
            return;
        }
        map.retain(|_, s| !s.is_spent(self.rate, now));
        // Sweep again once the table has doubled from what is left: the
        // cost of sweeping stays proportional to the admissions between.
        *sweep_at = (map.len() * 2).max(1024);
    }

    fn release(&self, key: AddrKey) {
        let mut map = self.lock();
        if let Some(s) = map.get_mut(&key) {
            s.open = s.open.saturating_sub(1);
            if s.open == 0 && self.rate.is_none() {
                map.remove(&key);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

/// An address's share of a connection: released when dropped.
#[derive(Debug)]
struct AddrTicket {
    table: Arc<AddrTable>,
    key: AddrKey,
}

impl Drop for AddrTicket {
    fn drop(&mut self) {
        self.table.release(self.key);
    }
}

/// A connection's admission: its listener slot and, under per-address
/// limits, its address's share. Dropping it frees both.
#[derive(Debug)]
pub(crate) struct Admission {
    _permit: OwnedSemaphorePermit,
    _addr: Option<AddrTicket>,
}

/// A listener's connection slots: at most [`Limits::max_connections`] taken
/// at once, the per-address limits, and a count of the connections refused.
#[derive(Debug)]
pub(crate) struct ConnSlots {
    free: Arc<Semaphore>,
    per_addr: Option<Arc<AddrTable>>,
    refused: AtomicU64,
}

impl ConnSlots {
    pub(crate) fn new(limits: &Limits) -> Self {
        let n = limits.max_connections.min(Semaphore::MAX_PERMITS);
        let per_addr = (limits.max_connections_per_ip.is_some()
            || limits.connection_rate_per_ip.is_some())
        .then(|| {
            Arc::new(AddrTable {
                max_open: limits.max_connections_per_ip,
                rate: limits.connection_rate_per_ip,
                map: Mutex::new(HashMap::new()),
                sweep_at: Mutex::new(1024),
            })
        });
        Self {
            free: Arc::new(Semaphore::new(n)),
            per_addr,
            refused: AtomicU64::new(0),
        }
    }

    /// A free slot for a connection from `ip` (held until the admission
    /// drops), or `None` after counting a refusal.
    pub(crate) fn take(&self, ip: Option<IpAddr>) -> Option<Admission> {
        let admission = self.try_take(ip);
        if admission.is_none() {
            self.refused.fetch_add(1, Ordering::Relaxed);
        }
        admission
    }

    fn try_take(&self, ip: Option<IpAddr>) -> Option<Admission> {
        // The address first: a refused address takes no listener slot.
        let addr = match (&self.per_addr, ip) {
            (Some(table), Some(ip)) => Some(table.admit(AddrKey::of(ip), Instant::now())?),
            _ => None,
        };
        let permit = Arc::clone(&self.free).try_acquire_owned().ok()?;
        Some(Admission {
            _permit: permit,
            _addr: addr,
        })
    }

    pub(crate) fn available(&self) -> usize {
        self.free.available_permits()
    }

    pub(crate) fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn per_address_count_is_separate_per_client() {
        let slots = ConnSlots::new(&Limits::default().with_max_connections_per_ip(2));
        let a1 = slots.take(ip("10.0.0.1")).unwrap();
        let _a2 = slots.take(ip("10.0.0.1")).unwrap();
        assert!(slots.take(ip("10.0.0.1")).is_none());
        // Another address is not held up; nor is a Unix peer (no address).
        let _b = slots.take(ip("10.0.0.2")).unwrap();
        let _u = slots.take(None).unwrap();
        assert_eq!(slots.refused(), 1);
        // A closed connection frees its address's share.
        drop(a1);
        assert!(slots.take(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn ipv6_counts_by_slash_64_and_mapped_v4_as_v4() {
        let slots = ConnSlots::new(&Limits::default().with_max_connections_per_ip(1));
        let _a = slots.take(ip("2001:db8:1:2::1")).unwrap();
        assert!(slots.take(ip("2001:db8:1:2:ffff::9")).is_none());
        let _b = slots.take(ip("2001:db8:1:3::1")).unwrap();
        let _c = slots.take(ip("192.0.2.7")).unwrap();
        assert!(slots.take(ip("::ffff:192.0.2.7")).is_none());
    }

    #[test]
    fn a_refused_address_takes_no_listener_slot() {
        let limits = Limits::default()
            .with_max_connections(2)
            .with_max_connections_per_ip(1);
        let slots = ConnSlots::new(&limits);
        let _a = slots.take(ip("10.0.0.1")).unwrap();
        for _ in 0..10 {
            assert!(slots.take(ip("10.0.0.1")).is_none());
        }
        assert_eq!(slots.available(), 1);
        assert!(slots.take(ip("10.0.0.2")).is_some());
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let rate = ConnectionRate {
            per_second: 10,
            burst: 3,
        };
        let table = Arc::new(AddrTable {
            max_open: None,
            rate: Some(rate),
            map: Mutex::new(HashMap::new()),
            sweep_at: Mutex::new(1024),
        });
        let key = AddrKey::of("10.0.0.1".parse().unwrap());
        let t0 = Instant::now();
        let held: Vec<_> = (0..3).map(|_| table.admit(key, t0).unwrap()).collect();
        assert!(table.admit(key, t0).is_none());
        // 100 ms refills one token at 10/s, not two.
        let t1 = t0 + Duration::from_millis(100);
        assert!(table.admit(key, t1).is_some());
        assert!(table.admit(key, t1).is_none());
        // Closing connections gives no tokens back: the rate is of starts.
        drop(held);
        assert!(table.admit(key, t1).is_none());
    }

    #[test]
    fn the_table_forgets_spent_addresses() {
        let rate = ConnectionRate {
            per_second: 1000,
            burst: 1,
        };
        let table = Arc::new(AddrTable {
            max_open: None,
            rate: Some(rate),
            map: Mutex::new(HashMap::new()),
            sweep_at: Mutex::new(1024),
        });
        let t0 = Instant::now();
        let mut largest = 0;
        for i in 0..20_000u32 {
            // A new address every 100 µs, each bucket full again 1 ms on.
            let key = AddrKey::V4(0x0a00_0000 + i);
            let now = t0 + Duration::from_micros(100 * u64::from(i));
            drop(table.admit(key, now));
            largest = largest.max(table.len());
        }
        assert!(largest <= 1024, "{largest} entries");
    }
}
