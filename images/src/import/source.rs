//! Where a load reads from: an image directory, or a tar archive of one read in place (its
//! members are indexed once, then read by offset; nothing is extracted first).

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result, invalid};

/// A tree of files to load from.
pub(crate) trait Source {
    /// Names the input in errors.
    fn name(&self) -> String;
    /// Opens a member by its path inside the input; `None` when it is missing.
    fn open(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>>;

    /// Reads a whole small member (index.json, manifest.json); `None` when missing.
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let Some(mut reader) = self.open(path)? else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        reader
            .read_to_end(&mut bytes)
            .ctx("read", format!("{}: {path}", self.name()))?;
        Ok(Some(bytes))
    }
}

/// Normalises a member path: no leading `./` or `/`, no `..`.
fn normalise(path: &str) -> Option<String> {
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            p => parts.push(p),
        }
    }
    Some(parts.join("/"))
}

/// An image layout or docker-save tree on disk.
pub(crate) struct DirSource {
    dir: PathBuf,
}

impl DirSource {
    pub(crate) fn new(dir: &Path) -> DirSource {
        DirSource {
            dir: dir.to_owned(),
        }
    }
}

impl Source for DirSource {
    fn name(&self) -> String {
        self.dir.display().to_string()
    }

    fn open(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        let Some(rel) = normalise(path) else {
            return Err(invalid(
                self.name(),
                format!("member path {path:?} leaves the directory"),
            ));
        };
        let full = self.dir.join(rel);
        match File::open(&full) {
            Ok(f) => Ok(Some(Box::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).ctx("open", full),
        }
    }
}

enum Member {
    File { offset: u64, size: u64 },
    Link(String),
}

/// A tar archive (OCI archive, docker-save tarball) read in place.
pub(crate) struct TarSource {
    path: PathBuf,
    file: File,
    members: HashMap<String, Member>,
}

impl TarSource {
    /// Indexes the archive's members (headers only; data is skipped by seeking).
    pub(crate) fn open(path: &Path) -> Result<TarSource> {
        let file = File::open(path).ctx("open", path)?;
        let mut members = HashMap::new();
        let bad = |e: io::Error| {
            invalid(
                path.display().to_string(),
                format!("reading the archive: {}", crate::error::tar_error(e)),
            )
        };
        let mut archive = tar::Archive::new(&file);
        for entry in archive.entries_with_seek().map_err(bad)? {
            let entry = entry.map_err(bad)?;
            let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let Some(name) = normalise(&name) else {
                continue;
            };
            let member = match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => Member::File {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                },
                tar::EntryType::Symlink => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    let base = name.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
                    let joined = if target.starts_with('/') {
                        target
                    } else {
                        format!("{base}/{target}")
                    };
                    Member::Link(joined)
                }
                tar::EntryType::Link => {
                    let target = entry
                        .link_name_bytes()
                        .map(|t| String::from_utf8_lossy(&t).into_owned())
                        .unwrap_or_default();
                    Member::Link(target)
                }
                _ => continue,
            };
            members.insert(name, member);
        }
        Ok(TarSource {
            path: path.to_owned(),
            file,
            members,
        })
    }
}

/// A member's bytes, read by offset.
struct Slice<'a> {
    file: &'a File,
    pos: u64,
    end: u64,
}

impl Read for Slice<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.end - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "archive member is truncated",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Source for TarSource {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn open(&self, path: &str) -> Result<Option<Box<dyn Read + '_>>> {
        let mut name = normalise(path).ok_or_else(|| {
            invalid(
                self.name(),
                format!("member path {path:?} leaves the archive"),
            )
        })?;
        for _ in 0..16 {
            match self.members.get(&name) {
                None => return Ok(None),
                Some(Member::File { offset, size }) => {
                    return Ok(Some(Box::new(Slice {
                        file: &self.file,
                        pos: *offset,
                        end: offset + size,
                    })));
                }
                Some(Member::Link(target)) => {
                    name = normalise(target).ok_or_else(|| {
                        invalid(self.name(), format!("link {path:?} leaves the archive"))
                    })?;
                }
            }
        }
        Err(Error::Invalid {
            what: self.name(),
            reason: format!("too many links resolving {path:?}"),
        })
    }
}
