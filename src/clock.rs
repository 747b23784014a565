//! The time source: [`Clock`] and [`SystemClock`].

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// A source of the current time.
///
/// The layer asks its clock whenever it checks a URL's expiry or stamps a File
/// object, so tests can pin the time instead of sleeping.
///
/// # Example
///
/// ```
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// use tower_signed_upload::Clock;
///
/// #[derive(Debug)]
/// struct Fixed(SystemTime);
///
/// impl Clock for Fixed {
///     fn now(&self) -> SystemTime {
///         self.0
///     }
/// }
///
/// let clock = Fixed(UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_secs(1_700_000_000));
/// ```
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;
}

/// The operating system's real-time clock: [`SystemTime::now`].
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }
}

impl<C: Clock + ?Sized> Clock for Arc<C> {
    fn now(&self) -> SystemTime {
        (**self).now()
    }
}

/// Seconds since the unix epoch, saturating at zero for times before it.
pub(crate) fn unix_seconds(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_system_clock_keeps_within_a_few_milliseconds_of_system_time() {
        for _ in 0..100 {
            let before = SystemTime::now();
            let now = SystemClock.now();
            let after = SystemTime::now();
            // The same clock as `SystemTime::now`; the margin only allows for a
            // wall-clock step between the readings.
            assert!(now <= after, "{now:?} after {after:?}");
            assert!(
                before.duration_since(now).unwrap_or_default() < Duration::from_millis(20),
                "{now:?} long before {before:?}"
            );
        }
    }
}
