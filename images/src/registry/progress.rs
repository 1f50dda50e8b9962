//! Progress of a pull or push, reported through a trait so that the caller decides how to show
//! it: [`Bars`] (indicatif bars per blob, for a terminal), [`Lines`] (one line per event, for
//! logs and pipes) or [`Quiet`]. Calls come from several download threads at once.

use std::collections::HashMap;
use std::io::Write;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::digest::Digest;

/// How a blob ended up in the store (or the registry, for a push).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlobOutcome {
    /// The store (or the destination registry) already had it: nothing was transferred.
    Exists,
    /// Transferred and verified.
    Transferred,
    /// Mounted from another repository of the destination registry (push).
    Mounted,
}

/// Receives pull and push progress. Every method has a no-op default.
pub trait Progress: Sync {
    /// A free-form step (`resolved manifest sha256:…`).
    fn message(&self, _text: &str) {}
    /// A blob transfer starts: `size` bytes, of which `from` are already there (a resumed
    /// download).
    fn blob_start(&self, _digest: &Digest, _size: u64, _from: u64) {}
    /// `done` bytes of the blob are now transferred (including the resumed part).
    fn blob_progress(&self, _digest: &Digest, _done: u64) {}
    /// A blob is finished.
    fn blob_done(&self, _digest: &Digest, _outcome: BlobOutcome) {}
    /// A layer is unpacked into the store (pull).
    fn layer_unpacked(&self, _digest: &Digest) {}
}

/// Reports nothing (`-q`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Quiet;

impl Progress for Quiet {}

fn short(d: &Digest) -> &str {
    &d.hex()[..12]
}

/// Plain lines on stderr, for when stderr is not a terminal.
#[derive(Debug, Default)]
pub struct Lines;

impl Lines {
    fn line(&self, text: std::fmt::Arguments<'_>) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{text}");
    }
}

impl Progress for Lines {
    fn message(&self, text: &str) {
        self.line(format_args!("{text}"));
    }
    fn blob_start(&self, digest: &Digest, size: u64, from: u64) {
        if from > 0 {
            self.line(format_args!(
                "{}: resuming at {from} of {size} bytes",
                short(digest)
            ));
        } else {
            self.line(format_args!("{}: {size} bytes", short(digest)));
        }
    }
    fn blob_done(&self, digest: &Digest, outcome: BlobOutcome) {
        let what = match outcome {
            BlobOutcome::Exists => "already there",
            BlobOutcome::Transferred => "done",
            BlobOutcome::Mounted => "mounted",
        };
        self.line(format_args!("{}: {what}", short(digest)));
    }
    fn layer_unpacked(&self, digest: &Digest) {
        self.line(format_args!("{}: unpacked", short(digest)));
    }
}

/// One indicatif bar per blob on stderr, for a terminal.
pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<Digest, ProgressBar>>,
}

impl Default for Bars {
    fn default() -> Self {
        Bars::new()
    }
}

impl Bars {
    /// Bars drawn on stderr (hidden when it is not a terminal).
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            bars: Mutex::new(HashMap::new()),
        }
    }

    fn bar(&self, digest: &Digest) -> Option<ProgressBar> {
        self.bars.lock().ok()?.get(digest).cloned()
    }
}

impl Progress for Bars {
    fn message(&self, text: &str) {
        let _ = self.multi.println(text);
    }
    fn blob_start(&self, digest: &Digest, size: u64, from: u64) {
        let bar = self.multi.add(ProgressBar::new(size));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} {msg}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_prefix(short(digest).to_owned());
        bar.set_position(from);
        // No steady tick: it would run a thread of indicatif's past the pull, and the engine
        // forks (the wasm compiler, containers) only from a single-threaded process. The bars
        // redraw on every position update instead.
        if let Ok(mut bars) = self.bars.lock() {
            bars.insert(digest.clone(), bar);
        }
    }
    fn blob_progress(&self, digest: &Digest, done: u64) {
        if let Some(bar) = self.bar(digest) {
            bar.set_position(done);
        }
    }
    fn blob_done(&self, digest: &Digest, outcome: BlobOutcome) {
        let text = match outcome {
            BlobOutcome::Exists => "already there",
            BlobOutcome::Transferred => "done",
            BlobOutcome::Mounted => "mounted",
        };
        match self.bar(digest) {
            Some(bar) => bar.finish_with_message(text),
            None => {
                let _ = self.multi.println(format!("{}: {text}", short(digest)));
            }
        }
    }
    fn layer_unpacked(&self, digest: &Digest) {
        if let Some(bar) = self.bar(digest) {
            bar.finish_with_message("unpacked");
        }
    }
}
