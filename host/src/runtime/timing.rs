//! Phase timestamps of the start path, logged at debug level (`capsa-runtime --debug --log F`):
//! where the milliseconds of a `create`, `start`, `run` or `delete` go, measured by the runtime
//! itself. strace distorts exactly what matters here (a traced child makes the parent's cgroup v1
//! attach wait for it: 18 ms under strace for a step of 0.3–2.2 ms without), and perf sees
//! functions, not steps (and not the time spent waiting).
//!
//! Each line is `phase NAME +T ms`, T counted from [`begin`] (the CLI calls it first thing, so
//! the exec and the dynamic loader are what a wall-clock total has beyond the last phase).
//! Nothing is measured or formatted unless debug logging is on.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Starts the clock the phases are counted from (the first call wins).
pub fn begin() {
    START.get_or_init(Instant::now);
}

/// Logs that `phase` is done, with the time since [`begin`].
pub fn mark(phase: &str) {
    if !log::log_enabled!(log::Level::Debug) {
        return;
    }
    let start = START.get_or_init(Instant::now);
    log::debug!(
        "phase {phase} +{:.3} ms",
        start.elapsed().as_secs_f64() * 1000.0
    );
}
