//! Ahead-of-time compilation with a cache. At `create` the module is compiled by wasmtime
//! (Cranelift) into an artifact the shim only has to map into memory, and kept under the state
//! root for the next container that runs the same module:
//!
//! ```text
//! <state root>/.wasm-cache/<key>.cwasm          the artifact (wasmtime's precompiled ELF)
//! <state root>/.wasm-cache/<key>.cwasm.sha256   its SHA-256, hex
//! key = sha256(module's sha256, module or component, engine compatibility key, wasm features)
//! ```
//!
//! An artifact is used only after its bytes hash to the recorded digest and wasmtime recognises
//! them as precompiled code of the right kind; anything else (a partial write, a corrupt or
//! foreign file) is rebuilt, never handed to the shim. Another wasmtime version, CPU or engine
//! configuration gives another key, so a stale artifact is never even looked at. Both files are
//! written to a temporary name and renamed, so a reader sees a whole file or none.
//!
//! Compilation runs in a forked child: Cranelift may start threads or use a lot of memory, and
//! `capsa-runtime` must stay a small single-threaded process that can fork the container's init.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use capsa_images::Digest;
use nix::sys::wait::{WaitStatus, waitpid};
use nix::unistd::pipe2;
use wasmtime::{Engine, Precompiled};

use super::detect::{Kind, WasmProgram};
use super::digest::DigestCache;
use super::engine;
use super::options::WasmOptions;
use crate::error::{Context, Error, Result};
use crate::sys::clone::{Forked, fork_with};
use crate::sys::fs::write_atomic;

/// A compiled artifact, verified and open read-only (close-on-exec: the init clears the flag on
/// it right before exec'ing the shim), positioned at offset 0.
#[derive(Debug)]
pub struct Artifact {
    /// The open artifact.
    pub fd: OwnedFd,
    /// Its path in the cache, for messages.
    pub path: PathBuf,
    /// Module or component.
    pub kind: Kind,
}

/// The artifact for `program` compiled with the engine `options` configure, from the cache in
/// `dir` or compiled now and stored there.
pub fn cached_artifact(
    dir: &Path,
    program: &mut WasmProgram,
    options: &WasmOptions,
) -> Result<Artifact> {
    let engine = engine::compiler(&options.features)?;
    let engine_key = engine::compatibility_key(&engine);
    let digests = DigestCache::new(dir);
    let digest = program.digest(&digests)?;
    let path = dir.join(format!(
        "{}.cwasm",
        cache_key(&digest, program.kind, &engine_key, &options.features)
    ));
    match open_verified(&path, program.kind, &digests) {
        Ok(fd) => {
            return Ok(Artifact {
                fd,
                path,
                kind: program.kind,
            });
        }
        Err(reason) => log::debug!("wasm cache: {}: {reason}; compiling", path.display()),
    }
    // What is compiled is keyed by the bytes it is compiled from: a remembered digest only named
    // the entry looked up, so the file is read (and hashed) now; a digest of bytes already read
    // is theirs.
    let path = if program.is_read() {
        path
    } else {
        let digest = Digest::of_bytes(program.binary()?);
        dir.join(format!(
            "{}.cwasm",
            cache_key(&digest, program.kind, &engine_key, &options.features)
        ))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with(|| format!("create wasm cache {}", dir.display()))?;
    compile_in_child(&engine, program, &path)?;
    let fd = open_verified(&path, program.kind, &digests).map_err(|reason| Error::Step {
        step: format!("wasm cache {}", path.display()),
        message: format!("the artifact just compiled does not verify: {reason}"),
    })?;
    Ok(Artifact {
        fd,
        path,
        kind: program.kind,
    })
}

/// The cache key, hex: the SHA-256 of everything that decides what the compiled code is.
fn cache_key(
    module_digest: &Digest,
    kind: Kind,
    engine_key: &str,
    features: &[(String, bool)],
) -> String {
    let mut key = format!(
        "capsa-wasm-cache-v2\0{}\0{}\0{engine_key}\0",
        module_digest.hex(),
        match kind {
            Kind::Module => "module",
            Kind::Component => "component",
        }
    );
    for (name, on) in features {
        key.push_str(&format!("{name}={}\0", if *on { "on" } else { "off" }));
    }
    Digest::of_bytes(key.as_bytes()).hex().to_owned()
}

fn digest_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".sha256");
    PathBuf::from(name)
}

/// Opens the artifact at `path` if it is whole and of the right kind; the reason otherwise. Its
/// bytes are hashed unless `digests` remembers them for this very file (see [`super::digest`]).
fn open_verified(
    path: &Path,
    kind: Kind,
    digests: &DigestCache,
) -> std::result::Result<OwnedFd, String> {
    // Opened once and checked through that descriptor: a rename meanwhile cannot swap what is
    // checked for what is run (entries are replaced by rename, never rewritten in place).
    let mut file = std::fs::File::open(path).map_err(|e| format!("open: {e}"))?;
    let recorded = std::fs::read_to_string(digest_path(path))
        .map_err(|e| format!("read its digest: {e}"))
        .and_then(|text| {
            Digest::from_hex(text.trim())
                .map_err(|_| format!("its recorded digest {text:?} is not SHA-256"))
        })?;
    let mapped = MappedFile::new(&file)?;
    let bytes = mapped.bytes();
    let actual = match digests.lookup(&file) {
        Some(remembered) => remembered,
        None => {
            let actual = Digest::of_bytes(bytes);
            if actual == recorded {
                digests.remember(&file, &actual);
            }
            actual
        }
    };
    if recorded != actual {
        return Err(format!(
            "its SHA-256 is {}, the recorded one {} (corrupt or partly written)",
            actual.hex(),
            recorded.hex()
        ));
    }
    let expected = match kind {
        Kind::Module => Precompiled::Module,
        Kind::Component => Precompiled::Component,
    };
    match Engine::detect_precompiled(bytes) {
        Some(found) if found == expected => {}
        found => {
            return Err(format!(
                "not a precompiled {kind:?} (wasmtime sees {found:?})"
            ));
        }
    }
    drop(mapped);
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("seek: {e}"))?;
    Ok(file.into())
}

/// A whole file mapped read-only, unmapped on drop. Verifying an artifact reads every byte
/// once: through a mapping the page cache is read in place (a fault maps 16 pages), where
/// reading into a buffer took a fault for every page of a fresh allocation as large as the
/// artifact, on every container start.
struct MappedFile {
    start: std::ptr::NonNull<std::ffi::c_void>,
    len: std::num::NonZeroUsize,
}

impl MappedFile {
    fn new(file: &std::fs::File) -> std::result::Result<Self, String> {
        let size = file.metadata().map_err(|e| format!("stat: {e}"))?.len();
        let len = usize::try_from(size)
            .ok()
            .and_then(std::num::NonZeroUsize::new)
            .ok_or_else(|| format!("an artifact of {size} bytes"))?;
        // SAFETY: a new private read-only mapping at an address the kernel picks; nothing else
        // refers to it. Cache entries are replaced by rename, never rewritten in place, so the
        // file's bytes do not change under the mapping.
        let start = unsafe {
            nix::sys::mman::mmap(
                None,
                len,
                nix::sys::mman::ProtFlags::PROT_READ,
                nix::sys::mman::MapFlags::MAP_PRIVATE,
                file,
                0,
            )
        }
        .map_err(|e| format!("mmap: {e}"))?;
        Ok(Self { start, len })
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the mapping is `len` readable bytes and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.start.as_ptr().cast::<u8>(), self.len.get()) }
    }
}

impl Drop for MappedFile {
    fn drop(&mut self) {
        // SAFETY: `start`/`len` are exactly the mapping made in `new`, unmapped only here.
        let _ = unsafe { nix::sys::mman::munmap(self.start, self.len.get()) };
    }
}

/// Compiles `program` into `path` (and its digest) in a forked child; its error comes back over
/// a pipe.
fn compile_in_child(engine: &Engine, program: &mut WasmProgram, path: &Path) -> Result<()> {
    let step_name = format!("compile wasm program {}", program.path.display());
    let step = || step_name.clone();
    // A multi-threaded caller (the daemon) must not fork: it compiles in this process, where
    // Cranelift's threads and memory are no harm.
    if crate::sys::proc::thread_count() > 1 {
        return compile_and_store(engine, program, path).map_err(|message| Error::Step {
            step: step(),
            message,
        });
    }
    let (read_end, write_end) = pipe2(nix::fcntl::OFlag::O_CLOEXEC).with(|| "pipe2".to_string())?;
    // SAFETY: capsa-runtime is single-threaded on this path (no threads are ever started).
    match unsafe { fork_with(0, None)? } {
        Forked::Child => {
            drop(read_end);
            let code = match compile_and_store(engine, program, path) {
                Ok(()) => 0,
                Err(message) => {
                    let _ = std::fs::File::from(write_end).write_all(message.as_bytes());
                    1
                }
            };
            // SAFETY: _exit ends the child without running the runtime's destructors or atexit
            // handlers, which belong to the parent.
            unsafe { libc::_exit(code) }
        }
        Forked::Parent(pid) => {
            drop(write_end);
            let mut message = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut message);
            match waitpid(pid, None).with(step)? {
                WaitStatus::Exited(_, 0) => Ok(()),
                status => Err(Error::Step {
                    step: step(),
                    message: if message.is_empty() {
                        format!("the compiler process ended with {status:?}")
                    } else {
                        message
                    },
                }),
            }
        }
    }
}

/// The child's work: compile, write the artifact under a temporary name, rename, record the
/// digest.
fn compile_and_store(
    engine: &Engine,
    program: &mut WasmProgram,
    path: &Path,
) -> std::result::Result<(), String> {
    let kind = program.kind;
    let binary = program.binary().map_err(|e| e.to_string())?;
    let compiled = match kind {
        Kind::Module => engine.precompile_module(binary),
        Kind::Component => engine.precompile_component(binary),
    }
    .map_err(|e| format!("{e:#}"))?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(&compiled)?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(format!("write {}: {e}", path.display()));
    }
    write_atomic(
        &digest_path(path),
        Digest::of_bytes(&compiled).hex().as_bytes(),
    )
    .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn program(wat: &str) -> WasmProgram {
        crate::wasm::detect::to_binary(Path::new("/test.wat"), wat.as_bytes().to_vec())
            .expect("wat")
    }

    /// The cache's artifacts and digest files (not its `digests` directory).
    fn artifact_files(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("cache dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .count()
    }

    #[test]
    fn artifacts_are_cached_verified_and_rebuilt_when_corrupt() {
        let dir = std::env::temp_dir().join(format!("capsa-wasm-cache-{}", std::process::id()));
        let options = WasmOptions::default();
        let mut p = program(r#"(module (func (export "_start")))"#);

        let first = cached_artifact(&dir, &mut p, &options).expect("compile");
        let entries = || artifact_files(&dir);
        assert_eq!(entries(), 2, "artifact and digest");
        let mtime = || {
            std::fs::metadata(&first.path)
                .and_then(|m| m.modified())
                .expect("mtime")
        };
        let compiled_at = mtime();

        let second = cached_artifact(&dir, &mut p, &options).expect("hit");
        assert_eq!(second.path, first.path);
        assert_eq!(mtime(), compiled_at, "a hit does not recompile");

        // Corrupt in place: detected and rebuilt.
        let mut bytes = std::fs::read(&first.path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::write(&first.path, &bytes).expect("corrupt");
        assert!(open_verified(&first.path, Kind::Module, &DigestCache::new(&dir)).is_err());
        let rebuilt = cached_artifact(&dir, &mut p, &options).expect("rebuild");
        assert!(open_verified(&rebuilt.path, Kind::Module, &DigestCache::new(&dir)).is_ok());

        // A valid file of the wrong kind is not taken either.
        assert!(open_verified(&first.path, Kind::Component, &DigestCache::new(&dir)).is_err());

        // Other features, another entry.
        let simd_off = WasmOptions {
            features: vec![("multi-memory".into(), false)],
            ..WasmOptions::default()
        };
        let other = cached_artifact(&dir, &mut p, &simd_off).expect("other features");
        assert_ne!(other.path, first.path);
        assert_eq!(entries(), 4);
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn an_invalid_module_fails_with_the_compiler_message_and_leaves_nothing() {
        let dir = std::env::temp_dir().join(format!("capsa-wasm-bad-{}", std::process::id()));
        let mut bad = crate::wasm::detect::to_binary(
            Path::new("/bad.wasm"),
            b"\0asm\x01\0\0\0\x01\xff".to_vec(),
        )
        .expect("a binary header");
        let error = cached_artifact(&dir, &mut bad, &WasmOptions::default())
            .expect_err("invalid")
            .to_string();
        assert!(error.contains("/bad.wasm"), "{error}");
        assert_eq!(std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A warm start hashes neither module nor artifact once both have settled, and an artifact
    /// changed in place (same size) is still caught: the change moves its ctime.
    #[test]
    fn remembered_digests_skip_hashing_and_an_in_place_change_is_still_caught() {
        let dir = std::env::temp_dir().join(format!("capsa-wasm-settled-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let module = dir.join("m.wasm");
        std::fs::write(
            &module,
            wat::parse_str(r#"(module (func (export "_start")))"#).expect("wat"),
        )
        .expect("module");
        let cache = dir.join("cache");
        let options = WasmOptions::default();
        let from_file = || {
            let root = std::fs::File::open(&dir).expect("root");
            let process: oci_spec::runtime::Process = serde_json::from_value(serde_json::json!({
                "args": ["/m.wasm"], "cwd": "/", "user": {"uid": 0, "gid": 0}
            }))
            .expect("process");
            crate::wasm::detect::find_program(&root, &process, crate::wasm::Handler::Wasm)
                .expect("find")
                .expect("wasm")
        };
        let first = cached_artifact(&cache, &mut from_file(), &options).expect("compile");
        std::thread::sleep(super::super::digest::SETTLED + std::time::Duration::from_millis(100));
        // This start hashes both and remembers them.
        cached_artifact(&cache, &mut from_file(), &options).expect("hit");
        let digests = DigestCache::new(&cache);
        let module_file = std::fs::File::open(&module).expect("module");
        assert!(
            digests.lookup(&module_file).is_some(),
            "module digest remembered"
        );
        let artifact_file = std::fs::File::open(&first.path).expect("artifact");
        assert!(
            digests.lookup(&artifact_file).is_some(),
            "artifact digest remembered"
        );
        // A hit now reads no module bytes: the program's file is never read past its header.
        let mut program = from_file();
        let hit = cached_artifact(&cache, &mut program, &options).expect("warm hit");
        assert_eq!(hit.path, first.path);
        assert!(program.binary.is_none(), "a warm start read the module");

        let mut bytes = std::fs::read(&first.path).expect("read");
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        std::fs::OpenOptions::new()
            .write(true)
            .open(&first.path)
            .and_then(|mut f| f.write_all(&bytes))
            .expect("corrupt in place");
        assert!(open_verified(&first.path, Kind::Module, &digests).is_err());
        let rebuilt = cached_artifact(&cache, &mut from_file(), &options).expect("rebuild");
        assert!(open_verified(&rebuilt.path, Kind::Module, &digests).is_ok());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
