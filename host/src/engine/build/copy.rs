//! `COPY` and `ADD`: files from the build context (or, with `--from`, another stage's or
//! image's filesystem) into the image, as Docker's classic builder copies them.
//!
//! - Sources: wildcards expanded, `.dockerignore` applied, symlinks on the way followed inside
//!   their root only; a directory copies its contents; several sources need a destination
//!   ending in `/`. `ADD` of a local tar (plain, gzip, zstd) unpacks it; remote URLs are refused.
//! - Destination: relative to `WORKDIR`; a symlink on the way resolved inside the image's
//!   root; missing parents made (root-owned, or `--chown`'s).
//! - Owners: `--chown` (names from the image's `/etc/passwd` and `/etc/group`; a user alone
//!   gives its uid as the gid too, as Docker), else root for context files and the source's
//!   owners for `--from`. `--chmod` (octal) applies to what is copied.
//! - The step's key is the checksum of everything copied (not mtimes), the destination and
//!   the flags. On `scratch` the tar this makes is the layer itself; on an image it is
//!   unpacked into a container's overlay (`archive_put`, the `docker cp` path, which never
//!   follows a link) and the upper dir becomes the layer, like a `RUN`'s.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use capsa_images::build::context::{self, Context, Entry};
use capsa_images::build::dockerfile::{self, Args, Instruction};
use capsa_images::build::words;
use capsa_images::unpack::Compression;
use sha2::{Digest as _, Sha256};

use super::{Build, Stage};
use crate::engine::error::{IoContext, Result, invalid};
use crate::engine::user;

/// One thing a step copies.
enum Source {
    /// A path of the context (or of the `--from` root) and what it holds.
    Path { rel: String, entries: Vec<Entry> },
    /// An `ADD` of a local archive: unpacked at the destination.
    Archive { rel: String, path: PathBuf },
    /// A heredoc (`COPY <<EOF /dst`): a file named after it.
    Inline { name: String, content: String },
}

/// Who owns what a step writes.
#[derive(Clone, Copy)]
enum Owner {
    /// `--chown`, or root for context files.
    Fixed(u32, u32),
    /// The source's own owners (`--from` without `--chown`).
    Keep,
}

impl Build<'_> {
    /// `COPY` / `ADD`.
    pub(super) fn copy_step(&mut self, st: &mut Stage, i: &Instruction) -> Result<()> {
        let add = i.keyword == "ADD";
        let what = |reason: String| invalid(format!("{} (line {})", i.keyword, i.line), reason);
        let mut from = None;
        let mut chown = None;
        let mut chmod = None;
        for (flag, value) in &i.flags {
            let value = st.expand(value, self.escape)?;
            match flag.as_str() {
                "from" if !add => from = Some(value),
                "chown" => chown = Some(value).filter(|v| !v.is_empty()),
                "chmod" => {
                    let mode = u32::from_str_radix(&value, 8)
                        .ok()
                        .filter(|m| *m <= 0o7777)
                        .ok_or_else(|| {
                            what(format!("invalid --chmod {value:?}: not an octal mode"))
                        })?;
                    chmod = Some(mode);
                }
                "link" | "parents" | "exclude" | "checksum" | "keep-git-dir" => {
                    return Err(what(format!(
                        "--{flag} needs BuildKit; the classic builder has none"
                    )));
                }
                other => return Err(what(format!("unknown flag: --{other}"))),
            }
        }
        let mut words: Vec<String> = match &i.args {
            Args::Exec(v) => v
                .iter()
                .map(|w| st.expand(w, self.escape))
                .collect::<Result<_>>()?,
            Args::Shell(s) => {
                words::expand_fields(s, &|n| st.lookup(n), self.escape).map_err(what)?
            }
        };
        if words.len() < 2 {
            return Err(what(format!(
                "{} requires at least two arguments, but only one was provided. Destination could not be determined.",
                i.keyword
            )));
        }
        let dest_word = words.pop().unwrap_or_default();
        let workdir = st
            .config
            .get("WorkingDir")
            .and_then(serde_json::Value::as_str)
            .filter(|w| !w.is_empty())
            .unwrap_or("/")
            .to_owned();
        let dest_is_dir_word =
            dest_word.ends_with('/') || dest_word.ends_with("/.") || dest_word == ".";
        let dest = if dest_word.starts_with('/') {
            dest_word.clone()
        } else {
            format!("{}/{dest_word}", workdir.trim_end_matches('/'))
        };
        let dest = normalise(&dest);

        // The source root: the context, or a mounted container of the `--from` image.
        let from_container;
        let from_image;
        let source_ctx = match &from {
            Some(name) => {
                let id = match self.stage_image(name) {
                    Some(id) => id,
                    None => self.base_image(name, None)?,
                };
                let probe = Stage {
                    image: Some(id.clone()),
                    config: serde_json::json!({}),
                    platform: st.platform.clone(),
                    args: Default::default(),
                };
                from_container = self.step_container(&probe, vec!["true".into()], Vec::new())?;
                self.engine.ensure_mounted(&from_container.record)?;
                from_image = Some(id);
                Context::plain(&self.engine.rootfs_dir(&from_container.record))
            }
            None => {
                from_image = None;
                self.context.clone()
            }
        };

        let mut sources = Vec::new();
        for word in &words {
            if add && is_url(word) {
                return Err(what(format!(
                    "{word}: ADD of a remote URL is not supported here; download it in a RUN step, or COPY a file of the build context"
                )));
            }
            if let Some(name) = dockerfile::heredoc_name(word)
                && let Some(doc) = i.heredocs.iter().find(|d| d.name == name)
            {
                let content = if doc.expand {
                    words::expand_heredoc(&doc.body(), &|n| st.lookup(n), self.escape)
                        .map_err(what)?
                } else {
                    doc.body()
                };
                sources.push(Source::Inline {
                    name: doc.name.clone(),
                    content,
                });
                continue;
            }
            for rel in source_ctx.resolve(word).map_err(|e| what(e.to_string()))? {
                let path = source_ctx.root().join(&rel);
                if add && from.is_none() && is_archive(&path)? {
                    sources.push(Source::Archive { rel, path });
                } else {
                    let entries = source_ctx.entries(&rel)?;
                    sources.push(Source::Path { rel, entries });
                }
            }
        }
        if sources.len() > 1 && !dest_is_dir_word {
            return Err(what(format!(
                "When using {} with more than one source file, the destination must be a directory and end with a /",
                i.keyword
            )));
        }

        // The step's key: what is copied, where, how.
        let sum = checksum(&sources)?;
        let kind = match sources.as_slice() {
            [Source::Path { entries, .. }] if entries.first().is_some_and(Entry::is_dir) => "dir",
            [_] => "file",
            _ => "multi",
        };
        let created_by = format!(
            "/bin/sh -c #(nop) {} {kind}:{sum} in {dest_word} ",
            i.keyword
        );
        let key = format!(
            "{created_by}chown={chown:?} chmod={chmod:?} from={:?} workdir={workdir}",
            from_image.as_ref().map(ToString::to_string)
        );
        if self.cached(st, &key)? {
            return Ok(());
        }

        // Where it goes: a container of the stage's image, or nothing (scratch).
        let target = match &st.image {
            Some(_) => {
                let c = self.step_container(st, vec!["true".into()], Vec::new())?;
                self.engine.ensure_mounted(&c.record)?;
                Some(c)
            }
            None => None,
        };
        let target_root = target.as_ref().map(|c| self.engine.rootfs_dir(&c.record));
        let owner = match &chown {
            Some(spec) => {
                let (uid, gid) =
                    resolve_chown(target_root.as_deref(), spec).map_err(|e| what(e.to_string()))?;
                Owner::Fixed(uid, gid)
            }
            None if from.is_some() => Owner::Keep,
            None => Owner::Fixed(0, 0),
        };
        // The destination with links on the way resolved inside the image's root.
        let (dest, dest_exists_as_dir) = match &target_root {
            Some(root) => {
                let inside = Context::plain(root).follow(&dest)?;
                let meta = std::fs::symlink_metadata(root.join(&inside)).ok();
                (format!("/{inside}"), meta.is_some_and(|m| m.is_dir()))
            }
            None => (dest, false),
        };
        let into_dir = dest_is_dir_word || dest_exists_as_dir;

        let tar_path = match &target {
            Some(c) => self
                .engine
                .container_dir(&c.record.id)
                .join("step-copy.tar"),
            None => self.engine.build_tmp("copy")?,
        };
        let written = (|| -> Result<()> {
            let file = std::fs::File::create(&tar_path).io("create", &tar_path)?;
            let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
            let mut made = std::collections::BTreeSet::new();
            let missing = |p: &str| match &target_root {
                Some(root) => {
                    std::fs::symlink_metadata(root.join(p.trim_start_matches('/'))).is_err()
                }
                None => true,
            };
            let parent_owner = match owner {
                Owner::Fixed(u, g) => (u, g),
                Owner::Keep => (0, 0),
            };
            let parents = |tar: &mut tar::Builder<std::io::BufWriter<std::fs::File>>,
                           path: &str,
                           made: &mut std::collections::BTreeSet<String>|
             -> Result<()> {
                let mut at = String::new();
                for part in path
                    .trim_start_matches('/')
                    .split('/')
                    .filter(|p| !p.is_empty())
                {
                    if !at.is_empty() {
                        at.push('/');
                    }
                    at.push_str(part);
                    if at == path.trim_start_matches('/') {
                        break;
                    }
                    if made.contains(&at) || !missing(&at) {
                        continue;
                    }
                    append_dir(tar, &at, 0o755, parent_owner, 0)?;
                    made.insert(at.clone());
                }
                Ok(())
            };
            for source in &sources {
                match source {
                    Source::Inline { name, content } => {
                        let at = if into_dir {
                            join(&dest, name)
                        } else {
                            dest.clone()
                        };
                        parents(&mut tar, &at, &mut made)?;
                        let mut h = tar::Header::new_gnu();
                        h.set_entry_type(tar::EntryType::Regular);
                        h.set_size(content.len() as u64);
                        h.set_mode(chmod.unwrap_or(0o644));
                        let (u, g) = parent_owner;
                        h.set_uid(u.into());
                        h.set_gid(g.into());
                        h.set_mtime(now());
                        tar.append_data(&mut h, at.trim_start_matches('/'), content.as_bytes())
                            .io("write", &tar_path)?;
                    }
                    Source::Archive { rel, path } => {
                        if !made.contains(dest.trim_start_matches('/')) && missing(&dest) {
                            parents(&mut tar, &dest, &mut made)?;
                            append_dir(
                                &mut tar,
                                dest.trim_start_matches('/'),
                                0o755,
                                parent_owner,
                                now(),
                            )?;
                            made.insert(dest.trim_start_matches('/').to_owned());
                        }
                        append_archive(&mut tar, path, &dest, owner, chmod)
                            .map_err(|e| what(format!("{rel}: {e}")))?;
                    }
                    Source::Path { rel, entries } => {
                        let Some(top) = entries.first() else { continue };
                        let base = if top.is_dir() {
                            dest.clone()
                        } else if into_dir {
                            join(&dest, rel.rsplit('/').next().unwrap_or(rel))
                        } else {
                            dest.clone()
                        };
                        parents(&mut tar, &base, &mut made)?;
                        for e in entries {
                            let at = if e.below.is_empty() {
                                base.clone()
                            } else {
                                join(&base, &e.below)
                            };
                            let name = at.trim_start_matches('/').to_owned();
                            if e.below.is_empty() && top.is_dir() {
                                // The destination directory itself: made if missing.
                                if name.is_empty() || made.contains(&name) || !missing(&at) {
                                    continue;
                                }
                            }
                            append_entry(&mut tar, e, &name, owner, chmod)?;
                            if e.is_dir() {
                                made.insert(name);
                            }
                        }
                    }
                }
            }
            tar.into_inner()
                .and_then(|mut w| w.flush())
                .io("write", &tar_path)?;
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tar_path);
            return Err(e);
        }
        let config = st.config.clone();
        match &target {
            Some(c) => {
                let unpacked = (|| -> Result<()> {
                    let mut file = std::fs::File::open(&tar_path).io("open", &tar_path)?;
                    self.engine
                        .archive_put(&c.record, "/", &mut file, true, false)
                })();
                let _ = std::fs::remove_file(&tar_path);
                unpacked?;
                let layer = self.write_layer(&c.record)?;
                self.commit(st, &key, config, created_by, Some(layer))?;
            }
            None => self.commit(st, &key, config, created_by, Some(tar_path))?,
        }
        drop(target);
        Ok(())
    }
}

impl Build<'_> {
    /// `WORKDIR`: the config's working dir, and the directory made (root's, 0755) when the
    /// image lacks it, in a layer of its own, as Docker's classic builder makes it.
    pub(super) fn workdir_step(
        &mut self,
        st: &mut Stage,
        dir: &str,
        config: serde_json::Value,
        created_by: String,
    ) -> Result<()> {
        let key = created_by.clone();
        let target = match &st.image {
            Some(_) => {
                let c = self.step_container(st, vec!["true".into()], Vec::new())?;
                self.engine.ensure_mounted(&c.record)?;
                Some(c)
            }
            None => None,
        };
        let root = target.as_ref().map(|c| self.engine.rootfs_dir(&c.record));
        let inside = match &root {
            Some(r) => Context::plain(r).follow(dir)?,
            None => normalise(dir).trim_start_matches('/').to_owned(),
        };
        let mut missing = Vec::new();
        let mut at = String::new();
        for part in inside.split('/').filter(|p| !p.is_empty()) {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            let exists = root
                .as_ref()
                .is_some_and(|r| std::fs::symlink_metadata(r.join(&at)).is_ok());
            if !exists {
                missing.push(at.clone());
            }
        }
        if missing.is_empty() {
            drop(target);
            return self.commit(st, &key, config, created_by, None);
        }
        let tar_path = match &target {
            Some(c) => self
                .engine
                .container_dir(&c.record.id)
                .join("step-workdir.tar"),
            None => self.engine.build_tmp("workdir")?,
        };
        let written = (|| -> Result<()> {
            let file = std::fs::File::create(&tar_path).io("create", &tar_path)?;
            let mut tar = tar::Builder::new(std::io::BufWriter::new(file));
            for d in &missing {
                append_dir(&mut tar, d, 0o755, (0, 0), now())?;
            }
            tar.into_inner()
                .and_then(|mut w| w.flush())
                .io("write", &tar_path)
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tar_path);
            return Err(e);
        }
        match &target {
            Some(c) => {
                let unpacked = (|| -> Result<()> {
                    let mut file = std::fs::File::open(&tar_path).io("open", &tar_path)?;
                    self.engine
                        .archive_put(&c.record, "/", &mut file, true, false)
                })();
                let _ = std::fs::remove_file(&tar_path);
                unpacked?;
                let layer = self.write_layer(&c.record)?;
                self.commit(st, &key, config, created_by, Some(layer))?;
            }
            None => self.commit(st, &key, config, created_by, Some(tar_path))?,
        }
        drop(target);
        Ok(())
    }
}

impl crate::engine::Engine {
    /// A new path in `<root>/build-tmp` for what a build stages outside any container (a
    /// context unpacked from a tar, a step's layer, a scratch stage's first layer), removed
    /// when used: `KIND-PID-RANDOM`, so that what a killed build left is known by its dead pid
    /// and removed by the next build ([`Self::reap_build_tmp`]).
    pub(super) fn build_tmp(&self, kind: &str) -> Result<PathBuf> {
        let dir = self.root().join("build-tmp");
        std::fs::create_dir_all(&dir).io("mkdir", &dir)?;
        let unique = crate::engine::container::random_id()?;
        Ok(dir.join(format!("{kind}-{}-{}", std::process::id(), &unique[..12])))
    }

    /// Removes what builds whose process is gone left in `<root>/build-tmp`.
    pub(super) fn reap_build_tmp(&self) {
        let dir = self.root().join("build-tmp");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let pid = name.split('-').nth(1).and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|p| {
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), None).is_ok()
            });
            if !alive {
                let path = e.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
            }
        }
    }
}

/// `/a/./b/../c/` → `/a/c` (the path stays inside `/`).
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for p in path.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn is_url(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://") || lower.starts_with("git@")
}

/// Whether an `ADD` source is an archive it unpacks (by its first bytes, as Docker decides).
fn is_archive(path: &Path) -> Result<bool> {
    let meta = std::fs::metadata(path).io("stat", path)?;
    if !meta.is_file() {
        return Ok(false);
    }
    let mut head = [0u8; 512];
    let mut file = std::fs::File::open(path).io("open", path)?;
    let mut n = 0;
    while n < head.len() {
        match file.read(&mut head[n..]).io("read", path)? {
            0 => break,
            k => n += k,
        }
    }
    let head = &head[..n];
    if head.starts_with(b"BZh") || head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        return Err(invalid(
            format!("ADD {}", path.display()),
            "bzip2 and xz archives are not supported (plain tar, gzip and zstd are)",
        ));
    }
    Ok(matches!(
        Compression::sniff(head),
        Compression::Gzip | Compression::Zstd
    ) || (n >= 262 && &head[257..262] == b"ustar"))
}

/// `--chown=USER[:GROUP]`: numbers as they are, names from the image's files.
fn resolve_chown(root: Option<&Path>, spec: &str) -> Result<(u32, u32)> {
    let (u, g) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let numeric = |s: &str| s.parse::<u32>().ok();
    let uid = match (numeric(u), root) {
        (Some(n), _) => n,
        (None, Some(root)) => user::resolve(root, u)?.uid,
        (None, None) => {
            return Err(invalid(
                format!("--chown {spec:?}"),
                "unable to find user: the image has no /etc/passwd",
            ));
        }
    };
    let gid = match g {
        None => uid,
        Some(g) => match (numeric(g), root) {
            (Some(n), _) => n,
            (None, Some(root)) => user::resolve_group(root, g)?,
            (None, None) => {
                return Err(invalid(
                    format!("--chown {spec:?}"),
                    "unable to find group: the image has no /etc/group",
                ));
            }
        },
    };
    Ok((uid, gid))
}

fn append_dir<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    mode: u32,
    (uid, gid): (u32, u32),
    mtime: u64,
) -> Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_size(0);
    h.set_mode(mode);
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(mtime);
    tar.append_data(&mut h, format!("{name}/"), std::io::empty())
        .io("write", "layer tar")
}

/// One context entry as a tar entry named `name`.
fn append_entry<W: Write>(
    tar: &mut tar::Builder<W>,
    e: &Entry,
    name: &str,
    owner: Owner,
    chmod: Option<u32>,
) -> Result<()> {
    let (uid, gid) = match owner {
        Owner::Fixed(u, g) => (u, g),
        Owner::Keep => (e.meta.uid(), e.meta.gid()),
    };
    let mode = chmod.unwrap_or(e.meta.permissions().mode() & 0o7777);
    let mtime = u64::try_from(e.meta.mtime()).unwrap_or(0);
    let mut h = tar::Header::new_gnu();
    h.set_uid(uid.into());
    h.set_gid(gid.into());
    h.set_mtime(mtime);
    h.set_mode(mode);
    let ft = e.meta.file_type();
    if ft.is_dir() {
        return append_dir(tar, name, mode, (uid, gid), mtime);
    }
    if ft.is_symlink() {
        let target = e.link.clone().unwrap_or_default();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        return tar
            .append_link(&mut h, name, &target)
            .io("write", "layer tar");
    }
    if !ft.is_file() {
        // Sockets, fifos and devices of a context are not copied.
        return Ok(());
    }
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(e.meta.len());
    let file = std::fs::File::open(&e.path).io("open", &e.path)?;
    tar.append_data(&mut h, name, file).io("write", &e.path)
}

/// An `ADD`ed archive's entries, renamed under `dest`, owners and modes as asked.
fn append_archive<W: Write>(
    tar: &mut tar::Builder<W>,
    path: &Path,
    dest: &str,
    owner: Owner,
    chmod: Option<u32>,
) -> std::result::Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut head = [0u8; 4];
    let n = (&file).read(&mut head).map_err(|e| e.to_string())?;
    drop(file);
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let reader = Compression::sniff(&head[..n])
        .decoder(file)
        .map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let inner = entry.path().map_err(|e| e.to_string())?.into_owned();
        let cleaned = context::clean_source(&inner.to_string_lossy()).map_err(|e| e.to_string())?;
        if cleaned.is_empty() {
            continue;
        }
        let name = join(dest, &cleaned);
        let mut h = entry.header().clone();
        if let Owner::Fixed(u, g) = owner {
            h.set_uid(u.into());
            h.set_gid(g.into());
        }
        if let Some(m) = chmod {
            h.set_mode(m);
        }
        let kind = h.entry_type();
        let name = name.trim_start_matches('/').to_owned();
        match kind {
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry
                    .link_name()
                    .map_err(|e| e.to_string())?
                    .map(|t| t.into_owned())
                    .unwrap_or_default();
                // A hard link names a path inside the archive: it moves with it.
                let target = if kind == tar::EntryType::Link {
                    let inside = context::clean_source(&target.to_string_lossy())
                        .map_err(|e| e.to_string())?;
                    PathBuf::from(join(dest, &inside).trim_start_matches('/'))
                } else {
                    target
                };
                tar.append_link(&mut h, &name, &target)
                    .map_err(|e| e.to_string())?;
            }
            _ => {
                tar.append_data(&mut h, &name, &mut entry)
                    .map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(())
}

/// The checksum of a step's sources (contents, modes, owners; not mtimes).
fn checksum(sources: &[Source]) -> Result<String> {
    let mut parts = Vec::new();
    let mut extra = Sha256::new();
    for s in sources {
        match s {
            Source::Path { rel, entries } => parts.push((rel.clone(), entries.clone())),
            Source::Archive { rel, path } => {
                extra.update(format!("archive {rel}\n"));
                let mut file = std::fs::File::open(path).io("open", path)?;
                std::io::copy(&mut file, &mut HashWriter(&mut extra)).io("read", path)?;
            }
            Source::Inline { name, content } => {
                extra.update(format!("inline {name}\n{content}"));
            }
        }
    }
    let mut hasher = Sha256::new();
    hasher.update(context::checksum(&parts)?);
    hasher.update(extra.finalize());
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// Feeds what is written into a hasher.
struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalise_keeps_paths_inside_root() {
        assert_eq!(normalise("/a/./b/../c/"), "/a/c");
        assert_eq!(normalise("/../x"), "/x");
        assert_eq!(normalise("/"), "/");
    }

    #[test]
    fn chown_numbers_need_no_passwd() {
        assert_eq!(resolve_chown(None, "10:20").unwrap(), (10, 20));
        assert_eq!(resolve_chown(None, "7").unwrap(), (7, 7));
        assert!(resolve_chown(None, "alice").is_err());
    }
}
