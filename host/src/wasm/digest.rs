//! SHA-256 of files, remembered by the file's identity, so a warm start hashes nothing.
//!
//! A wasm start needs two digests: the module's (its part of the cache key) and the artifact's
//! (checked against the one recorded at compile time before the shim maps it). Hashing is most of
//! a warm start of a large module (a 10 MB module and its 10 MB artifact: ~30 ms of SHA-256 on the
//! machines measured, against ~10 ms for the rest of the container). Both files are usually the
//! same from one start to the next, and the kernel tells when a file may have changed: any write,
//! truncation, chmod or rename of it moves its ctime forward, which no user can set back.
//!
//! So a digest is remembered under the file's identity — inode, size, mtime and ctime to the
//! nanosecond, and the device unless the file is on overlayfs (where every mount has a device
//! number of its own, but a lower layer's file keeps its inode: each container of an image sees
//! the same identity) — and reused while that identity holds:
//!
//! ```text
//! <wasm cache>/digests/<sha256 of the identity>    "<identity>\n<digest, hex>\n"
//! ```
//!
//! A digest is only remembered when the file's ctime is at least [`SETTLED`] old: timestamps
//! move in coarse ticks, so a file changed again within the tick in which it was hashed would
//! keep its identity (git's "racily clean" case). What the cache cannot see is the same identity
//! with other bytes: a disk that corrupts data silently, or a raw write to the block device; a
//! full hash on the first start after [`SETTLED`] is what every other start reuses.
//!
//! Entries are written atomically (temporary name and rename) and are only a cache: an entry that
//! is missing, unreadable or for another identity means hashing again, never an error.

use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use capsa_images::Digest;

use crate::sys::fs::write_atomic;

/// How old a file's last change must be before its digest is remembered.
pub const SETTLED: Duration = Duration::from_secs(2);

/// The remembered digests of one wasm cache.
#[derive(Debug, Clone)]
pub struct DigestCache {
    dir: PathBuf,
}

impl DigestCache {
    /// The digests remembered under the wasm cache `cache` (made on first use).
    pub fn new(cache: &Path) -> Self {
        Self {
            dir: cache.join("digests"),
        }
    }

    /// The digest remembered for `file`'s current identity, if any.
    pub fn lookup(&self, file: &File) -> Option<Digest> {
        self.lookup_identity(&identity(file)?)
    }

    /// Records that `file`'s content hashes to `digest` (computed by the caller from the bytes
    /// it read through this same open file), if its identity has settled.
    pub fn remember(&self, file: &File, digest: &Digest) {
        if let Some(id) = identity(file).filter(|id| id.settled) {
            self.remember_identity(&id, digest);
        }
    }

    fn entry(&self, id: &Identity) -> PathBuf {
        self.dir.join(Digest::of_bytes(id.text.as_bytes()).hex())
    }

    fn lookup_identity(&self, id: &Identity) -> Option<Digest> {
        let text = std::fs::read_to_string(self.entry(id)).ok()?;
        let (recorded, digest) = text.trim_end().split_once('\n')?;
        if recorded != id.text {
            return None;
        }
        Digest::from_hex(digest).ok()
    }

    fn remember_identity(&self, id: &Identity, digest: &Digest) {
        let text = format!("{}\n{}\n", id.text, digest.hex());
        let stored = std::fs::create_dir_all(&self.dir)
            .map_err(|e| e.to_string())
            .and_then(|()| {
                write_atomic(&self.entry(id), text.as_bytes()).map_err(|e| e.to_string())
            });
        if let Err(e) = stored {
            log::debug!(
                "wasm cache: remember a digest in {}: {e}",
                self.dir.display()
            );
        }
    }
}

/// What identifies a file's content without reading it.
struct Identity {
    text: String,
    /// Whether its last change is older than [`SETTLED`].
    settled: bool,
}

fn identity(file: &File) -> Option<Identity> {
    let meta = file.metadata().ok()?;
    if !meta.is_file() {
        return None;
    }
    let overlay = nix::sys::statfs::fstatfs(file.as_fd())
        .map(|fs| fs.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
        .unwrap_or(false);
    let device = if overlay {
        "overlay".to_owned()
    } else {
        meta.dev().to_string()
    };
    let text = format!(
        "{device} {} {} {}.{:09} {}.{:09}",
        meta.ino(),
        meta.size(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec()
    );
    let changed = SystemTime::UNIX_EPOCH
        + Duration::new(
            u64::try_from(meta.ctime()).ok()?,
            u32::try_from(meta.ctime_nsec()).ok()?,
        );
    let settled = SystemTime::now()
        .duration_since(changed)
        .is_ok_and(|age| age >= SETTLED);
    Some(Identity { text, settled })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A directory of the test's own, removed at the end.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("capsa-digest-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Self(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// Only waiting settles a file: backdating its mtime sets its ctime to now.
    fn settle() {
        std::thread::sleep(SETTLED + Duration::from_millis(100));
    }

    fn digest_of(cache: &DigestCache, path: &Path) -> Digest {
        let file = File::open(path).expect("open");
        if let Some(d) = cache.lookup(&file) {
            return d;
        }
        let d = Digest::of_bytes(&std::fs::read(path).expect("read"));
        cache.remember(&file, &d);
        d
    }

    #[test]
    fn a_settled_file_is_hashed_once_and_a_change_is_seen() {
        let dir = Scratch::new("settled");
        let cache = DigestCache::new(&dir.path().join("cache"));
        let path = dir.path().join("module.wasm");
        std::fs::write(&path, b"first content").expect("write");
        let first = Digest::of_bytes(b"first content");

        // Too fresh: hashed, not remembered.
        assert_eq!(digest_of(&cache, &path), first);
        assert!(!dir.path().join("cache/digests").exists());

        settle();
        assert_eq!(digest_of(&cache, &path), first);
        let entries = std::fs::read_dir(dir.path().join("cache/digests"))
            .expect("entries")
            .count();
        assert_eq!(entries, 1);

        // What is remembered is what a lookup returns (a wrong one proves nothing rehashes).
        let file = File::open(&path).expect("open");
        let id = identity(&file).expect("identity");
        let wrong = Digest::of_bytes(b"not its content");
        cache.remember_identity(&id, &wrong);
        assert_eq!(digest_of(&cache, &path), wrong);

        // A change of the same size moves ctime: hashed again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"other content"))
            .expect("rewrite");
        assert_eq!(digest_of(&cache, &path), Digest::of_bytes(b"other content"));
    }

    #[test]
    fn a_damaged_entry_is_no_digest() {
        let dir = Scratch::new("damaged");
        let cache = DigestCache::new(dir.path());
        let path = dir.path().join("m");
        std::fs::write(&path, b"bytes").expect("write");
        settle();
        let file = File::open(&path).expect("open");
        let id = identity(&file).expect("identity");
        std::fs::create_dir_all(dir.path().join("digests")).expect("mkdir");
        std::fs::write(cache.entry(&id), b"garbage").expect("write");
        assert_eq!(cache.lookup(&file), None);
        assert_eq!(digest_of(&cache, &path), Digest::of_bytes(b"bytes"));
    }
}
