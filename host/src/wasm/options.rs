//! The `capsa.wasm/*` annotations of config.json, parsed and checked once at `create`: a bad
//! value fails the create with the annotation's name, before anything exists.
//!
//! | annotation | value | shim option |
//! | --- | --- | --- |
//! | `capsa.wasm/deadline-ms` | wall-clock milliseconds, > 0 | `--deadline-ms MS` |
//! | `capsa.wasm/features` | `name=on\|off`, comma-separated | `--wasm-feature name=on\|off` each |
//! | `capsa.wasm/network` | `inherit` or `none` (default) | `--inherit-network` |

use std::collections::HashMap;

use crate::error::{Result, invalid};

/// The deadline annotation: the module is stopped (exit 124) after this many milliseconds.
pub const DEADLINE_MS: &str = "capsa.wasm/deadline-ms";
/// The wasm features annotation: proposals turned on or off in the engine (and the cache key).
pub const FEATURES: &str = "capsa.wasm/features";
/// The network annotation: `inherit` lets the module use the container's network namespace
/// through WASI sockets; without it the module has no sockets.
pub const NETWORK: &str = "capsa.wasm/network";

/// What the annotations ask of the shim, valid by construction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WasmOptions {
    /// The wall-clock deadline in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Wasm features by name, each on or off, sorted by name and without duplicates (so the
    /// cache key does not depend on how the annotation was written).
    pub features: Vec<(String, bool)>,
    /// Whether the module may use the container's network.
    pub inherit_network: bool,
}

impl WasmOptions {
    /// Parses the `capsa.wasm/*` annotations; an unknown `capsa.wasm/` key is refused so a typo
    /// is not silently ignored.
    pub fn from_annotations(annotations: &HashMap<String, String>) -> Result<Self> {
        let mut options = Self::default();
        for (key, value) in annotations {
            match key.as_str() {
                DEADLINE_MS => {
                    options.deadline_ms = match value.trim().parse::<u64>() {
                        Ok(ms) if ms > 0 => Some(ms),
                        _ => {
                            return Err(invalid(format!(
                                "annotation {DEADLINE_MS}={value:?}: expected a number of milliseconds above 0"
                            )));
                        }
                    }
                }
                FEATURES => options.features = parse_features(value)?,
                NETWORK => {
                    options.inherit_network = match value.trim() {
                        "inherit" => true,
                        "none" | "" => false,
                        _ => {
                            return Err(invalid(format!(
                                "annotation {NETWORK}={value:?}: expected \"inherit\" or \"none\""
                            )));
                        }
                    }
                }
                other if other.starts_with("capsa.wasm/") => {
                    return Err(invalid(format!(
                        "unknown annotation {other:?} (known: {DEADLINE_MS}, {FEATURES}, {NETWORK})"
                    )));
                }
                _ => {}
            }
        }
        Ok(options)
    }
}

/// `simd=on,threads=off` → `[("simd", true), ("threads", false)]`, sorted; the last value given
/// for a name wins.
fn parse_features(value: &str) -> Result<Vec<(String, bool)>> {
    let mut features: Vec<(String, bool)> = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let bad = || {
            invalid(format!(
                "annotation {FEATURES}: {item:?} is not NAME=on or NAME=off"
            ))
        };
        let (name, state) = item.split_once('=').ok_or_else(bad)?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(bad());
        }
        let on = match state.trim() {
            "on" => true,
            "off" => false,
            _ => return Err(bad()),
        };
        features.retain(|(n, _)| n != name);
        features.push((name.to_string(), on));
    }
    features.sort();
    Ok(features)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> Result<WasmOptions> {
        WasmOptions::from_annotations(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn no_annotations_mean_no_options() {
        assert_eq!(parse(&[("other", "x")]).ok(), Some(WasmOptions::default()));
    }

    #[test]
    fn annotations_become_options() {
        let options = parse(&[
            (DEADLINE_MS, "1500"),
            (FEATURES, "threads=off, simd=on,threads=on"),
            (NETWORK, "inherit"),
        ])
        .expect("valid");
        assert_eq!(options.deadline_ms, Some(1500));
        assert_eq!(
            options.features,
            vec![("simd".to_string(), true), ("threads".to_string(), true)]
        );
        assert!(options.inherit_network);
    }

    #[test]
    fn bad_values_and_unknown_keys_are_refused_by_name() {
        for (key, value) in [
            (DEADLINE_MS, "0"),
            (DEADLINE_MS, "soon"),
            (FEATURES, "simd"),
            (FEATURES, "simd=yes"),
            (FEATURES, "SIMD=on"),
            (NETWORK, "host"),
            ("capsa.wasm/deadline", "10"),
        ] {
            let error = parse(&[(key, value)]).expect_err(value).to_string();
            assert!(error.contains("capsa.wasm/"), "{key}={value}: {error}");
        }
    }
}
