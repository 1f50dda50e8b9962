//! capsa-images: the image store, built as containerd separates it.
//!
//! - [`store`]: the content store (blobs by digest), the layer store (each tar layer unpacked
//!   once, shared by every image), image records (names → manifest), garbage collection. All
//!   writes are staged and renamed into place under a store-wide lock.
//! - [`unpack`]: the layer unpacker: decompress + hash + create entries in one pass, refusing
//!   entries that would escape, turning OCI whiteouts into overlayfs ones.
//! - importers (`Store::load`, `Store::import_tar`) and exporters (`Store::export_*`).
//! - [`rootfs`]: a container's overlay mount: layers, init layer, upper dir.
//!
//! The engine's usual calls: [`Store::open`], [`Store::load`], [`Store::list`],
//! [`Store::inspect`], [`rootfs::plan`] + [`rootfs::mount`], [`Store::remove`], [`Store::gc`].

pub mod build;
pub mod change;
pub mod commit;
pub mod digest;
pub mod error;
mod export;
pub mod idmap;
mod import;
pub mod manifest;
pub mod reference;
pub mod registry;
pub mod rootfs;
pub mod store;
mod sys;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub use import::{ImportOptions, LoadedImage};
pub use reference::Reference;
pub use store::{
    GcReport, ImageId, ImageInfo, ImageRecord, ImageSummary, LayerInfo, LayerMeta, RemoveReport,
    Store,
};
