//! Wasm images compiled ahead of time: when an image is loaded (or pulled), its module is compiled
//! into the engine's wasm cache, so even the first container of it starts from the artifact.
//! The cache is the runtime's (`StateRoot::wasm_cache`), placed in the store root by
//! [`Engine::open`], so artifacts survive a reboot and the runtime finds them by the same key.

use std::path::{Component, Path, PathBuf};

use capsa_images::manifest::LayerKind;

use super::Engine;
use super::error::{IoContext, Result};
use super::spec::{self, RunOptions};

/// Where a raw wasm layer's module appears in the container (see `lifecycle`).
pub(crate) const WASM_MODULE_PATH: &str = "/module.wasm";

impl Engine {
    /// Compiles the module of the wasm image `image` into the wasm cache and returns the
    /// artifact's path; `None` for a native image, or a wasm image whose entrypoint cannot be
    /// found in its layers without following a symlink (it is then compiled at its first
    /// `create`, inside the container's rootfs, where symlinks resolve safely).
    pub fn precompile_wasm(&self, image: &str) -> Result<Option<PathBuf>> {
        let info = self.store.inspect(image)?;
        let (os, arch) = info.platform();
        let found = if let Some(layer) = info.layers.iter().find(|l| l.kind == LayerKind::Wasm) {
            let bytes = std::fs::read(&layer.path).io("read", &layer.path)?;
            Some((PathBuf::from(WASM_MODULE_PATH), bytes))
        } else if arch == "wasm" || os.starts_with("wasi") {
            let raw: serde_json::Value =
                serde_json::from_slice(&self.store.read_blob(&info.id)?).unwrap_or_default();
            let config = raw.get("config").cloned().unwrap_or_default();
            let args = spec::command_line(&config, &RunOptions::default());
            match args.first() {
                Some(program) => {
                    let layers: Vec<&Path> = info
                        .layers
                        .iter()
                        .filter(|l| l.kind != LayerKind::Wasm)
                        .map(|l| l.path.as_path())
                        .collect();
                    find_in_layers(&layers, Path::new(program))?
                        .map(|bytes| (PathBuf::from(program), bytes))
                }
                None => None,
            }
        } else {
            None
        };
        let Some((path, bytes)) = found else {
            return Ok(None);
        };
        Ok(Some(crate::wasm::precompile(
            &self.runtime.wasm_cache(),
            &path,
            bytes,
        )?))
    }
}

/// The regular file at the absolute `program` in the union of `layers` (lowest first), read
/// without following any symlink: the top-most layer that has the path decides; a whiteout
/// (character device 0:0) there means it is deleted. `None` when it is missing, relative, or
/// reached through a symlink.
fn find_in_layers(layers: &[&Path], program: &Path) -> Result<Option<Vec<u8>>> {
    use std::os::unix::fs::FileTypeExt;
    if !program.is_absolute() || program.components().any(|c| c == Component::ParentDir) {
        return Ok(None);
    }
    let relative = program.strip_prefix("/").unwrap_or(program);
    for layer in layers.iter().rev() {
        // Every directory on the way must be a real directory in this layer.
        let mut at = layer.to_path_buf();
        let mut through_symlink = false;
        for part in relative.parent().into_iter().flat_map(Path::components) {
            at.push(part);
            match std::fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => {
                    through_symlink = true;
                    break;
                }
                Err(_) => break,
            }
        }
        if through_symlink {
            return Ok(None);
        }
        let path = layer.join(relative);
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_file() => {
                return Ok(Some(std::fs::read(&path).io("read", &path)?));
            }
            // A whiteout, a symlink, a directory: this layer decides, and it is not a file.
            Ok(meta) if meta.file_type().is_char_device() || !meta.is_file() => return Ok(None),
            _ => continue,
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_most_layer_decides_and_symlinks_are_not_followed() {
        let dir = std::env::temp_dir().join(format!("capsa-engine-wasm-{}", std::process::id()));
        let (low, high) = (dir.join("low"), dir.join("high"));
        std::fs::create_dir_all(low.join("app")).expect("mkdir");
        std::fs::create_dir_all(&high).expect("mkdir");
        std::fs::write(low.join("app/m.wasm"), b"low").expect("write");
        let layers = [low.as_path(), high.as_path()];
        let found = find_in_layers(&layers, Path::new("/app/m.wasm")).expect("find");
        assert_eq!(found.as_deref(), Some(&b"low"[..]));

        // A higher layer's file wins.
        std::fs::create_dir_all(high.join("app")).expect("mkdir");
        std::fs::write(high.join("app/m.wasm"), b"high").expect("write");
        let found = find_in_layers(&layers, Path::new("/app/m.wasm")).expect("find");
        assert_eq!(found.as_deref(), Some(&b"high"[..]));

        // A symlink (here to a host file) is not followed, nor is a directory symlink.
        std::fs::remove_file(high.join("app/m.wasm")).expect("rm");
        std::os::unix::fs::symlink("/etc/hostname", high.join("app/m.wasm")).expect("symlink");
        assert_eq!(
            find_in_layers(&layers, Path::new("/app/m.wasm")).expect("find"),
            None
        );
        std::fs::remove_dir_all(high.join("app")).expect("rm");
        std::os::unix::fs::symlink("/etc", high.join("app")).expect("symlink");
        assert_eq!(
            find_in_layers(&layers, Path::new("/app/hostname")).expect("find"),
            None
        );
        assert_eq!(
            find_in_layers(&layers, Path::new("relative")).expect("find"),
            None
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
