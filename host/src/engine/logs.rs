//! `capsa logs`: reads the json-file log the monitor writes, optionally following it while the
//! container runs.

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

impl Engine {
    /// Calls `emit` for each log line (the last `tail` only, when given); with `follow`, keeps
    /// reading new lines until the container stops.
    pub fn logs(
        &self,
        c: &ContainerRecord,
        tail: Option<usize>,
        follow: bool,
        emit: &mut dyn FnMut(&LogLine),
    ) -> Result<()> {
        let path = self.log_path(c);
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !follow => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Not started yet: wait for the monitor to create it.
                loop {
                    std::thread::sleep(Duration::from_millis(50));
                    if let Ok(f) = std::fs::File::open(&path) {
                        break f;
                    }
                    if !matches!(self.state(c).0, State::Running | State::Paused) {
                        return Ok(());
                    }
                }
            }
            Err(e) => return Err(e).io("open", path),
        };
        let mut reader = BufReader::new(file);
        let mut lines = Vec::new();
        let mut line = String::new();
        while reader.read_line(&mut line).io("read", &path)? > 0 {
            if line.ends_with('\n') {
                if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                    lines.push(l);
                }
                line.clear();
            } else {
                break;
            }
        }
        let skip = tail.map_or(0, |t| lines.len().saturating_sub(t));
        for l in &lines[skip..] {
            emit(l);
        }
        if !follow {
            return Ok(());
        }
        let mut pos = reader.stream_position().io("seek", &path)? - line.len() as u64;
        line.clear();
        loop {
            let running = matches!(self.state(c).0, State::Running | State::Paused);
            reader.seek(SeekFrom::Start(pos)).io("seek", &path)?;
            loop {
                let n = reader.read_line(&mut line).io("read", &path)?;
                if n == 0 || !line.ends_with('\n') {
                    break;
                }
                pos += n as u64;
                if let Ok(l) = serde_json::from_str::<LogLine>(&line) {
                    emit(&l);
                }
                line.clear();
            }
            line.clear();
            if !running {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
