//! The container's init process, from the moment `clone` returns in the child until it execs the
//! payload. It reports every failure to the runtime as text naming the step, then exits.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::sched::{CloneFlags, unshare};
use nix::sys::socket::{SockFlag, accept4};
use nix::unistd::{Gid, Uid, sethostname, setresgid, setresuid, setsid};
use oci_spec::runtime::Mount;

use super::identity::{Assumed, assume_identity, set_no_new_privs};
use super::mounts::{MountContext, mount_entry};
use super::namespaces::{NamespacePlan, join_all};
use super::seccomp::{self, Filter};
use super::sync::{FromInit, ToInit};
use super::{console, devices, rootfs};
use crate::cgroups::{Cgroup, Layout};
use crate::error::{Context, Error, Result, invalid};
use crate::hooks::run_hooks;
use crate::runtime::timing::mark;
use crate::spec::Bundle;
use crate::sys::clone::{Forked, fork_with};
use crate::sys::fs::mkdir_all_in_root;
use crate::sys::socket::{recv, send};

/// What the init needs; it lives in the init's copy of the runtime's memory.
pub struct InitArgs<'a> {
    pub id: &'a str,
    pub bundle: &'a Bundle,
    pub plan: &'a NamespacePlan,
    pub layout: &'a Layout,
    pub cgroup: &'a Cgroup,
    /// Whether the cgroup namespace is created by `unshare` after the cgroup placement (it was
    /// left out of the clone flags so its root is the container's cgroup).
    pub unshare_cgroup_namespace: bool,
    /// Whether the init moves itself into the cgroup's v1 directories first thing (the runtime
    /// does it otherwise; see `Cgroup::join_v1_self`).
    pub join_v1_cgroups: bool,
    /// The init's end of the sync socket.
    pub sync: RawFd,
    /// The listening socket `start` connects to (None for `run`, which starts over `sync`).
    pub start_listener: Option<RawFd>,
    /// The connected `--console-socket`, when the process has a terminal.
    pub console_socket: Option<RawFd>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// Where compiled seccomp programs are kept (under the state root).
    pub seccomp_cache: std::path::PathBuf,
    /// The wasm shim to exec instead of a native program (decided and prepared at create).
    pub wasm: Option<&'a crate::wasm::ShimExec>,
    /// For each id-mapped mount (by index in `mounts`), its user namespace.
    pub idmap_userns: &'a [(usize, std::os::fd::OwnedFd)],
}

/// Runs the init; never returns.
pub fn run(args: InitArgs) -> ! {
    let error = match build_and_exec(&args) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = send(&args.sync, &FromInit::Failed(error.to_string()));
    // SAFETY: _exit ends this process without running the parent's atexit handlers or destructors,
    // which belong to the runtime process we were cloned from.
    unsafe { libc::_exit(1) }
}

enum Never {}

fn wait_for(sync: RawFd, what: &str) -> Result<ToInit> {
    recv::<ToInit>(&sync)?.ok_or_else(|| Error::Step {
        step: what.to_string(),
        message: "the runtime went away".into(),
    })
}

fn build_and_exec(args: &InitArgs) -> Result<Never> {
    let spec = &args.bundle.spec;
    let linux = args.bundle.linux();
    let process = args.bundle.process();
    let plan = args.plan;

    if args.join_v1_cgroups {
        args.cgroup.join_v1_self()?;
        mark("init: joined its v1 cgroups");
    }
    wait_for(args.sync, "wait for cgroup placement")?;
    if !plan.joins.is_empty() {
        enter_namespaces_by_hand(args)?;
    } else if plan.new_user() {
        become_namespace_root()?;
    }
    if args.unshare_cgroup_namespace {
        unshare(CloneFlags::CLONE_NEWCGROUP).with(|| "unshare(CLONE_NEWCGROUP)".to_string())?;
    }
    setsid().with(|| "setsid".to_string())?;
    mark("init: placed, namespaces entered");

    // The rootfs, still seen from the host's root.
    let propagation = linux.rootfs_propagation().as_deref();
    let root =
        rootfs::prepare(&args.bundle.rootfs, propagation).with(|| "prepare rootfs".into())?;
    let in_user_namespace = plan.has(CloneFlags::CLONE_NEWUSER);
    let ctx = MountContext {
        root: &root,
        bundle: &args.bundle.dir,
        in_user_namespace,
        new_cgroup_namespace: plan.has(CloneFlags::CLONE_NEWCGROUP),
        cgroups: Some((args.layout, args.cgroup)),
        mount_label: linux.mount_label().as_deref(),
        idmap_userns: args.idmap_userns,
    };
    let mounts: &[Mount] = spec.mounts().as_deref().unwrap_or_default();
    for (index, entry) in mounts.iter().enumerate() {
        mount_entry(&ctx, index, entry)?;
    }
    if needs_dev_setup(mounts) {
        let extra = linux.devices().as_deref().unwrap_or_default();
        devices::create_devices(&root, extra, in_user_namespace)?;
        let with_proc = mounts.iter().any(|m| m.destination() == Path::new("/proc"));
        devices::create_symlinks(&root, with_proc)?;
    }
    mark("init: mounts and devices");

    // The seccomp filter is compiled now, so `start` only loads it.
    let mut filter = linux
        .seccomp()
        .as_ref()
        .map(|profile| Filter::compile(profile, Some(&args.seccomp_cache)))
        .transpose()
        .with(|| "linux.seccomp".into())?;
    mark("init: seccomp compiled");
    let hooks = spec.hooks().as_ref();
    let mut state = String::new();
    // A seccomp notify listener is sent the OCI state, which comes with the hooks exchange.
    let listener = linux
        .seccomp()
        .as_ref()
        .is_some_and(seccomp::wants_listener);
    if hooks.is_some_and(has_init_side_hooks) || listener {
        send(&args.sync, &FromInit::RunHooks)?;
        match wait_for(args.sync, "wait for createRuntime hooks")? {
            ToInit::HooksDone { state: s } => state = s,
            other => return Err(invalid(format!("unexpected message {other:?}"))),
        }
        run_hooks(
            "createContainer",
            hooks.and_then(|h| h.create_container().as_ref()),
            &state,
        )?;
    }
    if let Some(filter) = filter.as_mut() {
        // listenerPath is a host path: connect while the host's filesystem is still visible.
        filter.connect_listener(&state)?;
    }

    // Create the cwd while the rootfs is still reachable by handle, even if `/` turns read-only.
    if let Some(process) = process {
        mkdir_all_in_root(&root, process.cwd(), 0o755).with(|| "create process.cwd".to_string())?;
    }
    drop(root);
    rootfs::switch_root(&args.bundle.rootfs, args.no_pivot)?;
    mark("init: root switched");

    if let Some(name) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        sethostname(name).with(|| format!("sethostname({name})"))?;
    }
    if let Some(name) = spec.domainname().as_deref().filter(|h| !h.is_empty()) {
        set_domainname(name)?;
    }
    for (key, value) in linux.sysctl().iter().flatten() {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        std::fs::write(&path, value).with(|| format!("sysctl {key}={value}"))?;
    }
    if let Some(process) = process.filter(|p| p.terminal().unwrap_or(false)) {
        let socket = args
            .console_socket
            .ok_or_else(|| invalid("process.terminal is true but no --console-socket was given"))?;
        let size = process
            .console_size()
            .map(|b| (b.height() as u16, b.width() as u16));
        console::setup(socket, size)?;
        // SAFETY: the console socket fd is ours; it was only needed to send the pty master.
        drop(unsafe { OwnedFd::from_raw_fd(socket) });
    }
    rootfs::readonly_paths(linux.readonly_paths().as_deref().unwrap_or_default())?;
    rootfs::mask_paths(linux.masked_paths().as_deref().unwrap_or_default())?;
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        rootfs::readonly_root()?;
    }
    rootfs::apply_root_propagation(propagation)?;
    if !args.no_new_keyring {
        join_session_keyring(args.id);
    }
    mark("init: readonly and masked paths, keyring");
    // From here on, with the seccomp filter possibly loaded early (see `assume_identity`), every
    // syscall the init makes until execve (the Ready/Start messages, accept4, startContainer
    // hooks) must pass the profile, and a notify agent gets its fd at create time.
    if let Some(personality) = linux.personality() {
        super::identity::set_personality(personality)?;
    }
    let assumed = process
        .map(|process| assume_identity(process, args.wasm, &mut filter, args.preserve_fds))
        .transpose()?;
    send(&args.sync, &FromInit::Ready)?;

    // Wait for start: `run` sends Start over the sync socket; after `create` the runtime has exited
    // (end of file) and `start` connects to the listener instead.
    let report_to = match recv::<ToInit>(&args.sync)? {
        Some(ToInit::Start) => args.sync,
        _ => wait_for_start_command(args.start_listener)?,
    };
    let result = (|| -> Result<Never> {
        // config.md: `process` is optional at create and required at start.
        let Some(Assumed {
            payload: program,
            no_new_privileges,
        }) = assumed
        else {
            return Err(invalid(
                "config.json has no process: the container was created without one and cannot be started",
            ));
        };
        if hooks.is_some_and(|h| h.start_container().is_some()) {
            // The container is `created` until its process runs (the state came at createRuntime).
            let state = with_status(&state, "created");
            run_hooks(
                "startContainer",
                hooks.and_then(|h| h.start_container().as_ref()),
                &state,
            )?;
        }
        if no_new_privileges {
            set_no_new_privs()?;
        }
        // As late as possible, so the profile need not allow the init's own syscalls.
        if let Some(filter) = filter.as_mut() {
            filter.load()?;
        }
        Err(program.exec())
    })();
    let error = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = send(&report_to, &FromInit::Failed(error.to_string()));
    // SAFETY: see run().
    unsafe { libc::_exit(127) }
}

/// `state` (OCI state JSON) with its status replaced.
fn with_status(state: &str, status: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut value) => {
            value["status"] = status.into();
            value.to_string()
        }
        Err(_) => state.to_string(),
    }
}

/// The joined-namespace path: setns into the given namespaces, then create the new ones (a new
/// user namespace first, so it owns the rest), then fork once more if the pid namespace changes,
/// since setns/unshare of a pid namespace only affects children.
fn enter_namespaces_by_hand(args: &InitArgs) -> Result<()> {
    let plan = args.plan;
    join_all(&plan.joins)?;
    let mut new = plan.new;
    if plan.new_user() {
        unshare(CloneFlags::CLONE_NEWUSER).with(|| "unshare(CLONE_NEWUSER)".to_string())?;
        send(&args.sync, &FromInit::WriteIdMaps)?;
        wait_for(args.sync, "wait for id maps")?;
        become_namespace_root()?;
        new.remove(CloneFlags::CLONE_NEWUSER);
    }
    new.remove(CloneFlags::CLONE_NEWCGROUP);
    unshare(new).with(|| format!("unshare({new:?})"))?;
    if plan.pid_namespace() {
        // SAFETY: the init is single-threaded (a copy of the single-threaded runtime).
        match unsafe { fork_with(libc::CLONE_PARENT, None)? } {
            Forked::Child => {}
            Forked::Parent(pid) => {
                let _ = send(&args.sync, &FromInit::InitPid(pid.as_raw()));
                // SAFETY: see run().
                unsafe { libc::_exit(0) }
            }
        }
    }
    Ok(())
}

/// In a new user namespace, become its root (uid 0 maps to the configured host id).
fn become_namespace_root() -> Result<()> {
    setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .with(|| "setresgid(0) in the user namespace".to_string())?;
    setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
        .with(|| "setresuid(0) in the user namespace".to_string())
}

fn has_init_side_hooks(hooks: &oci_spec::runtime::Hooks) -> bool {
    #[allow(deprecated)]
    let any = [
        hooks.prestart(),
        hooks.create_runtime(),
        hooks.create_container(),
        hooks.start_container(),
    ];
    any.iter()
        .any(|h| h.as_ref().is_some_and(|v| !v.is_empty()))
}

/// Whether the config gives the container its own /dev (a tmpfs) that needs device nodes, rather
/// than binding the host's.
fn needs_dev_setup(mounts: &[Mount]) -> bool {
    mounts
        .iter()
        .find(|m| m.destination() == Path::new("/dev"))
        .is_none_or(|m| {
            m.typ().as_deref() != Some("bind")
                && !m
                    .options()
                    .iter()
                    .flatten()
                    .any(|o| o == "bind" || o == "rbind")
        })
}

fn wait_for_start_command(listener: Option<RawFd>) -> Result<RawFd> {
    let listener = listener.ok_or_else(|| invalid("no start socket"))?;
    loop {
        let conn = match accept4(listener, SockFlag::SOCK_CLOEXEC) {
            Ok(fd) => fd,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e).with(|| "wait for start".to_string()),
        };
        match recv::<ToInit>(&conn) {
            Ok(Some(ToInit::Start)) => return Ok(conn),
            _ => {
                // SAFETY: conn was just accepted and is owned by nothing else.
                drop(unsafe { OwnedFd::from_raw_fd(conn) });
            }
        }
    }
}

fn set_domainname(name: &str) -> Result<()> {
    // SAFETY: setdomainname reads `len` bytes from the pointer, which points into `name`.
    let ret = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    if ret != 0 {
        return Err(nix::errno::Errno::last()).with(|| format!("setdomainname({name})"));
    }
    Ok(())
}

/// A session keyring named after the container, so it does not share the host's keys. The init
/// creates it; a process `exec`'d later joins the same one (keyctl joins a keyring it finds by name).
pub(crate) fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let Ok(name) = std::ffi::CString::new(format!("_ses.{id}")) else {
        return;
    };
    // SAFETY: keyctl(JOIN_SESSION_KEYRING, name) reads the NUL-terminated name.
    let ret =
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    if ret < 0 {
        // Kernels without keyrings (or restricted ones) are fine: the container just shares none.
        log::debug!("join session keyring: {}", nix::errno::Errno::last());
    }
}

/// Marks every descriptor from `first` up close-on-exec, so only stdio and the preserved fds
/// reach the payload.
pub(crate) fn mark_fds_cloexec(first: u32) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOEXEC only sets flags on our own descriptors.
    unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    // The preserved fds must survive exec even if the caller opened them close-on-exec.
    for fd in 3..first as RawFd {
        // SAFETY: F_SETFD on an fd number; harmless if it is not open.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
    }
}
