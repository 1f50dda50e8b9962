//! Wasm payloads in the same envelope. A container whose program is a WebAssembly module gets the
//! envelope of a native one (namespaces, cgroup, rootfs, identity, seccomp); only its last step
//! differs: instead of `execve` of the program, the init execs `capsa-shim`, which runs the module
//! with wasmtime.
//!
//! Everything is decided and prepared before the envelope is built, at `create` (or before the
//! fork of `exec`), so `start` only execs:
//! - [`detect`]: is the program wasm? (annotations, then the file at `process.args[0]`)
//! - [`options`]: the `capsa.wasm/*` annotations, parsed once
//! - [`compile`]: the module compiled ahead of time, cached under the state root, opened read-only
//! - [`digest`]: the SHA-256s of module and artifact remembered by file identity (a warm start
//!   hashes nothing)
//! - [`shim`]: `capsa-shim` opened beside `capsa-runtime` and its command line ([`ShimExec`])

pub mod compile;
pub mod detect;
pub mod digest;
mod engine;
pub mod options;
pub mod shim;

use std::collections::HashMap;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;

use oci_spec::runtime::{Process, Spec};

pub use detect::{Handler, Kind};
pub use options::WasmOptions;
pub use shim::ShimExec;

use crate::error::{Context, Result};

/// Decides whether `process` of the container described by `spec` runs as wasm and, when it does,
/// prepares everything the shim needs: the module found in `rootfs` (the container's root
/// directory: the bundle's rootfs at `create`, `/proc/<init>/root` at `exec`) and compiled into
/// `cache`, the shim opened, its command line built. `None`: a native program, for which nothing
/// is read or opened.
///
/// Runs in `capsa-runtime` before any fork, so the container's init (or an `exec`'d process) only
/// execs. A wasm program that cannot be run (invalid module, missing file, bad annotation) fails
/// here, before anything of the container exists.
pub fn prepare(
    spec: &Spec,
    process: &Process,
    rootfs: &Path,
    bundle: &Path,
    cache: &Path,
) -> Result<Option<ShimExec>> {
    let no_annotations = HashMap::new();
    let annotations = spec.annotations().as_ref().unwrap_or(&no_annotations);
    let handler = Handler::from_annotations(annotations);
    if handler == Handler::Native {
        return Ok(None);
    }
    let root = open(
        rootfs,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .with(|| format!("open rootfs {}", rootfs.display()))?;
    let Some(mut program) = detect::find_program(&root, process, handler)? else {
        return Ok(None);
    };
    let options = WasmOptions::from_annotations(annotations)?;
    let artifact = compile::cached_artifact(cache, &mut program, &options)?;
    ShimExec::new(spec, bundle, process, &program, artifact, &options).map(Some)
}

/// Compiles `bytes` (a module or component, binary or text, that a container will see at `path`)
/// into `cache` ahead of time, with the default options (no `capsa.wasm/*` annotations), so the
/// first container that runs it starts from the cache. The engine calls it when a wasm image is
/// loaded or pulled. Returns the artifact's path.
pub fn precompile(cache: &Path, path: &Path, bytes: Vec<u8>) -> Result<std::path::PathBuf> {
    let mut program = detect::to_binary(path, bytes)?;
    Ok(compile::cached_artifact(cache, &mut program, &WasmOptions::default())?.path)
}
