//! Connection limits that hold before a peer has proven anything: counts
//! per source network and OpenSSH's `MaxStartups` random early drop.
//!
//! Sources are counted by network, not by address: an IPv6 attacker
//! usually holds a whole /64, so counting single addresses would give it
//! 2^64 budgets. IPv4-mapped IPv6 addresses (a dual-stack listener's view
//! of IPv4 peers) count as the IPv4 address they carry. Nothing here logs.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::error::Error;

/// How many leading bits of an address name one source
/// (`--per-source-net-block-size`, OpenSSH's `PerSourceNetBlockSize`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetBlock {
    /// Prefix length for IPv4 (0–32; default 32: each address).
    pub v4: u8,
    /// Prefix length for IPv6 (0–128; default 64: each /64).
    pub v6: u8,
}

impl Default for NetBlock {
    fn default() -> Self {
        NetBlock { v4: 32, v6: 64 }
    }
}

impl NetBlock {
    /// The network `ip` belongs to, as the key its connections count under.
    pub fn source_of(&self, ip: IpAddr) -> IpAddr {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let bits = u32::from(a) & mask32(self.v4);
                IpAddr::V4(Ipv4Addr::from(bits))
            }
            IpAddr::V6(a) => {
                let bits = u128::from(a) & mask128(self.v6);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        }
    }
}

fn mask32(len: u8) -> u32 {
    match len {
        0 => 0,
        n if n >= 32 => u32::MAX,
        n => u32::MAX << (32 - u32::from(n)),
    }
}

fn mask128(len: u8) -> u128 {
    match len {
        0 => 0,
        n if n >= 128 => u128::MAX,
        n => u128::MAX << (128 - u32::from(n)),
    }
}

impl std::str::FromStr for NetBlock {
    type Err = Error;

    /// `V4[:V6]`, e.g. `32:64` (OpenSSH's syntax).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || {
            Error::config(
                "--per-source-net-block-size",
                s,
                "expected IPV4_BITS[:IPV6_BITS], e.g. 32:64 (at most 32 and 128)",
            )
        };
        let (v4, v6) = match s.split_once(':') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let v4: u8 = v4.trim().parse().map_err(|_| bad())?;
        let v6: u8 = match v6 {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => NetBlock::default().v6,
        };
        if v4 > 32 || v6 > 128 {
            return Err(bad());
        }
        Ok(NetBlock { v4, v6 })
    }
}

impl std::fmt::Display for NetBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.v4, self.v6)
    }
}

/// What per-source limits count by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum SourceKey {
    /// A network (see [`NetBlock`]).
    Net(IpAddr),
    /// An iroh endpoint id (one key pair; cheap to make, so iroh peers are
    /// held back by the global limits too).
    Endpoint(String),
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::Net(ip) => write!(f, "{ip}"),
            SourceKey::Endpoint(id) => f.write_str(id),
        }
    }
}

/// Open slots per source, each source capped at `max` (0 = no cap).
#[derive(Debug)]
pub(crate) struct PerSource {
    max: usize,
    map: std::sync::Mutex<HashMap<SourceKey, usize>>,
}

impl PerSource {
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(PerSource {
            max,
            map: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Take a slot for `key`; `None` when the source already holds `max`.
    /// The map only holds sources with open slots, so it is bounded by the
    /// number of open connections.
    pub(crate) fn try_take(self: &Arc<Self>, key: &SourceKey) -> Option<SourceSlot> {
        let mut map = self.map.lock().ok()?;
        let n = map.entry(key.clone()).or_insert(0);
        if self.max != 0 && *n >= self.max {
            if *n == 0 {
                map.remove(key);
            }
            return None;
        }
        *n += 1;
        Some(SourceSlot {
            owner: self.clone(),
            key: key.clone(),
        })
    }

    /// Slots `key` holds now.
    #[cfg(test)]
    pub(crate) fn count(&self, key: &SourceKey) -> usize {
        self.map
            .lock()
            .map(|m| m.get(key).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

/// One slot of a [`PerSource`]; given back on drop.
#[derive(Debug)]
pub(crate) struct SourceSlot {
    owner: Arc<PerSource>,
    key: SourceKey,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        if let Ok(mut map) = self.owner.map.lock()
            && let Some(n) = map.get_mut(&self.key)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// OpenSSH's `MaxStartups start:rate:full`: with `start` or more
/// connections not yet authenticated, a new one is refused with
/// probability `rate`%, rising linearly to 100% at `full`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MaxStartups {
    /// Unauthenticated connections allowed before random early drop starts.
    pub start: usize,
    /// Percent refused at `start`.
    pub rate: u8,
    /// Unauthenticated connections at which every new one is refused.
    pub full: usize,
}

impl Default for MaxStartups {
    /// `64:30:256`.
    fn default() -> Self {
        MaxStartups {
            start: 64,
            rate: 30,
            full: 256,
        }
    }
}

impl std::str::FromStr for MaxStartups {
    type Err = Error;

    /// `full` or `start:rate:full` (OpenSSH's syntax).
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::Config {
            flag: "--max-startups",
            value: s.to_string(),
            reason:
                "expected N or START:RATE:FULL with START <= FULL and RATE <= 100, e.g. 64:30:256"
                    .into(),
        };
        let parts: Vec<&str> = s.split(':').map(str::trim).collect();
        let m = match parts.as_slice() {
            [full] => {
                let full: usize = full.parse().map_err(|_| bad())?;
                MaxStartups {
                    start: full,
                    rate: 100,
                    full,
                }
            }
            [start, rate, full] => MaxStartups {
                start: start.parse().map_err(|_| bad())?,
                rate: rate.parse().map_err(|_| bad())?,
                full: full.parse().map_err(|_| bad())?,
            },
            _ => return Err(bad()),
        };
        if m.start > m.full || m.rate > 100 || m.full == 0 {
            return Err(bad());
        }
        Ok(m)
    }
}

impl std::fmt::Display for MaxStartups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.start, self.rate, self.full)
    }
}

impl MaxStartups {
    /// Whether a new connection may start while `open` are unauthenticated;
    /// `roll` is a uniformly random number (only its value mod 100 counts).
    pub(crate) fn admits(&self, open: usize, roll: u64) -> bool {
        if open >= self.full {
            return false;
        }
        if open < self.start {
            return true;
        }
        // The refusal chance in percent at `open`, as OpenSSH computes it.
        let span = (self.full - self.start) as u64;
        let rate = u64::from(self.rate);
        let p = rate + (100 - rate) * (open - self.start) as u64 / span.max(1);
        roll % 100 >= p
    }
}

/// The unauthenticated connections of one server, for [`MaxStartups`].
#[derive(Debug, Default)]
pub(crate) struct Startups {
    open: AtomicUsize,
    seq: AtomicU64,
    hasher: std::collections::hash_map::RandomState,
}

impl Startups {
    /// Count a new unauthenticated connection, or refuse it.
    pub(crate) fn try_start(self: &Arc<Self>, limit: &MaxStartups) -> Option<StartupSlot> {
        // A random number without a dependency: SipHash with a per-process
        // random key over a counter.
        let roll = self
            .hasher
            .hash_one(self.seq.fetch_add(1, Ordering::Relaxed));
        let mut open = self.open.load(Ordering::Acquire);
        loop {
            if !limit.admits(open, roll) {
                return None;
            }
            match self
                .open
                .compare_exchange(open, open + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(StartupSlot(self.clone())),
                Err(now) => open = now,
            }
        }
    }

    /// Unauthenticated connections now.
    #[cfg(test)]
    pub(crate) fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// One unauthenticated connection; uncounted on drop (at authentication or
/// when the connection ends).
#[derive(Debug)]
pub(crate) struct StartupSlot(Arc<Startups>);

impl Drop for StartupSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A log event that may fire once per `every`: floods of refusals become a
/// line now and then with a count, not a line each.
#[derive(Debug)]
pub(crate) struct LogRate {
    every_ms: u64,
    last_ms: AtomicU64,
    suppressed: AtomicU64,
    epoch: std::time::Instant,
}

impl LogRate {
    pub(crate) fn new(every: std::time::Duration) -> Self {
        LogRate {
            every_ms: u64::try_from(every.as_millis()).unwrap_or(u64::MAX),
            last_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
            epoch: std::time::Instant::now(),
        }
    }

    /// `Some(n)` when the event should be logged now, `n` being how many
    /// were skipped since the last time; `None` when it is to be skipped.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(self.every_ms);
        let last = self.last_ms.load(Ordering::Acquire);
        if now.saturating_sub(last) >= self.every_ms
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Some(self.suppressed.swap(0, Ordering::AcqRel));
        }
        self.suppressed.fetch_add(1, Ordering::AcqRel);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_networks() {
        let b = NetBlock::default();
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(
            b.source_of(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            b.source_of(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            b.source_of(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            b.source_of(ip("2001:db8:1:3::1")),
            b.source_of(ip("2001:db8:1:2::1"))
        );
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        assert_eq!(b.source_of(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(b.source_of(ip("192.0.2.7")), ip("192.0.2.7"));
        let wide: NetBlock = "24:48".parse().unwrap();
        assert_eq!(wide.source_of(ip("192.0.2.7")), ip("192.0.2.0"));
        assert_eq!(wide.source_of(ip("2001:db8:1:2::1")), ip("2001:db8:1::"));
        let zero: NetBlock = "0:0".parse().unwrap();
        assert_eq!(zero.source_of(ip("192.0.2.7")), ip("0.0.0.0"));
        assert_eq!("32".parse::<NetBlock>().unwrap(), NetBlock::default());
        for bad in ["33", "32:129", "x", "32:64:1", ""] {
            let e = bad.parse::<NetBlock>().unwrap_err().to_string();
            assert!(e.contains("--per-source-net-block-size"), "{e}");
        }
    }

    #[test]
    fn per_source_slots_are_capped_and_given_back() {
        let p = PerSource::new(2);
        let k = SourceKey::Net("192.0.2.1".parse().unwrap());
        let a = p.try_take(&k).unwrap();
        let b = p.try_take(&k).unwrap();
        assert!(p.try_take(&k).is_none());
        assert!(
            p.try_take(&SourceKey::Endpoint("x".into())).is_some(),
            "another source has its own count"
        );
        drop(a);
        let c = p.try_take(&k).unwrap();
        drop((b, c));
        assert_eq!(p.count(&k), 0);
        assert!(p.map.lock().unwrap().is_empty());
        let unlimited = PerSource::new(0);
        let held: Vec<_> = (0..1000).filter_map(|_| unlimited.try_take(&k)).collect();
        assert_eq!(held.len(), 1000);
    }

    #[test]
    fn max_startups_drops_like_openssh() {
        let m: MaxStartups = "10:30:100".parse().unwrap();
        assert_eq!(m.to_string(), "10:30:100");
        assert!((0..100).all(|r| m.admits(9, r)));
        // At start: 30% refused; at full: all.
        assert_eq!((0..100).filter(|&r| !m.admits(10, r)).count(), 30);
        assert_eq!((0..100).filter(|&r| !m.admits(55, r)).count(), 65);
        assert!((0..100).all(|r| !m.admits(100, r)));
        let hard: MaxStartups = "5".parse().unwrap();
        assert!(hard.admits(4, 0) && !hard.admits(5, 99));
        for bad in ["10:30", "10:101:100", "100:30:10", "0", "a:b:c"] {
            let e = bad.parse::<MaxStartups>().unwrap_err().to_string();
            assert!(e.contains("--max-startups"), "{e}");
        }
        let s = Arc::new(Startups::default());
        let held: Vec<_> = (0..10).filter_map(|_| s.try_start(&hard)).collect();
        assert_eq!(held.len(), 5);
        assert_eq!(s.open(), 5);
        drop(held);
        assert_eq!(s.open(), 0);
    }

    #[test]
    fn log_rate_lets_one_through_per_period() {
        let r = LogRate::new(std::time::Duration::from_secs(3600));
        assert_eq!(r.check(), Some(0));
        assert_eq!(r.check(), None);
        assert_eq!(r.check(), None);
        let fast = LogRate::new(std::time::Duration::ZERO);
        assert_eq!(fast.check(), Some(0));
        assert_eq!(fast.check(), Some(0));
    }
}
