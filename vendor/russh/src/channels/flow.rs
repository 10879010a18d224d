//! Receive-window sizing (wraith patch): pure decisions, no I/O.
//!
//! Each channel starts with `Limits::initial` (less when the session's
//! budget is nearly spent) and is replenished as its reader consumes. A
//! channel grows, by doubling up to `Limits::max`, only when the path is
//! what limits it: over the last interval it moved about a window per
//! round trip (so the window, not the network, was the cap) while its
//! reader kept up (little is queued). The round trip is the smallest one
//! measured on the session, so bytes queued in buffers along the way do
//! not read as a long path; on loopback nothing grows. A stalled channel
//! consumes nothing, so it never reaches the credit step and never grows.
//! The sum of all channels' windows stays within `Limits::budget`, except
//! that every channel gets at least [`MIN_WINDOW`] so it can make progress.

use std::time::Duration;

/// The smallest window a new channel gets, whatever the budget says.
pub const MIN_WINDOW: u32 = 64 * 1024;

/// Window sizes for one session's channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Window a new channel is opened with.
    pub initial: u32,
    /// Largest window one channel grows to.
    pub max: u32,
    /// Most bytes all channels' windows of a session add up to.
    pub budget: u64,
}

impl Limits {
    /// Windows fixed at `window` (upstream russh's behaviour, but with
    /// credit on consumption).
    #[cfg(test)]
    pub fn fixed(window: u32) -> Self {
        Limits {
            initial: window,
            max: window,
            budget: u64::MAX,
        }
    }

    /// Window for a channel opened now, when the session's channels hold
    /// windows adding up to `committed`.
    pub fn initial_window(&self, committed: u64) -> u32 {
        let left = self.budget.saturating_sub(committed);
        let w = u64::from(self.initial).min(left);
        (w as u32).max(MIN_WINDOW.min(self.initial))
    }
}

/// Consumed bytes at which a channel's reader asks for a WINDOW_ADJUST:
/// an eighth of the window, so credit flows back well before the sender
/// runs dry, in a few packets per window.
pub fn credit_threshold(window: u32) -> usize {
    ((window / 8) as usize).max(1)
}

/// What one channel did since the last growth check.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Bytes the peer sent on the channel during `interval`.
    pub received: u64,
    /// How long the sample covers.
    pub interval: Duration,
    /// The session's smallest measured round trip.
    pub min_rtt: Duration,
    /// Bytes waiting for the channel's reader now.
    pub queued: u64,
}

/// The channel's new window: `window` or more.
pub fn grown_window(limits: &Limits, window: u32, sample: &Sample, committed: u64) -> u32 {
    if window >= limits.max || sample.interval.is_zero() {
        return window;
    }
    // The reader lags: a larger window would only queue more.
    if sample.queued > u64::from(window / 4) {
        return window;
    }
    // Bytes per round trip over the interval. Window-limited means about a
    // window per round trip; allow for credit still on its way back.
    let per_rtt = u128::from(sample.received) * sample.min_rtt.as_nanos()
        / sample.interval.as_nanos().max(1);
    if per_rtt * 3 < u128::from(window) * 2 {
        return window;
    }
    let left = limits.budget.saturating_sub(committed);
    let grown = (u64::from(window) * 2)
        .min(u64::from(limits.max))
        .min(u64::from(window).saturating_add(left));
    grown.max(u64::from(window)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;

    fn limits() -> Limits {
        Limits {
            initial: 2 * MIB,
            max: 32 * MIB,
            budget: 256 * u64::from(MIB),
        }
    }

    fn window_limited(window: u32, rtt_ms: u64) -> Sample {
        // A whole window each round trip, over ten round trips.
        Sample {
            received: u64::from(window) * 10,
            interval: Duration::from_millis(rtt_ms * 10),
            min_rtt: Duration::from_millis(rtt_ms),
            queued: 0,
        }
    }

    #[test]
    fn a_window_limited_channel_doubles_up_to_the_cap() {
        let l = limits();
        let mut w = l.initial;
        let mut steps = 0;
        while w < l.max {
            let next = grown_window(&l, w, &window_limited(w, 50), u64::from(w));
            assert!(next > w, "stuck at {w}");
            assert!(next <= 2 * w);
            w = next;
            steps += 1;
        }
        assert_eq!(w, l.max);
        assert_eq!(steps, 4);
        assert_eq!(grown_window(&l, w, &window_limited(w, 50), 0), w);
    }

    #[test]
    fn a_reader_that_lags_never_grows() {
        let l = limits();
        let mut s = window_limited(l.initial, 50);
        s.queued = u64::from(l.initial) / 2;
        assert_eq!(grown_window(&l, l.initial, &s, 0), l.initial);
    }

    #[test]
    fn a_stalled_channel_never_grows() {
        let l = limits();
        let s = Sample {
            received: 0,
            interval: Duration::from_secs(1),
            min_rtt: Duration::from_millis(150),
            queued: u64::from(l.initial),
        };
        assert_eq!(grown_window(&l, l.initial, &s, 0), l.initial);
    }

    #[test]
    fn fast_loopback_does_not_grow() {
        // 1 GB/s with a 100 µs round trip is 100 kB per round trip: the
        // window is not the limit.
        let l = limits();
        let s = Sample {
            received: 1_000_000_000,
            interval: Duration::from_secs(1),
            min_rtt: Duration::from_micros(100),
            queued: 0,
        };
        assert_eq!(grown_window(&l, l.initial, &s, 0), l.initial);
    }

    #[test]
    fn a_path_limited_by_bandwidth_does_not_grow() {
        // 10 MB/s at 50 ms is 500 kB per round trip, a quarter of 2 MiB.
        let l = limits();
        let s = Sample {
            received: 10_000_000,
            interval: Duration::from_secs(1),
            min_rtt: Duration::from_millis(50),
            queued: 0,
        };
        assert_eq!(grown_window(&l, l.initial, &s, 0), l.initial);
    }

    #[test]
    fn growth_stops_at_the_session_budget() {
        let l = limits();
        let committed = l.budget - u64::from(MIB);
        let w = grown_window(&l, 4 * MIB, &window_limited(4 * MIB, 50), committed);
        assert_eq!(w, 5 * MIB);
        assert_eq!(
            grown_window(&l, 4 * MIB, &window_limited(4 * MIB, 50), l.budget),
            4 * MIB
        );
    }

    #[test]
    fn new_channels_share_what_is_left_of_the_budget() {
        let l = limits();
        assert_eq!(l.initial_window(0), l.initial);
        assert_eq!(l.initial_window(l.budget - u64::from(MIB)), MIB);
        // Over budget: still enough to make progress.
        assert_eq!(l.initial_window(l.budget * 2), MIN_WINDOW);
        // Thousands of channels: all but the minimum come out of the budget.
        let mut committed = 0u64;
        for _ in 0..10_000 {
            committed += u64::from(l.initial_window(committed));
        }
        let overflow = 10_000u64 * u64::from(MIN_WINDOW);
        assert!(committed <= l.budget + overflow, "{committed}");
    }

    #[test]
    fn fixed_limits_never_grow() {
        let l = Limits::fixed(2 * MIB);
        assert_eq!(grown_window(&l, 2 * MIB, &window_limited(2 * MIB, 150), 0), 2 * MIB);
        assert_eq!(l.initial_window(1 << 40), 2 * MIB);
    }

    #[test]
    fn the_credit_threshold_is_an_eighth_of_the_window() {
        assert_eq!(credit_threshold(2 * MIB), 256 * 1024);
        assert_eq!(credit_threshold(0), 1);
    }
}
