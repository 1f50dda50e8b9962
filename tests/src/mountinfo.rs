//! Parsing of `/proc/<pid>/mountinfo`, used both on the host (what the harness must clean up, which
//! cgroup hierarchies exist) and on a payload's own mount table.

use std::path::Path;

use anyhow::{Context, Result, bail};

/// One line of a mountinfo file (see proc(5)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub mount_id: u32,
    pub parent_id: u32,
    /// `major:minor` of the filesystem's device.
    pub device: String,
    /// The path inside the filesystem that is mounted here (`/` for a whole filesystem).
    pub root: String,
    pub mount_point: String,
    /// Per-mount options (`rw`, `nosuid`, `nodev`, `noexec`, `relatime`, ...).
    pub mount_options: Vec<String>,
    pub fs_type: String,
    pub source: String,
    /// Per-superblock options (`size=...`, `mode=...`, controllers of a cgroup v1 mount, ...).
    pub super_options: Vec<String>,
}

impl MountEntry {
    /// Whether the per-mount options contain `option` (e.g. `ro`, `nosuid`).
    pub fn has_option(&self, option: &str) -> bool {
        self.mount_options.iter().any(|o| o == option)
    }
}

/// Undoes the octal escapes (`\040` for a space, ...) the kernel applies to paths in mountinfo.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn split_options(field: &str) -> Vec<String> {
    field
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Parses the text of a mountinfo file. Lines that do not look like mountinfo are an error: the
/// payload's output must be exactly what the kernel printed.
pub fn parse(text: &str) -> Result<Vec<MountEntry>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| parse_line(line).with_context(|| format!("bad mountinfo line {line:?}")))
        .collect()
}

fn parse_line(line: &str) -> Result<MountEntry> {
    let fields: Vec<&str> = line.split(' ').collect();
    let sep = fields
        .iter()
        .position(|f| *f == "-")
        .context("no ' - ' separator")?;
    if sep < 6 || fields.len() < sep + 4 {
        bail!("too few fields");
    }
    Ok(MountEntry {
        mount_id: fields[0].parse().context("mount id")?,
        parent_id: fields[1].parse().context("parent id")?,
        device: fields[2].to_owned(),
        root: unescape(fields[3]),
        mount_point: unescape(fields[4]),
        mount_options: split_options(fields[5]),
        fs_type: fields[sep + 1].to_owned(),
        source: unescape(fields[sep + 2]),
        super_options: split_options(fields[sep + 3]),
    })
}

/// The mount table of the calling process.
pub fn own() -> Result<Vec<MountEntry>> {
    read(Path::new("/proc/self/mountinfo"))
}

/// Reads and parses a mountinfo file.
pub fn read(path: &Path) -> Result<Vec<MountEntry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_cgroup_line_with_optional_fields() {
        let line = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime shared:5 - cgroup cgroup rw,cpu";
        let e = parse(line).expect("parse").remove(0);
        assert_eq!(e.mount_point, "/sys/fs/cgroup/cpu");
        assert_eq!(e.fs_type, "cgroup");
        assert_eq!(e.super_options, vec!["rw", "cpu"]);
        assert!(e.has_option("relatime"));
    }

    #[test]
    fn unescapes_spaces_in_paths() {
        let line = "40 1 8:1 /a\\040b /mnt/x\\040y ro - ext4 /dev/sda1 rw";
        let e = parse(line).expect("parse").remove(0);
        assert_eq!(e.root, "/a b");
        assert_eq!(e.mount_point, "/mnt/x y");
        assert!(e.has_option("ro"));
    }
}
