//! The `--log` file: runc's callers (containerd, conmon) read the last error from it, in runc's
//! JSON format (`{"level":"error","msg":"…","time":"…"}`) with `--log-format json`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

use anyhow::Context;
use clap::ValueEnum;

/// How log lines are written.
#[derive(Debug, Clone, Copy, ValueEnum, Default)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

struct Logger {
    file: Option<Mutex<File>>,
    format: LogFormat,
    level: log::LevelFilter,
}

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let level = record.level().as_str().to_ascii_lowercase();
        let level = if level == "warn" {
            "warning".into()
        } else {
            level
        };
        let line = match self.format {
            LogFormat::Json => {
                serde_json::json!({"level": level, "msg": record.args().to_string(), "time": time})
                    .to_string()
            }
            LogFormat::Text => format!("time=\"{time}\" level={level} msg=\"{}\"", record.args()),
        };
        match &self.file {
            Some(file) => {
                if let Ok(mut f) = file.lock() {
                    let _ = writeln!(f, "{line}");
                }
            }
            // Without --log, warnings still reach the user; errors are printed by main.
            None if record.level() <= log::Level::Warn && record.level() != log::Level::Error => {
                eprintln!("capsa-runtime: {}", record.args());
            }
            None if record.level() >= log::Level::Debug => eprintln!("{line}"),
            None => {}
        }
    }

    fn flush(&self) {}
}

/// Installs the logger for `--log`, `--log-format` and `--debug`.
pub fn install(path: Option<&Path>, format: LogFormat, debug: bool) -> anyhow::Result<()> {
    let file = match path {
        Some(p) => Some(Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("open log file {}", p.display()))?,
        )),
        None => None,
    };
    let level = if debug {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Warn
    };
    log::set_max_level(level);
    log::set_boxed_logger(Box::new(Logger {
        file,
        format,
        level,
    }))
    .context("install logger")
}
