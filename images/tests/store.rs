//! The store with the three-layer image: load, unpack, whiteouts, overlay view,
//! inspect, load twice, tag/rmi/gc, import of a rootfs tarball.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use capsa_images::rootfs::{self, InitFiles, MountMethod};
use capsa_images::{ImportOptions, Reference, Store};
use common::*;

fn xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid strings and buffer.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| buf[..len as usize].to_vec())
}

#[test]
fn three_layer_image_loads_with_whiteouts_in_overlay_form() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &three_layers(),
        "docker.io/library/three:v1",
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    let loaded = store.load(&fx.dir).unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].id, fx.config);
    assert_eq!(loaded[0].names, vec!["three:v1".to_owned()]);

    let info = store.inspect("three:v1").unwrap();
    assert_eq!(info.diff_ids, fx.diff_ids, "RootFS.Layers");
    let layer_digests: Vec<_> = info
        .layers
        .iter()
        .map(|l| l.descriptor.digest.clone())
        .collect();
    assert_eq!(layer_digests, fx.layers);
    assert_eq!(info.history.len(), 3);
    assert_eq!(store.resolve(&fx.config.hex()[..12]).unwrap(), fx.config);
    assert_eq!(
        store.resolve("docker.io/library/three:v1").unwrap(),
        fx.config
    );

    let dirs = store.layer_dirs("three:v1").unwrap();
    assert_eq!(dirs.len(), 3);
    // Layer 1 as written, setuid and hardlinks kept.
    let su = fs::metadata(dirs[0].join("bin/su")).unwrap();
    assert_eq!(su.permissions().mode() & 0o7777, 0o4755);
    assert_eq!(
        su.ino(),
        fs::metadata(dirs[0].join("bin/su2")).unwrap().ino()
    );
    assert_eq!(
        fs::read_link(dirs[0].join("bin/ls")).unwrap().to_str(),
        Some("/bin/busybox")
    );
    // Layer 2: the whiteout is a char device 0:0.
    let wh = fs::symlink_metadata(dirs[1].join("etc/group")).unwrap();
    assert_eq!(wh.mode() & libc::S_IFMT, libc::S_IFCHR);
    assert_eq!(wh.rdev(), 0);
    assert!(!dirs[1].join("etc/.wh.group").exists());
    // Layer 3: the opaque directory.
    assert_eq!(
        xattr(&dirs[2].join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    let owned = fs::metadata(dirs[2].join("data/owned")).unwrap();
    assert_eq!(
        (owned.uid(), owned.gid(), owned.mode() & 0o7777),
        (1234, 5678, 0o640)
    );
    assert_eq!(owned.mtime(), 1_700_000_000);

    // The container's view through overlayfs.
    let init = tmp.path().join("init");
    rootfs::write_init_layer(
        &init,
        &InitFiles {
            hosts: b"127.0.0.1 localhost\n",
            hostname: b"box\n",
            resolv_conf: b"nameserver 10.0.0.1\n",
        },
    )
    .unwrap();
    let (upper, work, merged) = (
        tmp.path().join("upper"),
        tmp.path().join("work"),
        tmp.path().join("merged"),
    );
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let plan = rootfs::plan(&store, "three:v1", &init, &upper, &work).unwrap();
    assert_eq!(plan.lower.len(), 4);
    rootfs::mount(&plan, &merged, MountMethod::Auto).unwrap();
    let _guard = MountGuard(merged.clone());
    let expected = [
        "bin",
        "bin/busybox",
        "bin/ls",
        "bin/sh",
        "bin/su",
        "bin/su2",
        "data",
        "data/c",
        "data/owned",
        "etc",
        "etc/hostname",
        "etc/hosts",
        "etc/motd",
        "etc/passwd",
        "etc/resolv.conf",
    ];
    assert_eq!(tree(&merged), expected);
    assert_eq!(fs::read(merged.join("etc/hostname")).unwrap(), b"box\n");
    assert_eq!(fs::read(merged.join("data/c")).unwrap(), b"c\n");
    // Copy-on-write: a write lands in the upper dir only.
    fs::write(merged.join("etc/motd"), b"changed\n").unwrap();
    assert_eq!(fs::read(dirs[1].join("etc/motd")).unwrap(), b"hello\n");
    assert_eq!(fs::read(upper.join("etc/motd")).unwrap(), b"changed\n");
    assert!(!upper.join("bin/busybox").exists());
}

#[test]
fn loading_the_same_image_twice_unpacks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = oci_layout(&tmp.path().join("layout"), &three_layers(), "twice:latest");
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&fx.dir).unwrap();
    let inodes = |store: &Store| -> Vec<u64> {
        store
            .layers()
            .unwrap()
            .iter()
            .map(|d| {
                fs::metadata(store.layer_diff_dir(d).unwrap())
                    .unwrap()
                    .ino()
            })
            .collect()
    };
    let (before, blobs) = (inodes(&store), store.blobs().unwrap());
    let again = store.load(&fx.dir).unwrap();
    assert_eq!(again[0].id, fx.config);
    assert_eq!(inodes(&store), before);
    assert_eq!(store.blobs().unwrap(), blobs);
    assert_eq!(store.records().unwrap().len(), 1);
}

#[test]
fn layers_are_shared_between_images_and_gc_keeps_what_live_images_need() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers();
    let a = oci_layout(&tmp.path().join("a"), &layers[..2], "a:1");
    let b = oci_layout(&tmp.path().join("b"), &layers, "b:1");
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&a.dir).unwrap();
    store.load(&b.dir).unwrap();
    assert_eq!(
        store.layers().unwrap().len(),
        3,
        "layers 1 and 2 are shared"
    );

    store.tag("a:1", "a:alias").unwrap();
    let r = store.remove("a:1", false).unwrap();
    assert_eq!(r.deleted, None, "a still has a name");
    let r = store.remove("a:alias", false).unwrap();
    assert_eq!(r.deleted, Some(a.config.clone()));
    assert!(
        r.gc.layers_removed.is_empty(),
        "b still needs every layer a had"
    );
    assert!(r.gc.blobs_removed.contains(&a.manifest));
    assert!(store.layer_dirs("b:1").unwrap().iter().all(|d| d.is_dir()));

    // A copy of a layer made for a user-namespace mapping goes with the layer.
    let hex = store
        .layer_dirs("b:1")
        .unwrap()
        .iter()
        .map(|d| d.parent().unwrap().file_name().unwrap().to_owned())
        .next()
        .unwrap();
    let copy = tmp.path().join("store/userns/100000.100000").join(&hex);
    std::fs::create_dir_all(copy.join("etc")).unwrap();
    store.remove("b:1", false).unwrap();
    assert!(!copy.exists(), "the mapped copy is removed with its layer");
    std::fs::remove_dir_all(tmp.path().join("store/userns")).unwrap();
    assert_store_empty(&store);
}

#[test]
fn rmi_by_id_of_an_image_with_several_names_needs_force() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = oci_layout(&tmp.path().join("l"), &three_layers()[1..2], "x:1");
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&fx.dir).unwrap();
    store.tag("x:1", "y:2").unwrap();
    let err = store.remove(&fx.config.to_string(), false).unwrap_err();
    assert!(err.to_string().contains("several names"), "{err}");
    store.remove(&fx.config.to_string(), true).unwrap();
    assert_store_empty(&store);
}

#[test]
fn a_rootfs_tarball_imports_as_a_one_layer_image_and_can_be_built_upon() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let tar = compress(
        &Layer::new()
            .dir("etc/", 0o755)
            .file("etc/os-release", b"ID=capsa\n", 0o644)
            .tar(),
        Comp::Gzip,
    );
    let options = ImportOptions {
        reference: Some(Reference::parse("imported").unwrap()),
        ..Default::default()
    };
    let id = store.import_tar(&mut &tar[..], &options).unwrap();
    let info = store.inspect("imported:latest").unwrap();
    assert_eq!(info.id, id);
    assert_eq!(info.diff_ids.len(), 1);
    assert_eq!(info.history.len(), 1);
    assert_eq!(
        fs::read(info.layers[0].path.join("etc/os-release")).unwrap(),
        b"ID=capsa\n"
    );

    // A layer on top (what commit does): a deletion as an OCI whiteout.
    let change = Layer::new()
        .dir("etc/", 0o755)
        .file("etc/.wh.os-release", b"", 0o644)
        .file("etc/new", b"n", 0o644)
        .tar();
    let options = ImportOptions {
        reference: Some(Reference::parse("derived:1").unwrap()),
        base: Some("imported".into()),
        created_by: Some("capsa commit".into()),
        ..Default::default()
    };
    store.import_tar(&mut &change[..], &options).unwrap();
    let derived = store.inspect("derived:1").unwrap();
    assert_eq!(derived.diff_ids[0], info.diff_ids[0]);
    assert_eq!(derived.layers.len(), 2);
    assert_eq!(derived.history.len(), 2);
}

#[test]
fn wasm_artifact_layers_are_kept_as_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let module = b"\0asm\x01\0\0\0";
    let layer = write_blob(&dir, module);
    let config = serde_json::json!({ "architecture": "wasm", "os": "wasip1", "layerDigests": [layer.to_string()] });
    let config = serde_json::to_vec(&config).unwrap();
    let config_digest = write_blob(&dir, &config);
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.wasm.config.v0+json", "digest": config_digest.to_string(), "size": config.len() },
        "layers": [{ "mediaType": "application/wasm", "digest": layer.to_string(), "size": module.len() }],
    });
    let manifest = serde_json::to_vec(&manifest).unwrap();
    let m = write_blob(&dir, &manifest);
    let index = serde_json::json!({ "schemaVersion": 2, "manifests": [{ "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": m.to_string(), "size": manifest.len(), "annotations": { "io.containerd.image.name": "example.com/wasm/hello:1" } }] });
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&dir).unwrap();
    let info = store.inspect("example.com/wasm/hello:1").unwrap();
    assert_eq!(info.platform(), ("wasip1".to_owned(), "wasm".to_owned()));
    assert_eq!(info.layers[0].kind, capsa_images::manifest::LayerKind::Wasm);
    assert_eq!(fs::read(&info.layers[0].path).unwrap(), module);
    assert!(store.layers().unwrap().is_empty(), "nothing unpacked");
}
