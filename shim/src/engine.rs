//! The wasmtime engine configuration, shared by the host (which precompiles with it) and the shim
//! (which loads what the host precompiled). wasmtime refuses an artifact whose tunables, wasm
//! features or target flags differ from the loading engine's, so both sides must build their
//! `Config` here and nowhere else.
//!
//! The feature set is pinned explicitly: wasmtime derives its defaults partly from its cargo
//! features (`gc`, `threads`, `component-model-async`), and cargo unifies those differently for
//! the host (built with Cranelift, in the workspace) and the release shim (built alone). Pinning
//! every flag makes the configuration independent of that unification.

use std::fmt;
#[cfg(feature = "compile")]
use std::hash::{Hash, Hasher};
use std::num::NonZeroUsize;

#[cfg(feature = "compile")]
use sha2::{Digest, Sha256};
#[cfg(feature = "compile")]
use wasmtime::Engine;
use wasmtime::{Collector, Config, WasmBacktraceDetails, WasmFeatures};

/// How many wasm frames a trap's backtrace shows.
const BACKTRACE_FRAMES: usize = 32;

/// The proposals a container gets unless its `capsa.wasm/features` annotation says otherwise:
/// WebAssembly 3.0 (which `wasmtime run` 48 also enables) plus the component model. Component
/// model async (WASI 0.3) is off: the shim speaks WASI preview 1 and preview 2 only.
pub const DEFAULT_FEATURES: WasmFeatures = WasmFeatures::WASM3.union(WasmFeatures::COMPONENT_MODEL);

/// The names accepted by `--wasm-feature NAME=on|off` (and the host's annotation), and the
/// wasmparser flag each one turns on or off.
pub const FEATURE_NAMES: &[(&str, WasmFeatures)] = &[
    ("bulk-memory", WasmFeatures::BULK_MEMORY),
    ("custom-page-sizes", WasmFeatures::CUSTOM_PAGE_SIZES),
    ("exceptions", WasmFeatures::EXCEPTIONS),
    ("extended-const", WasmFeatures::EXTENDED_CONST),
    ("function-references", WasmFeatures::FUNCTION_REFERENCES),
    ("gc", WasmFeatures::GC),
    ("memory64", WasmFeatures::MEMORY64),
    ("multi-memory", WasmFeatures::MULTI_MEMORY),
    ("multi-value", WasmFeatures::MULTI_VALUE),
    ("reference-types", WasmFeatures::REFERENCE_TYPES),
    ("relaxed-simd", WasmFeatures::RELAXED_SIMD),
    ("simd", WasmFeatures::SIMD),
    ("tail-call", WasmFeatures::TAIL_CALL),
    ("threads", WasmFeatures::THREADS),
    ("wide-arithmetic", WasmFeatures::WIDE_ARITHMETIC),
];

/// A wasm feature name or value the shim does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FeatureError {
    /// The name is not in [`FEATURE_NAMES`].
    #[error("unknown wasm feature {name:?} (known: {})", known_names())]
    UnknownName {
        /// The name as given.
        name: String,
    },
    /// `NAME=VALUE` where VALUE is not `on` or `off`, or no `=` at all.
    #[error("wasm feature {spec:?} is not NAME=on or NAME=off")]
    Malformed {
        /// The item as given.
        spec: String,
    },
}

fn known_names() -> String {
    FEATURE_NAMES
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Wasm features turned on or off on top of [`DEFAULT_FEATURES`]; valid by construction (every
/// entry names a known feature). Later settings of one name override earlier ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Features {
    toggles: Vec<(&'static str, bool)>,
}

impl Features {
    /// Turns the feature `name` on or off; an unknown name is refused, so a typo in an annotation
    /// never silently leaves a proposal at its default.
    pub fn set(&mut self, name: &str, on: bool) -> Result<&mut Self, FeatureError> {
        let (known, _) = FEATURE_NAMES
            .iter()
            .find(|(known, _)| *known == name)
            .ok_or_else(|| FeatureError::UnknownName {
                name: name.to_string(),
            })?;
        self.toggles.retain(|(n, _)| n != known);
        self.toggles.push((known, on));
        Ok(self)
    }

    /// Applies one `NAME=on` or `NAME=off` item (the shim's `--wasm-feature` argument).
    pub fn apply(&mut self, spec: &str) -> Result<&mut Self, FeatureError> {
        let malformed = || FeatureError::Malformed {
            spec: spec.to_string(),
        };
        let (name, value) = spec.split_once('=').ok_or_else(malformed)?;
        let on = match value {
            "on" => true,
            "off" => false,
            _ => return Err(malformed()),
        };
        self.set(name, on)
    }

    /// The features from `(name, on)` pairs, as the host's annotation parser produces them.
    pub fn from_pairs<S: AsRef<str>>(
        pairs: impl IntoIterator<Item = (S, bool)>,
    ) -> Result<Self, FeatureError> {
        let mut features = Self::default();
        for (name, on) in pairs {
            features.set(name.as_ref(), on)?;
        }
        Ok(features)
    }

    /// The feature set an engine configured with these toggles validates modules against.
    pub fn resolve(&self) -> WasmFeatures {
        let mut set = DEFAULT_FEATURES;
        for (name, on) in &self.toggles {
            if let Some((_, flag)) = FEATURE_NAMES.iter().find(|(n, _)| n == name) {
                set.set(*flag, *on);
            }
        }
        set
    }
}

impl fmt::Display for Features {
    /// `simd=off,threads=on`, in the order given: for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (name, on)) in self.toggles.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            write!(f, "{sep}{name}={}", if *on { "on" } else { "off" })?;
        }
        Ok(())
    }
}

/// The engine configuration for both sides: the host precompiles with it (after enabling nothing
/// else that reaches the artifact), the shim deserializes with it.
///
/// - epoch interruption: the shim's deadline and SIGTERM/SIGINT stop running wasm with it;
/// - copy-on-write memory images: instantiation maps the data segments instead of copying them;
/// - backtraces without DWARF parsing, chosen here rather than from `WASMTIME_BACKTRACE_DETAILS`,
///   so the container's environment cannot change the configuration;
/// - the feature set pinned: [`DEFAULT_FEATURES`] with `features` applied, no component model
///   concurrency, the deferred reference-counting collector.
///
/// `Engine::new` on the result fails when `features` asks for a combination wasmtime rejects
/// (for example `relaxed-simd=on` with `simd=off`).
pub fn engine_config(features: &Features) -> Config {
    let mut config = Config::new();
    config
        .epoch_interruption(true)
        .memory_init_cow(true)
        .wasm_backtrace_max_frames(NonZeroUsize::new(BACKTRACE_FRAMES))
        .wasm_backtrace_details(WasmBacktraceDetails::Disable)
        .concurrency_support(false)
        .collector(Collector::DeferredReferenceCounting)
        .wasm_features(WasmFeatures::all(), false)
        .wasm_features(features.resolve(), true);
    config
}

/// The engine's compatibility key, hex SHA-256 of `Engine::precompile_compatibility_hash`: two
/// engines have equal keys exactly when an artifact one precompiled loads in the other (wasmtime
/// version, compiler target and flags, tunables, features). The host puts it in its cache key.
///
/// wasmtime computes the hash only with a compiler, so this exists with the `compile` feature
/// (the host's); the runtime-only shim checks compatibility when it deserializes.
#[cfg(feature = "compile")]
pub fn compatibility_key(engine: &Engine) -> String {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher
        .0
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `Hasher` that feeds everything into SHA-256, so the key is stable across processes and Rust
/// versions (std's `DefaultHasher` promises neither).
#[cfg(feature = "compile")]
struct Sha256Hasher(Sha256);

#[cfg(feature = "compile")]
impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        u64::from_le_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_parse_and_resolve() {
        let mut features = Features::default();
        features
            .apply("simd=off")
            .and_then(|f| f.apply("threads=off"))
            .and_then(|f| f.apply("simd=on"))
            .expect("valid");
        assert_eq!(features.to_string(), "threads=off,simd=on");
        let set = features.resolve();
        assert!(set.contains(WasmFeatures::SIMD));
        assert!(!set.contains(WasmFeatures::THREADS));
        assert!(set.contains(WasmFeatures::GC));
    }

    #[test]
    fn unknown_or_malformed_features_are_refused() {
        let mut features = Features::default();
        let unknown = features.apply("simdd=on").expect_err("unknown name");
        assert!(unknown.to_string().contains("\"simdd\""), "{unknown}");
        assert!(unknown.to_string().contains("relaxed-simd"), "{unknown}");
        assert!(matches!(
            features.apply("simd=yes"),
            Err(FeatureError::Malformed { .. })
        ));
        assert!(matches!(
            features.apply("simd"),
            Err(FeatureError::Malformed { .. })
        ));
    }

    #[test]
    fn from_pairs_takes_the_hosts_representation() {
        let features = Features::from_pairs([("memory64".to_string(), false)]).expect("known name");
        assert!(!features.resolve().contains(WasmFeatures::MEMORY64));
    }

    #[test]
    fn the_default_configuration_builds_an_engine() {
        wasmtime::Engine::new(&engine_config(&Features::default())).expect("engine");
    }

    #[cfg(feature = "compile")]
    #[test]
    fn the_key_depends_on_the_features() {
        let default = Engine::new(&engine_config(&Features::default())).expect("engine");
        let mut no_simd = Features::default();
        no_simd.set("simd", false).expect("known");
        no_simd.set("relaxed-simd", false).expect("known");
        let other = Engine::new(&engine_config(&no_simd)).expect("engine");
        assert_eq!(compatibility_key(&default), compatibility_key(&default));
        assert_eq!(compatibility_key(&default).len(), 64);
        assert_ne!(compatibility_key(&default), compatibility_key(&other));
    }
}
