//! The store on disk, and the two rules that keep it consistent:
//!
//! - **Everything is staged.** New blobs and unpacked layers are written under `<root>/tmp/`
//!   inside a [`Txn`]; `commit` flushes the filesystem once (`syncfs`) and renames them into
//!   `blobs/` and `layers/`; only then is the image record (`images.json`) replaced, atomically.
//!   A crash or kill at any point leaves at most files in `tmp/` (removed at the next open or
//!   lock) and dangling short links (removed at open and by gc): nothing a reader takes as
//!   complete.
//! - **One writer.** Every mutation holds `flock` on `<root>/lock`; while it is held every file
//!   in `tmp/` belongs to the holder, so the holder may clean what a dead writer left. Readers
//!   (list, inspect, layer paths) take no lock: they only see renamed, complete files.
//!
//! ```text
//! <root>/lock                      flock for writers
//! <root>/images.json               image records: id (config digest) → manifest, names
//! <root>/blobs/sha256/<hex>        content store: manifests, configs, layer blobs, wasm modules
//! <root>/layers/<hex>/diff/        a tar layer unpacked (whiteouts in overlayfs form), by diff_id
//! <root>/layers/<hex>/meta.json    its diff_id, uncompressed size, short link
//! <root>/l/<short> -> ../layers/<hex>/diff
//! <root>/tmp/                      staging (chattr +T: see `spread_staged_dirs`)
//! ```

pub(crate) mod blobs;
pub(crate) mod gc;
pub(crate) mod images;
pub(crate) mod layers;

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::sys;
use crate::unpack::{self, Compression};
pub use gc::GcReport;
pub use images::{ImageId, ImageInfo, ImageRecord, ImageSummary, LayerInfo, RemoveReport};
pub use layers::LayerMeta;

/// An image store rooted at one directory. Nothing is written outside that directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

/// The store-wide writer lock; released when dropped.
pub(crate) struct Lock {
    _file: File,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Store {
    /// Opens (creating if needed) the store at `root`, and, when no writer is active, removes
    /// what an interrupted writer left in `tmp/` and `l/`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store> {
        let root = root.into();
        for dir in ["", "blobs/sha256", "layers", "l", "tmp"] {
            let path = root.join(dir);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .ctx("mkdir", &path)?;
        }
        spread_staged_dirs(&root.join("tmp"));
        let store = Store { root };
        if let Some(lock) = store.try_lock()? {
            store.clean_tmp()?;
            layers::remove_dangling_links(&store.root)?;
            drop(lock);
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self) -> Result<File> {
        let path = self.root.join("lock");
        OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
            .ctx("open", &path)
    }

    fn try_lock(&self) -> Result<Option<Lock>> {
        let file = self.lock_file()?;
        match sys::flock(file.as_fd(), libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Lock { _file: file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e).ctx("flock", self.root.join("lock")),
        }
    }

    /// Takes the writer lock (waiting for another writer), then clears `tmp/`: whatever is
    /// there was left by a writer that died.
    pub(crate) fn lock(&self) -> Result<Lock> {
        let file = self.lock_file()?;
        sys::flock(file.as_fd(), libc::LOCK_EX).ctx("flock", self.root.join("lock"))?;
        let lock = Lock { _file: file };
        self.clean_tmp()?;
        Ok(lock)
    }

    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.root.join("tmp");
        for entry in fs::read_dir(&tmp).ctx("read_dir", &tmp)? {
            let entry = entry.ctx("read_dir", &tmp)?;
            remove_any(&entry.path())?;
        }
        Ok(())
    }

    /// A fresh path under `tmp/`.
    pub(crate) fn tmp_path(&self, kind: &str) -> PathBuf {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        self.root
            .join("tmp")
            .join(format!("{kind}-{}-{n}", std::process::id()))
    }

    /// Starts staging new content; `commit` makes it visible.
    pub(crate) fn begin<'a>(&'a self, _lock: &'a Lock) -> Txn<'a> {
        Txn {
            store: self,
            blobs: Vec::new(),
            layers: Vec::new(),
        }
    }

    /// Where a blob lives (the engine runs raw wasm layers from here). The file may not exist.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        blobs::path(&self.root, digest)
    }

    /// Whether the content store holds a blob.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).exists()
    }

    /// Re-hashes a stored blob and returns its size: a check for disk corruption.
    pub fn verify_blob(&self, digest: &Digest) -> Result<u64> {
        blobs::verify_file(&self.blob_path(digest), digest)
    }

    /// Reads a whole stored blob, checking its digest.
    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        blobs::read_verified(&self.blob_path(digest), digest)
    }

    /// Opens a stored blob for streaming (not re-verified).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest);
        File::open(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotInStore(digest.clone()),
            _ => Error::Io {
                op: "open",
                path,
                source: e,
            },
        })
    }

    /// Every blob in the content store.
    pub fn blobs(&self) -> Result<Vec<Digest>> {
        blobs::list(&self.root.join("blobs/sha256"))
    }

    /// Every unpacked layer, by diff_id.
    pub fn layers(&self) -> Result<Vec<Digest>> {
        layers::list(&self.root)
    }

    /// The unpacked directory of a layer, when the store has it: an overlay lower dir.
    pub fn layer_diff_dir(&self, diff_id: &Digest) -> Option<PathBuf> {
        let dir = layers::dir(&self.root, diff_id).join("diff");
        dir.is_dir().then_some(dir)
    }

    /// A stored layer's metadata (size, short link).
    pub fn layer_meta(&self, diff_id: &Digest) -> Result<LayerMeta> {
        layers::read_meta(&self.root, diff_id)
    }
}

/// `FS_TOPDIR_FL` (`chattr +T`), not in the libc crate.
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `tmp/` as a top of directory hierarchies for ext4's Orlov allocator, so each layer
/// staged below it (an unrelated tree) is placed in a lightly used block group of its own
/// rather than beside the store root. Without this, every inode of a new layer is allocated in
/// the store root's group; on ext4 without a journal the allocator skips inodes freed in the
/// last minutes by scanning them one by one, per allocation, so unpacking soon after a removal
/// (rmi, gc, a re-created store) cost up to milliseconds per file. Best effort: other
/// filesystems refuse or ignore the flag, and placement never affects what is written.
fn spread_staged_dirs(tmp: &Path) {
    let Ok(dir) = File::open(tmp) else { return };
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the valid pointer passed.
    if unsafe { libc::ioctl(fd, libc::FS_IOC_GETFLAGS, &mut flags) } < 0
        || flags & FS_TOPDIR_FL != 0
    {
        return;
    }
    flags |= FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the valid pointer passed.
    let _ = unsafe { libc::ioctl(fd, libc::FS_IOC_SETFLAGS, &flags) };
}

/// Removes a file, symlink or directory tree (never following symlinks).
pub(crate) fn remove_any(path: &Path) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).ctx("lstat", path),
    };
    if meta.is_dir() {
        fs::remove_dir_all(path).ctx("remove_dir_all", path)
    } else {
        fs::remove_file(path).ctx("unlink", path)
    }
}

/// Writes `bytes` to `dest` atomically: a temp file in the store, fsync, rename, fsync of the
/// directory.
pub(crate) fn write_atomic(store: &Store, dest: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = store.tmp_path("write");
    let result = (|| {
        let mut file = File::create_new(&tmp).ctx("create", &tmp)?;
        file.write_all(bytes).ctx("write", &tmp)?;
        file.sync_all().ctx("fsync", &tmp)?;
        fs::rename(&tmp, dest).ctx("rename", dest)?;
        fsync_dir(dest.parent().unwrap_or(Path::new("/")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).ctx("fsync", dir)
}

/// A staged layer: unpacked under `tmp/`, renamed into `layers/` at commit.
struct StagedLayer {
    tmp: PathBuf,
    meta: LayerMeta,
}

/// New content being added under the writer lock. Dropping it without `commit` removes what it
/// staged.
pub(crate) struct Txn<'a> {
    store: &'a Store,
    blobs: Vec<(PathBuf, Digest)>,
    layers: Vec<StagedLayer>,
}

impl Txn<'_> {
    /// The store this transaction adds to.
    pub(crate) fn store(&self) -> &Store {
        self.store
    }

    /// Where a blob is now: staged or stored.
    pub(crate) fn blob_file(&self, digest: &Digest) -> Option<PathBuf> {
        if let Some((path, _)) = self.blobs.iter().find(|(_, d)| d == digest) {
            return Some(path.clone());
        }
        let path = self.store.blob_path(digest);
        path.exists().then_some(path)
    }

    /// Whether the blob is staged or stored.
    pub(crate) fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_file(digest).is_some()
    }

    /// The size of a staged or stored blob.
    pub(crate) fn blob_size(&self, digest: &Digest) -> Result<u64> {
        let path = self
            .blob_file(digest)
            .ok_or_else(|| Error::BlobNotInStore(digest.clone()))?;
        Ok(fs::metadata(&path).ctx("stat", &path)?.len())
    }

    /// Opens a staged or stored blob.
    pub(crate) fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self
            .blob_file(digest)
            .ok_or_else(|| Error::BlobNotInStore(digest.clone()))?;
        File::open(&path).ctx("open", &path)
    }

    /// Reads a whole staged or stored blob, checking its digest.
    pub(crate) fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self
            .blob_file(digest)
            .ok_or_else(|| Error::BlobNotInStore(digest.clone()))?;
        blobs::read_verified(&path, digest)
    }

    /// Streams `reader` into a staged blob, verifying `expected` (digest and size) as it goes;
    /// with no expected digest, the blob is named by what it hashes to.
    pub(crate) fn put_blob(
        &mut self,
        reader: &mut dyn Read,
        expected: Option<&Digest>,
        expected_size: Option<u64>,
    ) -> Result<(Digest, u64)> {
        let tmp = self.store.tmp_path("blob");
        let (digest, size) = blobs::write_verified(reader, &tmp, expected, expected_size)?;
        if self.has_blob(&digest) {
            fs::remove_file(&tmp).ctx("unlink", &tmp)?;
        } else {
            self.blobs.push((tmp, digest.clone()));
        }
        Ok((digest, size))
    }

    /// Stages a small blob held in memory (a manifest or config written by capsa).
    pub(crate) fn put_bytes(&mut self, bytes: &[u8], expected: Option<&Digest>) -> Result<Digest> {
        let mut reader = bytes;
        Ok(self
            .put_blob(&mut reader, expected, Some(bytes.len() as u64))?
            .0)
    }

    /// The layer's metadata if it is stored or staged.
    pub(crate) fn layer(&self, diff_id: &Digest) -> Option<LayerMeta> {
        if let Some(l) = self.layers.iter().find(|l| l.meta.diff_id == *diff_id) {
            return Some(l.meta.clone());
        }
        self.store.layer_meta(diff_id).ok()
    }

    /// Unpacks the tar layer in blob `blob` (staged or stored) unless a layer with
    /// `expected_diff_id` exists; checks the uncompressed stream against it.
    pub(crate) fn unpack_layer(
        &mut self,
        blob: &Digest,
        compression: Compression,
        expected_diff_id: Option<&Digest>,
    ) -> Result<LayerMeta> {
        if let Some(meta) = expected_diff_id.and_then(|d| self.layer(d)) {
            return Ok(meta);
        }
        let tmp = self.store.tmp_path("layer");
        let result = (|| {
            let diff = tmp.join("diff");
            fs::DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .ctx("mkdir", &tmp)?;
            fs::DirBuilder::new()
                .mode(0o755)
                .create(&diff)
                .ctx("mkdir", &diff)?;
            let file = self.open_blob(blob)?;
            let unpacked = unpack::unpack(file, compression, &diff, &blob.to_string())?;
            if let Some(expected) = expected_diff_id
                && unpacked.diff_id != *expected
            {
                return Err(Error::DiffIdMismatch {
                    layer: blob.clone(),
                    expected: expected.clone(),
                    actual: unpacked.diff_id,
                });
            }
            Ok(unpacked)
        })();
        let unpacked = match result {
            Ok(u) => u,
            Err(e) => {
                let _ = remove_any(&tmp);
                return Err(e);
            }
        };
        if let Some(meta) = self.layer(&unpacked.diff_id) {
            remove_any(&tmp)?;
            return Ok(meta);
        }
        let meta = LayerMeta {
            diff_id: unpacked.diff_id,
            size: unpacked.size,
            link: String::new(),
        };
        self.layers.push(StagedLayer {
            tmp,
            meta: meta.clone(),
        });
        Ok(meta)
    }

    /// Makes everything staged visible: one `syncfs`, then renames (each atomic), then fsyncs
    /// of the directories renamed into. Returns the new layers' metadata (with their links).
    pub(crate) fn commit(mut self) -> Result<()> {
        let root = self.store.root.clone();
        let mut taken = HashSet::new();
        for layer in &mut self.layers {
            layer.meta.link = layers::choose_link(&root, &layer.meta.diff_id, &taken)?;
            taken.insert(layer.meta.link.clone());
            let path = layer.tmp.join("meta.json");
            let json = serde_json::to_vec(&layer.meta)
                .map_err(|e| crate::error::invalid("layer meta", e.to_string()))?;
            fs::write(&path, json).ctx("write", &path)?;
        }
        if !self.blobs.is_empty() || !self.layers.is_empty() {
            let tmp = root.join("tmp");
            let dir = File::open(&tmp).ctx("open", &tmp)?;
            sys::syncfs(dir.as_fd()).ctx("syncfs", &tmp)?;
        }
        for (tmp, digest) in std::mem::take(&mut self.blobs) {
            let dest = self.store.blob_path(&digest);
            fs::rename(&tmp, &dest).ctx("rename", &dest)?;
        }
        for layer in std::mem::take(&mut self.layers) {
            let link = root.join("l").join(&layer.meta.link);
            match std::os::unix::fs::symlink(layers::link_target(&layer.meta.diff_id), &link) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(e).ctx("symlink", &link),
            }
            let dest = layers::dir(&root, &layer.meta.diff_id);
            fs::rename(&layer.tmp, &dest).ctx("rename", &dest)?;
        }
        for dir in ["blobs/sha256", "layers", "l"] {
            fsync_dir(&root.join(dir))?;
        }
        Ok(())
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        for (tmp, _) in &self.blobs {
            let _ = fs::remove_file(tmp);
        }
        for layer in &self.layers {
            let _ = remove_any(&layer.tmp);
        }
    }
}
