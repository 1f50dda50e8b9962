//! config.json mount options (`"ro"`, `"nosuid"`, `"rbind"`, `"mode=755"`, `"rslave"`…) turned
//! into mount(2) flags, propagation changes and the filesystem's data string.

use nix::mount::MsFlags;

use crate::error::Result;

/// A mount entry's options, parsed.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags for the mount itself (and the remount of a bind mount).
    pub flags: MsFlags,
    /// Flags explicitly cleared (`rw`, `suid`…); matters when flags are inherited on remount.
    pub cleared: MsFlags,
    /// Propagation changes applied after mounting, in order.
    pub propagation: Vec<MsFlags>,
    /// Whether this is a bind mount (`bind`, `rbind`).
    pub bind: bool,
    /// Whether a bind is recursive (`rbind`).
    pub recursive: bool,
    /// Filesystem-specific options, comma-joined (`mode=755,size=65536k`).
    pub data: String,
    /// `idmap`/`ridmap`: an id-mapped mount (`Some(true)`: recursively).
    pub idmap: Option<bool>,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            flags: MsFlags::empty(),
            cleared: MsFlags::empty(),
            propagation: Vec::new(),
            bind: false,
            recursive: false,
            idmap: None,
            data: String::new(),
        }
    }
}

impl MountOptions {
    /// Parses `options`.
    pub fn parse<S: AsRef<str>>(options: &[S]) -> Result<Self> {
        let mut parsed = Self::default();
        let mut data = Vec::new();
        for option in options {
            let option = option.as_ref();
            let (set, clear) = match option {
                "defaults" => (MsFlags::empty(), MsFlags::empty()),
                "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
                "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
                "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
                "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
                "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
                "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
                "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
                "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
                "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
                "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
                "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
                "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
                "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
                "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
                "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
                "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
                "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
                "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
                "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
                "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
                "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
                "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
                "bind" => {
                    parsed.bind = true;
                    (MsFlags::empty(), MsFlags::empty())
                }
                "rbind" => {
                    parsed.bind = true;
                    parsed.recursive = true;
                    (MsFlags::empty(), MsFlags::empty())
                }
                keyword if propagation_flag(keyword).is_some() => {
                    parsed.propagation.extend(propagation_flag(keyword));
                    (MsFlags::empty(), MsFlags::empty())
                }
                // OCI 1.2: an id-mapped bind mount (`ridmap`: of every mount below it too).
                "idmap" => {
                    parsed.idmap = Some(false);
                    (MsFlags::empty(), MsFlags::empty())
                }
                "ridmap" => {
                    parsed.idmap = Some(true);
                    (MsFlags::empty(), MsFlags::empty())
                }
                // runc's extension for tmpfs; capsa copies nothing up, so the option is a no-op.
                "tmpcopyup" => (MsFlags::empty(), MsFlags::empty()),
                other => {
                    data.push(other);
                    (MsFlags::empty(), MsFlags::empty())
                }
            };
            parsed.flags = (parsed.flags | set) & !clear;
            parsed.cleared = (parsed.cleared | clear) & !set;
        }
        parsed.data = data.join(",");
        Ok(parsed)
    }
}

/// The mount(2) flag for a propagation keyword (`rslave` → MS_SLAVE|MS_REC); None for a word
/// that is not one (the mount options and `linux.rootfsPropagation` share this list).
pub fn propagation_flag(keyword: &str) -> Option<MsFlags> {
    let (recursive, base) = match keyword.strip_prefix('r') {
        Some(base) => (true, base),
        None => (false, keyword),
    };
    let base = match base {
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(if recursive {
        base | MsFlags::MS_REC
    } else {
        base
    })
}

/// Whether a mount's options ask for an id-mapped mount (`idmap`, `ridmap`), read without
/// parsing the rest (validation and the runtime's preparation both ask).
pub fn asks_idmap(mount: &oci_spec::runtime::Mount) -> bool {
    mount
        .options()
        .iter()
        .flatten()
        .any(|o| o == "idmap" || o == "ridmap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_data_and_propagation_are_separated() {
        let o =
            MountOptions::parse(&["nosuid", "strictatime", "mode=755", "size=65536k", "rslave"])
                .expect("parses");
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        assert_eq!(o.propagation, [MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        assert!(!o.bind);
    }

    #[test]
    fn later_options_override_earlier_ones() {
        let o = MountOptions::parse(&["ro", "rw"]).expect("parses");
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert!(o.cleared.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn rbind_is_a_recursive_bind() {
        let o = MountOptions::parse(&["rbind", "ro"]).expect("parses");
        assert!(o.bind && o.recursive);
        assert!(o.flags.contains(MsFlags::MS_RDONLY));
    }

    #[test]
    fn idmap_options_ask_for_an_id_mapped_mount() {
        assert_eq!(MountOptions::parse(&["idmap"]).unwrap().idmap, Some(false));
        assert_eq!(
            MountOptions::parse(&["rbind", "ridmap"]).unwrap().idmap,
            Some(true)
        );
        assert_eq!(MountOptions::parse(&["rbind"]).unwrap().idmap, None);
    }
}
