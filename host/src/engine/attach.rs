//! Attaching to a container: the small protocol between a container's monitor (which holds
//! the payload's stdio) and whoever attaches (the daemon for `docker attach`/`docker run`, the
//! `capsa` CLI), and Docker's stream format.
//!
//! A client connects to the monitor's socket ([`socket_path`]) — or, to be attached before the
//! payload starts (`docker run`), hands the monitor one end of a socketpair at start — and
//! sends one JSON line, a [`Hello`]. For an attach, the monitor then sends the payload's output
//! exactly as Docker's attach endpoint does: raw bytes with a terminal, else frames of
//! `[stream, 0, 0, 0, size as u32 BE]` + bytes (stream 1 stdout, 2 stderr), so the daemon copies
//! them to its client without re-framing. Bytes the client sends after the line are the
//! payload's stdin; shutting down its write side closes the payload's stdin (with
//! `StdinOnce`). The monitor closes the connection when the payload has exited and its output
//! is drained. A resize is a connection whose hello carries `resize` and nothing else.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::Engine;
use super::container::ContainerRecord;
use super::error::{EngineError, Result, invalid};

/// The first line a client sends to the monitor.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Hello {
    /// The client sends the payload's stdin.
    pub stdin: bool,
    /// The client wants stdout.
    pub stdout: bool,
    /// The client wants stderr.
    pub stderr: bool,
    /// Only set the terminal's size to (rows, columns), then close.
    pub resize: Option<(u16, u16)>,
}

/// Docker's stream numbers in a multiplexed frame.
pub const STDIN: u8 = 0;
/// Standard output.
pub const STDOUT: u8 = 1;
/// Standard error.
pub const STDERR: u8 = 2;

/// Frames `bytes` for `stream` in Docker's multiplexed format (`application/vnd.docker.multiplexed-stream`).
pub fn frame(stream: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 8);
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
    out
}

/// Splits a multiplexed stream back into (stream, bytes) frames as they arrive.
#[derive(Debug, Default)]
pub struct Demux {
    buf: Vec<u8>,
}

impl Demux {
    /// Feeds bytes; returns the complete frames.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
        self.buf.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while self.buf.len() >= 8 {
            let size =
                u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]) as usize;
            if self.buf.len() < 8 + size {
                break;
            }
            let stream = self.buf[0];
            let data = self.buf[8..8 + size].to_vec();
            self.buf.drain(..8 + size);
            frames.push((stream, data));
        }
        frames
    }
}

/// Where the monitor of container `id` listens (short enough for `sun_path`).
pub fn socket_path(state: &Path, id: &str) -> PathBuf {
    state
        .join("attach")
        .join(format!("{}.sock", &id[..id.len().min(24)]))
}

/// Docker's `--detach-keys`: `ctrl-p,ctrl-q` by default; `a`..`z`, `ctrl-a`..`ctrl-z`,
/// `ctrl-@`, `ctrl-[`, `ctrl-\`, `ctrl-]`, `ctrl-^`, `ctrl-_`, and single characters.
pub fn parse_detach_keys(text: &str) -> Result<Vec<u8>> {
    let mut keys = Vec::new();
    for part in text.split(',') {
        let p = part.trim();
        let key = if let Some(c) = p.strip_prefix("ctrl-") {
            match c.as_bytes() {
                [b @ b'a'..=b'z'] => b - b'a' + 1,
                [b'@'] => 0,
                [b'['] => 27,
                [b'\\'] => 28,
                [b']'] => 29,
                [b'^'] => 30,
                [b'_'] => 31,
                _ => {
                    return Err(invalid(
                        format!("detach keys {text:?}"),
                        format!("unknown key {p:?}"),
                    ));
                }
            }
        } else if p.len() == 1 {
            p.as_bytes()[0]
        } else {
            return Err(invalid(
                format!("detach keys {text:?}"),
                format!("unknown key {p:?}"),
            ));
        };
        keys.push(key);
    }
    Ok(keys)
}

/// Watches stdin bytes for the detach sequence, passing the others through (a partial match is
/// held back until it fails, as Docker's proxy does).
#[derive(Debug, Clone)]
pub struct DetachWatch {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachWatch {
    /// A watcher for `keys` (empty: never detaches).
    pub fn new(keys: Vec<u8>) -> Self {
        DetachWatch { keys, matched: 0 }
    }

    /// Filters `input`: returns the bytes to forward and whether the sequence was typed.
    pub fn filter(&mut self, input: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(input.len());
        for &b in input {
            if self.keys.is_empty() {
                out.push(b);
                continue;
            }
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return (out, true);
                }
            } else {
                out.extend_from_slice(&self.keys[..self.matched]);
                self.matched = 0;
                if b == self.keys[0] {
                    self.matched = 1;
                } else {
                    out.push(b);
                }
            }
        }
        (out, false)
    }
}

impl Engine {
    /// Connects to the monitor of running container `c` and sends `hello`.
    pub fn attach_connect(&self, c: &ContainerRecord, hello: &Hello) -> Result<UnixStream> {
        let path = socket_path(&self.state, &c.id);
        let mut stream = UnixStream::connect(&path).map_err(|e| {
            EngineError::Conflict(format!(
                "container {} has no monitor to attach to ({e}): is it running?",
                c.name
            ))
        })?;
        send_hello(&mut stream, hello)?;
        Ok(stream)
    }

    /// Sets the terminal size of running container `c` (rows, columns).
    pub fn resize(&self, c: &ContainerRecord, rows: u16, columns: u16) -> Result<()> {
        if !c.tty {
            return Ok(());
        }
        let mut stream = self.attach_connect(
            c,
            &Hello {
                resize: Some((rows, columns)),
                ..Hello::default()
            },
        )?;
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        match answer.trim() {
            "" | "ok" => Ok(()),
            other => Err(EngineError::Conflict(other.to_owned())),
        }
    }
}

/// Sets a pty's window size (TIOCSWINSZ on its master): the monitor's terminals and the
/// daemon's exec terminals.
pub fn set_window_size(
    master: &impl std::os::fd::AsRawFd,
    rows: u16,
    cols: u16,
) -> std::io::Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which is valid for the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes the hello line.
pub fn send_hello(stream: &mut impl Write, hello: &Hello) -> Result<()> {
    let mut line = serde_json::to_vec(hello).map_err(|e| invalid("attach", e.to_string()))?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .map_err(|e| EngineError::Conflict(format!("attach: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let mut d = Demux::default();
        let mut bytes = frame(STDOUT, b"hello");
        bytes.extend(frame(STDERR, b"err"));
        let (a, b) = bytes.split_at(6);
        assert!(d.push(a).is_empty());
        assert_eq!(
            d.push(b),
            vec![(STDOUT, b"hello".to_vec()), (STDERR, b"err".to_vec())]
        );
    }

    #[test]
    fn detach_keys_parse_and_match() {
        let keys = parse_detach_keys("ctrl-p,ctrl-q").unwrap();
        assert_eq!(keys, vec![16, 17]);
        let mut w = DetachWatch::new(keys);
        assert_eq!(w.filter(b"ab\x10"), (b"ab".to_vec(), false));
        assert_eq!(w.filter(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(w.filter(b"\x10\x11rest"), (Vec::new(), true));
        assert!(parse_detach_keys("ctrl-1").is_err());
    }
}
