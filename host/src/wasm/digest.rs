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
use std::io::Read;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::sys::fs::write_atomic;

/// How old a file's last change must be before its digest is remembered.
pub const SETTLED: Duration = Duration::from_secs(2);

/// A SHA-256 digest.
pub type Sha256Digest = [u8; 32];

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
    pub fn lookup(&self, file: &File) -> Option<Sha256Digest> {
        self.lookup_identity(&identity(file)?)
    }

    /// Records that `file`'s content hashes to `digest` (computed by the caller from the bytes
    /// it read through this same open file), if its identity has settled.
    pub fn remember(&self, file: &File, digest: &Sha256Digest) {
        if let Some(id) = identity(file).filter(|id| id.settled) {
            self.remember_identity(&id, digest);
        }
    }

    fn entry(&self, id: &Identity) -> PathBuf {
        self.dir.join(hex(&Sha256::digest(id.text.as_bytes())))
    }

    fn lookup_identity(&self, id: &Identity) -> Option<Sha256Digest> {
        let text = std::fs::read_to_string(self.entry(id)).ok()?;
        let (recorded, digest) = text.trim_end().split_once('\n')?;
        if recorded != id.text {
            return None;
        }
        parse_hex(digest)
    }

    fn remember_identity(&self, id: &Identity, digest: &Sha256Digest) {
        let text = format!("{}\n{}\n", id.text, hex(digest));
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

/// SHA-256 of the whole file, read in 256 KiB pieces (no buffer as large as the file).
pub fn hash_file(file: &mut File) -> std::io::Result<Sha256Digest> {
    use std::io::{Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(hasher.finalize().into())
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A digest from its hex form.
pub fn parse_hex(text: &str) -> Option<Sha256Digest> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut digest = [0u8; 32];
    for (i, byte) in digest.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(digest)
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

    fn digest_of(cache: &DigestCache, path: &Path) -> Sha256Digest {
        let mut file = File::open(path).expect("open");
        if let Some(d) = cache.lookup(&file) {
            return d;
        }
        let d = hash_file(&mut file).expect("hash");
        cache.remember(&file, &d);
        d
    }

    #[test]
    fn a_settled_file_is_hashed_once_and_a_change_is_seen() {
        let dir = Scratch::new("settled");
        let cache = DigestCache::new(&dir.path().join("cache"));
        let path = dir.path().join("module.wasm");
        std::fs::write(&path, b"first content").expect("write");
        let first: Sha256Digest = Sha256::digest(b"first content").into();

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
        cache.remember_identity(&id, &[7; 32]);
        assert_eq!(digest_of(&cache, &path), [7; 32]);

        // A change of the same size moves ctime: hashed again.
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"other content"))
            .expect("rewrite");
        assert_eq!(
            digest_of(&cache, &path)[..],
            Sha256::digest(b"other content")[..]
        );
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
        assert_eq!(digest_of(&cache, &path)[..], Sha256::digest(b"bytes")[..]);
    }

    #[test]
    fn hex_round_trips() {
        let d: Sha256Digest = Sha256::digest(b"x").into();
        assert_eq!(parse_hex(&hex(&d)), Some(d));
        assert_eq!(parse_hex("zz"), None);
    }
}
