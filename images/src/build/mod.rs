//! `capsa build`'s image-side parts, independent of how a step runs: the Dockerfile language
//! (parser and Docker's word expansion), `.dockerignore` and COPY source patterns, the build
//! context (walking it, checksumming what a COPY copies, the layer tar it makes) and the build
//! cache. The engine (`capsa_host::engine::build`) drives them and runs `RUN` in containers.

pub mod cache;
pub mod context;
pub mod dockerfile;
pub mod glob;
pub mod ignore;
pub mod image;
pub mod words;
