//! capsa: the container engine CLI, with Docker's verbs and flags where they apply. A thin
//! client: without `-H` it calls the engine library in this process (no daemon, no thread: the
//! runtime forks from it); with `-H`/`CAPSA_HOST` it speaks Docker's Engine API to a daemon.
//! Either way the commands print from the same values (`backend`).

mod backend;
mod flags;
mod format;
mod http_client;
mod remote;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use capsa_host::engine::api::filters::Filters;
use capsa_host::engine::{
    CommitOptions, Engine, ExecRequest, LogOptions, SaveFormat, UpdateOptions, VolumeOptions,
    parse_bytes, parse_time,
};
use clap::{Args, Parser, Subcommand};
use serde_json::{Map, Value, json};

use backend::{Backend, Local, RegistryFlags};
use capsa_host::engine::config::{ConfigFile, RegistrySettings};
use capsa_host::engine::network::DefaultBridge;
use flags::{CreateArgs, run_options};
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
    /// A daemon to talk to instead of the local store: unix:///path or tcp://host:port
    /// [env: CAPSA_HOST].
    #[arg(short = 'H', long, global = true)]
    host: Option<String>,
    /// Use TLS and verify the daemon's certificate (with --tlscacert).
    #[arg(long, global = true)]
    tlsverify: bool,
    /// The CA that signed the daemon's certificate.
    #[arg(long, global = true)]
    tlscacert: Option<PathBuf>,
    /// This client's certificate.
    #[arg(long, global = true)]
    tlscert: Option<PathBuf>,
    /// This client's key.
    #[arg(long, global = true)]
    tlskey: Option<PathBuf>,
    /// Map every new container's root to an unprivileged range: default (a `capsa` user with
    /// ranges in /etc/subuid and /etc/subgid, made the first time) or USER[:GROUP]
    /// [env: CAPSA_USERNS_REMAP].
    #[arg(long = "userns-remap", global = true)]
    userns_remap: Option<String>,
    /// The engine's configuration file, in dockerd's daemon.json shape: the same file capsad
    /// reads (data-root, exec-root, registry-mirrors, insecure-registries, default-ulimits,
    /// userns-remap) [env: CAPSA_CONFIG_FILE; default: /etc/capsa/daemon.json].
    #[arg(long = "config-file", global = true)]
    config_file: Option<PathBuf>,
    /// The default bridge's interface (default capsa0), or none: no default bridge, and
    /// containers without --network get only loopback (dockerd's --bridge) [env: CAPSA_BRIDGE].
    #[arg(long = "bridge", global = true)]
    bridge: Option<String>,
    /// The default bridge's gateway address and prefix, e.g. 172.17.0.1/16 (dockerd's --bip).
    #[arg(long = "bip", global = true)]
    bip: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `capsa build`'s flags (Docker's).
#[derive(clap::Args)]
struct BuildArgs {
    /// Name (and optionally tag) the image: `name:tag`; repeatable.
    #[arg(short, long = "tag")]
    tag: Vec<String>,
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-` reads it from stdin).
    #[arg(short, long = "file")]
    file: Option<String>,
    /// A build-time variable `K=V` (`K` alone takes it from the environment); repeatable.
    #[arg(long = "build-arg")]
    build_arg: Vec<String>,
    /// The stage to build last.
    #[arg(long)]
    target: Option<String>,
    /// Run every step, using no cached one.
    #[arg(long = "no-cache")]
    no_cache: bool,
    /// Pull every FROM image, even one the store has.
    #[arg(long)]
    pull: bool,
    /// The platform of an image from scratch (`wasi/wasm` for a wasm image).
    #[arg(long)]
    platform: Option<String>,
    /// A label `K=V` for the image; repeatable.
    #[arg(long)]
    label: Vec<String>,
    /// Print only the image id.
    #[arg(short, long)]
    quiet: bool,
    /// Write the image id to this file.
    #[arg(long)]
    iidfile: Option<PathBuf>,
    /// RUN steps' network: none (the default), host, bridge or a network's name.
    #[arg(long)]
    network: Option<String>,
    /// Accepted for Docker's scripts: intermediate containers are always removed.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    rm: bool,
    /// Accepted for Docker's scripts (as `--rm`).
    #[arg(long = "force-rm")]
    force_rm: bool,
    /// The build context: a directory, a tar file, or `-` for a tar on stdin.
    context: String,
}

#[derive(Subcommand)]
enum BuilderCommand {
    /// Empty the build cache and remove the images only it kept.
    Prune {
        /// Do not ask (there is no question: accepted for Docker's scripts).
        #[arg(short, long)]
        force: bool,
        /// Accepted for Docker's scripts.
        #[arg(short, long)]
        all: bool,
    },
}

#[derive(Subcommand)]
enum ImageCommand {
    /// List images.
    Ls(ImagesArgs),
    /// Show images as JSON (RootFS.Layers lists the layer digests).
    Inspect {
        /// A Go-style template (`{{.Config.Cmd}}`), or json.
        #[arg(short, long)]
        format: Option<String>,
        images: Vec<String>,
    },
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

#[derive(Subcommand)]
enum NetworkCommand {
    /// Create a bridge network (a subnet from Docker's pools unless --subnet).
    Create {
        name: String,
        /// The driver (only bridge).
        #[arg(short, long, default_value = "bridge")]
        driver: String,
        /// The subnet, in CIDR notation (10.89.0.0/24).
        #[arg(long)]
        subnet: Option<String>,
        /// The gateway (default: the subnet's first address).
        #[arg(long)]
        gateway: Option<String>,
        /// Give container addresses from this part of the subnet only.
        #[arg(long = "ip-range")]
        ip_range: Option<String>,
        /// No route out, no published ports.
        #[arg(long)]
        internal: bool,
        #[arg(long = "label")]
        label: Vec<String>,
        /// Driver options: com.docker.network.bridge.name=, com.docker.network.driver.mtu=,
        /// isolate=.
        #[arg(short, long = "opt")]
        opt: Vec<String>,
        /// IPv6 (not supported yet: refused).
        #[arg(long)]
        ipv6: bool,
        /// Accepted for docker's command lines.
        #[arg(long)]
        attachable: bool,
    },
    /// List networks.
    #[command(alias = "list")]
    Ls {
        #[arg(short, long)]
        quiet: bool,
        /// Filters: name=, id=, driver=, label=, type=custom|builtin, dangling=.
        #[arg(short, long)]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Show networks as JSON.
    Inspect {
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove networks (refused while a container is on one).
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove every network no container is on.
    Prune {
        #[arg(short, long)]
        force: bool,
        #[arg(long)]
        filter: Vec<String>,
    },
    /// Put a container on one more network (a running one gets the interface now).
    Connect {
        /// More names on that network.
        #[arg(long = "alias")]
        alias: Vec<String>,
        /// Its address on that network.
        #[arg(long)]
        ip: Option<String>,
        network: String,
        container: String,
    },
    /// Take a container off a network.
    Disconnect {
        /// Accepted for docker's command lines.
        #[arg(short, long)]
        force: bool,
        network: String,
        container: String,
    },
}

#[derive(Subcommand)]
enum VolumeCommand {
    /// Create a volume (a random name when none is given).
    Create {
        name: Option<String>,
        /// The driver (only local).
        #[arg(short, long, default_value = "local")]
        driver: String,
        #[arg(long = "label")]
        label: Vec<String>,
        /// Driver options (the local driver takes none here).
        #[arg(short, long = "opt")]
        opt: Vec<String>,
    },
    /// List volumes.
    Ls {
        #[arg(short, long)]
        quiet: bool,
        #[arg(short, long)]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
    },
    /// Show volumes as JSON.
    Inspect {
        /// A Go-style template (`{{.Mountpoint}}`), or json.
        #[arg(short, long)]
        format: Option<String>,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove volumes (refused while a container uses one).
    Rm {
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Remove unused anonymous volumes (-a: every unused volume).
    Prune {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        force: bool,
    },
}

#[derive(Args)]
struct ImagesArgs {
    /// Intermediate images (left by builds) too.
    #[arg(short, long)]
    all: bool,
    /// Only ids.
    #[arg(short, long)]
    quiet: bool,
    /// Filters: dangling=true, reference=PATTERN, label=KEY[=VALUE], before=, since=.
    #[arg(short, long)]
    filter: Vec<String>,
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
    /// Only image ids.
    #[arg(short, long)]
    quiet: bool,
    /// Show whole commands (else cut at 45 characters, as Docker).
    #[arg(long = "no-trunc")]
    no_trunc: bool,
    #[arg(long)]
    format: Option<String>,
    image: String,
}

#[derive(Subcommand)]
enum Command {
    /// Load images from a docker-save tarball, an OCI archive or an OCI layout directory.
    Load {
        /// The file (default: stdin).
        #[arg(short, long)]
        input: Option<PathBuf>,
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
    /// Build an image from a Dockerfile (Docker's classic builder: a layer per RUN/COPY/ADD,
    /// a build cache).
    Build(BuildArgs),
    /// Build cache commands.
    #[command(subcommand)]
    Builder(BuilderCommand),
    /// List images.
    Images(ImagesArgs),
    /// Image commands.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Network commands.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// The container's published ports (PRIVATE[/PROTO] to show one).
    Port {
        container: String,
        port: Option<String>,
    },
    /// Volume commands.
    #[command(subcommand)]
    Volume(VolumeCommand),
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
    /// Stop containers: the stop signal, then SIGKILL after the timeout.
    Stop {
        /// Seconds to wait before SIGKILL (default: the container's --stop-timeout, else 10).
        #[arg(short, long)]
        time: Option<u64>,
        /// The first signal (default: the container's stop signal, else SIGTERM).
        #[arg(short, long)]
        signal: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Stop and start containers.
    Restart {
        #[arg(short, long)]
        time: Option<u64>,
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
        /// Remove its anonymous volumes too.
        #[arg(short, long)]
        volumes: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Rename a container.
    Rename { container: String, new_name: String },
    /// Change a container's limits or restart policy.
    Update {
        #[arg(short, long)]
        memory: Option<String>,
        #[arg(long = "memory-swap")]
        memory_swap: Option<String>,
        #[arg(long)]
        cpus: Option<f64>,
        #[arg(short = 'c', long = "cpu-shares")]
        cpu_shares: Option<u64>,
        #[arg(long = "pids-limit", allow_hyphen_values = true)]
        pids_limit: Option<i64>,
        #[arg(long)]
        restart: Option<String>,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// List containers.
    Ps {
        #[arg(short, long)]
        all: bool,
        #[arg(short, long)]
        quiet: bool,
        /// Show sizes.
        #[arg(short, long)]
        size: bool,
        /// Filters: status=, name=, label=, ancestor=, id=, exited=, health=, volume=.
        #[arg(short, long)]
        filter: Vec<String>,
        #[arg(long)]
        format: Option<String>,
        /// Full ids and commands.
        #[arg(long = "no-trunc")]
        no_trunc: bool,
    },
    /// Show a container's output.
    Logs {
        #[arg(short, long)]
        follow: bool,
        #[arg(long, short = 'n')]
        tail: Option<String>,
        #[arg(short, long)]
        timestamps: bool,
        /// Only lines since this time (RFC 3339, unix seconds, or a duration like 10m).
        #[arg(long)]
        since: Option<String>,
        /// Only lines before this time.
        #[arg(long)]
        until: Option<String>,
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
        /// A Go-style template (`{{.State.Pid}}`, `{{json .Config}}`), or json.
        #[arg(short, long)]
        format: Option<String>,
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
    /// A container's filesystem as a tar (stdout, or `-o FILE`).
    Export {
        /// Write to this file instead of stdout.
        #[arg(short, long)]
        output: Option<PathBuf>,
        container: String,
    },
    /// Copy files between a container and the host: `cp CONTAINER:PATH DEST` or
    /// `cp SRC CONTAINER:DIR` (a tar stream with `-`).
    Cp { source: String, destination: String },
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
    /// Events: container, image and volume changes as they happen.
    Events {
        /// Events since this time (RFC 3339, unix seconds, or a duration like 10m).
        #[arg(long)]
        since: Option<String>,
        /// Stop at this time.
        #[arg(long)]
        until: Option<String>,
        /// Filters: type=, event=, container=, image=, label=, volume=.
        #[arg(short, long)]
        filter: Vec<String>,
        /// `json`, or a template like '{{.Type}} {{.Action}}'.
        #[arg(long)]
        format: Option<String>,
    },
    /// The engine's version.
    Version,
    /// The engine's state: containers, images, store, cgroups, security options.
    Info {
        /// A Go-style template (`{{.CgroupVersion}}`, `{{json .SecurityOptions}}`), or json.
        #[arg(short, long)]
        format: Option<String>,
    },
}

fn main() -> ExitCode {
    // A closed pipe (`capsa ps | head`) ends the CLI quietly, as it ends C tools; the default
    // disposition is also what a container's process should inherit.
    // SAFETY: setting a signal's disposition to its default has no preconditions.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let cli = Cli::parse();
    match dispatch(cli) {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            eprintln!("capsa: {e:#}");
            ExitCode::from(125)
        }
    }
}

/// The daemon to talk to, if any: `-H`, else `CAPSA_HOST`. (`DOCKER_HOST` is left to the
/// docker CLI: it may name a dockerd, and capsa without a host means its own store.)
fn daemon_host(cli: &Cli) -> Option<String> {
    cli.host
        .clone()
        .or_else(|| std::env::var("CAPSA_HOST").ok())
        .filter(|h| !h.is_empty())
}

fn open_backend(cli: &Cli) -> Result<Box<dyn Backend>> {
    if let Some(host) = daemon_host(cli) {
        let tls = remote::TlsFiles {
            verify: cli.tlsverify,
            ca: cli.tlscacert.clone(),
            cert: cli.tlscert.clone(),
            key: cli.tlskey.clone(),
        };
        return remote::Remote::connect(&host, &tls);
    }
    // A flag, else its environment variable: either counts as given on the command line.
    let given = |flag: &Option<PathBuf>, var: &str| {
        flag.clone()
            .or_else(|| std::env::var_os(var).map(PathBuf::from))
            .filter(|p| !p.as_os_str().is_empty())
    };
    let root = given(&cli.root, "CAPSA_ROOT");
    let state = given(&cli.state, "CAPSA_STATE");
    let remap = cli
        .userns_remap
        .clone()
        .or_else(|| std::env::var("CAPSA_USERNS_REMAP").ok())
        .filter(|r| !r.is_empty());
    let named_config = given(&cli.config_file, "CAPSA_CONFIG_FILE");
    let config_path = named_config
        .clone()
        .unwrap_or_else(|| PathBuf::from(capsa_host::engine::config::DEFAULT_CONFIG_FILE));
    let config = ConfigFile::load(&config_path, named_config.is_some())?;
    let mut settings = RegistrySettings::default();
    let mut default_ulimits = Vec::new();
    let bridge = cli
        .bridge
        .clone()
        .or_else(|| std::env::var("CAPSA_BRIDGE").ok())
        .filter(|b| !b.is_empty());
    let bip = cli.bip.clone();
    let mut bridge_settings = DefaultBridge {
        interface: bridge.clone(),
        bip: bip.clone(),
    };
    let (root, state, remap) = match config {
        None => (root, state, remap),
        Some(file) => {
            for w in file.warnings() {
                eprintln!("capsa: warning: {w}");
            }
            let shown = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
            let flags: Vec<(&str, String)> = [
                ("data-root", shown(&root)),
                ("exec-root", shown(&state)),
                ("userns-remap", remap.clone()),
                ("bridge", bridge.clone()),
                ("bip", bip.clone()),
            ]
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
            file.refuse_conflicts(&flags)?;
            settings.mirrors = file.mirrors()?;
            settings.insecure = file.insecure_registries.clone().unwrap_or_default();
            default_ulimits = file.default_ulimits();
            bridge_settings.interface = bridge_settings.interface.or_else(|| file.bridge.clone());
            bridge_settings.bip = bridge_settings.bip.or_else(|| file.bip.clone());
            (
                root.or_else(|| file.data_root.clone()),
                state.or_else(|| file.exec_root.clone()),
                remap.or_else(|| file.userns_remap.clone()),
            )
        }
    };
    let root = root.unwrap_or_else(|| PathBuf::from(capsa_host::engine::DEFAULT_ROOT));
    let state = state.unwrap_or_else(|| PathBuf::from(capsa_host::engine::DEFAULT_STATE));
    let engine = Engine::open(&root, &state)
        .with_context(|| format!("open the store at {}", root.display()))?
        .with_userns_remap(remap.as_deref())?
        .with_registry(settings)
        .with_default_ulimits(default_ulimits)
        .with_default_bridge(bridge_settings);
    Ok(Box::new(Local { engine }))
}

/// Runs `f` on each name; prints the name on success (as docker does), reports every failure.
fn each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut failed = false;
    for n in names {
        match f(n) {
            Ok(()) => println!("{n}"),
            Err(e) => {
                eprintln!("capsa: {n}: {e:#}");
                failed = true;
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}

/// `run` and `create` pull the image as `docker run` does (`--pull missing|always|never`),
/// with the progress on stderr so that stdout is the payload's (or the id with `-d`).
fn ensure_image(
    b: &dyn Backend,
    a: &CreateArgs,
    options: &mut capsa_host::engine::RunOptions,
) -> Result<()> {
    let present = b.has_image(&a.image)?;
    match (a.pull.as_str(), present) {
        ("always", _) => {}
        (_, true) => return Ok(()),
        ("never", false) => bail!(
            "No such image: {} (not in the store, and --pull=never)",
            a.image
        ),
        _ => {
            if !a.quiet {
                eprintln!("Unable to find image '{}' locally", a.image);
            }
        }
    }
    let pulled = b.pull(
        &a.image,
        a.platform.as_deref(),
        &RegistryFlags {
            insecure: false,
            quiet: a.quiet,
        },
    )?;
    if !a.quiet {
        eprintln!("Digest: {}", pulled.digest);
    }
    // Docker's short names are stored fully qualified: run what was pulled, by id.
    if !b.has_image(&a.image)? {
        options.image = pulled.id;
    }
    Ok(())
}

fn dispatch(cli: Cli) -> Result<i32> {
    let b = open_backend(&cli)?;
    let b = b.as_ref();
    match cli.command {
        Command::Pull {
            reference,
            platform,
            insecure,
            quiet,
        } => {
            let p = b.pull(
                &reference,
                platform.as_deref(),
                &RegistryFlags { insecure, quiet },
            )?;
            if quiet {
                println!("{}", p.id);
            } else {
                println!("Digest: {}", p.digest);
                println!(
                    "Pulled {reference}: {} blobs fetched, {} already here",
                    p.fetched, p.reused
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
            b.push(
                &image,
                destination.as_deref(),
                &RegistryFlags { insecure, quiet },
            )?;
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
            b.login(&server, &username, &password, insecure)?;
            println!("Login Succeeded");
            Ok(0)
        }
        Command::Logout { server } => {
            if b.logout(&server)? {
                println!("Removing login credentials for {server}");
                Ok(0)
            } else {
                eprintln!("capsa: not logged in to {server}");
                Ok(1)
            }
        }
        Command::Load { input, quiet } => {
            let names = match &input {
                Some(p) => b.load(&mut std::io::empty(), Some(p))?,
                None => b.load(&mut std::io::stdin().lock(), None)?,
            };
            if !quiet {
                for n in names {
                    if n.starts_with("sha256:") {
                        println!("Loaded image ID: {n}");
                    } else {
                        println!("Loaded image: {n}");
                    }
                }
            }
            Ok(0)
        }
        Command::Save {
            output,
            format,
            images,
        } => save(b, output.as_deref(), &format, &images),
        Command::Import {
            file,
            reference,
            message,
            change,
        } => {
            let id = if file == "-" {
                b.import(
                    &mut std::io::stdin().lock(),
                    reference.as_deref(),
                    message.as_deref(),
                    &change,
                )?
            } else {
                let mut f = std::fs::File::open(&file).with_context(|| format!("open {file}"))?;
                b.import(&mut f, reference.as_deref(), message.as_deref(), &change)?
            };
            println!("{id}");
            Ok(0)
        }
        Command::Build(a) => build(b, &a),
        Command::Builder(BuilderCommand::Prune { .. }) => {
            let (entries, freed) = b.builder_prune()?;
            if !entries.is_empty() {
                println!("Deleted build cache objects:");
                for e in &entries {
                    println!("{e}");
                }
                println!();
            }
            println!("Total reclaimed space: {}", format::size(freed));
            Ok(0)
        }
        Command::Images(a) | Command::Image(ImageCommand::Ls(a)) => images(b, &a),
        Command::Image(ImageCommand::Inspect { format, images }) => {
            let mut out = Vec::new();
            for i in &images {
                out.push(
                    b.inspect_image(i)?
                        .with_context(|| format!("No such image: {i}"))?,
                );
            }
            format::print_inspect(&out, format.as_deref())?;
            Ok(0)
        }
        Command::Image(ImageCommand::Prune { all, force: _ }) => {
            let (reports, freed) = b.image_prune(all)?;
            println!("Deleted Images:");
            for r in reports {
                if let Some(d) = r["Deleted"].as_str() {
                    println!("deleted: {d}");
                }
                if let Some(u) = r["Untagged"].as_str() {
                    println!("untagged: {u}");
                }
            }
            println!("\nTotal reclaimed space: {}", format::size(freed));
            Ok(0)
        }
        Command::Image(ImageCommand::Rm(a)) | Command::Rmi(a) => {
            let mut failed = false;
            for name in &a.images {
                match b.rmi(name, a.force) {
                    Ok(report) => {
                        for r in report {
                            if let Some(u) = r["Untagged"].as_str() {
                                println!("Untagged: {u}");
                            }
                            if let Some(d) = r["Deleted"].as_str() {
                                println!("Deleted: {d}");
                            }
                        }
                    }
                    Err(e) => {
                        eprintln!("capsa: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Image(ImageCommand::History(a)) | Command::History(a) => history(b, &a),
        Command::Image(ImageCommand::Tag { source, target }) | Command::Tag { source, target } => {
            b.tag(&source, &target)?;
            Ok(0)
        }
        Command::Volume(v) => volume(b, v),
        Command::Network(n) => network(b, n),
        Command::Port { container, port } => ports(b, &container, port.as_deref()),
        Command::Create(a) => {
            let mut options = run_options(&a)?;
            ensure_image(b, &a, &mut options)?;
            let (id, warnings) = b.create(&options)?;
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            println!("{id}");
            Ok(0)
        }
        Command::Run { detach, create } => {
            let mut options = run_options(&create)?;
            ensure_image(b, &create, &mut options)?;
            let (id, warnings) = b.create(&options)?;
            for w in warnings {
                eprintln!("WARNING: {w}");
            }
            let started = if detach {
                b.start(&id).map(|()| {
                    println!("{id}");
                    0
                })
            } else {
                b.run_attached(&id, &options)
            };
            // A command that cannot run exits 127 (not found) or 126 (not invokable), as
            // `docker run` does; any other failure of the engine is 125.
            started.or_else(
                |e| match capsa_host::engine::command_exit_code(&format!("{e:#}")) {
                    Some(code) => {
                        eprintln!("capsa: {e:#}");
                        Ok(code)
                    }
                    None => Err(e),
                },
            )
        }
        Command::Start { containers } => each(&containers, |c| b.start(c)),
        Command::Stop {
            time,
            signal,
            containers,
        } => each(&containers, |c| b.stop(c, time, signal.as_deref())),
        Command::Restart { time, containers } => each(&containers, |c| b.restart(c, time)),
        Command::Kill { signal, containers } => each(&containers, |c| b.kill(c, &signal)),
        Command::Rm {
            force,
            volumes,
            containers,
        } => each(&containers, |c| b.remove(c, force, volumes)),
        Command::Rename {
            container,
            new_name,
        } => {
            b.rename(&container, &new_name)?;
            Ok(0)
        }
        Command::Update {
            memory,
            memory_swap,
            cpus,
            cpu_shares,
            pids_limit,
            restart,
            containers,
        } => {
            let bytes = |v: &Option<String>| -> Result<Option<i64>> {
                match v.as_deref() {
                    None => Ok(None),
                    Some("-1") => Ok(Some(-1)),
                    Some(s) => Ok(Some(parse_bytes(s)?)),
                }
            };
            let update = UpdateOptions {
                resources: capsa_host::engine::Resources {
                    memory: bytes(&memory)?,
                    memory_swap: bytes(&memory_swap)?,
                    cpus,
                    cpu_shares,
                    pids_limit,
                    ..Default::default()
                },
                restart: restart
                    .as_deref()
                    .map(capsa_host::engine::RestartPolicy::parse)
                    .transpose()?,
            };
            each(&containers, |c| b.update(c, &update))
        }
        Command::Ps {
            all,
            quiet,
            size,
            filter,
            format,
            no_trunc,
        } => ps(b, all, quiet, size, no_trunc, &filter, format.as_deref()),
        Command::Top { container, ps_args } => {
            let top = b.top(&container, &ps_args)?;
            let titles: Vec<String> = top["Titles"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .map(|x| x.as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .unwrap_or_default();
            let rows: Vec<Vec<String>> = top["Processes"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            p.as_array()
                                .map(|f| {
                                    f.iter()
                                        .map(|x| x.as_str().unwrap_or_default().to_owned())
                                        .collect()
                                })
                                .unwrap_or_default()
                        })
                        .collect()
                })
                .unwrap_or_default();
            format::table(&titles, &rows);
            Ok(0)
        }
        Command::Stats {
            no_stream,
            format,
            containers,
        } => stats(b, no_stream, format.as_deref(), &containers),
        Command::Logs {
            follow,
            tail,
            timestamps,
            since,
            until,
            container,
        } => {
            let tail = match tail.as_deref() {
                None | Some("all") => None,
                Some(n) => Some(n.parse::<usize>().with_context(|| format!("--tail {n}"))?),
            };
            let options = LogOptions {
                tail,
                follow,
                since: since.as_deref().map(parse_time).transpose()?,
                until: until.as_deref().map(parse_time).transpose()?,
                stdout: true,
                stderr: true,
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
            b.logs(&container, &options, &mut emit)?;
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
        } => Ok(b.exec(
            &container,
            &ExecRequest {
                args: command,
                tty,
                interactive,
                env: capsa_host::engine::resolve_env(&env, &[])?,
                workdir,
                user,
                detach,
                console_socket: None,
                pid_file: None,
            },
        )?),
        Command::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                match b.inspect_container(n)? {
                    Some(v) => out.push(v),
                    None => out.push(
                        b.inspect_image(n)?
                            .with_context(|| format!("No such container or image: {n}"))?,
                    ),
                }
            }
            format::print_inspect(&out, format.as_deref())?;
            Ok(0)
        }
        Command::Wait { containers } => {
            let mut failed = false;
            for n in &containers {
                match b.wait(n) {
                    Ok(code) => println!("{code}"),
                    Err(e) => {
                        eprintln!("capsa: {n}: {e:#}");
                        failed = true;
                    }
                }
            }
            Ok(if failed { 1 } else { 0 })
        }
        Command::Pause { containers } => each(&containers, |c| b.pause(c)),
        Command::Unpause { containers } => each(&containers, |c| b.unpause(c)),
        Command::Export { output, container } => {
            match output {
                Some(path) => {
                    // Written beside, renamed when whole: a failed export leaves no file.
                    let tmp = path.with_extension("capsa-partial");
                    let mut file = std::fs::File::create(&tmp)
                        .with_context(|| format!("create {}", tmp.display()))?;
                    let written = b.export(&container, &mut file);
                    if let Err(e) = written {
                        let _ = std::fs::remove_file(&tmp);
                        return Err(e);
                    }
                    std::fs::rename(&tmp, &path)
                        .with_context(|| format!("rename to {}", path.display()))?;
                }
                None => b.export(&container, &mut std::io::stdout().lock())?,
            }
            Ok(0)
        }
        Command::Diff { container } => {
            for change in b.diff(&container)? {
                let letter = match change["Kind"].as_i64() {
                    Some(0) => "C",
                    Some(1) => "A",
                    _ => "D",
                };
                println!("{letter} {}", change["Path"].as_str().unwrap_or_default());
            }
            Ok(0)
        }
        Command::Cp {
            source,
            destination,
        } => cp(b, &source, &destination),
        Command::Commit {
            message,
            author,
            change,
            pause,
            container,
            reference,
        } => {
            let id = b.commit(
                &container,
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
        Command::Events {
            since,
            until,
            filter,
            format,
        } => {
            let filters = Filters::from_flags(&filter)?;
            b.events(since.as_deref(), until.as_deref(), &filters, &mut |e| {
                let line = match format.as_deref() {
                    Some("json") | Some("{{json .}}") => e.to_string(),
                    Some(t) => e
                        .as_object()
                        .map(|m| format::render(t, m))
                        .unwrap_or_default(),
                    None => event_line(e),
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").is_ok() && out.flush().is_ok()
            })?;
            Ok(0)
        }
        Command::Version => {
            let v = b.version()?;
            println!("Server: capsa");
            println!(" Engine:");
            println!(
                "  Version:          {}",
                v["Version"].as_str().unwrap_or_default()
            );
            println!(
                "  API version:      {} (minimum version {})",
                v["ApiVersion"].as_str().unwrap_or_default(),
                v["MinAPIVersion"].as_str().unwrap_or_default()
            );
            println!(
                "  OS/Arch:          {}/{}",
                v["Os"].as_str().unwrap_or_default(),
                v["Arch"].as_str().unwrap_or_default()
            );
            println!(
                "  Kernel Version:   {}",
                v["KernelVersion"].as_str().unwrap_or_default()
            );
            Ok(0)
        }
        Command::Info { format: Some(f) } => {
            format::print_inspect(&[b.info()?], Some(&f))?;
            Ok(0)
        }
        Command::Info { format: None } => {
            let i = b.info()?;
            let s = |k: &str| match &i[k] {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            println!("Containers: {}", s("Containers"));
            println!(" Running: {}", s("ContainersRunning"));
            println!(" Paused: {}", s("ContainersPaused"));
            println!(" Stopped: {}", s("ContainersStopped"));
            println!("Images: {}", s("Images"));
            println!("Server Version: {}", s("ServerVersion"));
            println!("Storage Driver: {}", s("Driver"));
            println!("Logging Driver: {}", s("LoggingDriver"));
            println!("Cgroup Driver: {}", s("CgroupDriver"));
            println!("Cgroup Version: {}", s("CgroupVersion"));
            println!("Kernel Version: {}", s("KernelVersion"));
            println!("Operating System: {}", s("OperatingSystem"));
            println!("CPUs: {}", s("NCPU"));
            println!(
                "Total Memory: {}",
                format::binary_size(i["MemTotal"].as_u64().unwrap_or(0))
            );
            println!("Docker Root Dir: {}", s("DockerRootDir"));
            println!("Live Restore Enabled: {}", s("LiveRestoreEnabled"));
            println!("Security Options:");
            for o in i["SecurityOptions"].as_array().into_iter().flatten() {
                let o = o.as_str().unwrap_or_default();
                let mut parts = o.split(',');
                println!(
                    "  {}",
                    parts.next().unwrap_or(o).trim_start_matches("name=")
                );
                for p in parts {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    let mut key = k.chars();
                    if let Some(first) = key.next() {
                        println!("   {}{}: {v}", first.to_uppercase(), key.as_str());
                    }
                }
            }
            Ok(0)
        }
    }
}

/// `docker events`'s line: `TIME TYPE ACTION ID (ATTRS)`.
fn event_line(e: &Value) -> String {
    let nanos = e["timeNano"].as_i64().unwrap_or(0);
    let time =
        chrono::DateTime::from_timestamp(nanos / 1_000_000_000, (nanos % 1_000_000_000) as u32)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let attrs: Vec<String> = e["Actor"]["Attributes"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{time} {} {} {} ({})",
        e["Type"].as_str().unwrap_or_default(),
        e["Action"].as_str().unwrap_or_default(),
        e["Actor"]["ID"].as_str().unwrap_or_default(),
        attrs.join(", ")
    )
}

/// `KEY=VALUE` flags into a map (a bare key has an empty value).
fn pairs(list: &[String]) -> std::collections::BTreeMap<String, String> {
    list.iter()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn network(b: &dyn Backend, n: NetworkCommand) -> Result<i32> {
    match n {
        NetworkCommand::Create {
            name,
            driver,
            subnet,
            gateway,
            ip_range,
            internal,
            label,
            opt,
            ipv6,
            attachable,
        } => {
            let mut config = Map::new();
            for (k, v) in [
                ("Subnet", subnet),
                ("Gateway", gateway),
                ("IPRange", ip_range),
            ] {
                if let Some(v) = v {
                    config.insert(k.into(), json!(v));
                }
            }
            let body = json!({
                "Name": name, "Driver": driver, "Internal": internal, "EnableIPv6": ipv6,
                "Attachable": attachable, "Labels": pairs(&label), "Options": pairs(&opt),
                "IPAM": { "Driver": "default",
                          "Config": if config.is_empty() { json!([]) } else { json!([config]) } },
            });
            let v = b.network_create(&body)?;
            println!("{}", v["Id"].as_str().unwrap_or_default());
            Ok(0)
        }
        NetworkCommand::Ls {
            quiet,
            filter,
            format,
            no_trunc,
        } => {
            let list = b.network_list(&Filters::from_flags(&filter)?)?;
            let id = |v: &Value| {
                let id = v["Id"].as_str().unwrap_or_default();
                if no_trunc {
                    id.to_owned()
                } else {
                    id.chars().take(12).collect()
                }
            };
            if quiet {
                for v in &list {
                    println!("{}", id(v));
                }
                return Ok(0);
            }
            let rows: Vec<Map<String, Value>> = list
                .iter()
                .map(|v| {
                    let mut m = Map::new();
                    m.insert("ID".into(), json!(id(v)));
                    m.insert("Name".into(), v["Name"].clone());
                    m.insert("Driver".into(), v["Driver"].clone());
                    m.insert("Scope".into(), v["Scope"].clone());
                    m.insert("Internal".into(), json!(v["Internal"].to_string()));
                    m.insert("CreatedAt".into(), v["Created"].clone());
                    m
                })
                .collect();
            Output::new(
                format.as_deref(),
                &[
                    ("NETWORK ID", "ID"),
                    ("NAME", "Name"),
                    ("DRIVER", "Driver"),
                    ("SCOPE", "Scope"),
                ],
            )
            .print(&rows);
            Ok(0)
        }
        NetworkCommand::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(b.network_inspect(n)?);
            }
            format::print_inspect(&out, format.as_deref())?;
            Ok(0)
        }
        NetworkCommand::Rm { names } => each(&names, |n| b.network_remove(n)),
        NetworkCommand::Prune { force: _, filter } => {
            let removed = b.network_prune(&Filters::from_flags(&filter)?)?;
            if !removed.is_empty() {
                println!("Deleted Networks:");
                for r in removed {
                    println!("{r}");
                }
            }
            Ok(0)
        }
        NetworkCommand::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            b.network_connect(&network, &container, &alias, ip.as_deref())?;
            Ok(0)
        }
        NetworkCommand::Disconnect {
            force: _,
            network,
            container,
        } => {
            b.network_disconnect(&network, &container)?;
            Ok(0)
        }
    }
}

/// `capsa port`: `80/tcp -> 0.0.0.0:32768` per binding, from the container's inspect.
fn ports(b: &dyn Backend, container: &str, port: Option<&str>) -> Result<i32> {
    let v = b
        .inspect_container(container)?
        .with_context(|| format!("No such container: {container}"))?;
    let wanted = port.map(|p| {
        if p.contains('/') {
            p.to_owned()
        } else {
            format!("{p}/tcp")
        }
    });
    let mut found = false;
    if let Some(map) = v["NetworkSettings"]["Ports"].as_object() {
        for (key, bindings) in map {
            if wanted.as_ref().is_some_and(|w| w != key) {
                continue;
            }
            for binding in bindings.as_array().into_iter().flatten() {
                found = true;
                let ip = binding["HostIp"].as_str().unwrap_or("0.0.0.0");
                let host_port = binding["HostPort"].as_str().unwrap_or_default();
                if wanted.is_some() {
                    println!("{ip}:{host_port}");
                } else {
                    println!("{key} -> {ip}:{host_port}");
                }
            }
        }
    }
    if let Some(w) = wanted
        && !found
    {
        anyhow::bail!("no public port '{w}' published for {container}");
    }
    Ok(0)
}

fn volume(b: &dyn Backend, v: VolumeCommand) -> Result<i32> {
    match v {
        VolumeCommand::Create {
            name,
            driver,
            label,
            opt,
        } => {
            let pairs = |l: &[String]| -> std::collections::BTreeMap<String, String> {
                l.iter()
                    .map(|kv| {
                        let (k, v) = kv.split_once('=').unwrap_or((kv.as_str(), ""));
                        (k.to_owned(), v.to_owned())
                    })
                    .collect()
            };
            let v = b.volume_create(&VolumeOptions {
                name: name.unwrap_or_default(),
                driver,
                labels: pairs(&label),
                driver_opts: pairs(&opt),
            })?;
            println!("{}", v["Name"].as_str().unwrap_or_default());
            Ok(0)
        }
        VolumeCommand::Ls {
            quiet,
            filter,
            format,
        } => {
            let list = b.volume_list(&Filters::from_flags(&filter)?)?;
            if quiet {
                for v in &list {
                    println!("{}", v["Name"].as_str().unwrap_or_default());
                }
                return Ok(0);
            }
            let rows: Vec<Map<String, Value>> = list
                .iter()
                .map(|v| {
                    let mut m = Map::new();
                    m.insert("Driver".into(), v["Driver"].clone());
                    m.insert("Name".into(), v["Name"].clone());
                    m.insert("Mountpoint".into(), v["Mountpoint"].clone());
                    m.insert("Scope".into(), v["Scope"].clone());
                    m
                })
                .collect();
            Output::new(
                format.as_deref(),
                &[("DRIVER", "Driver"), ("VOLUME NAME", "Name")],
            )
            .print(&rows);
            Ok(0)
        }
        VolumeCommand::Inspect { format, names } => {
            let mut out = Vec::new();
            for n in &names {
                out.push(b.volume_inspect(n)?);
            }
            format::print_inspect(&out, format.as_deref())?;
            Ok(0)
        }
        VolumeCommand::Rm { force, names } => each(&names, |n| b.volume_remove(n, force)),
        VolumeCommand::Prune { all, force: _ } => {
            let (removed, freed) = b.volume_prune(all)?;
            println!("Deleted Volumes:");
            for r in removed {
                println!("{r}");
            }
            println!("\nTotal reclaimed space: {}", format::size(freed));
            Ok(0)
        }
    }
}

fn save(b: &dyn Backend, output: Option<&Path>, format: &str, images: &[String]) -> Result<i32> {
    let format = match format {
        "docker" | "docker-archive" => SaveFormat::Docker,
        "oci" | "oci-archive" => SaveFormat::OciArchive,
        "oci-dir" => {
            let dir = output.context("--format oci-dir needs -o DIR")?;
            b.save_oci_dir(images, dir)?;
            return Ok(0);
        }
        other => bail!("--format {other:?}: use docker or oci-archive"),
    };
    let mut out: Box<dyn Write> = match output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("create {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let result = b.save(images, format, &mut out);
    if let Err(e) = result.and_then(|()| Ok(out.flush()?)) {
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

fn rfc3339_of_unix(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn images(b: &dyn Backend, a: &ImagesArgs) -> Result<i32> {
    let list = b.list_images(&Filters::from_flags(&a.filter)?, a.all)?;
    if a.quiet {
        for i in &list {
            println!("{}", short_id(i["Id"].as_str().unwrap_or_default()));
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for i in &list {
        let tags: Vec<String> = i["RepoTags"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        let names = if tags.is_empty() {
            vec![("<none>".to_owned(), "<none>".to_owned())]
        } else {
            tags.iter().map(|n| split_name(n)).collect()
        };
        let id = i["Id"].as_str().unwrap_or_default();
        let created = rfc3339_of_unix(i["Created"].as_i64().unwrap_or(0));
        for (repo, tag) in names {
            let mut m = Map::new();
            m.insert("Repository".into(), json!(repo));
            m.insert("Tag".into(), json!(tag));
            m.insert("ID".into(), json!(short_id(id)));
            m.insert("Digest".into(), json!(id));
            m.insert("CreatedSince".into(), json!(format::ago(&created)));
            m.insert("CreatedAt".into(), json!(created));
            m.insert(
                "Size".into(),
                json!(format::size(i["Size"].as_u64().unwrap_or(0))),
            );
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

fn history(b: &dyn Backend, a: &HistoryArgs) -> Result<i32> {
    let mut rows = Vec::new();
    for h in b.history(&a.image)? {
        let mut m = Map::new();
        let id = h["Id"].as_str().unwrap_or_default();
        m.insert(
            "ID".into(),
            json!(if id == "<missing>" {
                id.to_owned()
            } else {
                short_id(id)
            }),
        );
        let created = rfc3339_of_unix(h["Created"].as_i64().unwrap_or(0));
        m.insert("CreatedSince".into(), json!(format::ago(&created)));
        m.insert("CreatedAt".into(), json!(created));
        let created_by = h["CreatedBy"].as_str().unwrap_or_default();
        m.insert(
            "CreatedBy".into(),
            json!(if a.no_trunc || created_by.chars().count() <= 45 {
                created_by.to_owned()
            } else {
                format!("{}…", created_by.chars().take(44).collect::<String>())
            }),
        );
        m.insert(
            "Size".into(),
            json!(format::size(h["Size"].as_u64().unwrap_or(0))),
        );
        m.insert("Comment".into(), h["Comment"].clone());
        rows.push(m);
    }
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

/// `capsa stats`: two samples a second apart give the CPU share (100% = one CPU, as Docker).
fn stats(b: &dyn Backend, no_stream: bool, format: Option<&str>, names: &[String]) -> Result<i32> {
    loop {
        let rows = b.stats_rows(names)?;
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
        std::io::stdout().flush()?;
    }
}

fn ps(
    b: &dyn Backend,
    all: bool,
    quiet: bool,
    size: bool,
    no_trunc: bool,
    filter: &[String],
    format: Option<&str>,
) -> Result<i32> {
    let list = b.list_containers(all, size, &Filters::from_flags(filter)?)?;
    let id = |c: &Value| {
        let full = c["Id"].as_str().unwrap_or_default();
        if no_trunc {
            full.to_owned()
        } else {
            short_id(full).to_owned()
        }
    };
    if quiet {
        for c in &list {
            println!("{}", id(c));
        }
        return Ok(0);
    }
    let mut rows = Vec::new();
    for c in &list {
        let mut command = c["Command"].as_str().unwrap_or_default().to_owned();
        if !no_trunc && command.chars().count() > 20 {
            command = command.chars().take(19).collect::<String>() + "…";
        }
        let created = rfc3339_of_unix(c["Created"].as_i64().unwrap_or(0));
        let name = c["Names"][0]
            .as_str()
            .unwrap_or_default()
            .trim_start_matches('/');
        let mut m = Map::new();
        m.insert("ID".into(), json!(id(c)));
        m.insert("Image".into(), c["Image"].clone());
        m.insert("Command".into(), json!(format!("\"{command}\"")));
        m.insert("CreatedAt".into(), json!(created));
        m.insert("RunningFor".into(), json!(format::ago(&created)));
        m.insert("Status".into(), c["Status"].clone());
        m.insert("State".into(), c["State"].clone());
        m.insert("Names".into(), json!(name));
        let labels: Vec<String> = c["Labels"]
            .as_object()
            .map(|l| {
                l.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                    .collect()
            })
            .unwrap_or_default();
        m.insert("Labels".into(), json!(labels.join(",")));
        let mounts: Vec<String> = c["Mounts"]
            .as_array()
            .map(|ms| {
                ms.iter()
                    .map(|x| {
                        x["Name"]
                            .as_str()
                            .filter(|n| !n.is_empty())
                            .or(x["Source"].as_str())
                            .unwrap_or_default()
                            .to_owned()
                    })
                    .collect()
            })
            .unwrap_or_default();
        m.insert("Mounts".into(), json!(mounts.join(",")));
        m.insert("Ports".into(), json!(ports_text(&c["Ports"])));
        let networks: Vec<String> = c["NetworkSettings"]["Networks"]
            .as_object()
            .map(|n| n.keys().cloned().collect())
            .unwrap_or_default();
        m.insert("Networks".into(), json!(networks.join(",")));
        if size {
            m.insert(
                "Size".into(),
                json!(format!(
                    "{} (virtual {})",
                    format::size(c["SizeRw"].as_u64().unwrap_or(0)),
                    format::size(c["SizeRootFs"].as_u64().unwrap_or(0))
                )),
            );
        }
        rows.push(m);
    }
    let columns: &'static [(&str, &str)] = if size {
        &[
            ("CONTAINER ID", "ID"),
            ("IMAGE", "Image"),
            ("COMMAND", "Command"),
            ("CREATED", "RunningFor"),
            ("STATUS", "Status"),
            ("PORTS", "Ports"),
            ("NAMES", "Names"),
            ("SIZE", "Size"),
        ]
    } else {
        &[
            ("CONTAINER ID", "ID"),
            ("IMAGE", "Image"),
            ("COMMAND", "Command"),
            ("CREATED", "RunningFor"),
            ("STATUS", "Status"),
            ("PORTS", "Ports"),
            ("NAMES", "Names"),
        ]
    };
    Output::new(format, columns).print(&rows);
    Ok(0)
}

/// Docker's PORTS column: `127.0.0.1:8080->80/tcp, 443/tcp` (published first, as listed).
fn ports_text(ports: &Value) -> String {
    ports
        .as_array()
        .map(|list| {
            list.iter()
                .map(|p| {
                    let private = format!(
                        "{}/{}",
                        p["PrivatePort"].as_u64().unwrap_or(0),
                        p["Type"].as_str().unwrap_or("tcp")
                    );
                    match (p["IP"].as_str(), p["PublicPort"].as_u64()) {
                        (Some(ip), Some(public)) => format!("{ip}:{public}->{private}"),
                        _ => private,
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// `CONTAINER:PATH` → (container, path).
fn container_path(arg: &str) -> Option<(&str, &str)> {
    if arg.starts_with('/') || arg.starts_with('.') {
        return None;
    }
    arg.split_once(':').filter(|(c, _)| !c.is_empty())
}

/// `capsa cp`: a container's path to the host (a file or a directory tree, extracted with
/// `tar`), or a host path into a container's directory (sent as a tar stream).
fn cp(b: &dyn Backend, source: &str, destination: &str) -> Result<i32> {
    match (container_path(source), container_path(destination)) {
        (Some((c, path)), None) => {
            if destination == "-" {
                b.copy_from(c, path, &mut std::io::stdout().lock())?;
                return Ok(0);
            }
            let mut tar = Vec::new();
            let stat = b.copy_from(c, path, &mut tar)?;
            let dest = Path::new(destination);
            // Into an existing directory: keep the base name; else the path is the new name.
            let (dir, rename) = if dest.is_dir() {
                (dest.to_path_buf(), None)
            } else {
                (
                    dest.parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .unwrap_or(Path::new("."))
                        .to_path_buf(),
                    dest.file_name().map(|n| n.to_string_lossy().into_owned()),
                )
            };
            let staging = tempdir_in(&dir)?;
            let result = (|| -> Result<()> {
                let mut child = std::process::Command::new("tar")
                    .arg("-x")
                    .arg("-C")
                    .arg(&staging)
                    .stdin(std::process::Stdio::piped())
                    .spawn()
                    .context("run tar -x")?;
                child.stdin.take().context("tar's stdin")?.write_all(&tar)?;
                if !child.wait()?.success() {
                    bail!("tar -x failed");
                }
                let top = staging.join(if stat.name == "/" { "." } else { &stat.name });
                let target = dir.join(rename.as_deref().unwrap_or(&stat.name));
                if stat.name == "/" {
                    bail!("copying a container's whole root: use capsa export");
                }
                std::fs::rename(&top, &target)
                    .with_context(|| format!("move into {}", target.display()))?;
                Ok(())
            })();
            let _ = std::fs::remove_dir_all(&staging);
            result?;
            Ok(0)
        }
        (None, Some((c, path))) => {
            if source == "-" {
                b.copy_to(c, path, &mut std::io::stdin().lock())?;
                return Ok(0);
            }
            let src = Path::new(source);
            let meta = std::fs::symlink_metadata(src).with_context(|| format!("stat {source}"))?;
            // DEST is a directory of the container: the source goes into it. Else DEST is the
            // new name, in its parent directory.
            let (dir, name) = match b.path_stat(c, path) {
                Ok(st) if st.mode & (1 << 31) != 0 => (
                    path.to_owned(),
                    src.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                ),
                _ => {
                    let p = Path::new(path);
                    (
                        p.parent()
                            .map(|d| d.display().to_string())
                            .unwrap_or_else(|| "/".into()),
                        p.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                }
            };
            let _ = meta;
            let parent = src
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let base = src.file_name().context("the source has no name")?;
            let out = std::process::Command::new("tar")
                .arg("-c")
                .arg("-C")
                .arg(parent)
                .arg(format!(
                    "--transform=s|^{}|{}|",
                    regex_escape(&base.to_string_lossy()),
                    name
                ))
                .arg(base)
                .output()
                .context("run tar -c")?;
            if !out.status.success() {
                bail!("tar -c failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            b.copy_to(c, &dir, &mut out.stdout.as_slice())?;
            Ok(0)
        }
        _ => bail!("cp: one of SOURCE and DESTINATION must be CONTAINER:PATH, not both"),
    }
}

/// A fresh directory beside `dir`'s entries, for staging an extraction.
fn tempdir_in(dir: &Path) -> Result<PathBuf> {
    let path = dir.join(format!(".capsa-cp-{}", std::process::id()));
    std::fs::create_dir_all(&path).with_context(|| format!("mkdir {}", path.display()))?;
    Ok(path)
}

/// Escapes a name for tar's sed-like `--transform`.
fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if "\\.^$*[]|".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Set by SIGINT/SIGTERM while a build runs: the build stops its step and removes it.
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether SIGINT or SIGTERM came (during a build).
pub(crate) fn interrupted() -> bool {
    INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst)
}

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// `capsa build`: the flags as the engine's options, the context as a directory or a tar, the
/// log printed as it comes (only the id with `-q`).
fn build(b: &dyn Backend, a: &BuildArgs) -> Result<i32> {
    use capsa_host::engine::build::BuildOptions;
    let mut options = BuildOptions {
        tags: a.tag.clone(),
        target: a.target.clone().filter(|t| !t.is_empty()),
        no_cache: a.no_cache,
        pull: a.pull,
        platform: a.platform.clone().filter(|p| !p.is_empty()),
        network: a.network.clone(),
        ..BuildOptions::default()
    };
    for arg in &a.build_arg {
        match arg.split_once('=') {
            Some((k, v)) => {
                options.build_args.insert(k.to_owned(), v.to_owned());
            }
            // Docker: `--build-arg K` takes K from the environment, and is left out if unset.
            None => {
                if let Ok(v) = std::env::var(arg) {
                    options.build_args.insert(arg.clone(), v);
                }
            }
        }
    }
    for label in &a.label {
        let (k, v) = label.split_once('=').unwrap_or((label.as_str(), ""));
        options.labels.insert(k.to_owned(), v.to_owned());
    }
    let stdin_tar = a.context == "-";
    match a.file.as_deref() {
        Some("-") if stdin_tar => {
            anyhow::bail!("invalid argument: can't use stdin for both build context and dockerfile")
        }
        Some("-") => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
                .context("read the Dockerfile from stdin")?;
            options.dockerfile_text = Some(text);
        }
        Some(f) => options.dockerfile = Some(PathBuf::from(f)),
        None => {}
    }
    let context = if stdin_tar {
        backend::BuildContext::Tar(Box::new(std::io::stdin()))
    } else {
        let path = PathBuf::from(&a.context);
        let meta = std::fs::metadata(&path).with_context(|| {
            format!("unable to prepare context: path {:?} not found", a.context)
        })?;
        if meta.is_dir() {
            backend::BuildContext::Dir(path)
        } else {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("open the build context {}", path.display()))?;
            backend::BuildContext::Tar(Box::new(file))
        }
    };
    // Ctrl-C cancels the build (its running step is killed and removed) instead of leaving a
    // step container behind.
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe { libc::signal(sig, on_interrupt as *const () as libc::sighandler_t) };
    }
    let quiet = a.quiet;
    let mut stdout = std::io::stdout();
    let built = b.build(context, &options, &mut |text| {
        if !quiet {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        }
    });
    let id = match built {
        Ok(id) => id,
        // A failed RUN: its message, and its exit code as the CLI's (as Docker's).
        Err(e) => match e.downcast_ref::<capsa_host::engine::EngineError>() {
            Some(capsa_host::engine::EngineError::BuildStep { message, code }) => {
                eprintln!("capsa: {message}");
                return Ok(*code);
            }
            _ => return Err(e),
        },
    };
    if quiet {
        println!("{id}");
    }
    if let Some(path) = &a.iidfile {
        std::fs::write(path, &id).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(0)
}
