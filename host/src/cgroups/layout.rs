//! Which cgroup hierarchies this host has mounted, read from /proc/self/mountinfo.

use std::path::{Path, PathBuf};

use crate::error::{Context, Result};

/// One mounted cgroup v1 hierarchy.
#[derive(Debug, Clone)]
pub struct Hierarchy {
    /// Where it is mounted, e.g. `/sys/fs/cgroup/memory`.
    pub mount_point: PathBuf,
    /// Its controllers (or `name=…` for named hierarchies), e.g. `["cpu", "cpuacct"]`.
    pub controllers: Vec<String>,
}

/// The host's cgroup layout.
#[derive(Debug, Clone)]
pub enum Layout {
    /// Only cgroup v2, mounted at `root`.
    V2 { root: PathBuf },
    /// cgroup v1 hierarchies, and in hybrid mode a v2 hierarchy beside them.
    V1 {
        hierarchies: Vec<Hierarchy>,
        unified: Option<PathBuf>,
    },
}

impl Layout {
    /// Reads the layout of the calling process's mount namespace.
    pub fn detect() -> Result<Self> {
        let text = crate::sys::proc::read_proc_file("/proc/self/mountinfo")
            .with(|| "read /proc/self/mountinfo".to_string())?;
        Ok(Self::parse(&text))
    }

    fn parse(mountinfo: &str) -> Self {
        let mut hierarchies = Vec::new();
        let mut unified = None;
        for line in mountinfo.lines() {
            // Fields: id parent major:minor root mount-point options [optional...] - fstype source super-options
            let Some((pre, post)) = line.split_once(" - ") else {
                continue;
            };
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let (Some(mount_point), Some(fstype)) = (pre.get(4), post.first()) else {
                continue;
            };
            let mount_point = PathBuf::from(unescape(mount_point));
            match *fstype {
                "cgroup2" => unified = Some(mount_point),
                "cgroup" => {
                    let supers = post.get(2).copied().unwrap_or_default();
                    let controllers = supers
                        .split(',')
                        .filter(|o| {
                            !matches!(*o, "rw" | "ro" | "relatime" | "noatime" | "nosuid")
                                && !o.starts_with("release_agent")
                                && *o != "clone_children"
                                && *o != "noprefix"
                                && *o != "xattr"
                                && *o != "cpuset_v2_mode"
                        })
                        .map(str::to_string)
                        .collect();
                    hierarchies.push(Hierarchy {
                        mount_point,
                        controllers,
                    });
                }
                _ => {}
            }
        }
        if hierarchies.is_empty()
            && let Some(root) = unified
        {
            return Self::V2 { root };
        }
        Self::V1 {
            hierarchies,
            unified,
        }
    }

    /// The v1 hierarchies (none on a pure v2 host).
    pub fn hierarchies(&self) -> &[Hierarchy] {
        match self {
            Self::V2 { .. } => &[],
            Self::V1 { hierarchies, .. } => hierarchies,
        }
    }

    /// The v2 hierarchy's mount point, if there is one.
    pub fn unified(&self) -> Option<&Path> {
        match self {
            Self::V2 { root } => Some(root),
            Self::V1 { unified, .. } => unified.as_deref(),
        }
    }

    /// Whether the host has only cgroup v2.
    pub fn is_pure_v2(&self) -> bool {
        matches!(self, Self::V2 { .. })
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let bytes = field.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(code) = u8::from_str_radix(digits, 8) {
                out.push(code as char);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i] as char);
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
30 22 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd";

    #[test]
    fn hybrid_host_has_v1_hierarchies_and_unified() {
        let layout = Layout::parse(HYBRID);
        assert!(!layout.is_pure_v2());
        assert_eq!(layout.unified(), Some(Path::new("/sys/fs/cgroup/unified")));
        let h = layout.hierarchies();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].controllers, ["cpu", "cpuacct"]);
        assert_eq!(h[1].controllers, ["name=systemd"]);
    }

    #[test]
    fn pure_v2_host() {
        let layout = Layout::parse("31 22 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw");
        assert!(layout.is_pure_v2());
    }

    #[test]
    fn mount_points_with_spaces_are_unescaped() {
        assert_eq!(unescape("/a\\040b"), "/a b");
    }
}
