//! `capsa-shim` and its command line. The shim is opened on the host at `create` (before the
//! init's pivot_root), `O_PATH`, and exec'd from that descriptor with `execveat(fd, "",
//! AT_EMPTY_PATH)`: the rootfs needs no copy of it and the container cannot swap it. It is found
//! beside the running `capsa-runtime`; there is no flag to point elsewhere.
//!
//! The contract (what the shim is given):
//! `capsa-shim --artifact-fd N [--component] --preopen /=/:ro|rw [--preopen DEST=DEST:ro|rw]...
//! [--memory-limit BYTES] [--deadline-ms MS] [--wasm-feature NAME=on|off]... [--inherit-network]
//! -- ARG0 [ARGS...]`, with `process.args` after `--` and exactly `process.env` as environment.

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{AtFlags, F_SETFD, FdFlag, OFlag, fcntl, open};
use nix::sys::stat::Mode;
use nix::unistd::execveat;
use oci_spec::runtime::{Process, Spec};

use super::compile::Artifact;
use super::detect::{Kind, WasmProgram};
use super::options::WasmOptions;
use crate::error::{Context, Error, Result, invalid};

/// The shim's file name; it lives in the same directory as `capsa-runtime`.
pub const SHIM_NAME: &str = "capsa-shim";

/// Everything the container's process needs to exec the shim, prepared before the fork: two open
/// descriptors and the command line. It lives in the init's copy of the runtime's memory.
#[derive(Debug)]
pub struct ShimExec {
    /// The shim binary, `O_PATH | O_CLOEXEC`.
    shim: OwnedFd,
    /// The compiled module, read-only; close-on-exec until [`ShimExec::exec`].
    artifact: Artifact,
    /// Where the module was found in the container, for messages.
    program: PathBuf,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl ShimExec {
    /// Opens the shim and builds its command line for `process` of the container `spec`
    /// describes.
    pub fn new(
        spec: &Spec,
        bundle: &Path,
        process: &Process,
        program: &WasmProgram,
        artifact: Artifact,
        options: &WasmOptions,
    ) -> Result<Self> {
        let path = shim_path()?;
        let shim = open(&path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .with(|| format!("open {} (it must be beside capsa-runtime)", path.display()))?;
        if let Some(interpreter) = program_interpreter(&shim)
            .with(|| format!("read the ELF headers of {}", path.display()))?
        {
            return Err(invalid(format!(
                "{} is dynamically linked (it needs {interpreter}), but it runs inside the \
                 container's rootfs, which need not have that: build it static with \
                 scripts/build-shim.sh",
                path.display()
            )));
        }
        let args = shim_args(
            spec,
            bundle,
            process.args().as_deref().unwrap_or_default(),
            artifact.fd.as_raw_fd(),
            artifact.kind,
            options,
        )?;
        let cstr =
            |s: &str| CString::new(s).map_err(|_| invalid(format!("{s:?} contains a NUL byte")));
        Ok(Self {
            argv: args.iter().map(|a| cstr(a)).collect::<Result<_>>()?,
            env: process
                .env()
                .iter()
                .flatten()
                .map(|e| cstr(e))
                .collect::<Result<_>>()?,
            shim,
            artifact,
            program: program.path.clone(),
        })
    }

    /// Where the module was found, as the container sees it.
    pub fn program(&self) -> &Path {
        &self.program
    }

    /// Replaces this process with the shim; returns only on failure. Called last in the init
    /// (after the seccomp filter is loaded), so the profile must allow `fcntl` and `execveat`, as
    /// every default profile does.
    pub fn exec(&self) -> Error {
        if let Err(errno) = fcntl(&self.artifact.fd, F_SETFD(FdFlag::empty())) {
            return Error::Sys {
                what: format!(
                    "fcntl(F_SETFD) on the compiled artifact {}",
                    self.artifact.path.display()
                ),
                errno,
            };
        }
        match execveat(
            &self.shim,
            c"",
            &self.argv,
            &self.env,
            AtFlags::AT_EMPTY_PATH,
        ) {
            Err(errno) => Error::Sys {
                what: format!(
                    "execveat {SHIM_NAME} for wasm program {} (the seccomp profile must allow execveat)",
                    self.program.display()
                ),
                errno,
            },
        }
    }
}

/// The program interpreter (`PT_INTERP`, the dynamic loader) an ELF executable asks for, if any.
/// The shim is exec'd after pivot_root, where the kernel would look for that loader in the
/// container's rootfs; a static shim (none) runs in any rootfs.
fn program_interpreter(file: &OwnedFd) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::FileExt;
    const PT_INTERP: u32 = 3;
    let file = std::fs::File::from(file.try_clone()?);
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0)?;
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string());
    // ELF magic, 64-bit class, little endian: what capsa builds for (x86_64, aarch64).
    if &header[..4] != b"\x7fELF" || header[4] != 2 || header[5] != 1 {
        return Err(bad("not a 64-bit little-endian ELF file"));
    }
    let u16_at = |b: &[u8], at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
    let u64_at = |b: &[u8], at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&b[at..at + 8]);
        u64::from_le_bytes(bytes)
    };
    let (phoff, phentsize, phnum) = (
        u64_at(&header, 0x20),
        u64::from(u16_at(&header, 0x36)),
        u16_at(&header, 0x38),
    );
    if phentsize < 56 {
        return Err(bad("program header entries too small"));
    }
    let mut entry = [0u8; 56];
    for index in 0..u64::from(phnum) {
        file.read_exact_at(&mut entry, phoff + index * phentsize)?;
        if u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) != PT_INTERP {
            continue;
        }
        let (offset, size) = (u64_at(&entry, 0x08), u64_at(&entry, 0x20));
        let mut name = vec![0u8; usize::try_from(size.min(4096)).unwrap_or(4096)];
        file.read_exact_at(&mut name, offset)?;
        let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
        return Ok(Some(String::from_utf8_lossy(&name[..end]).into_owned()));
    }
    Ok(None)
}

/// `capsa-shim` beside the running executable.
pub fn shim_path() -> Result<PathBuf> {
    let exe = std::env::current_exe().with(|| "find the running executable".to_string())?;
    Ok(exe.with_file_name(SHIM_NAME))
}

/// The shim's argv (the contract in the module doc).
fn shim_args(
    spec: &Spec,
    bundle: &Path,
    args: &[String],
    artifact_fd: i32,
    kind: Kind,
    options: &WasmOptions,
) -> Result<Vec<String>> {
    let mut argv = vec![
        SHIM_NAME.to_string(),
        "--artifact-fd".into(),
        artifact_fd.to_string(),
    ];
    if kind == Kind::Component {
        argv.push("--component".into());
    }
    let root_ro = spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    argv.push("--preopen".into());
    argv.push(format!("/=/:{}", if root_ro { "ro" } else { "rw" }));
    for mount in spec.mounts().iter().flatten() {
        let options = mount.options().as_deref().unwrap_or_default();
        let bind = mount.typ().as_deref() == Some("bind")
            || options.iter().any(|o| o == "bind" || o == "rbind");
        if !bind {
            continue;
        }
        // A file bind (containerd's /etc/hostname, /etc/hosts, /etc/resolv.conf; `-v FILE:PATH`)
        // is reachable through the preopened `/` already; only directories are preopened.
        if let Some(source) = mount.source() {
            let source = bundle.join(source);
            if std::fs::metadata(&source).is_ok_and(|m| !m.is_dir()) {
                continue;
            }
        }
        let dest = mount.destination().to_string_lossy();
        if dest.contains('=') {
            return Err(invalid(format!(
                "mount destination {dest:?} contains '=': a wasm payload cannot have it preopened"
            )));
        }
        // The last of "ro"/"rw" wins, as for the mount itself.
        let ro = options
            .iter()
            .rev()
            .find(|o| *o == "ro" || *o == "rw")
            .is_some_and(|o| o == "ro");
        argv.push("--preopen".into());
        argv.push(format!("{dest}={dest}:{}", if ro { "ro" } else { "rw" }));
    }
    let memory_limit = spec
        .linux()
        .as_ref()
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.memory().as_ref())
        .and_then(|m| m.limit())
        .filter(|limit| *limit > 0);
    if let Some(limit) = memory_limit {
        argv.push("--memory-limit".into());
        argv.push(limit.to_string());
    }
    if let Some(ms) = options.deadline_ms {
        argv.push("--deadline-ms".into());
        argv.push(ms.to_string());
    }
    for (name, on) in &options.features {
        argv.push("--wasm-feature".into());
        argv.push(format!("{name}={}", if *on { "on" } else { "off" }));
    }
    if options.inherit_network {
        argv.push("--inherit-network".into());
    }
    argv.push("--".into());
    argv.extend(args.iter().cloned());
    Ok(argv)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_of_a_dynamic_executable_is_found_and_a_static_one_has_none() {
        let dynamic = open("/bin/sh", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
            .expect("open /bin/sh");
        let interpreter = program_interpreter(&dynamic).expect("read /bin/sh");
        assert!(
            interpreter
                .as_deref()
                .is_some_and(|i| i.contains("ld-linux")),
            "{interpreter:?}"
        );
        // busybox-static (a test dependency) has no interpreter.
        let busybox = open(
            "/bin/busybox",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open /bin/busybox (package busybox-static)");
        assert_eq!(program_interpreter(&busybox).expect("read busybox"), None);
        let text = open(
            "/etc/hostname",
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .expect("open /etc/hostname");
        assert!(program_interpreter(&text).is_err());
    }

    fn spec(json: serde_json::Value) -> Spec {
        serde_json::from_value(json).expect("spec")
    }

    #[test]
    fn argv_follows_the_contract() {
        let spec = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": true},
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/data", "type": "bind", "source": "/srv", "options": ["rbind", "rw"]},
                {"destination": "/conf", "source": "/etc/x", "options": ["bind", "rw", "ro"]}
            ],
            "linux": {"resources": {"memory": {"limit": 67108864}}}
        }));
        let options = WasmOptions {
            deadline_ms: Some(250),
            features: vec![("simd".into(), false)],
            inherit_network: true,
        };
        let args = vec!["/app.wasm".to_string(), "--flag".into(), "x y".into()];
        let argv =
            shim_args(&spec, Path::new("/"), &args, 7, Kind::Component, &options).expect("argv");
        assert_eq!(
            argv,
            [
                "capsa-shim",
                "--artifact-fd",
                "7",
                "--component",
                "--preopen",
                "/=/:ro",
                "--preopen",
                "/data=/data:rw",
                "--preopen",
                "/conf=/conf:ro",
                "--memory-limit",
                "67108864",
                "--deadline-ms",
                "250",
                "--wasm-feature",
                "simd=off",
                "--inherit-network",
                "--",
                "/app.wasm",
                "--flag",
                "x y",
            ]
        );
    }

    #[test]
    fn file_binds_are_not_preopened_directories_are() {
        let dir = std::env::temp_dir().join(format!("capsa-test-shim-args-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("data")).expect("mkdir");
        std::fs::write(dir.join("hostname"), "h\n").expect("write");
        let spec = spec(serde_json::json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs"},
            "mounts": [
                {"destination": "/etc/hostname", "type": "bind", "source": dir.join("hostname"), "options": ["rbind", "ro"]},
                {"destination": "/etc/hosts", "type": "bind", "source": "hostname", "options": ["bind"]},
                {"destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "rw"]}
            ]
        }));
        let argv = shim_args(
            &spec,
            &dir,
            &["m.wasm".to_string()],
            3,
            Kind::Module,
            &WasmOptions::default(),
        );
        let _ = std::fs::remove_dir_all(&dir);
        let argv = argv.expect("argv");
        let preopens: Vec<&str> = argv
            .windows(2)
            .filter(|w| w[0] == "--preopen")
            .map(|w| w[1].as_str())
            .collect();
        assert_eq!(preopens, ["/=/:rw", "/data=/data:rw"]);
    }

    #[test]
    fn a_writable_root_and_no_options_give_the_short_form() {
        let spec = spec(serde_json::json!({"ociVersion": "1.0.2", "root": {"path": "rootfs"}}));
        let argv = shim_args(
            &spec,
            Path::new("/"),
            &["m.wasm".to_string()],
            3,
            Kind::Module,
            &WasmOptions::default(),
        )
        .expect("argv");
        assert_eq!(
            argv,
            [
                "capsa-shim",
                "--artifact-fd",
                "3",
                "--preopen",
                "/=/:rw",
                "--",
                "m.wasm"
            ]
        );
    }
}
