//! Fixtures for the image store's tests, built in the test (nothing binary is committed): tar
//! layers written with the `tar` crate, OCI layouts around them, and a mount guard.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use capsa_images::Digest;
use serde_json::json;

/// How a fixture layer blob is compressed.
#[derive(Clone, Copy, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

/// A tar layer under construction. Paths are written raw into the header, so tests can make
/// entries the `tar` crate itself would refuse (`../x`, `/abs`).
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
}

fn header(kind: tar::EntryType, path: &str, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(1_700_000_000);
    h.set_uid(0);
    h.set_gid(0);
    let name = &mut h.as_old_mut().name;
    name[..path.len()].copy_from_slice(path.as_bytes());
    h.set_cksum();
    h
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            builder: tar::Builder::new(Vec::new()),
        }
    }

    pub fn dir(mut self, path: &str, mode: u32) -> Layer {
        let h = header(tar::EntryType::Directory, path, mode, 0);
        self.builder.append(&h, &[][..]).unwrap();
        self
    }

    pub fn file(mut self, path: &str, data: &[u8], mode: u32) -> Layer {
        let h = header(tar::EntryType::Regular, path, mode, data.len() as u64);
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn owned_file(mut self, path: &str, data: &[u8], mode: u32, uid: u64, gid: u64) -> Layer {
        let mut h = header(tar::EntryType::Regular, path, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    fn link(mut self, kind: tar::EntryType, path: &str, target: &str) -> Layer {
        let mut h = header(kind, path, 0o777, 0);
        let name = &mut h.as_old_mut().linkname;
        name[..target.len()].copy_from_slice(target.as_bytes());
        h.set_cksum();
        self.builder.append(&h, &[][..]).unwrap();
        self
    }

    pub fn symlink(self, path: &str, target: &str) -> Layer {
        self.link(tar::EntryType::Symlink, path, target)
    }

    pub fn hardlink(self, path: &str, target: &str) -> Layer {
        self.link(tar::EntryType::Link, path, target)
    }

    /// The uncompressed tar.
    pub fn tar(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub fn compress(tar: &[u8], comp: Comp) -> Vec<u8> {
    match comp {
        Comp::None => tar.to_vec(),
        Comp::Gzip => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(tar).unwrap();
            e.finish().unwrap()
        }
        Comp::Zstd => zstd::encode_all(tar, 1).unwrap(),
    }
}

fn media_type(comp: Comp) -> &'static str {
    match comp {
        Comp::None => "application/vnd.oci.image.layer.v1.tar",
        Comp::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
        Comp::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
    }
}

/// What a fixture layout holds.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub dir: PathBuf,
    pub manifest: Digest,
    pub config: Digest,
    pub layers: Vec<Digest>,
    pub diff_ids: Vec<Digest>,
}

pub fn write_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of_bytes(bytes);
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    fs::write(blobs.join(d.hex()), bytes).unwrap();
    d
}

/// Writes an OCI layout at `dir` for `layers` (uncompressed tars with their compression),
/// named `name` (a full reference, in containerd's annotation and ref.name).
pub fn oci_layout(dir: &Path, layers: &[(Vec<u8>, Comp)], name: &str) -> Fixture {
    fs::create_dir_all(dir).unwrap();
    let mut descriptors = Vec::new();
    let mut diff_ids = Vec::new();
    let mut digests = Vec::new();
    for (tar, comp) in layers {
        let blob = compress(tar, *comp);
        let d = write_blob(dir, &blob);
        diff_ids.push(Digest::of_bytes(tar));
        descriptors.push(
            json!({ "mediaType": media_type(*comp), "digest": d.to_string(), "size": blob.len() }),
        );
        digests.push(d);
    }
    let history: Vec<_> = layers
        .iter()
        .enumerate()
        .map(|(i, _)| json!({ "created_by": format!("layer {i}") }))
        .collect();
    let config = json!({
        "architecture": "amd64", "os": "linux",
        "config": { "Cmd": ["/bin/sh"], "Env": ["PATH=/bin"] },
        "rootfs": { "type": "layers", "diff_ids": diff_ids.iter().map(ToString::to_string).collect::<Vec<_>>() },
        "history": history,
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = write_blob(dir, &config_bytes);
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config_bytes.len() },
        "layers": descriptors,
    });
    let manifest_bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = write_blob(dir, &manifest_bytes);
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest.to_string(),
            "size": manifest_bytes.len(),
            "annotations": { "org.opencontainers.image.ref.name": name },
        }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    Fixture {
        dir: dir.to_owned(),
        manifest: manifest_digest,
        config: config_digest,
        layers: digests,
        diff_ids,
    }
}

/// The three layers of the issue's test image, from busybox-static: layer 2 adds a file and
/// deletes one of layer 1; layer 3 makes a directory opaque. Gzip, zstd and plain.
pub fn three_layers() -> Vec<(Vec<u8>, Comp)> {
    three_layers_with(Comp::Zstd)
}

/// The same with layer 2 compressed as `l2` (umoci and skopeo's docker-archive have no zstd).
pub fn three_layers_with(l2_comp: Comp) -> Vec<(Vec<u8>, Comp)> {
    let busybox = fs::read("/bin/busybox").expect("busybox-static is installed");
    let l1 = Layer::new()
        .dir("bin/", 0o755)
        .file("bin/busybox", &busybox, 0o755)
        .symlink("bin/sh", "busybox")
        .symlink("bin/ls", "/bin/busybox")
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/group", b"root:x:0:\n", 0o644)
        .dir("data/", 0o755)
        .file("data/a", b"a\n", 0o644)
        .file("data/b", b"b\n", 0o644)
        .owned_file("bin/su", b"#!/bin/sh\n", 0o4755, 0, 0)
        .hardlink("bin/su2", "bin/su")
        .tar();
    let l2 = Layer::new()
        .dir("etc/", 0o755)
        .file("etc/motd", b"hello\n", 0o644)
        .file("etc/.wh.group", b"", 0o644)
        .tar();
    let l3 = Layer::new()
        .dir("data/", 0o700)
        .file("data/.wh..wh..opq", b"", 0o644)
        .file("data/c", b"c\n", 0o600)
        .owned_file("data/owned", b"x", 0o640, 1234, 5678)
        .tar();
    vec![(l1, Comp::Gzip), (l2, l2_comp), (l3, Comp::None)]
}

/// Unmounts (lazily) when dropped, so a failing test leaves no mount behind.
pub struct MountGuard(pub PathBuf);

impl Drop for MountGuard {
    fn drop(&mut self) {
        let path = std::ffi::CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: path is NUL-terminated.
        unsafe { libc::umount2(path.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Every path below `dir`, relative, sorted.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(base).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                walk(base, &p, out);
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// Asserts the store holds nothing: no image, layer, blob, nor staged file.
pub fn assert_store_empty(store: &capsa_images::Store) {
    assert!(
        store.records().unwrap().is_empty(),
        "records: {:?}",
        store.records()
    );
    assert!(
        store.layers().unwrap().is_empty(),
        "layers: {:?}",
        store.layers()
    );
    assert!(
        store.blobs().unwrap().is_empty(),
        "blobs: {:?}",
        store.blobs()
    );
    let tmp: Vec<_> = fs::read_dir(store.root().join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "tmp: {tmp:?}");
    let links: Vec<_> = fs::read_dir(store.root().join("l")).unwrap().collect();
    assert!(links.is_empty(), "links: {links:?}");
}
