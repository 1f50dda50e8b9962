//! `capsa logs` / `GET /containers/{id}/logs`: reads the json-file log the monitor writes,
//! optionally following it while the container runs (through the event log: a follower wakes
//! when the container dies, not on a timer).

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::Duration;

use serde::Deserialize;

use super::Engine;
use super::container::{ContainerRecord, State};
use super::error::{IoContext, Result};

/// One line of Docker's json-file log.
#[derive(Debug, Clone, Deserialize)]
pub struct LogLine {
    /// The bytes written, with their newline.
    pub log: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// RFC 3339 with nanoseconds.
    pub time: String,
}

impl LogLine {
    /// The line's time in nanoseconds since the epoch (0 when unparsable).
    pub fn time_nanos(&self) -> i64 {
        chrono::DateTime::parse_from_rfc3339(&self.time)
            .ok()
            .and_then(|t| t.timestamp_nanos_opt())
            .unwrap_or(0)
    }
}

/// Which lines `logs` gives.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Only the last N lines (before following).
    pub tail: Option<usize>,
    /// Keep giving new lines until the container stops.
    pub follow: bool,
    /// Lines at or after this time (ns since the epoch).
    pub since: Option<i64>,
    /// Lines before this time (ns since the epoch).
    pub until: Option<i64>,
    /// `stdout` lines.
    pub stdout: bool,
    /// `stderr` lines.
    pub stderr: bool,
}

/// Parses Docker's `since`/`until`: seconds since the epoch (with a fraction), an RFC 3339
/// time, or a duration back from now (`10m`, `1h30m`). Returns nanoseconds since the epoch.
pub fn parse_time(text: &str) -> Result<i64> {
    if let Ok(secs) = text.parse::<f64>() {
        return Ok((secs * 1e9) as i64);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_nanos_opt().unwrap_or(0));
    }
    let back = super::spec::parse_duration(text).map_err(|_| {
        super::error::invalid(
            format!("time {text:?}"),
            "expected seconds since the epoch, an RFC 3339 time or a duration like 10m",
        )
    })?;
    Ok(chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) - back)
}

impl Engine {
    /// Calls `emit` for each log line that `options` selects; `emit` returns false to stop.
    /// With `follow`, keeps reading until the container stops or `cancelled` says so (asked
    /// ten times a second: a client that went away).
    pub fn logs(
        &self,
        c: &ContainerRecord,
        options: &LogOptions,
        emit: &mut dyn FnMut(&LogLine) -> bool,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<()> {
        let wanted = |l: &LogLine| {
            let stream_ok = match l.stream.as_str() {
                "stderr" => options.stderr,
                _ => options.stdout,
            };
            let t = || l.time_nanos();
            stream_ok
                && options.since.is_none_or(|s| t() >= s)
                && options.until.is_none_or(|u| t() < u)
        };
        let running = |e: &Engine| {
            matches!(
                e.state(c).0,
                State::Running | State::Paused | State::Restarting
            ) || e.monitor_alive(c)
        };
        // Follow through the event log: opened first, so a death after reading is seen.
        let mut events = if options.follow {
            Some(self.event_reader(None)?)
        } else {
            None
        };
        let path = self.log_path(c);
        let file = loop {
            match std::fs::File::open(&path) {
                Ok(f) => break f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if events.is_none() || !running(self) {
                        return Ok(());
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(e).io("open", path),
            }
        };
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).io("read", &path)? > 0 {
            if !line.ends_with('\n') {
                break;
            }
            if let Ok(l) = serde_json::from_str::<LogLine>(&line)
                && wanted(&l)
            {
                lines.push(l);
            }
            line.clear();
        }
        let skip = options.tail.map_or(0, |t| lines.len().saturating_sub(t));
        for l in &lines[skip..] {
            if !emit(l) {
                return Ok(());
            }
        }
        let Some(events) = &mut events else {
            return Ok(());
        };
        let mut pos = reader.stream_position().io("seek", &path)? - line.len() as u64;
        line.clear();
        loop {
            let alive = running(self);
            reader.seek(SeekFrom::Start(pos)).io("seek", &path)?;
            loop {
                let n = reader.read_line(&mut line).io("read", &path)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                pos += n as u64;
                if let Ok(l) = serde_json::from_str::<LogLine>(&line)
                    && wanted(&l)
                    && !emit(&l)
                {
                    return Ok(());
                }
                line.clear();
            }
            line.clear();
            if !alive || cancelled() {
                return Ok(());
            }
            if options
                .until
                .is_some_and(|u| chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0) >= u)
            {
                return Ok(());
            }
            // New lines come without an event: look again soon, sooner when the container died.
            let _ = events.next(Some(Duration::from_millis(100)));
        }
    }
}
