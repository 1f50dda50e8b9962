//! runc's command line: the same global flags, commands and command flags, parsed with clap.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use capsa_host::runtime::{self, CreateOptions, StateRoot};
use clap::{Parser, Subcommand, ValueEnum};

use crate::logger::LogFormat;
use crate::report;

#[derive(Parser, Debug)]
#[command(
    name = "capsa-runtime",
    version = concat!(env!("CARGO_PKG_VERSION"), "\nspec: 1.2.0"),
    about = "capsa's OCI runtime (runc-compatible command line)"
)]
pub struct Cli {
    /// Directory for container state (tmpfs recommended).
    #[arg(long, global = true, default_value = "/run/capsa-runtime")]
    pub root: PathBuf,
    /// Write log lines (and errors) to this file.
    #[arg(long, global = true)]
    pub log: Option<PathBuf>,
    /// Format of the log file.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log debug detail.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Manage cgroups through systemd (not supported: capsa uses cgroupfs).
    #[arg(long, global = true)]
    pub systemd_cgroup: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// Path to the bundle directory (holding config.json).
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Write the container's init pid to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the terminal's pty master to.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for a rootfs on ramfs).
    #[arg(long)]
    no_pivot: bool,
    /// Do not create a new session keyring for the container.
    #[arg(long)]
    no_new_keyring: bool,
    /// Pass this many extra descriptors (from fd 3) to the container.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// The container id.
    id: String,
}

impl CreateArgs {
    fn options(self) -> Result<CreateOptions> {
        let absolute = |p: PathBuf| -> Result<PathBuf> {
            if p.is_absolute() {
                Ok(p)
            } else {
                Ok(std::env::current_dir()
                    .context("current directory")?
                    .join(p))
            }
        };
        Ok(CreateOptions {
            id: self.id,
            bundle: absolute(self.bundle)?,
            pid_file: self.pid_file.map(absolute).transpose()?,
            console_socket: self.console_socket,
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: self.preserve_fds,
        })
    }
}

/// `exec`'s flags: runc's.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Allocate a pseudo-TTY for the process.
    #[arg(short, long)]
    tty: bool,
    /// Return once the process runs instead of waiting for it.
    #[arg(short, long)]
    detach: bool,
    /// Set an environment variable (KEY=value); repeatable.
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory of the process (absolute, in the container).
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// UID[:GID] to run as (numeric).
    #[arg(short, long, value_parser = parse_user)]
    user: Option<runtime::UserSpec>,
    /// Add a supplementary group (numeric); repeatable.
    #[arg(short = 'g', long)]
    additional_gids: Vec<u32>,
    /// Add a capability to every capability set; repeatable.
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set no_new_privs for the process.
    #[arg(long)]
    no_new_privs: bool,
    /// Path to a JSON file with the OCI process object to run (the process flags are then ignored).
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Write the process's pid to this file.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Unix socket to send the terminal's pty master to.
    #[arg(long)]
    console_socket: Option<PathBuf>,
    /// Pass this many extra descriptors (from fd 3) to the process.
    #[arg(long, default_value_t = 0)]
    preserve_fds: u32,
    /// The container id.
    id: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn parse_user(text: &str) -> Result<runtime::UserSpec> {
    Ok(text.parse()?)
}

impl ExecArgs {
    fn options(self) -> Result<runtime::ExecOptions> {
        let process = match self.process {
            Some(path) => runtime::ProcessSource::File(path),
            None => runtime::ProcessSource::Flags(runtime::ProcessFlags {
                args: self.args,
                tty: self.tty,
                env: self.env,
                cwd: self.cwd,
                user: self.user,
                additional_gids: self.additional_gids,
                capabilities: self
                    .cap
                    .iter()
                    .map(|c| runtime::parse_capability(c))
                    .collect::<Result<_, _>>()?,
                no_new_privs: self.no_new_privs,
            }),
        };
        Ok(runtime::ExecOptions {
            id: self.id,
            process,
            detach: self.detach,
            pid_file: self.pid_file,
            console_socket: self.console_socket,
            preserve_fds: self.preserve_fds,
        })
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a container; its process waits for `start`.
    Create(CreateArgs),
    /// Start a created container.
    Start { id: String },
    /// Create and start a container; wait for it unless --detach.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return once the container runs.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits (foreground only).
        #[arg(long)]
        keep: bool,
    },
    /// Run a new process in a running container; wait for it unless --detach.
    Exec(ExecArgs),
    /// Print a container's OCI state JSON.
    State { id: String },
    /// Send a signal (default SIGTERM) to a container.
    Kill {
        /// Signal every process in the container's cgroup.
        #[arg(short, long)]
        all: bool,
        id: String,
        #[arg(default_value = "SIGTERM")]
        signal: String,
    },
    /// Delete a container (--force to kill it if it runs).
    Delete {
        #[arg(short, long)]
        force: bool,
        id: String,
    },
    /// List containers.
    List {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        /// Print only the ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json into the bundle directory.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A spec for rootless containers (not supported yet).
        #[arg(long)]
        rootless: bool,
    },
    /// List a container's processes.
    Ps {
        #[arg(short, long, value_enum, default_value_t = Format::Table)]
        format: Format,
        id: String,
        /// Arguments for ps(1) (table format).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print what this runtime supports, as JSON.
    Features,
    /// Freeze every process of a running container.
    Pause { id: String },
    /// Thaw a paused container.
    Resume { id: String },
    /// Change the resources of a live container.
    Update(UpdateArgs),
    /// Print resource usage (and OOM events) of a container.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Stats interval of the stream (Go duration: 5s, 100ms).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
}

/// Runs the command; returns the process exit code.
pub fn dispatch(cli: Cli) -> Result<u8> {
    if cli.systemd_cgroup {
        bail!("--systemd-cgroup is not supported: capsa manages cgroups through cgroupfs");
    }
    let root = StateRoot::new(&cli.root);
    match cli.command {
        Command::Create(args) => {
            let options = args.options()?;
            runtime::create(&root, &options)?;
        }
        Command::Start { id } => runtime::start(&root, &id)?,
        Command::Run {
            create,
            detach,
            keep,
        } => {
            if keep {
                bail!("--keep is not supported yet");
            }
            let options = create.options()?;
            let code = runtime::run(&root, &options, detach)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::Exec(args) => {
            let code = runtime::exec(&root, &args.options()?)?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Command::State { id } => {
            let (_, record) = root.open(&id)?;
            let state = record.oci_state(record.status());
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        Command::Kill { all, id, signal } => {
            let signal = runtime::parse_signal(&signal)?;
            runtime::kill(&root, &id, signal, all)?;
        }
        Command::Delete { force, id } => match runtime::delete(&root, &id, force) {
            // runc: deleting a container that does not exist succeeds with --force.
            Err(capsa_host::Error::NotFound(_)) if force => {}
            other => other?,
        },
        Command::List { format, quiet } => report::list(&root, format, quiet)?,
        Command::Spec { bundle, rootless } => {
            if rootless {
                bail!("spec --rootless is not supported yet: capsa-runtime runs rootful");
            }
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("{} exists: remove it first", path.display());
            }
            std::fs::write(&path, capsa_host::spec::default_spec_json())
                .with_context(|| format!("write {}", path.display()))?;
        }
        Command::Ps {
            format,
            id,
            ps_args,
        } => report::ps(&root, &id, format, &ps_args)?,
        Command::Features => println!("{}", report::features()),
        Command::Pause { id } => runtime::pause(&root, &id)?,
        Command::Resume { id } => runtime::resume(&root, &id)?,
        Command::Update(args) => {
            let id = args.id.clone();
            runtime::update(&root, &id, &args.resources()?)?;
        }
        Command::Events {
            stats,
            interval,
            id,
        } => {
            let interval = runtime::parse_interval(&interval)?;
            runtime::events(&root, &id, stats, interval, &mut std::io::stdout())?;
        }
    }
    Ok(0)
}

/// `update`'s flags, as runc's.
#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// A linux.resources JSON document (`-` for stdin); flags given too override its fields.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit (bytes, or with a k/m/g suffix).
    #[arg(long)]
    memory: Option<String>,
    /// Memory soft limit.
    #[arg(long)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// CPU shares (relative weight).
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    cpu_share: Option<u64>,
    /// CPU CFS quota in microseconds per period (-1 for none).
    #[arg(long, allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU CFS period in microseconds.
    #[arg(long)]
    cpu_period: Option<u64>,
    /// Realtime period in microseconds.
    #[arg(long)]
    cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds.
    #[arg(long, allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPUs allowed (e.g. 0-1).
    #[arg(long)]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long)]
    cpuset_mems: Option<String>,
    /// Maximum number of processes (-1 for unlimited).
    #[arg(long, allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long)]
    blkio_weight: Option<u16>,
    /// The container id.
    id: String,
}

impl UpdateArgs {
    /// The resources to apply: the `--resources` document with the flags on top.
    fn resources(&self) -> Result<oci_spec::runtime::LinuxResources> {
        use serde_json::{Value, json};
        let mut doc: Value = match &self.resources {
            None => json!({}),
            Some(path) => {
                let text = if path.as_os_str() == "-" {
                    std::io::read_to_string(std::io::stdin())
                        .context("read resources from stdin")?
                } else {
                    std::fs::read_to_string(path)
                        .with_context(|| format!("read {}", path.display()))?
                };
                serde_json::from_str(&text).context("parse --resources JSON")?
            }
        };
        let mut set = |section: &str, key: &str, value: Value| {
            if !doc[section].is_object() {
                doc[section] = json!({});
            }
            doc[section][key] = value;
        };
        if let Some(v) = &self.memory {
            set("memory", "limit", json!(parse_bytes(v)?));
        }
        if let Some(v) = &self.memory_reservation {
            set("memory", "reservation", json!(parse_bytes(v)?));
        }
        if let Some(v) = &self.memory_swap {
            set("memory", "swap", json!(parse_bytes(v)?));
        }
        if let Some(v) = self.cpu_share {
            set("cpu", "shares", json!(v));
        }
        if let Some(v) = self.cpu_quota {
            set("cpu", "quota", json!(v));
        }
        if let Some(v) = self.cpu_period {
            set("cpu", "period", json!(v));
        }
        if let Some(v) = self.cpu_rt_period {
            set("cpu", "realtimePeriod", json!(v));
        }
        if let Some(v) = self.cpu_rt_runtime {
            set("cpu", "realtimeRuntime", json!(v));
        }
        if let Some(v) = &self.cpuset_cpus {
            set("cpu", "cpus", json!(v));
        }
        if let Some(v) = &self.cpuset_mems {
            set("cpu", "mems", json!(v));
        }
        if let Some(v) = self.pids_limit {
            set("pids", "limit", json!(v));
        }
        if let Some(v) = self.blkio_weight {
            set("blockIO", "weight", json!(v));
        }
        serde_json::from_value(doc).context("invalid resources")
    }
}

/// `512m`, `1g`, `1048576` or `-1` as a byte count, as runc's units.RAMInBytes.
fn parse_bytes(text: &str) -> Result<i64> {
    let lower = text.trim().to_ascii_lowercase();
    let lower = lower.trim_end_matches('b');
    let (number, factor) = match lower.chars().last() {
        Some('k') => (&lower[..lower.len() - 1], 1i64 << 10),
        Some('m') => (&lower[..lower.len() - 1], 1 << 20),
        Some('g') => (&lower[..lower.len() - 1], 1 << 30),
        Some('t') => (&lower[..lower.len() - 1], 1 << 40),
        _ => (lower, 1),
    };
    let value: i64 = number
        .trim()
        .parse()
        .with_context(|| format!("{text:?} is not a size (e.g. 512m)"))?;
    if value < 0 {
        return Ok(-1);
    }
    value
        .checked_mul(factor)
        .with_context(|| format!("{text:?} is too large"))
}
