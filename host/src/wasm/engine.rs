//! The wasmtime engine the host compiles with. Its configuration must be the shim's in everything
//! the compatibility hash covers, or the shim refuses the artifact, so both come from the shim's
//! library (`capsa_shim::engine_config`): one definition for both sides.

use wasmtime::Engine;

use crate::error::{Error, Result, invalid};

/// An engine that compiles for the shim, with `features` turned on or off (names as in the
/// `capsa.wasm/features` annotation; the shim's library knows which exist).
pub(crate) fn compiler(features: &[(String, bool)]) -> Result<Engine> {
    let features = capsa_shim::Features::from_pairs(features.iter().map(|(n, on)| (n, *on)))
        .map_err(|e| invalid(format!("annotation capsa.wasm/features: {e}")))?;
    Engine::new(&capsa_shim::engine_config(&features)).map_err(|e| Error::Step {
        step: "configure the wasm engine".into(),
        message: format!("{e:#}"),
    })
}

/// The engine's compatibility key: equal for two engines exactly when an artifact compiled by one
/// loads in the other (wasmtime version, target CPU features, configuration).
pub(crate) fn compatibility_key(engine: &Engine) -> String {
    capsa_shim::compatibility_key(engine)
}
