//! `commit`'s layer writer: a container's overlay upper dir as an OCI tar changeset. Overlay
//! whiteouts (char device 0:0) become `.wh.NAME` entries, opaque directories
//! (`trusted.overlay.opaque=y`) get a `.wh..wh..opq` entry, hard links inside the layer stay
//! links, and the init layer's files (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`) are
//! left out: they belong to the container, not to the image (podman's commit wrongly keeps them).

use std::collections::HashMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::error::{IoContext, Result};

/// Paths (relative to the root) that the container's init layer owns; never committed.
pub const INIT_LAYER_FILES: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// Whether a directory carries overlayfs's opaque marker (its lower entries are hidden);
/// `diff` needs it as much as `commit`.
pub fn is_opaque(path: &Path) -> bool {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let mut value = [0u8; 4];
    // SAFETY: both strings are NUL-terminated; the buffer length is passed.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            c"trusted.overlay.opaque".as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    n == 1 && value[0] == b'y'
}

/// An empty regular file entry (whiteouts).
fn marker(builder: &mut tar::Builder<&mut dyn Write>, path: &str, mtime: u64) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o600);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    builder
        .append_data(&mut h, path, std::io::empty())
        .ctx("write tar entry", path)
}

struct Writer<'a> {
    builder: tar::Builder<&'a mut dyn Write>,
    /// (dev, ino) of regular files with several links → the first path written.
    links: HashMap<(u64, u64), String>,
    /// Host owners → the owners the layer records (identity unless the container's user
    /// namespace is remapped).
    owners: &'a dyn Fn(u32, u32) -> (u32, u32),
}

impl Writer<'_> {
    fn walk(&mut self, dir: &Path, rel: &str) -> Result<()> {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .ctx("read_dir", dir)?
            .collect::<std::io::Result<Vec<_>>>()
            .ctx("read_dir", dir)?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let name = e.file_name();
            let name = name.to_string_lossy();
            let rel = if rel.is_empty() {
                name.to_string()
            } else {
                format!("{rel}/{name}")
            };
            if INIT_LAYER_FILES.contains(&rel.as_str()) {
                continue;
            }
            let meta = fs::symlink_metadata(&path).ctx("lstat", &path)?;
            let ft = meta.file_type();
            let mtime = meta.mtime().max(0) as u64;
            if ft.is_char_device() && meta.rdev() == 0 {
                let wh = match rel.rsplit_once('/') {
                    Some((parent, n)) => format!("{parent}/.wh.{n}"),
                    None => format!(".wh.{rel}"),
                };
                marker(&mut self.builder, &wh, mtime)?;
                continue;
            }
            if ft.is_socket() {
                continue;
            }
            let mut h = tar::Header::new_gnu();
            h.set_metadata_in_mode(&meta, tar::HeaderMode::Complete);
            let (uid, gid) = (self.owners)(meta.uid(), meta.gid());
            h.set_uid(u64::from(uid));
            h.set_gid(u64::from(gid));
            if ft.is_dir() {
                h.set_size(0);
                self.builder
                    .append_data(&mut h, format!("{rel}/"), std::io::empty())
                    .ctx("write tar entry", &path)?;
                if is_opaque(&path) {
                    marker(&mut self.builder, &format!("{rel}/.wh..wh..opq"), mtime)?;
                }
                self.walk(&path, &rel)?;
            } else if ft.is_symlink() {
                let target = fs::read_link(&path).ctx("readlink", &path)?;
                h.set_size(0);
                self.builder
                    .append_link(&mut h, &rel, &target)
                    .ctx("write tar entry", &path)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        h.set_size(0);
                        self.builder
                            .append_link(&mut h, &rel, first)
                            .ctx("write tar entry", &path)?;
                        continue;
                    }
                    self.links.insert(key, rel.clone());
                }
                let file = fs::File::open(&path).ctx("open", &path)?;
                self.builder
                    .append_data(&mut h, &rel, file)
                    .ctx("write tar entry", &path)?;
            } else {
                // Devices and fifos: the header carries everything.
                h.set_size(0);
                self.builder
                    .append_data(&mut h, &rel, std::io::empty())
                    .ctx("write tar entry", &path)?;
            }
        }
        Ok(())
    }
}

/// Writes the upper dir `upper` as an uncompressed OCI layer tar to `out`.
pub fn write_layer(upper: &Path, out: &mut dyn Write) -> Result<()> {
    write_layer_with_owners(upper, out, &|uid, gid| (uid, gid))
}

/// [`write_layer`] with each file's host owners turned into the container's by `owners` (a
/// remapped container's upper dir holds START+n where the image means n).
pub fn write_layer_with_owners(
    upper: &Path,
    out: &mut dyn Write,
    owners: &dyn Fn(u32, u32) -> (u32, u32),
) -> Result<()> {
    let mut w = Writer {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
        owners,
    };
    w.builder.mode(tar::HeaderMode::Complete);
    w.walk(upper, "")?;
    w.builder.finish().ctx("finish tar", upper)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(tar_bytes: &[u8]) -> Vec<String> {
        let mut a = tar::Archive::new(tar_bytes);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn whiteouts_become_wh_entries_and_init_files_are_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let up = dir.path();
        fs::create_dir_all(up.join("etc")).unwrap();
        fs::write(up.join("etc/hosts"), "x").unwrap();
        fs::write(up.join("etc/new"), "y").unwrap();
        let gone = CString::new(up.join("etc/gone").as_os_str().as_bytes()).unwrap();
        // SAFETY: a NUL-terminated path; char device 0:0 is overlay's whiteout.
        let rc = unsafe { libc::mknod(gone.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(rc, 0, "mknod needs root");
        fs::write(up.join("a"), "1").unwrap();
        fs::hard_link(up.join("a"), up.join("b")).unwrap();
        let mut out = Vec::new();
        write_layer(up, &mut out).unwrap();
        let names = entries(&out);
        assert_eq!(names, ["a", "b", "etc/", "etc/.wh.gone", "etc/new"]);
    }
}
