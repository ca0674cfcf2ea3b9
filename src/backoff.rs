//! The waits between attempts after a failure, for the sink (`--on-full
//! block`) and the worker (a failed compression) alike: 1 s, then
//! doubling, at most 30 s — soon enough to resume quickly when a disk is
//! freed, seldom enough not to fill a log with retries.

use std::time::Duration;

/// The first wait.
pub const FIRST: Duration = Duration::from_secs(1);

/// The longest wait.
pub const MAX: Duration = Duration::from_secs(30);

/// The wait after `last` (or the first, if there was none).
pub fn next(last: Option<Duration>) -> Duration {
    last.map_or(FIRST, |wait| (wait * 2).min(MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_longest() {
        let waits: Vec<u64> = std::iter::successors(Some(next(None)), |&w| Some(next(Some(w))))
            .take(8)
            .map(|w| w.as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
