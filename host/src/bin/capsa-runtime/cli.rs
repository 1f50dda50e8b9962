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
    }
    Ok(0)
}
