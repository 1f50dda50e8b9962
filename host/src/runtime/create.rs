//! `create`: validate the bundle, record the container, make its cgroup, clone its init and walk it
//! through the envelope until it waits for `start`. A failure at any step undoes every earlier
//! one: the init is killed, the cgroup and the state directory removed.

use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, listen, socket,
};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::START_SOCKET;
use super::state::{ContainerDir, Record, StateRoot, Status};
use super::timing;
use crate::cgroups::{Cgroup, Layout};
use crate::envelope::init::{self, InitArgs};
use crate::envelope::namespaces::{NamespacePlan, write_id_maps};
use crate::envelope::sync::{FromInit, ToInit};
use crate::error::{Context, Error, Result};
use crate::hooks::run_hooks;
use crate::spec::Bundle;
use crate::sys::clone::{Forked, fork_with};
use crate::sys::fs::{fd_path, write_atomic};
use crate::sys::proc;
use crate::sys::socket::{recv, send, seqpacket_pair};

/// What `create` (and `run`) take from the command line.
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// A container whose init waits for start.
pub struct Created {
    /// The locked state directory.
    pub dir: ContainerDir,
    /// The recorded state.
    pub record: Record,
    /// The runtime's end of the sync socket (for `run`, which starts over it).
    pub sync: OwnedFd,
}

/// Undoes a partial create unless disarmed.
struct Rollback {
    init: Option<Pid>,
    cgroup: Option<Cgroup>,
    dir: Option<PathBuf>,
}

impl Drop for Rollback {
    fn drop(&mut self) {
        if let Some(pid) = self.init {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        if let Some(cgroup) = &self.cgroup {
            let _ = cgroup.remove();
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Creates container `options.id` from its bundle. The init is left waiting for `start`.
pub fn create(root: &StateRoot, options: &CreateOptions) -> Result<Created> {
    let bundle = Bundle::load(&options.bundle)?;
    timing::mark("bundle loaded");
    create_from(root, options, bundle, None)
}

/// Like [`create`], for a caller that holds the container's terminal itself (the engine's
/// monitor for `run -dt`): when the process has a terminal and no `--console-socket` is given,
/// the pty master comes back with the container instead of going to a socket.
pub fn create_holding_terminal(
    root: &StateRoot,
    options: &CreateOptions,
) -> Result<(Created, Option<OwnedFd>)> {
    let bundle = Bundle::load(&options.bundle)?;
    if !bundle.wants_terminal() || options.console_socket.is_some() {
        return Ok((create_from(root, options, bundle, None)?, None));
    }
    let (ours, theirs) = UnixStream::pair().with(|| "socketpair for the console".to_string())?;
    let created = create_from(root, options, bundle, Some(OwnedFd::from(theirs)))?;
    match crate::sys::socket::recv_fd(ours.as_raw_fd()) {
        Ok(Some(master)) => Ok((created, Some(master))),
        other => {
            let _ = super::delete(root, &options.id, true);
            Err(match other {
                Err(e) => e,
                _ => Error::Step {
                    step: "create".into(),
                    message: "the init sent no terminal".into(),
                },
            })
        }
    }
}

/// Like [`create`] from a loaded `bundle`, with the pty master sent to `console` (one end of a
/// socketpair) when the process has a terminal and no `--console-socket` was given: `run` in the
/// foreground proxies the terminal itself.
pub(crate) fn create_from(
    root: &StateRoot,
    options: &CreateOptions,
    bundle: Bundle,
    console: Option<OwnedFd>,
) -> Result<Created> {
    // A wasm program is found and compiled now, before anything of the container exists; the
    // init only execs the shim.
    let wasm = match bundle.process() {
        Some(process) => crate::wasm::prepare(
            &bundle.spec,
            process,
            &bundle.rootfs,
            &bundle.dir,
            &root.wasm_cache(),
        )?,
        None => None,
    };
    timing::mark("wasm prepared");
    let dir = root.create(&options.id)?;
    let mut rollback = Rollback {
        init: None,
        cgroup: None,
        dir: Some(dir.path().to_path_buf()),
    };

    let layout = Layout::detect()?;
    let linux = bundle.linux();
    let cgroups_path = linux
        .cgroups_path()
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/{}", options.id)));
    let cgroup = Cgroup::resolve(&layout, &cgroups_path);
    let cgroup_existed = cgroup.all_dirs().all(|d| d.exists());
    cgroup.create(&layout)?;
    if !cgroup_existed {
        rollback.cgroup = Some(cgroup.clone());
    }
    timing::mark("state dir and cgroup made");

    let console: Option<OwnedFd> = match &options.console_socket {
        Some(path) => Some(
            UnixStream::connect(path)
                .with(|| format!("connect to console socket {}", path.display()))?
                .into(),
        ),
        None => console,
    };
    if bundle.wants_terminal() && console.is_none() {
        return Err(crate::error::invalid(
            "process.terminal is true: give --console-socket (or run in the foreground)",
        ));
    }
    let listener = start_listener(&dir)?;
    let (parent_sync, child_sync) = seqpacket_pair()?;
    let plan = NamespacePlan::from_config(linux);
    // Id-mapped mounts need user namespaces with their mappings, made here where /proc is the
    // host's (the init's pid namespace would hide the helper's pid).
    let idmap_userns = crate::envelope::mounts::idmap_namespaces(&bundle.spec, &plan)?;
    // Placement without a migration by pid where the kernel allows it (a migration waits for an
    // RCU grace period): the init is born in the v2 directory (CLONE_INTO_CGROUP) and joins the
    // v1 ones itself (Cgroup::join_v1_self), unless it starts in a new user namespace, where it
    // may not write the host's cgroup files; then the runtime moves it.
    let into_cgroup = cgroup.open_v2_dir();
    let mut clone_flags = plan.new;
    if !plan.joins.is_empty() {
        // The init joins namespaces first and creates the new ones itself.
        clone_flags = CloneFlags::empty();
    }
    let init_joins_v1 = cgroup.has_v1_dirs() && !clone_flags.contains(CloneFlags::CLONE_NEWUSER);
    // The cgroup namespace must be created once the init is in its cgroup, so its root is the
    // container's cgroup: at clone time when the clone places it completely, else by the init
    // after placement.
    let placed_at_clone = into_cgroup.is_some() && !cgroup.has_v1_dirs();
    let unshare_cgroup_namespace = plan.new.contains(CloneFlags::CLONE_NEWCGROUP)
        && (!placed_at_clone || !plan.joins.is_empty());
    if unshare_cgroup_namespace {
        clone_flags.remove(CloneFlags::CLONE_NEWCGROUP);
    }

    // SAFETY: capsa-runtime is single-threaded on this path (no threads are ever started).
    let forked = unsafe {
        fork_with(
            clone_flags.bits(),
            into_cgroup.as_ref().map(|fd| fd.as_raw_fd()),
        )?
    };
    let child = match forked {
        Forked::Child => {
            drop(parent_sync);
            init::run(InitArgs {
                id: &options.id,
                bundle: &bundle,
                plan: &plan,
                layout: &layout,
                cgroup: &cgroup,
                unshare_cgroup_namespace,
                join_v1_cgroups: init_joins_v1,
                sync: child_sync.into_raw_fd(),
                start_listener: Some(listener.into_raw_fd()),
                console_socket: console.map(|c| c.into_raw_fd()),
                no_pivot: options.no_pivot,
                no_new_keyring: options.no_new_keyring,
                preserve_fds: options.preserve_fds,
                seccomp_cache: root.seccomp_cache(),
                wasm: wasm.as_ref(),
                idmap_userns: &idmap_userns,
            })
        }
        Forked::Parent(pid) => pid,
    };
    drop(child_sync);
    drop(listener);
    drop(console);
    drop(wasm);
    rollback.init = Some(child);
    timing::mark("init cloned");

    let runtime_adds_v1 = cgroup.has_v1_dirs() && !init_joins_v1;
    let runtime_adds_unified = cgroup.unified.is_some() && into_cgroup.is_none();
    if runtime_adds_v1 || runtime_adds_unified {
        cgroup.add_to(child.as_raw(), runtime_adds_v1, runtime_adds_unified)?;
        timing::mark("init placed in its cgroup by the runtime");
    }
    if plan.new_user() && plan.joins.is_empty() {
        write_id_maps(child.as_raw(), linux)?;
    }
    send(&parent_sync, &ToInit::Continue)?;

    let mut record = Record {
        oci_version: bundle.spec.version().clone(),
        id: options.id.clone(),
        pid: child.as_raw(),
        init_start_time: 0,
        recorded_status: Status::Creating,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        annotations: bundle.spec.annotations().clone().unwrap_or_default(),
        cgroup: Some(cgroup.clone()),
        hooks: bundle.spec.hooks().clone(),
    };
    let hooks = bundle.spec.hooks().as_ref();
    loop {
        let message = recv::<FromInit>(&parent_sync)?;
        match message {
            Some(FromInit::WriteIdMaps) => {
                write_id_maps(record.pid, linux)?;
                send(&parent_sync, &ToInit::Continue)?;
            }
            Some(FromInit::InitPid(pid)) => {
                // The first child forked the real init (as our child, CLONE_PARENT) and exits.
                let _ = waitpid(child, None);
                record.pid = pid;
                rollback.init = Some(Pid::from_raw(pid));
            }
            Some(FromInit::RunHooks) => {
                let state =
                    serde_json::to_string(&record.oci_state(Status::Created)).unwrap_or_default();
                #[allow(deprecated)]
                run_hooks(
                    "prestart",
                    hooks.and_then(|h| h.prestart().as_ref()),
                    &state,
                )?;
                run_hooks(
                    "createRuntime",
                    hooks.and_then(|h| h.create_runtime().as_ref()),
                    &state,
                )?;
                send(&parent_sync, &ToInit::HooksDone { state })?;
            }
            Some(FromInit::Ready) => {
                timing::mark("init ready (namespaces, rootfs, mounts, identity)");
                break;
            }
            Some(FromInit::Failed(message)) => {
                return Err(Error::Step {
                    step: "container setup".into(),
                    message,
                });
            }
            None => {
                let status = waitpid(Pid::from_raw(record.pid), None);
                rollback.init = None;
                return Err(Error::Step {
                    step: "container setup".into(),
                    message: format!("the container's init died: {status:?}"),
                });
            }
        }
    }

    // Limits apply once the init has built the envelope (its mknods and mounts are not subject
    // to the container's device rules) and before the payload can run, as runc does.
    if let Some(resources) = linux.resources() {
        cgroup.apply(&layout, resources, true)?;
    }
    record.init_start_time = proc::start_time(record.pid).unwrap_or_default();
    record.recorded_status = Status::Created;
    dir.save_config(&bundle.config_json)?;
    dir.write(&record)?;
    timing::mark("resources applied, state recorded");
    if let Some(pid_file) = &options.pid_file {
        write_atomic(pid_file, record.pid.to_string().as_bytes())?;
    }
    rollback.init = None;
    rollback.cgroup = None;
    rollback.dir = None;
    Ok(Created {
        dir,
        record,
        sync: parent_sync,
    })
}

/// The socket `start` connects to. Bound through the locked directory's descriptor, so the path
/// stays short whatever the state root's length (unix socket paths are limited to 108 bytes).
fn start_listener(dir: &ContainerDir) -> Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .with(|| "socket(AF_UNIX, SOCK_SEQPACKET)".to_string())?;
    let path = short_path(dir, START_SOCKET)?;
    let addr = UnixAddr::new(&path).with(|| format!("socket address {}", path.display()))?;
    bind(fd.as_raw_fd(), &addr)
        .with(|| format!("bind {}", dir.path().join(START_SOCKET).display()))?;
    listen(&fd, Backlog::new(4).unwrap_or(Backlog::MAXCONN))
        .with(|| "listen on start socket".to_string())?;
    Ok(fd)
}

/// A path to `name` in the container's directory short enough for a socket address.
pub(crate) fn short_path(dir: &ContainerDir, name: &str) -> Result<PathBuf> {
    Ok(fd_path(&dir.raw_fd()).join(name))
}
