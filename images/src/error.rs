//! The crate's one error type. Every variant names what failed: the digest, the tar entry, the
//! path or the media type, so that a user reading `capsa load`'s message knows which input is bad.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Why an image store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem call failed; `op` names the call, `path` what it acted on.
    #[error("{op} {path}: {source}")]
    Io {
        /// The operation (`open`, `rename`, `mknodat`, ...).
        op: &'static str,
        /// The path it acted on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A string that should be a `sha256:<64 hex>` digest is not.
    #[error("invalid digest {value:?}: {reason}")]
    InvalidDigest {
        /// The string as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Content hashed to something other than the digest that named it.
    #[error("digest mismatch: content named {expected} hashes to {actual}")]
    DigestMismatch {
        /// The digest the manifest (or file name) promised.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// Content had another size than its descriptor says.
    #[error("size mismatch for {digest}: descriptor says {expected} bytes, content has {actual}")]
    SizeMismatch {
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// The content's size.
        actual: u64,
    },
    /// A layer's uncompressed stream does not hash to the config's diff_id.
    #[error(
        "layer {layer}: uncompressed content hashes to {actual}, the config's diff_id is {expected}"
    )]
    DiffIdMismatch {
        /// The layer blob.
        layer: Digest,
        /// The config's rootfs.diff_ids entry.
        expected: Digest,
        /// What the uncompressed tar stream hashes to.
        actual: Digest,
    },
    /// A blob that a manifest or index names is not in the input.
    #[error("{source_name}: blob {digest} named by {named_by} is missing")]
    MissingBlob {
        /// The input being loaded (a path).
        source_name: String,
        /// The missing blob.
        digest: Digest,
        /// What names it (`manifest sha256:…`, `index.json`, ...).
        named_by: String,
    },
    /// A blob the store should hold is not there.
    #[error("blob {0} is not in the store")]
    BlobNotInStore(Digest),
    /// A media type capsa does not handle in this position.
    #[error("unsupported media type {media_type:?} for {what}")]
    UnsupportedMediaType {
        /// The media type as written.
        media_type: String,
        /// Where it appeared (`layer`, `manifest`, `config`).
        what: &'static str,
    },
    /// A tar entry that would escape the layer or break the store's rules; refused whole.
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    UnsafeEntry {
        /// The layer being unpacked.
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// Why it is refused.
        reason: String,
    },
    /// Creating one tar entry failed at the OS level.
    #[error("layer {layer}: entry {entry:?}: {op}: {source}")]
    Entry {
        /// The layer being unpacked.
        layer: String,
        /// The entry's path as written in the tar.
        entry: String,
        /// The syscall.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The layer stream could not be read: bad compression (a truncated gzip), bad tar.
    #[error("layer {layer}: reading the {what} stream: {cause}")]
    LayerStream {
        /// The layer being unpacked.
        layer: String,
        /// `gzip`, `zstd` or `tar`.
        what: &'static str,
        /// The decoder's error (in the message, not a `source`, so `{:#}` says it once).
        cause: io::Error,
    },
    /// A manifest, index, config or archive metadata file that does not parse or is inconsistent.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was being read (`manifest sha256:…`, `manifest.json in X`).
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// No image matches a name or id.
    #[error("No such image: {0}")]
    ImageNotFound(String),
    /// An id prefix matches several images.
    #[error("image id prefix {0:?} matches more than one image")]
    AmbiguousId(String),
    /// A name that is not a valid `repository[:tag]`.
    #[error("invalid image reference {value:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An operation that needs `force` (an id with several names).
    #[error("{0}")]
    Conflict(String),
    /// Mounting the overlay failed.
    #[error("mount overlay on {target}: {step}: {source}")]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The failing step (`fsopen`, `fsconfig lowerdir+ <path>`, `mount`).
        step: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attaches the operation and the path to an `io::Error`, as every filesystem call here must.
pub(crate) trait IoContext<T> {
    /// Wraps the error in [`Error::Io`].
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn ctx(self, op: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|source| Error::Io {
            op,
            path: path.into(),
            source,
        })
    }
}

/// An [`Error::Invalid`] for `what`.
pub(crate) fn invalid(what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: what.into(),
        reason: reason.into(),
    }
}

/// A tar reader's error in one line that never quotes the input: tar-rs puts the bytes of a bad
/// header in its message (`… when getting cksum for root:x:0:0:…`), which for a file that is not
/// a tar at all prints the file. Other errors pass through.
pub(crate) fn tar_error(e: io::Error) -> io::Error {
    let text = e.to_string();
    if text.contains("failed to read entire block") {
        return io::Error::new(
            e.kind(),
            "not a tar archive, or a damaged one: it ends inside a 512-byte block",
        );
    }
    let Some((_, rest)) = text.split_once(" when getting ") else {
        return e;
    };
    let field = rest.split(" for ").next().unwrap_or("a field");
    io::Error::new(
        e.kind(),
        format!("not a tar archive, or a damaged one: an entry header's {field} field is invalid"),
    )
}

#[cfg(test)]
mod tar_error_tests {
    use super::*;

    #[test]
    fn header_bytes_are_not_quoted() {
        let raw = io::Error::other(
            "numeric field was not a number: login\nsy when getting cksum for root:x:0:0:root:/root",
        );
        let text = tar_error(raw).to_string();
        assert_eq!(
            text,
            "not a tar archive, or a damaged one: an entry header's cksum field is invalid"
        );
        let other = tar_error(io::Error::other("unexpected EOF")).to_string();
        assert_eq!(other, "unexpected EOF");
    }
}
