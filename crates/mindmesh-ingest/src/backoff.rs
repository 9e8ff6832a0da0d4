//! How long a call the source pushed back waits before it is tried again, when the
//! source did not say (`Retry-After`).
//!
//! A truncated exponential backoff with full jitter, in proportion to how hard the source
//! is pushing back on the sync as a whole. Each call's wait doubles with its attempts,
//! but only up to a level set by the share of the sync's recent answers that were push
//! backs: each halving of the share served allows one more doubling. A source that
//! throttles one call in five is serving the sync: a call it throttled three times in a
//! row was unlucky, and waiting 4 s for it would only stall what waits on it, so it is
//! tried again after the initial backoff. A source that throttles most calls is
//! overloaded, and every call backs off exponentially, as the source asks. Attempts stay
//! bounded (`ingest.max_attempts`), the wait stays under `ingest.max_backoff_secs`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// Answers the share is taken over (the most recent ones).
const WINDOW: u32 = 64;
/// Answers counted at least: before that many came, the missing ones count as served,
/// so that the first push backs of a sync are not taken for a source pushing back on
/// everything.
const MIN_COUNTED: u32 = 16;

/// One sync's backoff: its recent answers and the configured bounds.
#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    /// The last [`WINDOW`] answers, newest in the lowest bit: 1 pushed back, 0 served.
    recent: AtomicU64,
    /// Answers recorded, up to [`WINDOW`].
    seen: AtomicU32,
}

impl Backoff {
    /// Waits from `initial` up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            recent: AtomicU64::new(0),
            seen: AtomicU32::new(0),
        }
    }

    /// A backoff with the same bounds and no answers recorded yet.
    pub fn fresh(&self) -> Self {
        Backoff::new(self.initial, self.max)
    }

    /// Records an answer of the source: served (any answer it gave, even an error), or
    /// pushed back (rate limited, overloaded, failed or unreachable).
    pub fn record(&self, pushed_back: bool) {
        let _ = self
            .recent
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
                Some((bits << 1) | u64::from(pushed_back))
            });
        let _ = self
            .seen
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < WINDOW).then_some(n + 1)
            });
    }

    /// The share of recent answers that were push backs, in [0, 1].
    pub fn pressure(&self) -> f64 {
        let seen = self.seen.load(Ordering::Relaxed);
        let mask = if seen >= 64 {
            u64::MAX
        } else {
            (1u64 << seen) - 1
        };
        let pushed = (self.recent.load(Ordering::Relaxed) & mask).count_ones();
        f64::from(pushed) / f64::from(seen.max(MIN_COUNTED))
    }

    /// A wait the source asked for (`Retry-After`), at most the longest backoff.
    pub fn cap(&self, wait: Duration) -> Duration {
        wait.min(self.max)
    }

    /// The wait before trying a call again after its `attempt`-th attempt (from 1) was
    /// pushed back: a random wait in [c/2, c], where c = initial·2ᵏ, k the lesser of
    /// `attempt - 1` and the doublings the pressure allows, at most `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt
            .saturating_sub(1)
            .min(allowed_doublings(self.pressure()));
        let ceiling = self
            .initial
            .saturating_mul(1u32 << doublings.min(16))
            .min(self.max);
        let random = mindmesh_kit::crypto::random_bytes::<4>()
            .map(u32::from_le_bytes)
            .unwrap_or(u32::MAX);
        let fraction = 0.5 + f64::from(random) / f64::from(u32::MAX) / 2.0;
        ceiling.mul_f64(fraction)
    }
}

/// Doublings allowed when a share `pressure` of answers are push backs: ⌊log₂(1 /
/// (1 - pressure))⌋ — none while most answers are served, one at half pushed back, two
/// at three quarters, and so on; unbounded (the attempt decides) when all are.
fn allowed_doublings(pressure: f64) -> u32 {
    let served = 1.0 - pressure.clamp(0.0, 1.0);
    if served <= f64::EPSILON {
        return u32::MAX;
    }
    // In [0, 1024): the cast cannot truncate.
    (1.0 / served).log2().floor() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff::new(Duration::from_millis(100), Duration::from_secs(10))
    }

    #[test]
    fn doublings_grow_as_the_share_served_halves() {
        assert_eq!(allowed_doublings(0.0), 0);
        assert_eq!(allowed_doublings(0.2), 0);
        assert_eq!(allowed_doublings(0.49), 0);
        assert_eq!(allowed_doublings(0.5), 1);
        assert_eq!(allowed_doublings(0.8), 2);
        assert_eq!(allowed_doublings(0.9), 3);
        assert_eq!(allowed_doublings(1.0), u32::MAX);
    }

    #[test]
    fn sporadic_push_backs_retry_at_the_initial_backoff() {
        let b = backoff();
        for i in 0..200 {
            b.record(i % 5 == 0);
        }
        assert!((b.pressure() - 0.2).abs() < 0.05, "{}", b.pressure());
        for attempt in 1..8 {
            let d = b.delay(attempt);
            assert!(
                d >= Duration::from_millis(50) && d <= Duration::from_millis(100),
                "{d:?}"
            );
        }
    }

    #[test]
    fn sustained_push_backs_back_off_exponentially_up_to_the_maximum() {
        let b = backoff();
        for _ in 0..100 {
            b.record(true);
        }
        assert_eq!(b.pressure(), 1.0);
        let d = b.delay(4);
        assert!(
            d >= Duration::from_millis(400) && d <= Duration::from_millis(800),
            "{d:?}"
        );
        assert!(b.delay(30) <= Duration::from_secs(10));
        // The source recovers: the waits shrink again.
        for _ in 0..64 {
            b.record(false);
        }
        assert!(b.delay(4) <= Duration::from_millis(100));
    }

    #[test]
    fn the_first_push_backs_are_not_taken_for_an_overloaded_source() {
        let b = backoff();
        b.record(true);
        b.record(true);
        assert_eq!(b.pressure(), 2.0 / 16.0);
        assert!(b.delay(3) <= Duration::from_millis(100));
    }
}
