//! The build context: the directory `COPY` and `ADD` read from, with `.dockerignore` applied.
//!
//! Sources are resolved inside the context as Docker's `FollowSymlinkInScope` does: a symlink
//! on the way is followed but can never lead out of the context (an absolute target is taken
//! relative to the context root, `..` stops at it), so a context unpacked from a client's tar
//! cannot make the builder read a host file. Below a source nothing is followed: a symlink is
//! copied as a symlink. The checksum of what a step copies (contents, modes, owners, link
//! targets; not mtimes) is the step's cache key.

use std::fs::Metadata;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::glob;
use super::ignore::IgnoreRules;
use crate::error::{IoContext, Result, invalid};

/// An opened build context.
#[derive(Debug, Clone)]
pub struct Context {
    root: PathBuf,
    rules: IgnoreRules,
}

/// One file, directory or link a `COPY` source copies.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its path relative to the source ("" for the source itself).
    pub below: String,
    /// Where it is on the host.
    pub path: PathBuf,
    /// Its metadata (never followed).
    pub meta: Metadata,
    /// A symlink's target.
    pub link: Option<PathBuf>,
}

impl Entry {
    /// Whether this is a directory.
    pub fn is_dir(&self) -> bool {
        self.meta.is_dir()
    }
}

/// The most symlinks followed resolving one source (Linux's limit).
const MAX_LINKS: usize = 40;

/// Cleans a source path as Go's `filepath.Clean` relative to the context root: leading `/`
/// dropped, `.` removed; `..` that would leave the context is an error naming the path.
pub fn clean_source(source: &str) -> Result<String> {
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(source).components() {
        match c {
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
            Component::ParentDir => {
                if parts.pop().is_none() {
                    return Err(invalid(
                        format!("source {source:?}"),
                        "forbidden path outside the build context",
                    ));
                }
            }
            Component::Normal(n) => parts.push(n.to_str().unwrap_or_default()),
        }
    }
    Ok(parts.join("/"))
}

impl Context {
    /// Opens the context at `root`; its `.dockerignore` (if any) applies to every source.
    pub fn open(root: &Path) -> Result<Context> {
        let meta = std::fs::metadata(root).ctx("stat", root)?;
        if !meta.is_dir() {
            return Err(invalid(
                format!("build context {}", root.display()),
                "not a directory",
            ));
        }
        let ignore_path = root.join(".dockerignore");
        let rules = match std::fs::read_to_string(&ignore_path) {
            Ok(text) => IgnoreRules::parse(&text).map_err(|e| invalid(".dockerignore", e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => IgnoreRules::default(),
            Err(e) => return Err(e).ctx("read", &ignore_path),
        };
        Ok(Context {
            root: root.to_owned(),
            rules,
        })
    }

    /// Another root to copy from without ignore rules: a mounted image (`COPY --from`), or an
    /// image's root a destination is resolved in.
    pub fn plain(root: &Path) -> Context {
        Context {
            root: root.to_owned(),
            rules: IgnoreRules::default(),
        }
    }

    /// `path` (absolute or relative to the root) with every symlink on the way followed inside
    /// the root, relative to it: where a write to `path` lands in a container of this root.
    pub fn follow(&self, path: &str) -> Result<String> {
        self.follow_in_scope(&clean_source(&format!("/{path}"))?)
    }

    /// The context directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `.dockerignore` leaves `rel` out.
    pub fn excluded(&self, rel: &str) -> bool {
        !rel.is_empty() && self.rules.excludes(rel)
    }

    /// The paths (relative to the context) one `COPY`/`ADD` source names: a wildcard pattern
    /// expanded, or the path itself; ignored paths left out. None is an error as Docker's.
    pub fn resolve(&self, source: &str) -> Result<Vec<String>> {
        let cleaned = clean_source(source)?;
        let not_found = || {
            invalid(
                format!("COPY source {source:?}"),
                "file not found in build context or excluded by .dockerignore",
            )
        };
        if glob::has_wildcards(&cleaned) {
            let found = glob::expand(&self.root, &cleaned, &|rel| self.excluded(rel))
                .ctx("read", &self.root)?;
            if found.is_empty() {
                return Err(not_found());
            }
            return Ok(found);
        }
        if self.excluded(&cleaned) && !self.rules.may_include_below(&cleaned) {
            return Err(not_found());
        }
        let resolved = self.follow_in_scope(&cleaned)?;
        if std::fs::symlink_metadata(self.root.join(&resolved)).is_err() {
            return Err(not_found());
        }
        Ok(vec![resolved])
    }

    /// `rel` with every symlink on the way (the last component too) followed inside the context.
    fn follow_in_scope(&self, rel: &str) -> Result<String> {
        let mut todo: Vec<String> = rel
            .split('/')
            .filter(|p| !p.is_empty())
            .rev()
            .map(str::to_owned)
            .collect();
        let mut done: Vec<String> = Vec::new();
        let mut links = 0;
        while let Some(part) = todo.pop() {
            match part.as_str() {
                "." => continue,
                ".." => {
                    done.pop();
                    continue;
                }
                _ => {}
            }
            let here = self.root.join(done.join("/")).join(&part);
            match std::fs::symlink_metadata(&here) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        return Err(invalid(
                            format!("COPY source {rel:?}"),
                            "too many levels of symbolic links",
                        ));
                    }
                    let target = std::fs::read_link(&here).ctx("readlink", &here)?;
                    let target = target.to_string_lossy().into_owned();
                    if target.starts_with('/') {
                        done.clear();
                    }
                    todo.extend(
                        target
                            .split('/')
                            .filter(|p| !p.is_empty())
                            .rev()
                            .map(str::to_owned),
                    );
                }
                _ => done.push(part),
            }
        }
        Ok(done.join("/"))
    }

    /// Everything source `rel` (a resolved path) copies: itself, then, for a directory, what
    /// is below it (ignored entries left out), parents before children, sorted by path.
    pub fn entries(&self, rel: &str) -> Result<Vec<Entry>> {
        let path = self.root.join(rel);
        let meta = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
        let mut out = vec![entry(String::new(), path.clone(), meta)?];
        if out[0].is_dir() {
            self.walk(rel, "", &path, &mut out)?;
        }
        Ok(out)
    }

    fn walk(&self, rel: &str, below: &str, dir: &Path, out: &mut Vec<Entry>) -> Result<()> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .ctx("read", dir)?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .ctx("read", dir)
            })
            .collect::<Result<_>>()?;
        names.sort();
        for name in names {
            let child_rel = join(rel, &name);
            let child_below = join(below, &name);
            let path = dir.join(&name);
            let meta = std::fs::symlink_metadata(&path).ctx("stat", &path)?;
            let excluded = self.excluded(&child_rel);
            if excluded && !(meta.is_dir() && self.rules.may_include_below(&child_rel)) {
                continue;
            }
            let is_dir = meta.is_dir();
            if !excluded {
                out.push(entry(child_below.clone(), path.clone(), meta)?);
            }
            if is_dir {
                self.walk(&child_rel, &child_below, &path, out)?;
            }
        }
        Ok(())
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_owned()
    } else {
        format!("{a}/{b}")
    }
}

fn entry(below: String, path: PathBuf, meta: Metadata) -> Result<Entry> {
    let link = if meta.file_type().is_symlink() {
        Some(std::fs::read_link(&path).ctx("readlink", &path)?)
    } else {
        None
    };
    Ok(Entry {
        below,
        path,
        meta,
        link,
    })
}

/// The checksum of what one step copies: for every source (in order) and every entry, its
/// path, type, mode, owner, size, link target and content. Not mtimes: touching a file keeps
/// the cache, as Docker's classic builder.
pub fn checksum(sources: &[(String, Vec<Entry>)]) -> Result<String> {
    let mut hasher = Sha256::new();
    for (rel, entries) in sources {
        hasher.update(format!("source {rel}\n"));
        for e in entries {
            let kind = if e.meta.is_dir() {
                'd'
            } else if e.meta.file_type().is_symlink() {
                'l'
            } else if e.meta.is_file() {
                'f'
            } else {
                'o'
            };
            hasher.update(format!(
                "{}\0{kind}\0{:o}\0{}:{}\0{}\0{}\0",
                e.below,
                e.meta.permissions().mode() & 0o7777,
                e.meta.uid(),
                e.meta.gid(),
                if kind == 'f' { e.meta.len() } else { 0 },
                e.link
                    .as_ref()
                    .map(|l| l.display().to_string())
                    .unwrap_or_default(),
            ));
            if kind == 'f' {
                let mut file = std::fs::File::open(&e.path).ctx("open", &e.path)?;
                let mut buf = vec![0u8; 128 << 10];
                loop {
                    let n = file.read(&mut buf).ctx("read", &e.path)?;
                    if n == 0 {
                        break;
                    }
                    hasher.update(&buf[..n]);
                }
            }
            hasher.update(b"\n");
        }
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_source_stays_inside() {
        assert_eq!(clean_source("/a/./b/").unwrap(), "a/b");
        assert_eq!(clean_source("a/../b").unwrap(), "b");
        assert_eq!(clean_source(".").unwrap(), "");
        assert!(clean_source("../x").is_err());
        assert!(clean_source("a/../../x").is_err());
    }

    #[test]
    fn symlinks_resolve_inside_the_context() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("real")).unwrap();
        std::fs::write(dir.path().join("real/f"), "x").unwrap();
        std::os::unix::fs::symlink("/real", dir.path().join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../real", dir.path().join("up")).unwrap();
        let ctx = Context::open(dir.path()).unwrap();
        assert_eq!(ctx.resolve("abs/f").unwrap(), vec!["real/f"]);
        assert_eq!(ctx.resolve("up/f").unwrap(), vec!["real/f"]);
        assert!(ctx.resolve("missing").is_err());
    }

    #[test]
    fn checksum_ignores_mtime_but_not_mode_or_content() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "one").unwrap();
        let ctx = Context::open(dir.path()).unwrap();
        let sum = |ctx: &Context| checksum(&[("f".into(), ctx.entries("f").unwrap())]).unwrap();
        let first = sum(&ctx);
        let file = std::fs::File::options().write(true).open(&f).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH)
            .unwrap();
        assert_eq!(sum(&ctx), first, "mtime only");
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        let chmodded = sum(&ctx);
        assert_ne!(chmodded, first, "mode");
        std::fs::write(&f, "two").unwrap();
        assert_ne!(sum(&ctx), chmodded, "content");
    }

    #[test]
    fn dockerignore_leaves_entries_out() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        std::fs::write(dir.path().join("d/keep"), "").unwrap();
        std::fs::write(dir.path().join("d/skip.log"), "").unwrap();
        std::fs::write(dir.path().join(".dockerignore"), "d/*.log\n").unwrap();
        let ctx = Context::open(dir.path()).unwrap();
        let names: Vec<String> = ctx
            .entries("d")
            .unwrap()
            .into_iter()
            .map(|e| e.below)
            .collect();
        assert_eq!(names, vec!["", "keep"]);
        assert!(ctx.resolve("d/skip.log").is_err());
    }
}
