//! Times as Docker shows them: unix seconds from RFC 3339, and go-units' human durations
//! ("Up 3 seconds", "Exited (0) 2 minutes ago").

use std::time::Duration;

/// Seconds since the epoch of an RFC 3339 time (0 when unparsable).
pub fn unix(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.timestamp())
        .unwrap_or(0)
}

/// How long ago an RFC 3339 time was.
pub fn since(rfc3339: &str) -> Duration {
    let then = chrono::DateTime::parse_from_rfc3339(rfc3339)
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|_| chrono::Utc::now());
    (chrono::Utc::now() - then).to_std().unwrap_or_default()
}

/// go-units' `HumanDuration`, which `docker ps` uses.
pub fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let minutes = secs / 60;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (d.as_secs_f64() / 3600.0).round() as u64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    let days = hours / 24;
    if days < 7 * 2 {
        return format!("{days} days");
    }
    if days < 30 * 2 {
        return format!("{} weeks", days / 7);
    }
    if days < 365 * 2 {
        return format!("{} months", days / 30);
    }
    format!("{} years", days / 365)
}

/// Docker's zero time, for what never happened (`StartedAt` of a container never started).
pub const ZERO: &str = "0001-01-01T00:00:00Z";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_docker_prints_them() {
        assert_eq!(human(Duration::from_millis(300)), "Less than a second");
        assert_eq!(human(Duration::from_secs(1)), "1 second");
        assert_eq!(human(Duration::from_secs(45)), "45 seconds");
        assert_eq!(human(Duration::from_secs(90)), "About a minute");
        assert_eq!(human(Duration::from_secs(600)), "10 minutes");
        assert_eq!(human(Duration::from_secs(3600)), "About an hour");
        assert_eq!(human(Duration::from_secs(5 * 3600)), "5 hours");
        assert_eq!(human(Duration::from_secs(3 * 86400)), "3 days");
    }
}
