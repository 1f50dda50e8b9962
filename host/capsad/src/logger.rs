//! `--log-level`: log lines on stderr, as dockerd writes them (`time="…" level=info msg="…"`).

use anyhow::{Result, bail};

struct Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Error => "error",
            log::Level::Warn => "warning",
            log::Level::Info => "info",
            log::Level::Debug => "debug",
            log::Level::Trace => "trace",
        };
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        eprintln!(
            "time=\"{time}\" level={level} msg={:?}",
            record.args().to_string()
        );
    }

    fn flush(&self) {}
}

static LOGGER: Logger = Logger;

/// Installs the logger at `level`.
pub fn init(level: &str) -> Result<()> {
    let filter = match level {
        "debug" => log::LevelFilter::Debug,
        "info" => log::LevelFilter::Info,
        "warn" | "warning" => log::LevelFilter::Warn,
        "error" | "fatal" | "panic" => log::LevelFilter::Error,
        other => bail!("--log-level {other:?}: use debug, info, warn, error or fatal"),
    };
    log::set_logger(&LOGGER).map_err(|e| anyhow::anyhow!("logger: {e}"))?;
    log::set_max_level(filter);
    Ok(())
}
