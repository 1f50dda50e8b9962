//! The wasmtime engine the host compiles with. Its configuration must be the shim's, byte for byte
//! in what the compatibility hash covers, or the shim refuses the artifact: it comes from the
//! shim's library, so there is one definition for both sides.
//!
//! STUB until `capsa_shim::engine_config` lands: the same settings the shim is expected to use
//! (epoch interruption for the deadline; features from the annotation).

use std::hash::{Hash, Hasher};

use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine};

use crate::error::{Error, Result};

/// An engine that compiles for the shim, with `features` turned on or off.
pub(crate) fn compiler(features: &[(String, bool)]) -> Result<Engine> {
    let mut config = Config::new();
    config.epoch_interruption(true);
    for (name, on) in features {
        match name.as_str() {
            "simd" => config.wasm_simd(*on),
            "relaxed-simd" => config.wasm_relaxed_simd(*on),
            "multi-memory" => config.wasm_multi_memory(*on),
            "memory64" => config.wasm_memory64(*on),
            "tail-call" => config.wasm_tail_call(*on),
            other => {
                return Err(crate::error::invalid(format!(
                    "annotation capsa.wasm/features: unknown wasm feature {other:?}"
                )));
            }
        };
    }
    Engine::new(&config).map_err(|e| Error::Step {
        step: "configure the wasm engine".into(),
        message: format!("{e:#}"),
    })
}

/// The engine's compatibility key: equal for two engines exactly when an artifact compiled by one
/// loads in the other (wasmtime version, target CPU features, configuration).
pub(crate) fn compatibility_key(engine: &Engine) -> [u8; 32] {
    let mut hasher = Sha256Hasher(Sha256::new());
    engine.precompile_compatibility_hash().hash(&mut hasher);
    hasher.0.finalize().into()
}

/// A `Hasher` that feeds everything into SHA-256, so the key is stable across processes and
/// Rust versions (std's `DefaultHasher` promises neither).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        let digest = self.0.clone().finalize();
        u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
    }
}
