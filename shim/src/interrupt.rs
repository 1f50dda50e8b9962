//! Stopping the module: on SIGTERM, SIGINT or when the deadline passes.
//!
//! SIGTERM and SIGINT are blocked in every thread (first thing in `main`, before any thread
//! exists, so all inherit the mask) and taken by one watchdog thread with `sigtimedwait`, whose
//! timeout is the deadline. No code runs in signal context. When it fires, the watchdog records
//! why and increments the engine's epoch: running wasm traps with `Trap::Interrupt` at its next
//! epoch check and the main thread reports and exits. A module blocked in a host call (a sleep,
//! a read) never reaches an epoch check, so after [`GRACE`] the watchdog exits the process
//! itself, with the same message and code.
//!
//! The shim usually is pid 1 of a pid namespace, where the kernel drops signals whose action is
//! the default; blocked signals are queued regardless, and a (never run) handler is installed as
//! well so that no kernel path treats them as ignored.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// How long a fired watchdog waits for the module to stop at an epoch check before it ends the
/// process itself.
pub const GRACE: Duration = Duration::from_millis(100);

/// Exit code when the deadline passed, as timeout(1).
pub const EXIT_DEADLINE: i32 = 124;

/// The signals that stop the module.
const STOP_SIGNALS: [libc::c_int; 2] = [libc::SIGTERM, libc::SIGINT];

/// Why the module was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The wall-clock deadline, in milliseconds, passed.
    Deadline(u128),
    /// A stop signal arrived.
    Signal(libc::c_int),
}

impl Stop {
    /// Prints what happened (only a passed deadline needs saying: a stopped container's caller
    /// knows it sent a signal) and returns the exit code: 124, or 128 + the signal.
    pub fn report(self) -> i32 {
        match self {
            Stop::Deadline(ms) => {
                let _ = writeln!(
                    std::io::stderr(),
                    "capsa-shim: deadline of {ms} ms exceeded"
                );
                EXIT_DEADLINE
            }
            Stop::Signal(signal) => 128 + signal,
        }
    }
}

/// An error setting up signal handling; the syscall that failed and its errno.
#[derive(Debug, thiserror::Error)]
#[error("{call}: {source}")]
pub struct SignalError {
    call: &'static str,
    source: std::io::Error,
}

fn check(call: &'static str, result: libc::c_int) -> Result<(), SignalError> {
    if result == 0 {
        Ok(())
    } else {
        Err(SignalError {
            call,
            source: std::io::Error::last_os_error(),
        })
    }
}

fn stop_set() -> Result<libc::sigset_t, SignalError> {
    // SAFETY: sigemptyset initialises the zeroed set; sigaddset is given valid signal numbers.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        check("sigemptyset", libc::sigemptyset(&mut set))?;
        for signal in STOP_SIGNALS {
            check("sigaddset", libc::sigaddset(&mut set, signal))?;
        }
        Ok(set)
    }
}

extern "C" fn never_runs(_: libc::c_int) {}

/// Blocks SIGTERM and SIGINT in the calling thread (and so in every thread it starts later) and
/// installs a handler for them. Call first in `main`, before any thread exists.
pub fn block_stop_signals() -> Result<(), SignalError> {
    let set = stop_set()?;
    // SAFETY: plain libc calls on initialised structures; the handler does nothing, and the
    // signals are blocked in every thread, so it never runs (sigtimedwait takes them).
    unsafe {
        check(
            "pthread_sigmask(SIG_BLOCK)",
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()),
        )?;
        for signal in STOP_SIGNALS {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = never_runs as extern "C" fn(libc::c_int) as libc::sighandler_t;
            check("sigemptyset", libc::sigemptyset(&mut action.sa_mask))?;
            check(
                "sigaction",
                libc::sigaction(signal, &action, std::ptr::null_mut()),
            )?;
        }
    }
    Ok(())
}

/// The watchdog thread's shared state.
#[derive(Debug, Default)]
struct Shared {
    /// 0: not fired; -1: the deadline; a signal number otherwise.
    fired: AtomicI32,
    /// Set by whoever ends the process because of a stop (the main thread or the watchdog), so
    /// exactly one of them reports it.
    claimed: AtomicBool,
}

/// The running watchdog; see the module docs.
#[derive(Debug, Clone)]
pub struct Watchdog {
    shared: Arc<Shared>,
    deadline: Option<Duration>,
}

impl Watchdog {
    /// Starts the watchdog for `engine`: it fires on a stop signal, or when `deadline` has passed
    /// since `started`. [`block_stop_signals`] must have run.
    pub fn start(
        engine: Engine,
        started: Instant,
        deadline: Option<Duration>,
    ) -> std::io::Result<Self> {
        let watchdog = Self {
            shared: Arc::default(),
            deadline,
        };
        let thread = watchdog.clone();
        let set = stop_set().map_err(|e| e.source)?;
        std::thread::Builder::new()
            .name("capsa-watchdog".into())
            // Explicit, so RUST_MIN_STACK in the container's environment plays no part.
            .stack_size(64 << 10)
            .spawn(move || thread.watch(&engine, set, deadline.map(|d| started + d)))?;
        Ok(watchdog)
    }

    fn watch(&self, engine: &Engine, set: libc::sigset_t, deadline: Option<Instant>) {
        let stop = loop {
            let timeout = deadline.map(|d| {
                let left = d.saturating_duration_since(Instant::now());
                libc::timespec {
                    tv_sec: left.as_secs() as libc::time_t,
                    tv_nsec: left.subsec_nanos() as libc::c_long,
                }
            });
            let timeout_ptr = timeout
                .as_ref()
                .map_or(std::ptr::null(), |t| t as *const libc::timespec);
            // SAFETY: `set` is an initialised signal set blocked in this thread; `timeout_ptr` is
            // null or points at a live timespec; no siginfo is requested.
            let signal = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), timeout_ptr) };
            if signal > 0 {
                break Stop::Signal(signal);
            }
            match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::EAGAIN) => break Stop::Deadline(self.deadline_ms()),
                // EINTR: another signal interrupted the wait; wait again.
                _ => continue,
            }
        };
        self.shared.fired.store(
            match stop {
                Stop::Deadline(_) => -1,
                Stop::Signal(signal) => signal,
            },
            Ordering::SeqCst,
        );
        engine.increment_epoch();
        std::thread::sleep(GRACE);
        if self.claim() {
            let code = stop.report();
            // SAFETY: ends the process without running exit handlers or flushing another
            // thread's buffers, which may be locked by the stuck module; stderr is unbuffered.
            unsafe { libc::_exit(code) }
        }
    }

    fn deadline_ms(&self) -> u128 {
        self.deadline.map_or(0, |d| d.as_millis())
    }

    /// Why the watchdog fired, if it did.
    pub fn fired(&self) -> Option<Stop> {
        match self.shared.fired.load(Ordering::SeqCst) {
            0 => None,
            -1 => Some(Stop::Deadline(self.deadline_ms())),
            signal => Some(Stop::Signal(signal)),
        }
    }

    /// Takes the right to end the process; false when the other thread already took it.
    pub fn claim(&self) -> bool {
        !self.shared.claimed.swap(true, Ordering::SeqCst)
    }
}
