//! The retry policy: when to try a failed delivery again.

use std::time::Duration;

use rand::Rng;

/// When to try again.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Delay after the 1st, 2nd, … failed attempt of a round.
    pub schedule: Vec<Duration>,
    /// Random spread (0.2 = ±20 %).
    pub jitter: f64,
    /// Longest `Retry-After` honoured.
    pub max_retry_after: Duration,
}

impl RetryPolicy {
    /// Delay before the next attempt after the `failed_in_round`-th failure (1-based), or `None`
    /// when the schedule has run out. A receiver's `Retry-After` replaces the scheduled delay.
    pub fn next_delay(
        &self,
        failed_in_round: u32,
        retry_after: Option<Duration>,
    ) -> Option<Duration> {
        let scheduled = *self
            .schedule
            .get(failed_in_round.checked_sub(1)? as usize)?;
        if let Some(asked) = retry_after {
            return Some(asked.min(self.max_retry_after));
        }
        if self.jitter <= 0.0 || scheduled.is_zero() {
            return Some(scheduled);
        }
        let factor = rand::rng().random_range((1.0 - self.jitter)..(1.0 + self.jitter));
        Some(scheduled.mul_f64(factor))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_runs_out_and_retry_after_wins() {
        let policy = RetryPolicy {
            schedule: vec![Duration::from_secs(5), Duration::from_secs(300)],
            jitter: 0.2,
            max_retry_after: Duration::from_secs(60),
        };
        let first = policy.next_delay(1, None).unwrap();
        assert!(
            first >= Duration::from_secs(4) && first <= Duration::from_secs(6),
            "{first:?}"
        );
        assert!(policy.next_delay(2, None).is_some());
        assert_eq!(policy.next_delay(3, None), None);
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(7))),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(7200))),
            Some(Duration::from_secs(60))
        );
        assert_eq!(policy.next_delay(3, Some(Duration::from_secs(1))), None);
    }
}
