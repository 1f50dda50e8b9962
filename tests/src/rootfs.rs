//! A minimal busybox-static root filesystem, built fresh for each test from the host's
//! /bin/busybox (which must be statically linked: the rootfs has no libc).

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use anyhow::{Context, Result, bail};

/// Where the busybox binary is taken from (the Debian busybox-static package).
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// A file that exists only in the test rootfs, never on the host: seeing it proves the payload
/// runs on the rootfs.
pub const MARKER: &str = "/capsa-rootfs-marker";
pub const MARKER_CONTENT: &str = "capsa test rootfs\n";

/// The unprivileged user of the rootfs (`capsa`, uid/gid 1000) and its extra groups.
pub const USER_UID: u32 = 1000;
pub const USER_GID: u32 = 1000;
pub const EXTRA_GIDS: [u32; 2] = [2000, 3000];

/// Applets linked into /bin; the payload probes and the tests use only these.
pub const APPLETS: &[&str] = &[
    "sh",
    "cat",
    "echo",
    "ls",
    "id",
    "hostname",
    "dnsdomainname",
    "sleep",
    "readlink",
    "stat",
    "touch",
    "mkdir",
    "rm",
    "grep",
    "env",
    "pwd",
    "tty",
    "kill",
    "ps",
    "test",
    "[",
    "true",
    "false",
    "wc",
    "head",
    "tail",
    "printf",
    "mount",
    "umount",
    "uname",
    "sed",
    "awk",
    "sort",
    "tr",
    "cut",
    "ip",
    "ln",
    "dd",
    "mknod",
    "chmod",
    "sysctl",
    "nproc",
    "date",
    "seq",
    "whoami",
    "groups",
    "tee",
    "xargs",
];

const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh
capsa:x:1000:1000:capsa test user:/home/capsa:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
";

const GROUP: &str = "root:x:0:
tty:x:5:
capsa:x:1000:
extra1:x:2000:capsa
extra2:x:3000:capsa
nogroup:x:65534:
";

fn write(root: &Path, rel: &str, content: &str, mode: u32) -> Result<()> {
    let path = root.join(rel.trim_start_matches('/'));
    std::fs::write(&path, content).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))
}

/// Builds the rootfs in `root` (created; must not exist yet).
pub fn build(root: &Path) -> Result<()> {
    let busybox = std::fs::read(HOST_BUSYBOX)
        .with_context(|| format!("reading {HOST_BUSYBOX}: install busybox-static"))?;
    if busybox.get(..4) != Some(b"\x7fELF") {
        bail!("{HOST_BUSYBOX} is not an ELF binary");
    }
    std::fs::create_dir(root).with_context(|| format!("mkdir {}", root.display()))?;
    for (dir, mode) in [
        ("bin", 0o755),
        ("sbin", 0o755),
        ("etc", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("dev", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("home", 0o755),
        ("home/capsa", 0o755),
        ("mnt", 0o755),
        ("var", 0o755),
        ("run", 0o755),
    ] {
        let path = root.join(dir);
        std::fs::create_dir(&path).with_context(|| format!("mkdir {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    std::os::unix::fs::chown(root.join("home/capsa"), Some(USER_UID), Some(USER_GID))
        .context("chown home/capsa")?;
    let bin = root.join("bin/busybox");
    std::fs::write(&bin, busybox).with_context(|| format!("writing {}", bin.display()))?;
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", bin.display()))?;
    for applet in APPLETS {
        let link = root.join("bin").join(applet);
        symlink("busybox", &link).with_context(|| format!("symlink {}", link.display()))?;
    }
    write(root, "etc/passwd", PASSWD, 0o644)?;
    write(root, "etc/group", GROUP, 0o644)?;
    write(root, "etc/hostname", "capsa-rootfs\n", 0o644)?;
    write(root, MARKER, MARKER_CONTENT, 0o644)?;
    Ok(())
}
