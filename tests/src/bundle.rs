//! OCI bundles: a directory with `config.json` and a busybox `rootfs/`, starting from the default
//! spec `runc spec` writes (so both runtimes see what users usually give them), edited per test.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use oci_spec::runtime::{
    Linux, LinuxNamespace, LinuxNamespaceType, Mount, MountBuilder, Process, Spec,
};

use crate::rootfs;

/// `runc spec` (runc 1.1) with three changes: `process.terminal` is false (the tests read the
/// payload's stdout), `root.readonly` is false (payloads may write to /tmp) and
/// `linux.cgroupsPath` is set per bundle by [`Bundle::new`].
const DEFAULT_SPEC: &str = r#"{
  "ociVersion": "1.0.2-dev",
  "process": {
    "terminal": false,
    "user": { "uid": 0, "gid": 0 },
    "args": ["sh"],
    "env": [
      "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
      "TERM=xterm"
    ],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "ambient": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "rlimits": [{ "type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024 }],
    "noNewPrivileges": true
  },
  "root": { "path": "rootfs", "readonly": false },
  "hostname": "runc",
  "mounts": [
    { "destination": "/proc", "type": "proc", "source": "proc" },
    { "destination": "/dev", "type": "tmpfs", "source": "tmpfs",
      "options": ["nosuid", "strictatime", "mode=755", "size=65536k"] },
    { "destination": "/dev/pts", "type": "devpts", "source": "devpts",
      "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
    { "destination": "/dev/shm", "type": "tmpfs", "source": "shm",
      "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"] },
    { "destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
      "options": ["nosuid", "noexec", "nodev"] },
    { "destination": "/sys", "type": "sysfs", "source": "sysfs",
      "options": ["nosuid", "noexec", "nodev", "ro"] },
    { "destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
      "options": ["nosuid", "noexec", "nodev", "relatime", "ro"] }
  ],
  "linux": {
    "resources": { "devices": [{ "allow": false, "access": "rwm" }] },
    "namespaces": [
      { "type": "pid" }, { "type": "network" }, { "type": "ipc" }, { "type": "uts" },
      { "type": "mount" }
    ],
    "maskedPaths": [
      "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
      "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware",
      "/proc/scsi"
    ],
    "readonlyPaths": [
      "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
    ]
  }
}"#;

/// The default spec (see [`DEFAULT_SPEC`]), without a cgroups path.
pub fn default_spec() -> Spec {
    serde_json::from_str(DEFAULT_SPEC).expect("the built-in default spec is valid")
}

/// A bundle directory being prepared by a test. Edit `spec`, then [`Bundle::write`].
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// The `linux.cgroupsPath` of this bundle (unique, `/capsa-test-...`).
    pub cgroup: String,
}

impl Bundle {
    /// Creates `dir` with a fresh busybox rootfs and the default spec using `cgroup`.
    pub fn new(dir: &Path, cgroup: &str) -> Result<Self> {
        std::fs::create_dir(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        rootfs::build(&dir.join("rootfs"))?;
        let mut spec = default_spec();
        spec.linux_mut()
            .as_mut()
            .expect("default spec has linux")
            .set_cgroups_path(Some(PathBuf::from(cgroup)));
        Ok(Self {
            dir: dir.to_owned(),
            spec,
            cgroup: cgroup.to_owned(),
        })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    pub fn process(&mut self) -> &mut Process {
        self.spec
            .process_mut()
            .as_mut()
            .expect("bundle spec has a process")
    }

    pub fn linux(&mut self) -> &mut Linux {
        self.spec
            .linux_mut()
            .as_mut()
            .expect("bundle spec has linux")
    }

    /// The payload becomes `/bin/sh -c <script>`.
    pub fn payload(&mut self, script: &str) -> &mut Self {
        self.process()
            .set_args(Some(vec!["/bin/sh".into(), "-c".into(), script.to_owned()]));
        self
    }

    /// Appends `KEY=value` to the payload's environment.
    pub fn env(&mut self, entry: &str) -> &mut Self {
        let process = self.process();
        let mut env = process.env().clone().unwrap_or_default();
        env.push(entry.to_owned());
        process.set_env(Some(env));
        self
    }

    /// Appends a mount after the default ones.
    pub fn mount(&mut self, mount: Mount) -> &mut Self {
        let mut mounts = self.spec.mounts().clone().unwrap_or_default();
        mounts.push(mount);
        self.spec.set_mounts(Some(mounts));
        self
    }

    /// Appends a bind mount of host `source` on `destination` with extra `options` (`bind` is
    /// added).
    pub fn bind(&mut self, source: &Path, destination: &str, options: &[&str]) -> &mut Self {
        let mut opts = vec!["bind".to_owned()];
        opts.extend(options.iter().map(|o| (*o).to_owned()));
        let mount = MountBuilder::default()
            .destination(destination)
            .typ("bind")
            .source(source)
            .options(opts)
            .build()
            .expect("a bind mount with all fields set is valid");
        self.mount(mount)
    }

    /// Sets namespace `typ` (adding it if absent), joining `path` if given.
    pub fn namespace(&mut self, typ: LinuxNamespaceType, path: Option<&Path>) -> &mut Self {
        let linux = self.linux();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|ns| ns.typ() != typ);
        let mut ns = LinuxNamespace::default();
        ns.set_typ(typ);
        ns.set_path(path.map(Path::to_owned));
        namespaces.push(ns);
        linux.set_namespaces(Some(namespaces));
        self
    }

    /// A new user namespace whose ids 0-65535 map to the host's from `host_id` on (uids and gids
    /// alike).
    pub fn user_namespace(&mut self, host_id: u32) -> &mut Self {
        self.namespace(LinuxNamespaceType::User, None);
        let map = oci_spec::runtime::LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(host_id)
            .size(65536u32)
            .build()
            .expect("a complete id mapping");
        self.linux().set_uid_mappings(Some(vec![map]));
        self.linux().set_gid_mappings(Some(vec![map]));
        self
    }

    /// Removes namespace `typ`: the payload shares the runtime's.
    pub fn without_namespace(&mut self, typ: LinuxNamespaceType) -> &mut Self {
        let linux = self.linux();
        let mut namespaces = linux.namespaces().clone().unwrap_or_default();
        namespaces.retain(|ns| ns.typ() != typ);
        linux.set_namespaces(Some(namespaces));
        self
    }

    /// The spec as JSON, for edits the typed spec cannot express (invalid values).
    pub fn to_json(&self) -> Result<serde_json::Value> {
        serde_json::to_value(&self.spec).context("serialising the spec")
    }

    /// Writes `config.json` from `spec`.
    pub fn write(&self) -> Result<()> {
        self.write_json(&self.to_json()?)
    }

    /// Writes `value` as `config.json`.
    pub fn write_json(&self, value: &serde_json::Value) -> Result<()> {
        let text = serde_json::to_string_pretty(value).context("serialising config.json")?;
        std::fs::write(self.config_path(), text)
            .with_context(|| format!("writing {}", self.config_path().display()))
    }
}
