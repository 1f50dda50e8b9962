//! OCI lifecycle hooks: each runs as a program with the container's state JSON on its stdin, in
//! order, with an optional timeout. The runtime runs prestart, createRuntime, poststart and
//! poststop; the container's init runs createContainer and startContainer in its namespaces.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use oci_spec::runtime::Hook;

use crate::error::{Error, Result};
use crate::sys::pidfd::PidFd;

/// Runs `hooks` (of the kind named `kind`, e.g. "createRuntime") in order; the first failure
/// stops the sequence and is returned.
pub fn run_hooks(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &str) -> Result<()> {
    for hook in hooks.into_iter().flatten() {
        run_hook(kind, hook, state_json)?;
    }
    Ok(())
}

/// Runs every hook of `hooks` (poststart, poststop) in order, whatever the others do: the spec
/// says a failure of one of these is logged as a warning and the remaining hooks and the
/// lifecycle go on. Returns how many failed.
pub fn run_hooks_warning(kind: &'static str, hooks: Option<&Vec<Hook>>, state_json: &str) -> usize {
    let mut failed = 0;
    for hook in hooks.into_iter().flatten() {
        if let Err(e) = run_hook(kind, hook, state_json) {
            log::warn!("{e}");
            failed += 1;
        }
    }
    failed
}

fn run_hook(kind: &'static str, hook: &Hook, state_json: &str) -> Result<()> {
    let path = hook.path().display().to_string();
    let fail = |message: String| Error::Hook {
        hook: kind,
        path: path.clone(),
        message,
    };
    let mut command = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some(arg0) = args.first() {
            command.arg0(arg0);
        }
        command.args(args.iter().skip(1));
    }
    command.env_clear();
    for entry in hook.env().iter().flatten() {
        if let Some((key, value)) = entry.split_once('=') {
            command.env(key, value);
        }
    }
    command.stdin(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| fail(format!("cannot run: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin may exit first; that is not an error.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    if let Some(seconds) = hook.timeout() {
        let pidfd = PidFd::open(child.id() as i32).map_err(|e| fail(e.to_string()))?;
        let exited = pidfd
            .wait_exit(Duration::from_secs(seconds.max(1) as u64))
            .map_err(|e| fail(e.to_string()))?;
        if !exited {
            let _ = child.kill();
            let _ = child.wait();
            return Err(fail(format!("timed out after {seconds}s")));
        }
    }
    let status = child.wait().map_err(|e| fail(format!("wait: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(fail(format!("failed: {status}")))
    }
}
