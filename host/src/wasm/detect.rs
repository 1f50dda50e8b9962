//! Is a container's program wasm? Decided at `create` (and before `exec`), from the annotations
//! and, in smart mode, from the program file itself:
//!
//! 1. A Kubernetes sandbox (pause) container is never wasm.
//! 2. `run.oci.handler=wasm` or `module.wasm.image/variant=compat`: the program is wasm (a
//!    native executable there is an error).
//! 3. `run.oci.handler=wasm-smart` or `module.wasm.image/variant=compat-smart`: the file at
//!    `process.args[0]` (found like execvp does, inside the rootfs) is wasm when it starts with
//!    `\0asm`, native when it is ELF or starts with `#!`, else wasm when its name ends in `.wasm`
//!    or `.wat`, else native. One image can so mix native and wasm programs.
//! 4. Anything else is native, as with runc.
//!
//! Bytes 4–8 of a binary tell a core module (version 1) from a component (`0d 00 01 00`).
//! A `.wat` file (or, in forced mode, any file that is not binary wasm) is text, turned into binary
//! with the `wat` crate.

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use oci_spec::runtime::Process;

use crate::envelope::exec::DEFAULT_PATH;
use crate::error::{Context, Error, Result, invalid};
use crate::sys::fs::open_in_root;

use capsa_images::Digest;

use super::digest::DigestCache;

/// crun's handler annotation (`wasm`, `wasm-smart`).
pub const HANDLER: &str = "run.oci.handler";
/// The wasm image variant annotation of crun and youki (`compat`, `compat-smart`).
pub const VARIANT: &str = "module.wasm.image/variant";
/// containerd's CRI annotation; `sandbox` marks a pod's pause container.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI-O's equivalent of [`CRI_CONTAINER_TYPE`].
pub const CRIO_CONTAINER_TYPE: &str = "io.kubernetes.cri-o.ContainerType";

const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_VERSION: [u8; 4] = [0x0d, 0, 1, 0];

/// How the annotations ask the program to be run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// A native program (no wasm annotation, or a sandbox container).
    Native,
    /// Always wasm.
    Wasm,
    /// Wasm or native depending on the program file.
    Smart,
}

impl Handler {
    /// The handler the annotations select. When both annotations are given, forced wasm wins over
    /// smart. Unknown values (crun's `krun`, …) are ignored, as runc ignores every annotation.
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Self {
        let is = |key: &str, value: &str| annotations.get(key).is_some_and(|v| v == value);
        if is(CRI_CONTAINER_TYPE, "sandbox") || is(CRIO_CONTAINER_TYPE, "sandbox") {
            Self::Native
        } else if is(HANDLER, "wasm") || is(VARIANT, "compat") {
            Self::Wasm
        } else if is(HANDLER, "wasm-smart") || is(VARIANT, "compat-smart") {
            Self::Smart
        } else {
            Self::Native
        }
    }
}

/// Which kind of wasm binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A core module (WASI preview 1).
    Module,
    /// A component (WASI preview 2, the command world).
    Component,
}

impl Kind {
    /// The kind of a binary that starts with the wasm magic, from its version bytes (4–8).
    pub fn of_binary(header: &[u8]) -> Result<Self> {
        match header.get(4..8) {
            Some(v) if v == CORE_VERSION => Ok(Self::Module),
            Some(v) if v == COMPONENT_VERSION => Ok(Self::Component),
            Some(v) => Err(invalid(format!(
                "unsupported wasm binary version {v:02x?} (a core module has 01 00 00 00, a component 0d 00 01 00)"
            ))),
            None => Err(invalid("truncated wasm header (fewer than 8 bytes)")),
        }
    }
}

/// What the start of a file says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileType {
    /// Starts with `\0asm`.
    WasmBinary,
    /// An ELF binary or a `#!` script.
    Native,
    /// Anything else.
    Other,
}

impl FileType {
    /// Classifies a file by its first bytes.
    pub fn of(header: &[u8]) -> Self {
        if header.starts_with(MAGIC) {
            Self::WasmBinary
        } else if header.starts_with(b"\x7fELF") || header.starts_with(b"#!") {
            Self::Native
        } else {
            Self::Other
        }
    }
}

/// Whether a file with this header and name is run as wasm under `handler` (rule 2 and 3 of the
/// module doc). Forced mode refuses a native executable.
pub fn is_wasm(handler: Handler, header: &[u8], name: &Path) -> Result<bool> {
    let named_wasm = matches!(
        name.extension().and_then(|e| e.to_str()),
        Some("wasm" | "wat")
    );
    match (handler, FileType::of(header)) {
        (Handler::Native, _) => Ok(false),
        (_, FileType::WasmBinary) => Ok(true),
        (Handler::Wasm, FileType::Native) => Err(invalid(format!(
            "{} is a native executable (ELF or #!), but the annotations ask for a wasm payload \
             ({HANDLER}=wasm or {VARIANT}=compat; use the -smart variant to mix both)",
            name.display()
        ))),
        (Handler::Wasm, FileType::Other) => Ok(true),
        (Handler::Smart, FileType::Native) => Ok(false),
        (Handler::Smart, FileType::Other) => Ok(named_wasm),
    }
}

/// A wasm program found in the container's rootfs. A binary module stays an open file until its
/// bytes are needed (a warm start needs only its digest, which [`DigestCache`] may remember);
/// text is converted when found.
#[derive(Debug)]
pub struct WasmProgram {
    /// Where it is, as the container sees it.
    pub path: PathBuf,
    /// Module or component.
    pub kind: Kind,
    /// The open file it came from, if any.
    file: Option<std::fs::File>,
    /// The module or component in binary form, once read (text already converted).
    pub(super) binary: Option<Vec<u8>>,
}

impl WasmProgram {
    /// The program in binary form, read from its file on first use.
    pub fn binary(&mut self) -> Result<&[u8]> {
        if self.binary.is_none() {
            let file = self.file.as_mut().ok_or_else(|| Error::Step {
                step: format!("read {}", self.path.display()),
                message: "neither bytes nor a file".into(),
            })?;
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.read_to_end(&mut bytes))
                .with(|| format!("read {} in the rootfs", self.path.display()))?;
            if Kind::of_binary(&bytes).ok() != Some(self.kind) {
                return Err(Error::Step {
                    step: format!("read {}", self.path.display()),
                    message: "the file changed while the container was being made".into(),
                });
            }
            self.binary = Some(bytes);
        }
        Ok(self.binary.as_deref().unwrap_or_default())
    }

    /// Whether the binary is in memory (text converted, or a file already read): a digest of
    /// the program is then one of these very bytes.
    pub fn is_read(&self) -> bool {
        self.binary.is_some()
    }

    /// The SHA-256 of the binary: remembered in `digests` for the file it is read from, or
    /// computed now (and remembered once the file has settled).
    pub fn digest(&mut self, digests: &DigestCache) -> Result<Digest> {
        if let (Some(file), None) = (&self.file, &self.binary)
            && let Some(digest) = digests.lookup(file)
        {
            return Ok(digest);
        }
        let digest = Digest::of_bytes(self.binary()?);
        if let Some(file) = &self.file {
            digests.remember(file, &digest);
        }
        Ok(digest)
    }
}

/// Finds `process.args[0]` in `root` (the container's rootfs) as execvp would: a name with a
/// slash relative to `process.cwd`, anything else in the process's PATH. Every path is resolved
/// inside the root (`openat2(RESOLVE_IN_ROOT)`), so a symlink cannot reach a host file. Returns the
/// program when `handler` makes it wasm, `None` when it is native (or, in smart mode, not found:
/// the native path then reports it missing).
pub fn find_program(
    root: &impl AsFd,
    process: &Process,
    handler: Handler,
) -> Result<Option<WasmProgram>> {
    let arg0 = process
        .args()
        .as_deref()
        .and_then(<[String]>::first)
        .ok_or_else(|| invalid("process.args is empty"))?;
    let cwd = process.cwd();
    let candidates: Vec<PathBuf> = if arg0.contains('/') {
        vec![cwd.join(arg0)]
    } else {
        let env = process.env().as_deref().unwrap_or_default();
        let search = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(DEFAULT_PATH);
        search
            .split(':')
            .map(|dir| cwd.join(if dir.is_empty() { "." } else { dir }).join(arg0))
            .collect()
    };
    for path in candidates {
        let fd = match open_in_root(root, &path, OFlag::O_RDONLY | OFlag::O_NOCTTY) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR | Errno::EACCES) => continue,
            Err(e) => return Err(e).with(|| format!("open {} in the rootfs", path.display())),
        };
        let mut file = std::fs::File::from(fd);
        let meta = file
            .metadata()
            .with(|| format!("stat {} in the rootfs", path.display()))?;
        if !meta.is_file() {
            continue;
        }
        let mut header = Vec::with_capacity(8);
        (&mut file)
            .take(8)
            .read_to_end(&mut header)
            .with(|| format!("read {} in the rootfs", path.display()))?;
        let executable = meta.permissions().mode() & 0o111 != 0;
        let wasm = is_wasm(handler, &header, &path)?;
        // Like execvp, PATH lookup skips files that are not executable; a wasm module need not
        // be (nothing execs it but the shim).
        if !wasm && !executable {
            continue;
        }
        if !wasm {
            return Ok(None);
        }
        if FileType::of(&header) == FileType::WasmBinary {
            let kind =
                Kind::of_binary(&header).with(|| format!("wasm program {}", path.display()))?;
            return Ok(Some(WasmProgram {
                path,
                kind,
                file: Some(file),
                binary: None,
            }));
        }
        let mut bytes = header;
        file.read_to_end(&mut bytes)
            .with(|| format!("read {} in the rootfs", path.display()))?;
        return to_binary(&path, bytes).map(Some);
    }
    match handler {
        Handler::Wasm => Err(Error::Step {
            step: format!("find wasm program {arg0:?}"),
            message: "no such file in the container's rootfs (looked in process.cwd or PATH)"
                .into(),
        }),
        _ => Ok(None),
    }
}

/// The program as a binary with its kind: binary wasm is checked for a known version, anything
/// else is parsed as WAT text. `path` is where the container sees it (for messages).
pub fn to_binary(path: &Path, bytes: Vec<u8>) -> Result<WasmProgram> {
    let binary = if FileType::of(&bytes) == FileType::WasmBinary {
        bytes
    } else {
        wat::parse_bytes(&bytes)
            .map_err(|e| Error::Step {
                step: format!("parse {} as wasm text", path.display()),
                message: e.to_string(),
            })?
            .into_owned()
    };
    let kind = Kind::of_binary(&binary).with(|| format!("wasm program {}", path.display()))?;
    Ok(WasmProgram {
        path: path.to_path_buf(),
        kind,
        file: None,
        binary: Some(binary),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn annotations(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const CORE: &[u8] = b"\0asm\x01\0\0\0";
    const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn handler_comes_from_crun_and_youki_annotations() {
        let h = |pairs: &[(&str, &str)]| Handler::from_annotations(&annotations(pairs));
        assert_eq!(h(&[]), Handler::Native);
        assert_eq!(h(&[(HANDLER, "wasm")]), Handler::Wasm);
        assert_eq!(h(&[(VARIANT, "compat")]), Handler::Wasm);
        assert_eq!(h(&[(HANDLER, "wasm-smart")]), Handler::Smart);
        assert_eq!(h(&[(VARIANT, "compat-smart")]), Handler::Smart);
        assert_eq!(h(&[(HANDLER, "krun")]), Handler::Native);
        assert_eq!(
            h(&[(HANDLER, "wasm-smart"), (VARIANT, "compat")]),
            Handler::Wasm
        );
    }

    #[test]
    fn sandbox_containers_are_never_wasm() {
        for key in [CRI_CONTAINER_TYPE, CRIO_CONTAINER_TYPE] {
            let a = annotations(&[(HANDLER, "wasm"), (key, "sandbox")]);
            assert_eq!(Handler::from_annotations(&a), Handler::Native);
        }
        let a = annotations(&[(HANDLER, "wasm"), (CRI_CONTAINER_TYPE, "container")]);
        assert_eq!(Handler::from_annotations(&a), Handler::Wasm);
    }

    #[test]
    fn version_bytes_tell_module_from_component() {
        assert_eq!(Kind::of_binary(CORE).ok(), Some(Kind::Module));
        assert_eq!(Kind::of_binary(COMPONENT).ok(), Some(Kind::Component));
        assert!(Kind::of_binary(b"\0asm\x02\0\0\0").is_err());
        assert!(Kind::of_binary(b"\0asm\x01").is_err());
    }

    #[test]
    fn smart_mode_follows_the_file() {
        let smart = |header: &[u8], name: &str| is_wasm(Handler::Smart, header, Path::new(name));
        assert!(smart(CORE, "/bin/app").expect("magic"));
        assert!(smart(COMPONENT, "/app.native").expect("magic wins over name"));
        assert!(!smart(b"\x7fELF\x02\x01", "/bin/sh").expect("elf"));
        assert!(!smart(b"#!/bin/sh\n", "/run.sh").expect("script"));
        assert!(!smart(b"#!/bin/sh\n", "/tricky.wasm").expect("script named .wasm"));
        assert!(smart(b"(module)", "/hello.wat").expect("text"));
        assert!(smart(b"", "/empty.wasm").expect("named wasm"));
        assert!(!smart(b"hello", "/data.txt").expect("other"));
    }

    #[test]
    fn forced_mode_takes_anything_but_a_native_executable() {
        let forced = |header: &[u8], name: &str| is_wasm(Handler::Wasm, header, Path::new(name));
        assert!(forced(CORE, "/app").expect("magic"));
        assert!(forced(b"(module)", "/app").expect("text without extension"));
        let error = forced(b"\x7fELF", "/bin/sh").expect_err("elf");
        assert!(error.to_string().contains("/bin/sh"), "{error}");
        assert!(forced(b"#!/bin/sh", "/x.sh").is_err());
        assert!(!is_wasm(Handler::Native, CORE, Path::new("/a.wasm")).expect("native"));
    }

    #[test]
    fn text_becomes_binary_and_bad_text_names_the_file() {
        let mut p = to_binary(Path::new("/m.wat"), b"(module)".to_vec()).expect("wat");
        assert_eq!(p.kind, Kind::Module);
        assert!(p.binary().expect("binary").starts_with(CORE));
        let c = to_binary(Path::new("/c.wat"), b"(component)".to_vec()).expect("component");
        assert_eq!(c.kind, Kind::Component);
        let error = to_binary(Path::new("/bad.wat"), b"garbage".to_vec()).expect_err("bad");
        assert!(error.to_string().contains("/bad.wat"), "{error}");
    }

    #[test]
    fn programs_are_found_inside_the_root_only() {
        let dir = std::env::temp_dir().join(format!("capsa-wasm-detect-{}", std::process::id()));
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("bin")).expect("mkdir");
        std::fs::create_dir_all(root.join("app")).expect("mkdir");
        std::fs::write(root.join("bin/hello.wasm"), CORE).expect("write");
        std::fs::write(root.join("app/local.wat"), b"(module)").expect("write");
        std::fs::write(root.join("bin/native"), b"\x7fELF").expect("write");
        std::fs::set_permissions(
            root.join("bin/native"),
            std::fs::Permissions::from_mode(0o755),
        )
        .expect("chmod");
        std::fs::write(dir.join("host-only.wasm"), CORE).expect("write");
        // A symlink pointing outside resolves inside the root (to nothing).
        std::os::unix::fs::symlink(dir.join("host-only.wasm"), root.join("bin/escape.wasm"))
            .expect("symlink");
        let root_fd = std::fs::File::open(&root).expect("open root");

        let process = |args: &[&str], cwd: &str| {
            let mut p = Process::default();
            p.set_args(Some(args.iter().map(|s| s.to_string()).collect()));
            p.set_env(Some(vec!["PATH=/bin".into()]));
            p.set_cwd(cwd.into());
            p
        };
        let find = |args: &[&str], cwd: &str, handler| {
            find_program(&root_fd, &process(args, cwd), handler)
        };
        let found = find(&["hello.wasm"], "/", Handler::Smart)
            .expect("lookup")
            .expect("wasm");
        assert_eq!(found.path, Path::new("/bin/hello.wasm"));
        let local = find(&["./local.wat"], "/app", Handler::Wasm)
            .expect("relative")
            .expect("wasm");
        assert_eq!(local.kind, Kind::Module);
        assert!(
            find(&["native"], "/", Handler::Smart)
                .expect("native")
                .is_none()
        );
        assert!(
            find(&["missing"], "/", Handler::Smart)
                .expect("smart")
                .is_none()
        );
        assert!(find(&["missing"], "/", Handler::Wasm).is_err());
        assert!(find(&["escape.wasm"], "/", Handler::Wasm).is_err());
        assert!(find(&["/../host-only.wasm"], "/", Handler::Wasm).is_err());
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
