//! The registry client's error type. Every variant names the registry and, where there is one,
//! the repository and the digest, so that a failed `capsa pull` says which server, which image
//! and which blob went wrong.

use std::io;
use std::path::PathBuf;

use crate::digest::Digest;

/// Why a pull, push or login failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference that is not `[host[:port]/]path[:tag][@sha256:…]`.
    #[error("invalid image reference {value:?}: {reason}")]
    InvalidReference {
        /// The reference as given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A platform that is not `os/architecture[/variant]`.
    #[error(
        "invalid platform {0:?}: expected os/architecture[/variant], e.g. linux/amd64 or wasi/wasm"
    )]
    InvalidPlatform(String),
    /// The registry could not be reached at all (DNS, refused connection, TLS handshake).
    #[error("registry {registry}: cannot connect: {source}")]
    Unreachable {
        /// `host[:port]`.
        registry: String,
        /// What the HTTP client reported.
        #[source]
        source: Box<ureq::Error>,
    },
    /// A request failed after the connection was made (the registry went away mid-transfer, a
    /// timeout, a broken response).
    #[error("registry {registry}: {repository}: {what}: {source}")]
    Transport {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// What was being fetched or sent (`blob sha256:…`, `manifest v1`).
        what: String,
        /// What the HTTP client reported.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry wants credentials that were not given, or refused the ones given.
    #[error(
        "registry {registry}: {repository}: authentication required ({detail}); run `capsa login {registry}`"
    )]
    Unauthorized {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// What the registry or its token server said.
        detail: String,
    },
    /// `login` was refused: wrong user name or password.
    #[error("registry {registry}: login refused for user {username:?}: {detail}")]
    LoginRefused {
        /// `host[:port]`.
        registry: String,
        /// The user name tried.
        username: String,
        /// What the registry or its token server said.
        detail: String,
    },
    /// The registry has no such manifest or blob.
    #[error("registry {registry}: {repository}: {what} not found")]
    NotFound {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// `manifest v1`, `blob sha256:…`.
        what: String,
    },
    /// Any other unexpected HTTP status.
    #[error("registry {registry}: {repository}: {what}: HTTP {status}: {detail}")]
    Status {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// What was being fetched or sent.
        what: String,
        /// The status code.
        status: u16,
        /// The registry's error message (its `errors` JSON), or the start of the body.
        detail: String,
    },
    /// A blob or manifest whose bytes hash to something else than the digest that names it.
    /// Nothing of it is stored.
    #[error("registry {registry}: {repository}: {what} {expected}: content hashes to {actual}")]
    DigestMismatch {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// `blob`, `manifest`, `config`.
        what: &'static str,
        /// The digest that named the content.
        expected: Digest,
        /// What the bytes hash to.
        actual: Digest,
    },
    /// A blob whose length differs from its descriptor's size. Nothing of it is stored.
    #[error(
        "registry {registry}: {repository}: blob {digest}: the registry sent {actual} bytes, the descriptor says {expected}"
    )]
    SizeMismatch {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// The blob.
        digest: Digest,
        /// The descriptor's size.
        expected: u64,
        /// What arrived (so far).
        actual: u64,
    },
    /// A manifest, index or config larger than the sane bound (a hostile or broken registry).
    #[error("registry {registry}: {repository}: {what} is larger than {limit} bytes")]
    TooLarge {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// `manifest v1`, `config sha256:…`.
        what: String,
        /// The bound.
        limit: u64,
    },
    /// A manifest, index or config that does not parse, or that capsa cannot use.
    #[error("registry {registry}: {repository}: {what}: {reason}")]
    Invalid {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// What was being read.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// An index with no manifest for the wanted platform.
    #[error(
        "registry {registry}: {repository}: no manifest for platform {platform} in index {index} (it has: {available})"
    )]
    NoMatchingPlatform {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// The platform wanted.
        platform: String,
        /// The index's digest.
        index: Digest,
        /// The platforms the index lists.
        available: String,
    },
    /// The image store refused something (a layer that does not unpack, a diff_id mismatch,
    /// a disk error); `context` says which image and blob.
    #[error("registry {registry}: {repository}: {context}: {source}")]
    Store {
        /// `host[:port]`.
        registry: String,
        /// The repository path.
        repository: String,
        /// The step and blob (`unpacking layer sha256:…`).
        context: String,
        /// The store's error.
        #[source]
        source: Box<crate::Error>,
    },
    /// A store operation outside any one registry (the image to push is unknown, ...).
    #[error(transparent)]
    Local(Box<crate::Error>),
    /// The credentials file cannot be read or written.
    #[error("credentials file {path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A credential helper (`docker-credential-NAME`) failed or answered something unreadable.
    #[error("credential helper docker-credential-{helper}: {action} for {server}: {reason}")]
    CredentialHelper {
        /// The helper's name (`pass`, `secretservice`, …).
        helper: String,
        /// `get`, `store` or `erase`.
        action: &'static str,
        /// The server the credentials are for.
        server: String,
        /// What went wrong (the helper's own message when it gave one).
        reason: String,
    },
    /// A registry mirror that is not an `http(s)://host[:port]` URL.
    #[error("invalid registry mirror {value:?}: {reason}")]
    InvalidMirror {
        /// The mirror as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A filesystem call on a registry-owned file (a partial download) failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// The call.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl Error {
    /// Whether the failure is this machine's (the store, a local file, the input) rather than the
    /// source's: a pull from a mirror falls back to the next source only on the source's failures.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            Error::InvalidReference { .. }
                | Error::InvalidPlatform(_)
                | Error::InvalidMirror { .. }
                | Error::Store { .. }
                | Error::Local(_)
                | Error::Credentials { .. }
                | Error::CredentialHelper { .. }
                | Error::Io { .. }
        )
    }
}

impl From<crate::Error> for Error {
    fn from(e: crate::Error) -> Error {
        Error::Local(Box::new(e))
    }
}

/// The registry client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
