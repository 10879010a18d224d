//! Reconnect delays: exponential from 1 s, doubling, capped at 30 s, with
//! jitter so that many clients cut off together do not return together.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// Largest delay.
pub(crate) const CAP: Duration = Duration::from_secs(30);

/// The delay schedule for one outage; start a new one after each success.
#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Backoff { attempt: 0 }
    }

    /// The un-jittered delay before attempt `n` (0-based): 1, 2, 4, … 30 s.
    pub(crate) fn base(n: u32) -> Duration {
        let secs = 1u64.checked_shl(n.min(16)).unwrap_or(u64::MAX);
        Duration::from_secs(secs).min(CAP)
    }

    /// The next delay: the base delay minus up to a fifth of it at random,
    /// so every delay lies in [0.8 × base, base].
    pub(crate) fn next_delay(&mut self) -> Duration {
        let base = Self::base(self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        let fifth = base / 5;
        let jitter_ms = u64::try_from(fifth.as_millis()).unwrap_or(0);
        if jitter_ms == 0 {
            return base;
        }
        base - Duration::from_millis(random_u64() % (jitter_ms + 1))
    }

    /// How many delays have been handed out.
    pub(crate) fn attempts(&self) -> u32 {
        self.attempt
    }
}

/// Randomness for jitter only (not for anything secret): std's per-process
/// random hash keys, mixed with the clock.
fn random_u64() -> u64 {
    let mut h = RandomState::new().build_hasher();
    if let Ok(t) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(t.as_nanos());
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_schedule_doubles_to_the_cap() {
        let secs: Vec<u64> = (0..8).map(|n| Backoff::base(n).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(Backoff::base(u32::MAX), CAP);
    }

    #[test]
    fn jittered_delays_stay_within_a_fifth_below_base() {
        for _ in 0..50 {
            let mut b = Backoff::new();
            for n in 0..10 {
                let d = b.next_delay();
                let base = Backoff::base(n);
                assert!(
                    d <= base && d >= base * 4 / 5,
                    "attempt {n}: {d:?} vs {base:?}"
                );
            }
            assert_eq!(b.attempts(), 10);
        }
    }
}
