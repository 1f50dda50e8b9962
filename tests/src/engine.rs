//! The engine harness: a `capsa` CLI with a store root, state dir and cgroup parent of its own
//! per test, OCI image layouts written by hand (GNU tar + sha256sum, from busybox-static: nothing
//! binary is committed), and cleanup of containers, monitors, mounts and cgroups on drop, even
//! when the test fails.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::cleanup::{self, TempDir, unique_name};
use crate::runtime::CmdOutput;

static CALLS: AtomicUsize = AtomicUsize::new(0);

/// Writes the contents of `dir` as the tarball `tar` (a rootfs for `capsa import`).
pub fn tar_dir(dir: &Path, tar: &Path) -> Result<()> {
    let st = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .arg("-cf")
        .arg(tar)
        .arg(".")
        .status()?;
    if !st.success() {
        bail!("tar of {} failed", dir.display());
    }
    Ok(())
}

/// The `capsa` binary beside capsa-runtime (`CAPSA_BIN` overrides).
pub fn capsa_bin() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("CAPSA_BIN") {
        return Ok(PathBuf::from(p));
    }
    let runtime = crate::runtime::capsa_runtime_bin()?;
    let bin = runtime.with_file_name("capsa");
    if !bin.is_file() {
        bail!("{} not found: cargo build --bins first", bin.display());
    }
    Ok(bin)
}

/// One test's engine world.
pub struct EngineContext {
    pub bin: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    /// `--cgroup-parent` for every container of the test (removed at the end).
    pub cgroup_parent: String,
    /// Environment every `capsa` command of the test gets (e.g. CAPSA_USERNS_REMAP).
    pub env: Vec<(String, String)>,
    /// `--bridge` for every command: `none` (no default bridge, so a container without
    /// `--network` gets only loopback and the host's `capsa0` is never touched) unless a
    /// network test names a bridge of its own (`capsa-test-*`, with `bip`).
    pub bridge: String,
    /// `--bip` with [`Self::bridge`].
    pub bip: Option<String>,
    dir: TempDir,
}

impl EngineContext {
    pub fn new(label: &str) -> Result<Self> {
        let dir = TempDir::new(label)?;
        Ok(Self {
            bin: capsa_bin()?,
            root: dir.path().join("root"),
            state: dir.path().join("state"),
            cgroup_parent: format!("/{}", unique_name(label)),
            env: Vec::new(),
            bridge: "none".to_owned(),
            bip: None,
            dir,
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A command line for `capsa` with the test's root and state.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .arg("--bridge")
            .arg(&self.bridge)
            .args(self.bip.iter().flat_map(|b| ["--bip", b.as_str()]))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null());
        cmd
    }

    /// Runs `capsa ARGS` to completion; stdout/stderr go to files (a detached container's
    /// monitor must not hold a pipe of the test).
    pub fn capsa(&self, args: &[&str]) -> Result<CmdOutput> {
        let n = CALLS.fetch_add(1, Ordering::SeqCst);
        let io = self.dir().join("io");
        std::fs::create_dir_all(&io)?;
        let out_path = io.join(format!("{n:04}.stdout"));
        let err_path = io.join(format!("{n:04}.stderr"));
        let status = self
            .command(args)
            .stdout(File::create(&out_path)?)
            .stderr(File::create(&err_path)?)
            .status()
            .with_context(|| format!("running capsa {}", args.join(" ")))?;
        Ok(CmdOutput {
            command: format!("capsa {}", args.join(" ")),
            status,
            stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
            stdout_path: out_path,
            stderr_path: err_path,
        })
    }

    /// `capsa run --cgroup-parent P ARGS...` (the flags go before the image in `args`).
    pub fn run(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["run", "--cgroup-parent", &self.cgroup_parent];
        all.extend_from_slice(args);
        self.capsa(&all)
    }

    /// `capsa run --rm --network none ARGS...`: a throwaway container without a network, what
    /// most tests run.
    pub fn run_rm(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["--rm", "--network", "none"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `capsa run --rm --network NETWORK ARGS...`.
    pub fn run_on(&self, network: &str, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["--rm", "--network", network];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// `capsa run --rm ARGS...` on the default network (the default bridge when the test has
    /// one).
    pub fn run_rm_default(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["--rm"];
        all.extend_from_slice(args);
        self.run(&all)
    }

    /// Fails unless the test's store holds no container (after refused commands).
    pub fn ensure_no_containers(&self) -> Result<()> {
        let left = self.capsa(&["ps", "-aq"])?.ok()?;
        if !left.stdout.trim().is_empty() {
            bail!("containers were left: {left}");
        }
        Ok(())
    }

    /// `capsa create` with the test's cgroup parent (as [`EngineContext::run`]).
    pub fn create(&self, args: &[&str]) -> Result<CmdOutput> {
        let mut all = vec!["create", "--cgroup-parent", &self.cgroup_parent];
        all.extend_from_slice(args);
        self.capsa(&all)
    }

    /// Imports a busybox-static rootfs as the image `reference` (`bb:1` leaves the rootfs in
    /// `<dir>/bb-rootfs` and its tarball in `<dir>/bb.tar` for the test's other uses).
    pub fn import_busybox(&self, reference: &str) -> Result<()> {
        let name = reference
            .split(':')
            .next()
            .unwrap_or(reference)
            .replace('/', "-");
        let rootfs = self.busybox_rootfs(&format!("{name}-rootfs"))?;
        let tar = self.dir().join(format!("{name}.tar"));
        tar_dir(&rootfs, &tar)?;
        self.capsa(&["import", &tar.to_string_lossy(), reference])?
            .ok()?;
        Ok(())
    }

    /// Writes a busybox-static rootfs (the shared harness's) into `dir`.
    pub fn busybox_rootfs(&self, name: &str) -> Result<PathBuf> {
        let dir = self.dir().join(name);
        crate::rootfs::build(&dir)?;
        Ok(dir)
    }

    /// Writes an OCI image layout at `<dir>/<name>` with one uncompressed tar layer per
    /// directory in `layers` (lowest first; files named `.wh.*` are OCI whiteouts) and the
    /// image config `config` (`{"Cmd": ...}`), tagged `reference`.
    pub fn oci_layout(
        &self,
        name: &str,
        layers: &[&Path],
        config: Value,
        reference: &str,
    ) -> Result<PathBuf> {
        self.oci_layout_for(name, layers, config, reference, ("linux", "amd64"))
    }

    /// [`Self::oci_layout`] for another platform `(os, architecture)` (`("wasi", "wasm")`).
    pub fn oci_layout_for(
        &self,
        name: &str,
        layers: &[&Path],
        config: Value,
        reference: &str,
        platform: (&str, &str),
    ) -> Result<PathBuf> {
        let layout = self.dir().join(name);
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        let mut descs = Vec::new();
        let mut diff_ids = Vec::new();
        for (i, l) in layers.iter().enumerate() {
            let tar = layout.join(format!("layer{i}.tar"));
            let st = Command::new("tar")
                .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
                .arg(l)
                .arg("-cf")
                .arg(&tar)
                .arg(".")
                .status()?;
            if !st.success() {
                bail!("tar of {} failed", l.display());
            }
            let (digest, size) = put_blob(&blobs, &tar)?;
            diff_ids.push(digest.clone());
            descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size}));
        }
        let cfg = json!({
            "architecture": platform.1, "os": platform.0,
            "created": "2024-01-01T00:00:00Z",
            "config": config,
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            "history": layers.iter().map(|_| json!({"created": "2024-01-01T00:00:00Z", "created_by": "test"})).collect::<Vec<_>>(),
        });
        finish_layout(
            layout,
            "application/vnd.oci.image.config.v1+json",
            &cfg,
            descs,
            reference,
        )
    }
}

impl EngineContext {
    /// Writes an OCI image layout whose layers are given as (media type, file) and whose config
    /// has its own media type: the wasm artifact forms. Tagged `reference`.
    pub fn raw_layout(
        &self,
        name: &str,
        config_media_type: &str,
        config: &Value,
        layers: &[(&str, &Path)],
        reference: &str,
    ) -> Result<PathBuf> {
        let layout = self.dir().join(name);
        let blobs = layout.join("blobs/sha256");
        std::fs::create_dir_all(&blobs)?;
        let mut descs = Vec::new();
        for (media, file) in layers {
            let bytes = std::fs::read(file)?;
            let (digest, size) = put_bytes(&blobs, &layout, &bytes)?;
            descs.push(json!({"mediaType": media, "digest": digest, "size": size}));
        }
        finish_layout(layout, config_media_type, config, descs, reference)
    }
}

/// sha256 of a file with sha256sum.
pub fn sha256_file(path: &Path) -> Result<String> {
    let out = Command::new("sha256sum").arg(path).output()?;
    let text = String::from_utf8(out.stdout)?;
    let hex = text.split_whitespace().next().context("sha256sum output")?;
    Ok(hex.to_owned())
}

fn put_blob(blobs: &Path, file: &Path) -> Result<(String, u64)> {
    let hex = sha256_file(file)?;
    let size = std::fs::metadata(file)?.len();
    std::fs::rename(file, blobs.join(&hex))?;
    Ok((format!("sha256:{hex}"), size))
}

fn put_bytes(blobs: &Path, layout: &Path, bytes: &[u8]) -> Result<(String, u64)> {
    let tmp = layout.join("tmp.json");
    std::fs::write(&tmp, bytes)?;
    put_blob(blobs, &tmp)
}

impl Drop for EngineContext {
    fn drop(&mut self) {
        // Containers first (through the engine: it stops monitors and unmounts), then anything
        // left: processes started with this root on their command line (monitors), the cgroup
        // parent (kills what is in it), mounts below the temp dir.
        if let Ok(out) = self.capsa(&["ps", "-aq"]) {
            for id in out.stdout.split_whitespace() {
                let _ = self.capsa(&["rm", "-f", id]);
            }
        }
        // Bridges held up by keepers (user networks, a lingering default bridge) go with
        // their networks, rules and all.
        if self.state.join("keepers").exists() {
            let _ = self.capsa(&["network", "prune", "-f"]);
        }
        cleanup::engine_leftovers(self.dir(), &self.root, &self.cgroup_parent);
    }
}

/// Writes the config, the manifest over `layers` (descriptors already in `blobs/sha256`), the
/// index naming it `reference`, and `oci-layout`: the end of every layout the tests build.
fn finish_layout(
    layout: PathBuf,
    config_media_type: &str,
    config: &Value,
    layers: Vec<Value>,
    reference: &str,
) -> Result<PathBuf> {
    let blobs = layout.join("blobs/sha256");
    let (cdigest, csize) = put_bytes(&blobs, &layout, &serde_json::to_vec(config)?)?;
    let manifest = json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": config_media_type, "digest": cdigest, "size": csize},
        "layers": layers,
    });
    let (mdigest, msize) = put_bytes(&blobs, &layout, &serde_json::to_vec(&manifest)?)?;
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": mdigest, "size": msize,
        "annotations": {"org.opencontainers.image.ref.name": reference}}]});
    std::fs::write(layout.join("index.json"), serde_json::to_vec(&index)?)?;
    std::fs::write(
        layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    Ok(layout)
}
