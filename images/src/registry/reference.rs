//! Remote image references as Docker parses them: `name`, `name:tag`, `name@sha256:…`,
//! `host[:port]/path/name:tag`; a bare name is on Docker Hub under `library/`.

use std::fmt;

use super::error::{Error, Result};
use crate::digest::Digest;
use crate::reference::Reference;

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// The host Docker Hub's registry API is served from.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// A validated remote reference: which registry, which repository, which tag or digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl ImageRef {
    /// Parses a reference; with neither tag nor digest the tag is `latest`.
    pub fn parse(value: &str) -> Result<ImageRef> {
        let bad = |reason| Error::InvalidReference {
            value: value.to_owned(),
            reason,
        };
        let (name, digest) = match value.split_once('@') {
            Some((name, d)) => (
                name,
                Some(Digest::parse(d).map_err(|_| bad("the digest is not sha256:<64 hex>"))?),
            ),
            None => (value, None),
        };
        let (path, tag) = match name.rsplit_once(':') {
            Some((p, t)) if !t.contains('/') => (p, Some(t)),
            _ => (name, None),
        };
        let (registry, repository) = match path.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':'])
                    || first == "localhost"
                    || first.bytes().any(|b| b.is_ascii_uppercase()) =>
            {
                (first.to_owned(), rest.to_owned())
            }
            _ => (DOCKER_HUB.to_owned(), path.to_owned()),
        };
        let registry = if registry == "index.docker.io" {
            DOCKER_HUB.to_owned()
        } else {
            registry
        };
        let repository = if registry == DOCKER_HUB && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository
        };
        if !is_host(&registry) {
            return Err(bad(
                "the registry host has characters a host name cannot have",
            ));
        }
        // The store's own parser checks the path components and the tag.
        let check = format!("{registry}/{repository}:{}", tag.unwrap_or("latest"));
        Reference::parse(&check).map_err(|e| match e {
            crate::Error::InvalidReference { reason, .. } => bad(reason),
            _ => bad("malformed"),
        })?;
        let tag = match (tag, &digest) {
            (None, None) => Some("latest".to_owned()),
            (t, _) => t.map(str::to_owned),
        };
        Ok(ImageRef {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The registry as named in the reference (`docker.io`, `127.0.0.1:5000`): the key for
    /// credentials and errors.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The `host[:port]` the registry API is served from.
    pub fn api_host(&self) -> &str {
        api_host(&self.registry)
    }

    /// The repository path (`library/busybox`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, when the reference has one.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, when the reference pins one.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// What to ask the registry for: the digest when pinned, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }

    /// The name the store records the pulled image under (`busybox:latest`,
    /// `127.0.0.1:5000/x:v1`); none for a digest-only reference, as Docker does.
    pub fn store_name(&self) -> Option<Reference> {
        let tag = self.tag.as_deref()?;
        Reference::parse(&format!("{}/{}:{tag}", self.registry, self.repository)).ok()
    }

    /// The same repository with another tag or digest (for push destinations).
    pub fn with_repository(&self, repository: &str) -> ImageRef {
        ImageRef {
            repository: repository.to_owned(),
            ..self.clone()
        }
    }
}

/// Whether `s` can be a `host[:port]` (a name, an IPv4 or a bracketed IPv6 address, a port).
pub(crate) fn is_host(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
}

/// Replaces Docker Hub's API host, **for tests only**: a registry on the loopback standing in for
/// Docker Hub, so that what only Docker Hub images get (registry mirrors) can be tested offline.
/// Read once per process; never set it in production.
pub const TEST_DOCKER_HUB_API_ENV: &str = "CAPSA_TEST_DOCKER_HUB_API";

/// The host that serves a registry's API (Docker Hub's differs from its name).
pub(crate) fn api_host(registry: &str) -> &str {
    if registry == DOCKER_HUB {
        docker_hub_api()
    } else {
        registry
    }
}

/// `registry-1.docker.io`, unless [`TEST_DOCKER_HUB_API_ENV`] names a stand-in.
fn docker_hub_api() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::env::var(TEST_DOCKER_HUB_API_ENV)
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| DOCKER_HUB_API.to_owned())
    })
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<ImageRef> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r = ImageRef::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        (
            r.registry().to_owned(),
            r.repository().to_owned(),
            r.tag().map(str::to_owned),
            r.digest().map(ToString::to_string),
        )
    }

    #[test]
    fn references_parse_as_docker_parses_them() {
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            parts("busybox"),
            (
                "docker.io".into(),
                "library/busybox".into(),
                Some("latest".into()),
                None
            )
        );
        assert_eq!(
            parts("user/app:1.0"),
            (
                "docker.io".into(),
                "user/app".into(),
                Some("1.0".into()),
                None
            )
        );
        assert_eq!(
            parts(&format!("busybox@{d}")),
            (
                "docker.io".into(),
                "library/busybox".into(),
                None,
                Some(d.clone())
            )
        );
        assert_eq!(
            parts("localhost:5000/a/b:v1"),
            (
                "localhost:5000".into(),
                "a/b".into(),
                Some("v1".into()),
                None
            )
        );
        assert_eq!(
            parts(&format!("quay.io/x/y:t@{d}")),
            ("quay.io".into(), "x/y".into(), Some("t".into()), Some(d))
        );
        assert_eq!(
            ImageRef::parse("busybox")
                .ok()
                .and_then(|r| r.store_name())
                .map(|n| n.to_string()),
            Some("busybox:latest".to_owned())
        );
        assert_eq!(
            ImageRef::parse("busybox")
                .map(|r| r.api_host().to_owned())
                .ok(),
            Some("registry-1.docker.io".into())
        );
    }

    #[test]
    fn malformed_references_are_refused() {
        for bad in [
            "",
            "Upper",
            "a:",
            "a@sha256:00",
            "../x",
            "a//b",
            "host:5000/",
            "a b",
        ] {
            assert!(ImageRef::parse(bad).is_err(), "{bad}");
        }
    }
}
