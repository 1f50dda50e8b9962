//! `events`: a container's resource usage as runc prints it, once (`--stats`) or as a stream:
//! a `stats` event every interval and an `oom` event whenever the kernel's OOM killer kills a
//! process of the container. The stream ends when the container stops.

use std::io::Write;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::state::{StateRoot, Status};
use crate::cgroups::Layout;
use crate::error::{Context, Result, invalid};

/// How often the OOM counter is checked between stats.
const OOM_POLL: Duration = Duration::from_millis(100);

#[derive(Serialize)]
struct Event<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<T>,
}

/// Writes events of container `id` to `out`: one stats event if `once`, else a stream.
pub fn events(
    root: &StateRoot,
    id: &str,
    once: bool,
    interval: Duration,
    out: &mut impl Write,
) -> Result<()> {
    let (dir, record) = root.open(id)?;
    // Don't hold the container's lock while streaming: other commands must work meanwhile.
    drop(dir);
    let cgroup = record
        .cgroup
        .clone()
        .ok_or_else(|| invalid(format!("container {id:?} has no cgroup")))?;
    let layout = Layout::detect()?;
    let emit = |out: &mut dyn Write, kind: &str, data: Option<crate::cgroups::stats::Stats>| {
        let event = Event { kind, id, data };
        let line = serde_json::to_string(&event).map_err(|e| invalid(e.to_string()))?;
        writeln!(out, "{line}")
            .and_then(|()| out.flush())
            .with(|| "write event".to_string())
    };
    if once {
        return emit(out, "stats", Some(cgroup.stats()?));
    }
    let mut ooms = cgroup.oom_kills(&layout);
    let mut next_stats = Instant::now();
    loop {
        let now_ooms = cgroup.oom_kills(&layout);
        if now_ooms > ooms {
            ooms = now_ooms;
            emit(out, "oom", None)?;
        }
        if record.status() == Status::Stopped {
            // An OOM kill often is what stopped it: look once more before ending the stream.
            if cgroup.oom_kills(&layout) > ooms {
                emit(out, "oom", None)?;
            }
            return Ok(());
        }
        if Instant::now() >= next_stats {
            emit(out, "stats", Some(cgroup.stats()?))?;
            next_stats = Instant::now() + interval;
        }
        std::thread::sleep(OOM_POLL.min(interval));
    }
}

/// Parses a Go-style duration as runc takes it: `5s`, `100ms`, `1m`, `1h`.
pub fn parse_interval(text: &str) -> Result<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| invalid(format!("interval {text:?} has no unit (e.g. 5s)")))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| invalid(format!("interval {text:?} is not a number")))?;
    let seconds = match unit {
        "ns" => value / 1e9,
        "us" | "µs" => value / 1e6,
        "ms" => value / 1e3,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(invalid(format!("interval {text:?}: unknown unit {unit:?}"))),
    };
    if seconds <= 0.0 {
        return Err(invalid(format!("interval {text:?} must be positive")));
    }
    Ok(Duration::from_secs_f64(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        assert_eq!(parse_interval("5s").ok(), Some(Duration::from_secs(5)));
        assert_eq!(
            parse_interval("100ms").ok(),
            Some(Duration::from_millis(100))
        );
        assert_eq!(parse_interval("1m").ok(), Some(Duration::from_secs(60)));
        assert!(parse_interval("5").is_err());
        assert!(parse_interval("0s").is_err());
        assert!(parse_interval("5 parsecs").is_err());
    }
}
