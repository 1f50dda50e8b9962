//! capsa: the container engine CLI, with Docker's verbs and flags where they apply. A thin
//! client of `capsa_host::engine` (containers) and `capsa_images` (images). It never starts a
//! thread: the monitor of a detached container is forked from it.

mod format;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use capsa_host::engine::{
    CommitOptions, ContainerRecord, Engine, ExecRequest, Network, RunOptions, State, parse_bytes,
};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use format::Output;

#[derive(Parser)]
#[command(
    name = "capsa",
    version,
    about = "A container engine: images, containers, wasm"
)]
struct Cli {
    /// The image store and container layers [env: CAPSA_ROOT; default: /var/lib/capsa].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Runtime state, cleared by a reboot [env: CAPSA_STATE; default: /run/capsa].
    #[arg(long, global = true)]
    state: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct CreateArgs {
    /// Remove the container when it exits.
    #[arg(long)]
    rm: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    tty: bool,
    /// The container's name.
    #[arg(long)]
    name: Option<String>,
    /// Set an environment variable (KEY=VALUE, or KEY to pass the caller's).
    #[arg(short, long = "env")]
    env: Vec<String>,
    /// Read environment variables from a file.
    #[arg(long = "env-file")]
    env_file: Vec<PathBuf>,
    /// The working directory in the container.
    #[arg(short, long)]
    workdir: Option<String>,
    /// USER[:GROUP], names or ids.
    #[arg(short, long)]
    user: Option<String>,
    /// The container's hostname.
    #[arg(long)]
    hostname: Option<String>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long)]
    entrypoint: Option<String>,
    /// Bind mount SRC:DST[:ro].
    #[arg(short, long = "volume")]
    volume: Vec<String>,
    /// Mount a tmpfs: DST[:OPTIONS].
    #[arg(long)]
    tmpfs: Vec<String>,
    /// Mount the root filesystem read-only.
    #[arg(long = "read-only")]
    read_only: bool,
    /// Memory limit (e.g. 64m).
    #[arg(short, long)]
    memory: Option<String>,
    /// CPU limit (e.g. 0.5).
    #[arg(long)]
    cpus: Option<f64>,
    /// Maximum number of processes.
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// none (loopback only) or host.
    #[arg(long, default_value = "none")]
    network: String,
    /// The parent cgroup of the container's cgroup (default /capsa).
    #[arg(long = "cgroup-parent")]
    cgroup_parent: Option<String>,
    /// The signal `stop` sends first (default: the image's StopSignal, else SIGTERM).
    #[arg(long = "stop-signal")]
    stop_signal: Option<String>,
    /// Pull the image first: missing (when it is not in the store), always or never.
    #[arg(long, default_value = "missing", value_parser = ["missing", "always", "never"])]
    pull: String,
    /// The platform to pull (os/arch[/variant]) when the image is pulled.
    #[arg(long)]
    platform: Option<String>,
    /// No pull progress.
    #[arg(short, long)]
    quiet: bool,
    /// The image.
    image: String,
    /// The command and its arguments (replace the image's Cmd).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images.
    Ls(ImagesArgs),
    /// Show images as JSON (RootFS.Layers lists the layer digests).
    Inspect { images: Vec<String> },
    /// Remove images without a name that no container uses (-a: every unused image).
    Prune {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
    },
    /// Remove images.
    Rm(RmiArgs),
    /// Show an image's history.
    History(HistoryArgs),
    /// Name an image.
    Tag { source: String, target: String },
}

#[derive(Args)]
struct ImagesArgs {
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// json, or a template like '{{.Repository}}:{{.Tag}}'.
    #[arg(long)]
    format: Option<String>,
}

#[derive(Args)]
struct RmiArgs {
    /// Remove an image with several names, by id.
    #[arg(short, long)]
    force: bool,
    #[arg(required = true)]
    images: Vec<String>,
}

#[derive(Args)]
struct HistoryArgs {
    #[arg(short, long)]
    quiet: bool,
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(Subcommand)]
enum Command {
    /// Load images from a docker-save tarball, an OCI archive or an OCI layout directory.
    Load {
        #[arg(short, long)]
        input: PathBuf,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Pull an image from a registry (OCI distribution API).
    Pull {
        /// `[registry/]repository[:tag|@digest]`; Docker Hub when no registry is named.
        reference: String,
        /// os/arch[/variant]; default linux/<this machine>, else wasi/wasm.
        #[arg(long)]
        platform: Option<String>,
        /// Plain HTTP for this registry (loopback registries always are).
        #[arg(long)]
        insecure: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Push an image to a registry.
    Push {
        /// The image in the store.
        image: String,
        /// Where to push it, if not to the image's own name.
        destination: Option<String>,
        /// Plain HTTP for this registry (loopback registries always are).
        #[arg(long)]
        insecure: bool,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Log in to a registry: the credentials are checked, then stored (0600) in the store root.
    Login {
        /// The registry (`host[:port]`).
        server: String,
        #[arg(short, long)]
        username: String,
        /// The password (prefer --password-stdin: a command line is visible to other users).
        #[arg(short, long, conflicts_with = "password_stdin")]
        password: Option<String>,
        #[arg(long)]
        password_stdin: bool,
        /// Plain HTTP for this registry (loopback registries always are).
        #[arg(long)]
        insecure: bool,
    },
    /// Forget the credentials of a registry.
    Logout {
        /// The registry (`host[:port]`).
        server: String,
    },
    /// Save images: docker (default), oci-archive (or oci), oci-dir.
    Save {
        #[arg(short, long)]
        output: Option<PathBuf>,
        #[arg(long, default_value = "docker")]
        format: String,
        #[arg(required = true)]
        images: Vec<String>,
    },
    /// Make an image of a rootfs tarball ("-" for stdin).
    Import {
        file: String,
        reference: Option<String>,
        /// The history entry's comment.
        #[arg(short, long)]
        message: Option<String>,
        /// A Dockerfile instruction for the image's config (as `commit -c`); repeatable.
        #[arg(short, long = "change")]
        change: Vec<String>,
    },
    /// List images.
    Images(ImagesArgs),
    /// Image commands.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Show an image's history.
    History(HistoryArgs),
    /// Name an image.
    Tag { source: String, target: String },
    /// Remove images.
    Rmi(RmiArgs),
    /// Create a container.
    Create(CreateArgs),
    /// Create and start a container.
    Run {
        /// Run in the background and print the id.
        #[arg(short, long)]
        detach: bool,
        #[command(flatten)]
        create: CreateArgs,
    },
    /// Start containers.
    Start {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop containers: SIGTERM, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        /// The first signal (default: the container's stop signal, else SIGTERM).
        #[arg(short, long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop and start containers.
    Restart {
        #[arg(short, long, default_value_t = 10)]
        time: u64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Signal containers.
    Kill {
        #[arg(short, long, default_value = "KILL")]
        signal: String,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Kill a running container first.
        #[arg(short, long)]
        force: bool,
        /// Remove its anonymous volumes (accepted for Docker's sake: capsa's anonymous volumes
        /// live in the container's directory and always go with it; there are no named ones).
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        quiet: bool,
        #[arg(long)]
        format: Option<String>,
    },
    /// Show a container's output.
    Logs {
        #[arg(short, long)]
        follow: bool,
        #[arg(long, short = 'n')]
        tail: Option<String>,
        #[arg(short, long)]
        timestamps: bool,
        container: String,
    },
    /// Run a command in a running container.
    Exec {
        #[arg(short, long)]
        interactive: bool,
        #[arg(short, long)]
        tty: bool,
        #[arg(short, long)]
        detach: bool,
        #[arg(short, long = "env")]
        env: Vec<String>,
        #[arg(short, long)]
        workdir: Option<String>,
        #[arg(short, long)]
        user: Option<String>,
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<String>,
    },
    /// Show containers or images as JSON.
    Inspect {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Wait for containers to exit; print their exit codes.
    Wait {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Freeze containers.
    Pause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Thaw containers.
    Unpause {
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// A running container's processes (ps(1) options after the name; default -ef).
    Top {
        container: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Running containers' CPU, memory and pids usage (default: all running ones).
    Stats {
        /// Print one sample and exit (else refresh every second until interrupted).
        #[arg(long = "no-stream")]
        no_stream: bool,
        /// Go-template-like `{{.Field}}` per line, or `json`.
        #[arg(long)]
        format: Option<String>,
        containers: Vec<String>,
    },
    /// A container's changes (A added, C changed, D deleted).
    Diff { container: String },
    /// Make an image of a container's changes.
    Commit {
        /// The history entry's comment.
        #[arg(short, long)]
        message: Option<String>,
        /// The image's author.
        #[arg(short, long)]
        author: Option<String>,
        /// A Dockerfile instruction for the new image's config (CMD, ENTRYPOINT, ENV, EXPOSE,
        /// LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR); repeatable.
        #[arg(short, long = "change")]
        change: Vec<String>,
        /// Freeze a running container while its layer is read (`--pause=false` does not).
        #[arg(short, long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
        pause: bool,
        container: String,
        reference: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("capsa: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// `run` and `create` pull the image as `docker run` does (`--pull missing|always|never`),
/// with the progress on stderr so that stdout is the payload's (or the id with `-d`).
fn ensure_image(engine: &Engine, a: &CreateArgs, options: &mut RunOptions) -> Result<()> {
    let present = match engine.store().inspect(&a.image) {
        Ok(_) => true,
        Err(capsa_images::Error::ImageNotFound(_)) => false,
        Err(e) => return Err(e.into()),
    };
    match (a.pull.as_str(), present) {
        ("always", _) => {}
        (_, true) => return Ok(()),
        ("never", false) => bail!(
            "no such image: {} (not in the store, and --pull=never)",
            a.image
        ),
        _ => {
            if !a.quiet {
                eprintln!("Unable to find image '{}' locally", a.image);
            }
        }
    }
    let report = capsa_images::registry::pull_command(
        engine.store(),
        &a.image,
        a.platform.as_deref(),
        a.quiet,
        &registry_options(&a.image, false),
    )
    .with_context(|| format!("pull {}", a.image))?;
    // The download's threads are joined: the process is single-threaded again (it forks next).
    if let Err(e) = engine.precompile_wasm(&report.id.to_string()) {
        eprintln!(
            "capsa: warning: image {}: its wasm module does not compile: {e}",
            report.id
        );
    }
    if !a.quiet {
        eprintln!("Digest: {}", report.manifest);
    }
    // Docker's short names are stored fully qualified: run what was pulled, by id.
    if engine.store().inspect(&a.image).is_err() {
        options.image = report.id.to_string();
    }
    Ok(())
}

fn run_options(a: &CreateArgs) -> Result<RunOptions> {
    let network = match a.network.as_str() {
        "none" => Network::None,
        "host" => Network::Host,
        other => bail!("--network {other:?}: only none and host are supported"),
    };
    Ok(RunOptions {
        image: a.image.clone(),
        command: a.command.clone(),
        name: a.name.clone(),
        env: a.env.clone(),
        env_files: a.env_file.clone(),
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        entrypoint: a.entrypoint.clone(),
        volumes: a.volume.clone(),
        tmpfs: a.tmpfs.clone(),
        read_only: a.read_only,
        memory: a.memory.as_deref().map(parse_bytes).transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        network,
        tty: a.tty,
        interactive: a.interactive,
        auto_remove: a.rm,
        cgroup_parent: a.cgroup_parent.clone(),
        stop_signal: a.stop_signal.clone(),
    })
}

/// Runs `f` on each named container; reports every failure, fails if any failed.
fn each(
    engine: &Engine,
    names: &[String],
    mut f: impl FnMut(&ContainerRecord) -> Result<()>,
) -> Result<i32> {
    let mut failed = false;
    for n in names {
        let r = engine
            .container(n)
            .map_err(anyhow::Error::from)
            .and_then(|c| f(&c));
        match r {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("capsa: {n}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn dispatch(cli: Cli) -> Result<i32> {
    let pick = |flag: Option<PathBuf>, var: &str, default: &str| {
        flag.or_else(|| std::env::var_os(var).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(default))
    };
    let root = pick(cli.root, "CAPSA_ROOT", capsa_host::engine::DEFAULT_ROOT);
    let state = pick(cli.state, "CAPSA_STATE", capsa_host::engine::DEFAULT_STATE);
    let engine = Engine::open(&root, &state)
        .with_context(|| format!("open the store at {}", root.display()))?;
    match cli.command {
        Command::Pull {
            reference,
            platform,
            insecure,
            quiet,
        } => {
            let options = registry_options(&reference, insecure);
            let report = capsa_images::registry::pull_command(
                engine.store(),
                &reference,
                platform.as_deref(),
                quiet,
                &options,
            )
            .with_context(|| format!("pull {reference}"))?;
            // Threads of the download are joined: the process is single-threaded again.
            if let Err(e) = engine.precompile_wasm(&report.id.to_string()) {
                eprintln!(
                    "capsa: warning: image {}: its wasm module does not compile: {e}",
                    report.id
                );
            }
            if quiet {
                println!("{}", report.id);
            } else {
                println!("Digest: {}", report.manifest);
                println!(
                    "Pulled {}: {} blobs fetched, {} already here",
                    report.name.as_deref().unwrap_or(&reference),
                    report.fetched.len(),
                    report.reused.len()
                );
            }
            Ok(0)
        }
        Command::Push {
            image,
            destination,
            insecure,
            quiet,
        } => {
            let target = destination.clone().unwrap_or_else(|| image.clone());
            let options = registry_options(&target, insecure);
            let report = capsa_images::registry::push_command(
                engine.store(),
                &image,
                destination.as_deref(),
                quiet,
                &options,
            )
            .with_context(|| format!("push {image} to {target}"))?;
            if !quiet {
                println!(
                    "Pushed {target}: {} blobs uploaded, {} mounted, {} already there",
                    report.uploaded.len(),
                    report.mounted.len(),
                    report.existing.len()
                );
            }
            if let Some(digest) = report.manifest {
                println!("Digest: {digest}");
            }
            Ok(0)
        }
        Command::Login {
            server,
            username,
            password,
            password_stdin,
            insecure,
        } => {
            let password = match (password, password_stdin) {
                (Some(p), _) => p,
                (None, true) => {
                    let mut line = String::new();
                    std::io::stdin()
                        .read_line(&mut line)
                        .context("read the password from stdin")?;
                    line.trim_end_matches(['\r', '\n']).to_owned()
                }
                (None, false) => bail!("give the password with --password-stdin or -p"),
            };
            let options = registry_options(&format!("{server}/x"), insecure);
            capsa_images::registry::login_command(
                engine.store(),
                &server,
                &username,
                &password,
                &options,
            )
            .with_context(|| format!("log in to {server}"))?;
            println!("Login Succeeded");
            Ok(0)
        }
        Command::Logout { server } => {
            if capsa_images::registry::logout_command(engine.store(), &server)? {
                println!("Removing login credentials for {server}");
                Ok(0)
            } else {
                eprintln!("capsa: not logged in to {server}");
                Ok(1)
            }
        }
        Command::Load { input, quiet } => {
            let loaded = engine.store().load(&input)?;
            for l in loaded {
                // Wasm images are compiled now, ahead of their first container. A module that
                // does not compile leaves the image loaded (as Docker would) with a warning.
                if let Err(e) = engine.precompile_wasm(&l.id.to_string()) {
                    eprintln!(
                        "capsa: warning: image {}: its wasm module does not compile: {e}",
                        l.id
                    );
                }
                if quiet {
                    continue;
                }
                if l.names.is_empty() {
                    println!("Loaded image ID: {}", l.id);
                }
                for n in l.names {
                    println!("Loaded image: {n}");
                }
            }
            Ok(0)
        }
        Command::Save {
            output,
            format,
            images,
        } => save(&engine, output.as_deref(), &format, &images),
        Command::Import {
            file,
            reference,
            message,
            change,
        } => {
            let options = capsa_images::ImportOptions {
                reference: reference
                    .as_deref()
                    .map(capsa_images::Reference::parse)
                    .transpose()?,
                comment: message,
                changes: change,
                ..Default::default()
            };
            let id = if file == "-" {
                engine
                    .store()
                    .import_tar(&mut std::io::stdin().lock(), &options)?
            } else {
                let mut f = std::fs::File::open(&file).with_context(|| format!("open {file}"))?;
                engine.store().import_tar(&mut f, &options)?
            };
            println!("{id}");
            Ok(0)
        }
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images(&engine, &a),
        Command::Image(ImageCommand::Inspect { images }) => {
            let mut out = Vec::new();
            for i in &images {
                out.push(image_json(&engine, i)?);
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        Command::Image(ImageCommand::Prune { all, force: _ }) => prune(&engine, all),
        Command::Image(ImageCommand::Rm(a)) | Command::Rmi(a) => rmi(&engine, &a),
        Command::Image(ImageCommand::History(a)) | Command::History(a) => history(&engine, &a),
        Command::Image(ImageCommand::Tag { source, target }) | Command::Tag { source, target } => {
            engine.store().tag(&source, &target)?;
            Ok(0)
        }
        Command::Create(a) => {
            let mut options = run_options(&a)?;
            ensure_image(&engine, &a, &mut options)?;
            let c = engine.create(&options)?;
            println!("{}", c.id);
            Ok(0)
        }
        Command::Run { detach, create } => {
            let mut options = run_options(&create)?;
            ensure_image(&engine, &create, &mut options)?;
            let c = engine.create(&options)?;
            if detach {
                engine.start(&c)?;
                println!("{}", c.id);
                Ok(0)
            } else {
                Ok(engine.run_foreground(&c, create.interactive)?)
            }
        }
        Command::Start { containers } => each(&engine, &containers, |c| Ok(engine.start(c)?)),
        Command::Stop {
            time,
            signal,
            containers,
        } => {
            let signal = signal
                .as_deref()
                .map(capsa_host::runtime::parse_signal)
                .transpose()?;
            each(&engine, &containers, |c| {
                Ok(engine.stop(c, Duration::from_secs(time), signal)?)
            })
        }
        Command::Restart { time, containers } => each(&engine, &containers, |c| {
            engine.stop(c, Duration::from_secs(time), None)?;
            Ok(engine.start(c)?)
        }),
        Command::Kill { signal, containers } => {
            let sig = capsa_host::runtime::parse_signal(&signal)?;
            each(&engine, &containers, |c| Ok(engine.kill(c, sig)?))
        }
        Command::Rm {
            force, containers, ..
        } => each(&engine, &containers, |c| Ok(engine.remove(c, force)?)),
        Command::Ps { all, quiet, format } => ps(&engine, all, quiet, format.as_deref()),
        Command::Top { container, ps_args } => {
            let c = engine.container(&container)?;
            let pids = engine.processes(&c)?;
            print!("{}", capsa_host::runtime::ps_table(&pids, &ps_args)?);
            Ok(0)
        }
        Command::Stats {
            no_stream,
            format,
            containers,
        } => stats(&engine, no_stream, format.as_deref(), &containers),
        Command::Logs {
            follow,
            tail,
            timestamps,
            container,
        } => {
            let c = engine.container(&container)?;
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(n.parse::<usize>().with_context(|| format!("--tail {n}"))?),
            };
            let mut emit = |l: &capsa_host::engine::LogLine| {
                let text = if timestamps {
                    format!("{} {}", l.time, l.log)
                } else {
                    l.log.clone()
                };
                if l.stream == "stderr" {
                    let _ = std::io::stderr().write_all(text.as_bytes());
                } else {
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(text.as_bytes());
                    let _ = out.flush();
                }
            };
            engine.logs(&c, tail, follow, &mut emit)?;
            Ok(0)
        }
        Command::Exec {
            interactive,
            tty,
            detach,
            env,
            workdir,
            user,
            container,
            command,
        } => {
            let c = engine.container(&container)?;
            Ok(engine.exec(
                &c,
                &ExecRequest {
                    args: command,
                    tty,
                    interactive,
                    env,
                    workdir,
                    user,
                    detach,
                },
            )?)
        }
        Command::Inspect { names } => {
            let mut out = Vec::new();
            for n in &names {
                match engine.container(n) {
                    Ok(c) => out.push(engine.inspect_json(&c)?),
                    Err(capsa_host::engine::EngineError::NoSuchContainer(_)) => out.push(
                        image_json(&engine, n)
                            .with_context(|| format!("no such container or image: {n}"))?,
                    ),
                    Err(e) => return Err(e.into()),
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(0)
        }
        Command::Wait { containers } => {
            let mut failed = false;
            for n in &containers {
                match engine.container(n).and_then(|c| engine.wait(&c)) {
                    Ok(code) => println!("{code}"),
                    Err(e) => {
                        eprintln!("capsa: {n}: {e}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Pause { containers } => each(&engine, &containers, |c| Ok(engine.pause(c)?)),
        Command::Unpause { containers } => each(&engine, &containers, |c| Ok(engine.unpause(c)?)),
        Command::Diff { container } => {
            let c = engine.container(&container)?;
            for change in engine.diff(&c)? {
                println!("{} {}", change.kind.letter(), change.path);
            }
            Ok(0)
        }
        Command::Commit {
            message,
            author,
            change,
            pause,
            container,
            reference,
        } => {
            let c = engine.container(&container)?;
            let id = engine.commit(
                &c,
                &CommitOptions {
                    reference,
                    comment: message,
                    author,
                    changes: change,
                    pause,
                },
            )?;
            println!("{id}");
            Ok(0)
        }
    }
}

fn save(engine: &Engine, output: Option<&Path>, format: &str, images: &[String]) -> Result<i32> {
    let names: Vec<&str> = images.iter().map(String::as_str).collect();
    let store = engine.store();
    if format == "oci-dir" {
        let dir = output.context("--format oci-dir needs -o DIR")?;
        store.export_oci_layout(&names, dir)?;
        return Ok(0);
    }
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let result = match format {
        "docker" | "docker-archive" => store.export_docker_archive(&names, &mut out),
        "oci" | "oci-archive" => store.export_oci_archive(&names, &mut out),
        other => bail!("--format {other:?}: use docker, oci-archive or oci-dir"),
    };
    if let Err(e) = result
        .map_err(anyhow::Error::from)
        .and_then(|()| Ok(out.flush()?))
    {
        drop(out);
        if let Some(p) = output {
            let _ = std::fs::remove_file(p);
        }
        return Err(e);
    }
    Ok(0)
}

/// `repo:tag` → (repo, tag).
fn split_name(name: &str) -> (String, String) {
    match name.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_owned(), t.to_owned()),
        _ => (name.to_owned(), "latest".to_owned()),
    }
}

fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

fn images(engine: &Engine, a: &ImagesArgs) -> Result<i32> {
    let mut list = engine.store().list()?;
    list.sort_by(|x, y| y.created.cmp(&x.created));
    if a.quiet {
        for i in &list {
            println!("{}", short_id(&i.id.to_string()));
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for i in &list {
        let names = if i.names.is_empty() {
            vec![("<none>".to_owned(), "<none>".to_owned())]
        } else {
            i.names.iter().map(|n| split_name(n)).collect()
        };
        for (repo, tag) in names {
            let mut m = Map::new();
            m.insert("Repository".into(), json!(repo));
            m.insert("Tag".into(), json!(tag));
            m.insert("ID".into(), json!(short_id(&i.id.to_string())));
            m.insert("Digest".into(), json!(i.id.to_string()));
            let created = i.created.clone().unwrap_or_default();
            m.insert("CreatedSince".into(), json!(format::ago(&created)));
            m.insert("CreatedAt".into(), json!(created));
            m.insert("Size".into(), json!(format::size(i.size)));
            rows.push(m);
        }
    }
    Output::new(
        a.format.as_deref(),
        &[
            ("REPOSITORY", "Repository"),
            ("TAG", "Tag"),
            ("IMAGE ID", "ID"),
            ("CREATED", "CreatedSince"),
            ("SIZE", "Size"),
        ],
    )
    .print(&rows);
    Ok(0)
}

fn image_json(engine: &Engine, name: &str) -> Result<Value> {
    let info = engine.store().inspect(name)?;
    let raw: Value = serde_json::from_slice(&engine.store().read_blob(&info.id)?)?;
    let (os, arch) = info.platform();
    Ok(json!({
        "Id": info.id.to_string(),
        "RepoTags": info.names,
        "Created": info.created(),
        "Architecture": arch,
        "Os": os,
        "Author": raw.get("author").and_then(Value::as_str).unwrap_or_default(),
        "Comment": raw["history"].as_array().and_then(|h| h.last()).and_then(|h| h["comment"].as_str()).unwrap_or_default(),
        "Config": raw.get("config"),
        "Size": info.size,
        "ManifestDigest": info.manifest_digest.to_string(),
        "RootFS": {
            "Type": "layers",
            "Layers": info.diff_ids.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        },
        "Layers": info.layers.iter().map(|l| json!({
            "MediaType": l.descriptor.media_type,
            "Digest": l.descriptor.digest.to_string(),
            "DiffID": l.diff_id.as_ref().map(|d| d.to_string()),
            "Size": l.size,
        })).collect::<Vec<_>>(),
    }))
}

fn history(engine: &Engine, a: &HistoryArgs) -> Result<i32> {
    let info = engine.store().inspect(&a.image)?;
    let mut sizes = info.layers.iter().map(|l| l.size);
    let mut rows = Vec::new();
    for (n, h) in info.history.iter().enumerate() {
        let h = serde_json::to_value(h)?;
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        let size = if empty { 0 } else { sizes.next().unwrap_or(0) };
        let is_last = n + 1 == info.history.len();
        let mut m = Map::new();
        m.insert(
            "ID".into(),
            json!(if is_last {
                short_id(&info.id.to_string())
            } else {
                "<missing>".to_owned()
            }),
        );
        let created = h["created"].as_str().unwrap_or_default().to_owned();
        m.insert("CreatedSince".into(), json!(format::ago(&created)));
        m.insert("CreatedAt".into(), json!(created));
        m.insert("CreatedBy".into(), h["created_by"].clone());
        m.insert("Size".into(), json!(format::size(size)));
        m.insert("Comment".into(), h["comment"].clone());
        rows.push(m);
    }
    rows.reverse();
    if a.quiet {
        for r in &rows {
            println!("{}", r["ID"].as_str().unwrap_or_default());
        }
        return Ok(0);
    }
    Output::new(
        a.format.as_deref(),
        &[
            ("IMAGE", "ID"),
            ("CREATED", "CreatedSince"),
            ("CREATED BY", "CreatedBy"),
            ("SIZE", "Size"),
            ("COMMENT", "Comment"),
        ],
    )
    .print(&rows);
    Ok(0)
}

fn rmi(engine: &Engine, a: &RmiArgs) -> Result<i32> {
    let mut failed = false;
    for name in &a.images {
        let result = (|| -> Result<()> {
            let id = engine.store().resolve(name)?;
            if let Some(c) = engine.image_in_use(&id)? {
                bail!("image {name} is used by container {c}: remove the container first");
            }
            let report = engine.store().remove(name, a.force)?;
            for u in report.untagged {
                println!("Untagged: {u}");
            }
            if let Some(d) = report.deleted {
                println!("Deleted: {d}");
            }
            Ok(())
        })();
        if let Err(e) = result {
            eprintln!("capsa: {e:#}");
            failed = true;
        }
    }
    Ok(if failed { 1 } else { 0 })
}

fn prune(engine: &Engine, all: bool) -> Result<i32> {
    let mut freed = 0u64;
    println!("Deleted Images:");
    for i in engine.store().list()? {
        if (!i.names.is_empty() && !all) || engine.image_in_use(&i.id)?.is_some() {
            continue;
        }
        let report = engine.store().remove(&i.id.to_string(), true)?;
        if let Some(d) = report.deleted {
            println!("deleted: {d}");
            freed += i.size;
        }
    }
    println!("\nTotal reclaimed space: {}", format::size(freed));
    Ok(0)
}

/// One container's usage sample: cumulative CPU nanoseconds, memory in use (without the
/// reclaimable file cache, as Docker counts it), memory limit, pids, and when it was taken.
struct Sample {
    cpu_ns: u64,
    memory: u64,
    limit: u64,
    pids: u64,
    at: std::time::Instant,
}

/// The host's memory in bytes (Docker shows it as the limit of an unlimited container).
fn host_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(u64::MAX, |kb| kb * 1024)
}

fn sample(engine: &Engine, c: &ContainerRecord, host: u64) -> Result<Sample> {
    let s = engine.stats(c)?;
    let cache = ["total_inactive_file", "inactive_file"]
        .iter()
        .find_map(|k| s.memory.raw.get(*k).copied())
        .unwrap_or(0);
    let limit = match s.memory.usage.limit {
        0 => host,
        l => l.min(host),
    };
    Ok(Sample {
        cpu_ns: s.cpu.usage.total,
        memory: s.memory.usage.usage.saturating_sub(cache),
        limit,
        pids: s.pids.current,
        at: std::time::Instant::now(),
    })
}

/// `capsa stats`: two samples a second apart give the CPU share (100% = one CPU, as Docker).
fn stats(engine: &Engine, no_stream: bool, format: Option<&str>, names: &[String]) -> Result<i32> {
    let host = host_memory();
    loop {
        let containers: Vec<ContainerRecord> = if names.is_empty() {
            engine
                .containers()?
                .into_iter()
                .filter(|c| matches!(engine.state(c).0, State::Running | State::Paused))
                .collect()
        } else {
            names
                .iter()
                .map(|n| engine.container(n))
                .collect::<std::result::Result<_, _>>()?
        };
        let first: Vec<Option<Sample>> = containers
            .iter()
            .map(|c| sample(engine, c, host).ok())
            .collect();
        std::thread::sleep(Duration::from_secs(1));
        let mut rows = Vec::new();
        for (c, before) in containers.iter().zip(first) {
            let now = match (before, sample(engine, c, host)) {
                (Some(before), Ok(now)) => Some((before, now)),
                (_, Err(e)) if !names.is_empty() => return Err(e),
                _ => None,
            };
            let Some((before, now)) = now else { continue };
            let wall = now.at.duration_since(before.at).as_nanos().max(1) as f64;
            let cpu = now.cpu_ns.saturating_sub(before.cpu_ns) as f64 / wall * 100.0;
            let mut m = Map::new();
            m.insert("ID".into(), json!(&c.id[..12]));
            m.insert("Container".into(), json!(&c.id[..12]));
            m.insert("Name".into(), json!(c.name));
            m.insert("CPUPerc".into(), json!(format!("{cpu:.2}%")));
            m.insert(
                "MemUsage".into(),
                json!(format!(
                    "{} / {}",
                    format::binary_size(now.memory),
                    format::binary_size(now.limit)
                )),
            );
            let mem = now.memory as f64 / now.limit.max(1) as f64 * 100.0;
            m.insert("MemPerc".into(), json!(format!("{mem:.2}%")));
            m.insert("PIDs".into(), json!(now.pids.to_string()));
            rows.push(m);
        }
        if !no_stream {
            // Docker's screen: cleared and redrawn every second.
            print!("\x1b[2J\x1b[H");
        }
        Output::new(
            format,
            &[
                ("CONTAINER ID", "ID"),
                ("NAME", "Name"),
                ("CPU %", "CPUPerc"),
                ("MEM USAGE / LIMIT", "MemUsage"),
                ("MEM %", "MemPerc"),
                ("PIDS", "PIDs"),
            ],
        )
        .print(&rows);
        if no_stream {
            return Ok(0);
        }
        std::io::Write::flush(&mut std::io::stdout())?;
    }
}

fn ps(engine: &Engine, all: bool, quiet: bool, format: Option<&str>) -> Result<i32> {
    let mut rows = Vec::new();
    let mut list = engine.containers()?;
    list.reverse();
    for c in &list {
        let (state, pid) = engine.state(c);
        if !all && !matches!(state, State::Running | State::Paused) {
            continue;
        }
        if quiet {
            println!("{}", &c.id[..12]);
            continue;
        }
        let status = match state {
            State::Exited => format!(
                "Exited ({})",
                engine.exit_record(c).map(|e| e.code).unwrap_or(0)
            ),
            State::Running => "Up".to_owned(),
            State::Paused => "Up (Paused)".to_owned(),
            State::Created => "Created".to_owned(),
        };
        let mut command = c.args.join(" ");
        if command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        let mut m = Map::new();
        m.insert("ID".into(), json!(&c.id[..12]));
        m.insert("Image".into(), json!(c.image));
        m.insert("Command".into(), json!(format!("\"{command}\"")));
        m.insert("CreatedAt".into(), json!(c.created));
        m.insert("RunningFor".into(), json!(format::ago(&c.created)));
        m.insert("Status".into(), json!(status));
        m.insert("State".into(), json!(state.as_str()));
        m.insert("Names".into(), json!(c.name));
        m.insert("Pid".into(), json!(pid));
        rows.push(m);
    }
    if quiet {
        return Ok(0);
    }
    Output::new(
        format,
        &[
            ("CONTAINER ID", "ID"),
            ("IMAGE", "Image"),
            ("COMMAND", "Command"),
            ("CREATED", "RunningFor"),
            ("STATUS", "Status"),
            ("NAMES", "Names"),
        ],
    )
    .print(&rows);
    Ok(0)
}

/// Registry options for a command on `reference`: with `insecure`, its registry is reached over
/// plain HTTP (Docker's `insecure-registries`, podman's `--tls-verify=false`).
fn registry_options(reference: &str, insecure: bool) -> capsa_images::registry::RegistryOptions {
    let mut options = capsa_images::registry::RegistryOptions::default();
    if insecure && let Ok(parsed) = capsa_images::registry::ImageRef::parse(reference) {
        options.insecure.push(parsed.registry().to_owned());
    }
    options
}
