//! The engine's event log, in Docker's event shape: one JSON line per event in
//! `<state>/events.jsonl`, appended by whoever acted (the CLI, the daemon, a container's
//! monitor), so that every front door sees the same history. `docker events`, `capsa events`
//! and every waiter (`wait`, `docker run`) read it with an [`EventReader`], which follows the
//! file through inotify rather than polling.
//!
//! The log is bounded: past [`ROTATE_AT`] bytes the writer renames it to `events.jsonl.1`
//! (replacing the older one), so at most two files' worth of history is kept, as dockerd keeps
//! a bounded ring in memory. It lives under the state root: a reboot clears it, as it clears
//! dockerd's.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use serde::{Deserialize, Serialize};

use super::Engine;
use super::error::{IoContext, Result};

/// The log's file name under the state root.
const LOG: &str = "events.jsonl";
/// The rotated log.
const OLD_LOG: &str = "events.jsonl.1";
/// Size past which the log is rotated.
pub const ROTATE_AT: u64 = 4 << 20;

/// Who an event is about: Docker's `Actor`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Actor {
    /// The container id, image name or id, volume name, exec id.
    #[serde(rename = "ID")]
    pub id: String,
    /// `name`, `image`, `exitCode`, `signal`, labels, ...
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// One event, as Docker's `/events` sends it (the legacy `status`/`id`/`from` fields are kept
/// for container and image events: old clients and docker-compose 1.29 read them).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// `container`, `image`, `volume`, `network`, `daemon`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// `create`, `start`, `die`, `destroy`, `health_status: healthy`, `exec_start: sh`, ...
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    /// Always `local`.
    pub scope: String,
    /// Seconds since the epoch.
    pub time: i64,
    /// Nanoseconds since the epoch.
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

impl Event {
    /// A new event now.
    pub fn new(kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) -> Event {
        let now = chrono::Utc::now();
        let time_nano = now.timestamp_nanos_opt().unwrap_or_default();
        let legacy = matches!(kind, "container" | "image");
        Event {
            kind: kind.to_owned(),
            action: action.to_owned(),
            scope: "local".to_owned(),
            time: time_nano / 1_000_000_000,
            time_nano,
            status: legacy.then(|| action.to_owned()),
            id: legacy.then(|| id.to_owned()),
            from: if kind == "container" {
                attributes.get("image").cloned()
            } else {
                None
            },
            actor: Actor {
                id: id.to_owned(),
                attributes,
            },
        }
    }
}

/// The log files under a state dir.
fn paths(state: &Path) -> (PathBuf, PathBuf) {
    (state.join(OLD_LOG), state.join(LOG))
}

/// Appends `event` to the log under `state` (one `write` of one line with `O_APPEND`, so
/// concurrent writers never interleave), rotating it first when it is too big. Best effort: an
/// event that cannot be written must not fail the verb that caused it.
pub fn append(state: &Path, event: &Event) {
    let (old, current) = paths(state);
    let Ok(mut line) = serde_json::to_vec(event) else {
        return;
    };
    line.push(b'\n');
    if std::fs::metadata(&current).is_ok_and(|m| m.len() > ROTATE_AT) {
        let _ = std::fs::rename(&current, &old);
    }
    let file = OpenOptions::new().create(true).append(true).open(&current);
    match file {
        Ok(mut f) => {
            let _ = f.write_all(&line);
        }
        Err(e) => log::warn!("event log {}: {e}", current.display()),
    }
}

impl Engine {
    /// Records an event of this engine (see [`append`]).
    pub fn emit(&self, kind: &str, action: &str, id: &str, attributes: BTreeMap<String, String>) {
        append(&self.state, &Event::new(kind, action, id, attributes));
    }

    /// Records a container event with Docker's attributes (name, image, the labels, and
    /// `extra`).
    pub(crate) fn emit_container(
        &self,
        c: &super::ContainerRecord,
        action: &str,
        extra: &[(&str, String)],
    ) {
        let mut attributes: BTreeMap<String, String> = c.options.labels.clone();
        attributes.insert("name".into(), c.name.clone());
        attributes.insert("image".into(), c.image.clone());
        for (k, v) in extra {
            attributes.insert((*k).to_owned(), v.clone());
        }
        self.emit("container", action, &c.id, attributes);
    }

    /// Records a container event that a front door saw (`attach`, `export`).
    pub fn emit_container_event(&self, c: &super::ContainerRecord, action: &str) {
        self.emit_container(c, action, &[]);
    }

    /// A reader of this engine's events from `since` (nanoseconds since the epoch; `None`: only
    /// events from now on).
    pub fn event_reader(&self, since: Option<i64>) -> Result<EventReader> {
        EventReader::open(&self.state, since)
    }
}

/// Closing an inotify descriptor waits for an SRCU grace period in the kernel (fsnotify group
/// teardown: ~10 ms here). A multi-threaded process (the daemon) hands its readers'
/// descriptors to one closer thread, so a `wait` answers as soon as it has its event, not after
/// the close; a single-threaded one (the CLI, which must start no thread) closes in place.
fn close_later(inotify: Inotify) {
    static CLOSER: std::sync::OnceLock<std::sync::Mutex<std::sync::mpsc::Sender<Inotify>>> =
        std::sync::OnceLock::new();
    if crate::sys::proc::thread_count() <= 1 {
        drop(inotify);
        return;
    }
    let sender = CLOSER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Inotify>();
        let _ = std::thread::Builder::new()
            .name("inotify-closer".into())
            .spawn(move || {
                for i in rx {
                    drop(i);
                }
            });
        std::sync::Mutex::new(tx)
    });
    if let Ok(tx) = sender.lock()
        && let Err(std::sync::mpsc::SendError(i)) = tx.send(inotify)
    {
        drop(i);
    }
}

impl Drop for EventReader {
    fn drop(&mut self) {
        if let Some(i) = self.inotify.take() {
            close_later(i);
        }
    }
}

/// Reads the event log from a point in time and follows it: the rotated file first, then the
/// current one, then whatever is appended (woken by inotify on the state dir).
pub struct EventReader {
    state: PathBuf,
    /// The file being read and its inode.
    reader: Option<(BufReader<File>, u64)>,
    /// Events before this time are skipped (replay); `None`: none are replayed.
    since: Option<i64>,
    inotify: Option<Inotify>,
    /// A line read without its newline yet (a writer mid-append).
    partial: String,
}

impl EventReader {
    /// Opens the log under `state`; see [`Engine::event_reader`].
    pub fn open(state: &Path, since: Option<i64>) -> Result<EventReader> {
        std::fs::create_dir_all(state).io("mkdir", state)?;
        // Watch before reading, so nothing appended in between is missed.
        let inotify = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
        if let Some(i) = &inotify {
            let _ = i.add_watch(
                state,
                AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_TO,
            );
        }
        let (old, current) = paths(state);
        let mut reader = EventReader {
            state: state.to_owned(),
            reader: None,
            since,
            inotify,
            partial: String::new(),
        };
        match since {
            Some(_) => {
                // Replay: the rotated file, then the current one from its start.
                if let Ok(f) = File::open(&old) {
                    let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
                    reader.reader = Some((BufReader::new(f), ino));
                } else {
                    reader.open_current(false)?;
                }
            }
            None => reader.open_current(true)?,
        }
        let _ = current;
        Ok(reader)
    }

    /// Opens the current log (creating it), at its end when `at_end`.
    fn open_current(&mut self, at_end: bool) -> Result<()> {
        let (_, current) = paths(&self.state);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&current)
            .io("open", &current)?;
        let ino = f.metadata().map(|m| m.ino()).unwrap_or(0);
        if at_end {
            f.seek(SeekFrom::End(0)).io("seek", &current)?;
        } else {
            f.seek(SeekFrom::Start(0)).io("seek", &current)?;
        }
        self.reader = Some((BufReader::new(f), ino));
        self.partial.clear();
        Ok(())
    }

    /// The next event already in the log, without waiting.
    pub fn try_next(&mut self) -> Result<Option<Event>> {
        loop {
            let Some((reader, ino)) = &mut self.reader else {
                self.open_current(false)?;
                continue;
            };
            let n = reader
                .read_line(&mut self.partial)
                .io("read", &self.state)?;
            if n > 0 && self.partial.ends_with('\n') {
                let line = std::mem::take(&mut self.partial);
                let Ok(event) = serde_json::from_str::<Event>(&line) else {
                    continue;
                };
                if self.since.is_some_and(|s| event.time_nano < s) {
                    continue;
                }
                return Ok(Some(event));
            }
            if n > 0 {
                // A writer is mid-line: the rest comes with the next wake-up.
                return Ok(None);
            }
            // At the end of this file: go on to the current file if this one is not it (the
            // rotated file, or the log was rotated under us).
            let (_, current) = paths(&self.state);
            let current_ino = std::fs::metadata(&current).map(|m| m.ino()).ok();
            if current_ino.is_some_and(|i| i != *ino) {
                self.open_current(false)?;
                continue;
            }
            return Ok(None);
        }
    }

    /// The next event, waiting up to `timeout` (forever with `None`) for one to be appended.
    pub fn next(&mut self, timeout: Option<Duration>) -> Result<Option<Event>> {
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if let Some(e) = self.try_next()? {
                return Ok(Some(e));
            }
            let left = match deadline {
                Some(d) => match d.checked_duration_since(Instant::now()) {
                    Some(left) if !left.is_zero() => Some(left),
                    _ => return Ok(None),
                },
                None => None,
            };
            self.wait(left);
        }
    }

    /// Blocks until the state dir changes (or `timeout`, at most a second: a missed
    /// notification only delays, never loses, an event).
    fn wait(&mut self, timeout: Option<Duration>) {
        let cap = Duration::from_secs(1);
        let t = timeout.map_or(cap, |t| t.min(cap));
        match &self.inotify {
            Some(i) => {
                let mut fds = [PollFd::new(i.as_fd(), PollFlags::POLLIN)];
                let ms = u16::try_from(t.as_millis()).unwrap_or(u16::MAX).max(1);
                let _ = poll(&mut fds, PollTimeout::from(ms));
                // Drain: which file changed does not matter, the reader looks itself.
                while let Ok(events) = i.read_events() {
                    if events.is_empty() {
                        break;
                    }
                }
            }
            None => std::thread::sleep(t.min(Duration::from_millis(50))),
        }
    }
}

/// Docker's event filters (`type`, `event`, `container`, `image`, `label`, `volume`), each a
/// set of accepted values; an event passes when it matches every given key.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    pub filters: BTreeMap<String, Vec<String>>,
}

impl EventFilter {
    /// Whether `event` passes.
    pub fn accepts(&self, event: &Event) -> bool {
        self.filters.iter().all(|(key, values)| {
            let attr = |k: &str| event.actor.attributes.get(k).map(String::as_str);
            values.iter().any(|v| match key.as_str() {
                "type" => event.kind == *v,
                // `health_status: healthy` matches `health_status`; `exec_start: sh` too.
                "event" => event.action == *v || event.action.split(':').next() == Some(v.as_str()),
                "container" => {
                    event.kind == "container"
                        && (event.actor.id.starts_with(v.as_str()) || attr("name") == Some(v))
                }
                "image" => {
                    attr("image") == Some(v)
                        || (event.kind == "image"
                            && (event.actor.id == *v || attr("name") == Some(v)))
                }
                "volume" => event.kind == "volume" && event.actor.id == *v,
                "label" => match v.split_once('=') {
                    Some((k, val)) => attr(k) == Some(val),
                    None => attr(v).is_some(),
                },
                "scope" => event.scope == *v,
                _ => true,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn events_are_replayed_then_followed_across_rotation() {
        let dir = tempdir();
        append(&dir, &Event::new("container", "create", "a", attrs(&[])));
        let mut reader = EventReader::open(&dir, Some(0)).expect("open");
        let mut follower = EventReader::open(&dir, None).expect("open");
        assert_eq!(reader.try_next().unwrap().unwrap().action, "create");
        assert!(reader.try_next().unwrap().is_none());
        assert!(follower.try_next().unwrap().is_none());
        // Rotate by hand, then append: both readers go on to the new file.
        std::fs::rename(dir.join(LOG), dir.join(OLD_LOG)).unwrap();
        append(&dir, &Event::new("container", "start", "a", attrs(&[])));
        let next = reader.next(Some(Duration::from_secs(2))).unwrap().unwrap();
        assert_eq!(next.action, "start");
        let next = follower
            .next(Some(Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        assert_eq!(next.action, "start");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn filters_match_docker_keys() {
        let e = Event::new(
            "container",
            "health_status: healthy",
            "abcdef",
            attrs(&[("name", "web"), ("image", "busybox"), ("tier", "front")]),
        );
        let f = |k: &str, v: &str| EventFilter {
            filters: BTreeMap::from([(k.to_string(), vec![v.to_string()])]),
        };
        assert!(f("event", "health_status").accepts(&e));
        assert!(f("container", "web").accepts(&e));
        assert!(f("container", "abc").accepts(&e));
        assert!(f("label", "tier=front").accepts(&e));
        assert!(f("image", "busybox").accepts(&e));
        assert!(!f("type", "image").accepts(&e));
        assert!(!f("label", "tier=back").accepts(&e));
    }

    fn tempdir() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "capsa-test-events-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
