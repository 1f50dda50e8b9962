//! Platforms (`os/architecture[/variant]`) and the choice of one manifest from an image index
//! or manifest list.

use std::fmt;

use super::error::{Error, Result};
use crate::manifest::{IndexEntry, host_architecture};

/// An image platform, as index entries and `--platform` spell it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Platform {
    /// `linux`, `wasi`, ...
    pub os: String,
    /// Go's architecture names: `amd64`, `arm64`, `wasm`.
    pub architecture: String,
    /// `v7`, `v8`, when it matters.
    pub variant: Option<String>,
}

impl Platform {
    /// Parses `os/architecture[/variant]`.
    pub fn parse(value: &str) -> Result<Platform> {
        let bad = || Error::InvalidPlatform(value.to_owned());
        let mut parts = value.split('/');
        let os = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let architecture = parts.next().filter(|s| !s.is_empty()).ok_or_else(bad)?;
        let variant = parts.next().map(str::to_owned);
        let ok = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if parts.next().is_some()
            || !ok(os)
            || !ok(architecture)
            || variant.as_deref().is_some_and(|v| v.is_empty() || !ok(v))
        {
            return Err(bad());
        }
        Ok(Platform {
            os: os.to_owned(),
            architecture: architecture.to_owned(),
            variant,
        })
    }

    /// This machine's native platform: `linux/<arch>`.
    pub fn native() -> Platform {
        Platform {
            os: "linux".to_owned(),
            architecture: host_architecture().to_owned(),
            variant: None,
        }
    }

    /// The platform of wasm images (Docker's `--platform wasi/wasm`).
    pub fn wasm() -> Platform {
        Platform {
            os: "wasi".to_owned(),
            architecture: "wasm".to_owned(),
            variant: None,
        }
    }

    fn matches(&self, entry: &IndexEntry) -> bool {
        match &entry.platform {
            Some((os, arch, variant)) => {
                *os == self.os
                    && *arch == self.architecture
                    && (self.variant.is_none() || *variant == self.variant)
            }
            None => false,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Picks an index entry: for an explicit platform, the entry for exactly it; by default the
/// native one (`linux/<arch>`), else the wasm one (`wasi/wasm`, which capsa runs anywhere).
/// Entries that are attestations (`unknown/unknown`) never match.
pub(crate) fn choose<'a>(
    entries: &'a [IndexEntry],
    wanted: Option<&Platform>,
) -> Option<&'a IndexEntry> {
    match wanted {
        Some(p) => entries.iter().find(|e| p.matches(e)),
        None => {
            let native = Platform::native();
            let wasm = Platform::wasm();
            entries
                .iter()
                .find(|e| native.matches(e))
                .or_else(|| entries.iter().find(|e| wasm.matches(e)))
        }
    }
}

/// The platforms an index lists, for an error message.
pub(crate) fn describe(entries: &[IndexEntry]) -> String {
    let list: Vec<String> = entries
        .iter()
        .map(|e| match &e.platform {
            Some((os, arch, Some(v))) => format!("{os}/{arch}/{v}"),
            Some((os, arch, None)) => format!("{os}/{arch}"),
            None => "(no platform)".to_owned(),
        })
        .collect();
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_parse_and_bad_ones_are_refused() {
        assert_eq!(Platform::parse("wasi/wasm").ok(), Some(Platform::wasm()));
        assert_eq!(
            Platform::parse("linux/arm64/v8")
                .map(|p| p.to_string())
                .ok(),
            Some("linux/arm64/v8".to_owned())
        );
        for bad in ["", "linux", "linux/", "/amd64", "a/b/c/d", "li nux/amd64"] {
            assert!(Platform::parse(bad).is_err(), "{bad}");
        }
    }
}
