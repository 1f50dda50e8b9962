//! The shim's work, from the command line to the exit code: load the precompiled artifact, give
//! the module its WASI world, run it, and turn how it ended into the exit status of the contract
//! (see the crate docs).

use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::path::PathBuf;
use std::time::Instant;

use wasmtime::component::{Component, ResourceTable};
use wasmtime::{Engine, Module, Precompiled, ResourceLimiter, Store, Trap, WasmBacktrace};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use crate::engine::engine_config;
use crate::interrupt::{self, Watchdog};
use crate::options::{ArtifactKind, Options};

/// Exit code when the module cannot be run at all (bad command line, invalid artifact, missing
/// import, no entry point): the shell's "command not runnable".
pub const EXIT_NOT_RUNNABLE: i32 = 127;

/// Exit code after a trap, as a process killed by `abort` (128 + SIGABRT).
pub const EXIT_TRAP: i32 = 134;

/// Why the module could not be run; each is reported and ends the shim with
/// [`EXIT_NOT_RUNNABLE`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The command line breaks the contract.
    #[error("usage: {0}")]
    Usage(#[from] crate::options::UsageError),
    /// The container's environment is not valid for WASI.
    #[error("environment entry {0:?} is not UTF-8")]
    Environment(OsString),
    /// SIGTERM/SIGINT handling or the watchdog thread could not be set up.
    #[error("set up signal handling: {0}")]
    Signals(String),
    /// `Engine::new` refused the configuration (a feature combination wasmtime rejects).
    #[error("configure the wasm engine (features: {features}): {message}")]
    Engine {
        /// The `--wasm-feature` settings.
        features: String,
        /// wasmtime's message.
        message: String,
    },
    /// The artifact's descriptor could not be used.
    #[error("artifact descriptor {fd}: {reason}")]
    ArtifactFd {
        /// The descriptor.
        fd: RawFd,
        /// What failed.
        reason: String,
    },
    /// The bytes are not a wasmtime artifact of the expected kind.
    #[error(
        "the precompiled artifact is invalid or was built for another engine configuration ({reason})"
    )]
    InvalidArtifact {
        /// What was found, or wasmtime's message.
        reason: String,
    },
    /// A preopened directory could not be opened.
    #[error("preopen {guest}={host}: {message}")]
    Preopen {
        /// The name the module would see.
        guest: String,
        /// The directory.
        host: PathBuf,
        /// The error.
        message: String,
    },
    /// The module needs something the shim does not provide (usually a missing import).
    #[error("{program}: cannot be instantiated: {message}")]
    Link {
        /// `ARG0`.
        program: String,
        /// wasmtime's message, naming the import.
        message: String,
    },
}

/// Runs the shim: `args` are its arguments after the program name, `env` its environment (the
/// container's `process.env`, handed to the module unchanged). Reports to stderr and returns the
/// exit code.
pub fn main(args: impl IntoIterator<Item = OsString>, env: Vec<(OsString, OsString)>) -> i32 {
    let started = Instant::now();
    std::panic::set_hook(Box::new(|info| {
        let _ = writeln!(std::io::stderr(), "capsa-shim: internal error: {info}");
    }));
    if let Err(e) = interrupt::block_stop_signals() {
        return not_runnable(&Error::Signals(e.to_string()));
    }
    match prepare(args, env, started) {
        Ok((prepared, watchdog)) => {
            let code = prepared.run(&watchdog);
            let _ = std::io::stdout().flush();
            if !watchdog.claim() {
                // The watchdog is ending the process (a stop the module did not notice in time).
                loop {
                    std::thread::park();
                }
            }
            code
        }
        Err(e) => not_runnable(&e),
    }
}

fn not_runnable(error: &Error) -> i32 {
    let _ = writeln!(std::io::stderr(), "capsa-shim: {error}");
    EXIT_NOT_RUNNABLE
}

/// A loaded program with its store, ready to run.
struct Prepared {
    program: String,
    memory_limit: Option<usize>,
    program_kind: Program,
}

enum Program {
    Module(Store<ModuleState>, wasmtime::InstancePre<ModuleState>),
    Component(Store<ComponentState>, CommandPre<ComponentState>),
}

fn prepare(
    args: impl IntoIterator<Item = OsString>,
    env: Vec<(OsString, OsString)>,
    started: Instant,
) -> Result<(Prepared, Watchdog), Error> {
    let options = Options::parse(args)?;
    let env = env
        .into_iter()
        .map(|(k, v)| {
            let entry = || {
                let mut entry = k.clone();
                entry.push("=");
                entry.push(&v);
                entry
            };
            match (k.to_str(), v.to_str()) {
                (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                _ => Err(Error::Environment(entry())),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    let engine = Engine::new(&engine_config(&options.features)).map_err(|e| Error::Engine {
        features: options.features.to_string(),
        message: format!("{e:#}"),
    })?;
    let watchdog = Watchdog::start(engine.clone(), started, options.deadline)
        .map_err(|e| Error::Signals(format!("start the watchdog thread: {e}")))?;
    let artifact = take_fd(options.artifact_fd)?;
    let mut wasi = wasi_builder(&options, &env)?;
    let limiter = MemoryLimiter {
        limit: options.memory_limit.map(module_share),
        refused: None,
    };
    let link = |e: wasmtime::Error| Error::Link {
        program: options.program().to_string(),
        message: format!("{e:#}"),
    };
    let program_kind = match options.kind {
        ArtifactKind::Module => {
            let module = load_module(&engine, artifact, options.artifact_fd)?;
            let mut linker = wasmtime::Linker::new(&engine);
            wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |s: &mut ModuleState| &mut s.wasi)
                .map_err(link)?;
            let pre = linker.instantiate_pre(&module).map_err(link)?;
            let state = ModuleState {
                wasi: wasi.build_p1(),
                limiter,
            };
            Program::Module(store(&engine, state, |s| &mut s.limiter), pre)
        }
        ArtifactKind::Component => {
            let component = load_component(&engine, artifact, options.artifact_fd)?;
            let mut linker = wasmtime::component::Linker::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(link)?;
            let pre = linker.instantiate_pre(&component).map_err(link)?;
            let pre = CommandPre::new(pre).map_err(link)?;
            let state = ComponentState {
                ctx: wasi.build(),
                table: ResourceTable::new(),
                limiter,
            };
            Program::Component(store(&engine, state, |s| &mut s.limiter), pre)
        }
    };
    Ok((
        Prepared {
            program: options.program().to_string(),
            memory_limit: options.memory_limit,
            program_kind,
        },
        watchdog,
    ))
}

/// A store that traps at the first epoch increment (the watchdog's) and asks `limiter` before
/// any memory grows.
fn store<T: 'static>(
    engine: &Engine,
    state: T,
    limiter: fn(&mut T) -> &mut MemoryLimiter,
) -> Store<T> {
    let mut store = Store::new(engine, state);
    store.limiter(move |s| limiter(s) as &mut dyn ResourceLimiter);
    store.set_epoch_deadline(1);
    store.epoch_deadline_trap();
    store
}

/// Takes ownership of the inherited artifact descriptor after checking it is open.
fn take_fd(fd: RawFd) -> Result<File, Error> {
    // SAFETY: F_GETFD only reads the descriptor's flags; it fails with EBADF if `fd` is not open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return Err(Error::ArtifactFd {
            fd,
            reason: format!("not open: {}", std::io::Error::last_os_error()),
        });
    }
    // SAFETY: the descriptor is open (checked above) and was passed to this process for the shim
    // alone; nothing else in the process uses or closes it, so the `File` may own it.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// How the artifact is read: mapped in place through `/proc/self/fd` (the fast path: nothing is
/// copied, pages come from the page cache), or its bytes read when /proc is not mounted or the
/// file's filesystem is `noexec` (wasmtime maps code executable, which `noexec` forbids for a
/// file mapping).
enum Source {
    Mapped(PathBuf),
    Bytes(Vec<u8>),
}

fn source(file: &mut File, fd: RawFd) -> Result<Source, Error> {
    let fd_error = |reason: String| Error::ArtifactFd { fd, reason };
    let path = PathBuf::from(format!("/proc/self/fd/{fd}"));
    let mut stat: libc::statvfs = unsafe {
        // SAFETY: a zeroed statvfs is a valid value to be overwritten by fstatvfs.
        std::mem::zeroed()
    };
    // SAFETY: `fd` is open and owned by `file`; `stat` is a valid out pointer.
    let noexec =
        unsafe { libc::fstatvfs(fd, &mut stat) } == 0 && stat.f_flag & libc::ST_NOEXEC != 0;
    if !noexec && path.exists() {
        return Ok(Source::Mapped(path));
    }
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(|e| fd_error(format!("read: {e}")))?;
    Ok(Source::Bytes(bytes))
}

/// Checks the artifact is what wasmtime precompiles, of the kind the command line says.
fn check_kind(found: Option<Precompiled>, expected: Precompiled) -> Result<(), Error> {
    match found {
        Some(kind) if kind == expected => Ok(()),
        Some(kind) => Err(Error::InvalidArtifact {
            reason: format!("it holds a precompiled {kind:?}, expected a {expected:?}"),
        }),
        None => Err(Error::InvalidArtifact {
            reason: "not a wasmtime precompiled artifact".into(),
        }),
    }
}

fn detect(source: &Source) -> Option<Precompiled> {
    match source {
        Source::Mapped(path) => Engine::detect_precompiled_file(path).ok().flatten(),
        Source::Bytes(bytes) => Engine::detect_precompiled(bytes),
    }
}

fn invalid(e: wasmtime::Error) -> Error {
    Error::InvalidArtifact {
        reason: format!("{e:#}"),
    }
}

fn load_module(engine: &Engine, mut file: File, fd: RawFd) -> Result<Module, Error> {
    let source = source(&mut file, fd)?;
    check_kind(detect(&source), Precompiled::Module)?;
    // SAFETY: the artifact was produced by capsa-runtime's `Engine::precompile_module` with this
    // crate's `engine_config`, kept in its root-owned state directory and verified against its
    // recorded SHA-256 before the descriptor was handed over; the file is never modified once
    // written (new artifacts are renamed into place), as the mapping requires.
    let module = unsafe {
        match source {
            Source::Mapped(_) => Module::deserialize_open_file(engine, file),
            Source::Bytes(bytes) => Module::deserialize(engine, bytes),
        }
    };
    module.map_err(invalid)
}

fn load_component(engine: &Engine, mut file: File, fd: RawFd) -> Result<Component, Error> {
    let source = source(&mut file, fd)?;
    check_kind(detect(&source), Precompiled::Component)?;
    // SAFETY: as for modules in `load_module`: the bytes are capsa-runtime's own output of
    // `Engine::precompile_component`, from its root-owned state directory, never modified.
    let component = unsafe {
        match &source {
            Source::Mapped(path) => Component::deserialize_file(engine, path),
            Source::Bytes(bytes) => Component::deserialize(engine, bytes),
        }
    };
    drop(file);
    component.map_err(invalid)
}

/// The module's WASI world: its arguments and environment exactly, stdio inherited, the
/// preopened directories, and sockets only with `--inherit-network`.
fn wasi_builder(options: &Options, env: &[(String, String)]) -> Result<WasiCtxBuilder, Error> {
    let mut builder = WasiCtxBuilder::new();
    builder
        .args(&options.args)
        .envs(env)
        .inherit_stdio()
        // Filesystem calls run on this thread rather than a blocking pool: one module, one
        // thread, nothing to overlap.
        .allow_blocking_current_thread(true);
    for preopen in &options.preopens {
        let perms = if preopen.writable {
            FsPerms::ReadWrite
        } else {
            FsPerms::ReadOnly
        };
        builder
            .preopened_dir(&preopen.host, &preopen.guest, perms)
            .map_err(|e| Error::Preopen {
                guest: preopen.guest.clone(),
                host: preopen.host.clone(),
                message: format!("{e:#}"),
            })?;
    }
    if options.inherit_network {
        builder.inherit_network().allow_ip_name_lookup(true);
    }
    Ok(builder)
}

/// A core module's store data.
struct ModuleState {
    wasi: WasiP1Ctx,
    limiter: MemoryLimiter,
}

/// A component's store data.
struct ComponentState {
    ctx: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// Memory the shim keeps for itself under `--memory-limit` beyond what it already uses when the
/// store is made: the runtime's own allocations while the module runs (WASI buffers, the stack,
/// page tables, the artifact's pages as they are touched).
const SHIM_RESERVE: usize = 4 << 20;

/// The part of the container's memory limit the module's linear memories may use: the limit
/// also covers the shim itself, so a module allowed the whole of it would be OOM-killed by the
/// cgroup before its growth was refused. The shim's share is what it uses now (resident set,
/// from /proc/self/statm; taken as 16 MiB when that cannot be read) plus [`SHIM_RESERVE`].
fn module_share(limit: usize) -> usize {
    limit.saturating_sub(resident_bytes().unwrap_or(16 << 20) + SHIM_RESERVE)
}

/// This process's resident set size, from /proc/self/statm (pages).
fn resident_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory effects; _SC_PAGESIZE is always supported.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).ok()?;
    Some(pages * page)
}

/// Refuses growth of a linear memory past its share of `--memory-limit` (memory.grow returns -1, allocators
/// see an out-of-memory) and remembers that it did, so the shim can say why the module failed.
#[derive(Debug)]
struct MemoryLimiter {
    limit: Option<usize>,
    /// The size of the first growth refused, in bytes.
    refused: Option<usize>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        match self.limit {
            Some(limit) if desired > limit => {
                self.refused.get_or_insert(desired);
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

impl Prepared {
    /// Instantiates and runs the program; returns the exit code after reporting a failure.
    fn run(self, watchdog: &Watchdog) -> i32 {
        if let Some(stop) = watchdog.fired() {
            return stop.report();
        }
        let Prepared {
            program,
            memory_limit,
            program_kind,
        } = self;
        let (result, refused, module_limit) = match program_kind {
            Program::Module(mut store, pre) => {
                let result = run_module(&mut store, &pre);
                let limiter = &store.data().limiter;
                (result, limiter.refused, limiter.limit)
            }
            Program::Component(mut store, pre) => {
                let result = run_component(&mut store, &pre);
                let limiter = &store.data().limiter;
                (result, limiter.refused, limiter.limit)
            }
        };
        let code = match result {
            Ok(code) => code,
            Err(Failed::Link(e)) => not_runnable(&Error::Link {
                program: program.clone(),
                message: format!("{e:#}"),
            }),
            Err(Failed::Run(e)) => report(&program, &e, watchdog),
        };
        if code != 0
            && let (Some(desired), Some(limit)) = (refused, memory_limit)
        {
            let _ = writeln!(
                std::io::stderr(),
                "capsa-shim: {program}: out of memory: growing a linear memory to {desired} bytes was refused (memory limit {limit} bytes, of which {module_limit} for the module's memories, the rest for the shim)",
                module_limit = module_limit.unwrap_or_default(),
            );
        }
        code
    }
}

/// The exit code for an error out of the running module, printing what happened.
fn report(program: &str, error: &wasmtime::Error, watchdog: &Watchdog) -> i32 {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return exit.0;
    }
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt)
        && let Some(stop) = watchdog.fired()
    {
        return stop.report();
    }
    let what = match trap {
        Some(trap) => format!("trap: {trap}"),
        None => format!("error: {}", error.root_cause()),
    };
    let backtrace = error
        .downcast_ref::<WasmBacktrace>()
        .map(|bt| format!("\n{bt}"))
        .unwrap_or_default();
    let _ = writeln!(
        std::io::stderr(),
        "capsa-shim: {program}: {what}{backtrace}"
    );
    EXIT_TRAP
}

/// How running ended without an exit code.
enum Failed {
    /// Instantiation found something missing (not a command, no `_start`).
    Link(wasmtime::Error),
    /// The module trapped or a host call failed (including `proc_exit`, as `I32Exit`).
    Run(wasmtime::Error),
}

fn run_module(
    store: &mut Store<ModuleState>,
    pre: &wasmtime::InstancePre<ModuleState>,
) -> Result<i32, Failed> {
    let instance = pre.instantiate(&mut *store).map_err(Failed::Run)?;
    let start = instance
        .get_typed_func::<(), ()>(&mut *store, "_start")
        .map_err(|e| Failed::Link(e.context("not a WASI command: no `_start` function")))?;
    start.call(&mut *store, ()).map_err(Failed::Run)?;
    Ok(0)
}

fn run_component(
    store: &mut Store<ComponentState>,
    pre: &CommandPre<ComponentState>,
) -> Result<i32, Failed> {
    let command = pre.instantiate(&mut *store).map_err(Failed::Run)?;
    match command.wasi_cli_run().call_run(&mut *store) {
        Ok(Ok(())) => Ok(0),
        // `wasi:cli/run` returned its error variant: the program failed without an exit code.
        Ok(Err(())) => Ok(1),
        Err(e) => Err(Failed::Run(e)),
    }
}
