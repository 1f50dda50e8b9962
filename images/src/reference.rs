//! Image names (`repository:tag`), parsed once and normalised to Docker's familiar form, so that
//! `busybox`, `busybox:latest` and `docker.io/library/busybox:latest` name one image.

use std::fmt;

use crate::error::{Error, Result};

/// A validated `repository:tag`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reference {
    repository: String,
    tag: String,
}

impl Reference {
    /// Parses `repository[:tag]` (the tag defaults to `latest`). Digest references
    /// (`name@sha256:…`) are not names and are refused here.
    pub fn parse(value: &str) -> Result<Reference> {
        let bad = |reason| Error::InvalidReference {
            value: value.to_owned(),
            reason,
        };
        if value.contains('@') {
            return Err(bad("digest references are not image names"));
        }
        let (repository, tag) = match value.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, tag),
            _ => (value, "latest"),
        };
        if tag.is_empty()
            || tag.len() > 128
            || tag.starts_with(['.', '-'])
            || !tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
        {
            return Err(bad(
                "a tag is up to 128 of [A-Za-z0-9_.-], not starting with '.' or '-'",
            ));
        }
        if repository.is_empty() || repository.len() > 255 {
            return Err(bad("empty or too long repository"));
        }
        let mut parts = repository.split('/').peekable();
        let mut first = true;
        while let Some(part) = parts.next() {
            let is_domain = first
                && parts.peek().is_some()
                && (part.contains(['.', ':']) || part == "localhost");
            let ok = if is_domain {
                part.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric())
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
            } else {
                !part.is_empty()
                    && part.bytes().all(|b| {
                        b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b)
                    })
                    && part
                        .bytes()
                        .next()
                        .is_some_and(|b| b.is_ascii_alphanumeric())
            };
            if !ok {
                return Err(bad("repository path components are lowercase [a-z0-9._-]"));
            }
            first = false;
        }
        let familiar = repository
            .strip_prefix("docker.io/library/")
            .or_else(|| repository.strip_prefix("index.docker.io/library/"))
            .or_else(|| repository.strip_prefix("docker.io/"))
            .or_else(|| repository.strip_prefix("index.docker.io/"))
            .unwrap_or(repository);
        Ok(Reference {
            repository: familiar.to_owned(),
            tag: tag.to_owned(),
        })
    }

    /// The repository in familiar form (`busybox`, `quay.io/x/y`).
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag.
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// The fully qualified name (`docker.io/library/busybox:latest`), as podman and containerd
    /// write it into archives.
    pub fn qualified(&self) -> String {
        let first = self.repository.split('/').next().unwrap_or("");
        let has_domain =
            self.repository.contains('/') && (first.contains(['.', ':']) || first == "localhost");
        if has_domain {
            self.to_string()
        } else if self.repository.contains('/') {
            format!("docker.io/{self}")
        } else {
            format!("docker.io/library/{self}")
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_names_normalise_to_the_familiar_form() {
        let a = Reference::parse("busybox").ok();
        assert_eq!(a, Reference::parse("docker.io/library/busybox:latest").ok());
        assert_eq!(
            a.map(|r| r.qualified()),
            Some("docker.io/library/busybox:latest".to_owned())
        );
        let r = Reference::parse("localhost:5000/a/b:v1").ok();
        assert_eq!(
            r.map(|r| r.to_string()),
            Some("localhost:5000/a/b:v1".to_owned())
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in ["", "Upper", "a:", "a@sha256:00", "../x", "a//b", "a:-x"] {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }
}
