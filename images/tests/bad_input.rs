//! Hostile and broken inputs are refused with an error naming what is wrong, nothing is written
//! outside the store, and nothing is left that a later load would take as a layer or image.

mod common;

use std::fs;
use std::path::Path;

use capsa_images::{Error, Store};
use common::*;

/// Loads a one-layer layout made of `tar`; returns the error text after checking the store is
/// empty.
fn refused(tmp: &Path, tar: Vec<u8>) -> (Error, Store) {
    let fx = oci_layout(&tmp.join("layout"), &[(tar, Comp::Gzip)], "bad:1");
    let store = Store::open(tmp.join("store")).unwrap();
    let err = store.load(&fx.dir).expect_err("load must fail");
    assert_store_empty(&store);
    (err, store)
}

#[test]
fn dotdot_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (err, _) = refused(
        tmp.path(),
        Layer::new().file("a/../../../escaped", b"x", 0o644).tar(),
    );
    assert!(
        matches!(&err, Error::UnsafeEntry { entry, .. } if entry == "a/../../../escaped"),
        "{err}"
    );
    assert!(err.to_string().contains("'..'"), "{err}");
    assert!(!tmp.path().join("escaped").exists());
}

#[test]
fn absolute_entry_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let target = tmp.path().join("abs-target");
    let path = target.to_str().unwrap().to_owned();
    let (err, _) = refused(tmp.path(), Layer::new().file(&path, b"x", 0o644).tar());
    assert!(err.to_string().contains("absolute path"), "{err}");
    assert!(!target.exists());
}

#[test]
fn file_written_through_a_symlink_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let tar = Layer::new()
        .symlink("evil", outside.to_str().unwrap())
        .file("evil/pwned", b"x", 0o644)
        .tar();
    let (err, _) = refused(tmp.path(), tar);
    assert!(
        matches!(&err, Error::UnsafeEntry { entry, .. } if entry == "evil/pwned"),
        "{err}"
    );
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(
        fs::read_dir(&outside).unwrap().next().is_none(),
        "nothing written outside"
    );

    // The same through a relative symlink and a deeper path.
    let tmp = tempfile::tempdir().unwrap();
    let tar = Layer::new()
        .symlink("up", "../../../../../../../../tmp")
        .file("up/x/y", b"x", 0o644)
        .tar();
    let (err, _) = refused(tmp.path(), tar);
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[test]
fn hardlink_to_a_host_file_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let (err, _) = refused(
        tmp.path(),
        Layer::new().hardlink("passwd", "/etc/passwd").tar(),
    );
    assert!(
        err.to_string().contains("hardlink target: absolute path"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let (err, _) = refused(
        tmp.path(),
        Layer::new()
            .hardlink("passwd", "../../../../../../etc/passwd")
            .tar(),
    );
    assert!(err.to_string().contains("'..'"), "{err}");
    let tmp = tempfile::tempdir().unwrap();
    let (err, _) = refused(
        tmp.path(),
        Layer::new().hardlink("passwd", "etc/passwd").tar(),
    );
    assert!(err.to_string().contains("not in this layer"), "{err}");
    // Through a symlink the layer planted.
    let tmp = tempfile::tempdir().unwrap();
    let (err, _) = refused(
        tmp.path(),
        Layer::new()
            .symlink("etc", "/etc")
            .hardlink("passwd", "etc/passwd")
            .tar(),
    );
    assert!(err.to_string().contains("symlink"), "{err}");
}

#[test]
fn blob_digest_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &[(Layer::new().file("a", b"a", 0o644).tar(), Comp::None)],
        "bad:1",
    );
    let blob = fx.dir.join("blobs/sha256").join(fx.layers[0].hex());
    let mut bytes = fs::read(&blob).unwrap();
    bytes[600] ^= 1;
    fs::write(&blob, bytes).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = store.load(&fx.dir).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, .. } if *expected == fx.layers[0]),
        "{err}"
    );
    assert_store_empty(&store);
}

#[test]
fn diff_id_mismatch_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let good = oci_layout(
        &dir,
        &[(Layer::new().file("a", b"a", 0o644).tar(), Comp::Gzip)],
        "bad:1",
    );
    // Same layer blob, a config that claims another diff_id.
    let other = oci_layout(
        &tmp.path().join("other"),
        &[(Layer::new().file("b", b"b", 0o644).tar(), Comp::Gzip)],
        "x:1",
    );
    let config = fs::read(other.dir.join("blobs/sha256").join(other.config.hex())).unwrap();
    let config = String::from_utf8(config).unwrap();
    assert!(config.contains(&other.diff_ids[0].to_string()));
    let manifest = fs::read_to_string(dir.join("blobs/sha256").join(good.manifest.hex())).unwrap();
    let new_config = write_blob(&dir, config.as_bytes());
    let manifest = manifest.replace(&good.config.to_string(), &new_config.to_string());
    let manifest = manifest.replace(
        &format!(
            "\"size\":{}",
            fs::metadata(dir.join("blobs/sha256").join(good.config.hex()))
                .unwrap()
                .len()
        ),
        &format!("\"size\":{}", config.len()),
    );
    let new_manifest = write_blob(&dir, manifest.as_bytes());
    let index = fs::read_to_string(dir.join("index.json"))
        .unwrap()
        .replace(&good.manifest.to_string(), &new_manifest.to_string());
    let index = index.replace(
        &format!(
            "\"size\":{}",
            fs::metadata(dir.join("blobs/sha256").join(good.manifest.hex()))
                .unwrap()
                .len()
        ),
        &format!("\"size\":{}", manifest.len()),
    );
    fs::write(dir.join("index.json"), index).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = store.load(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::DiffIdMismatch { expected, .. } if *expected == other.diff_ids[0]),
        "{err}"
    );
    assert_store_empty(&store);
}

#[test]
fn truncated_gzip_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    let busybox = fs::read("/bin/busybox").unwrap();
    let fx = oci_layout(
        &dir,
        &[(
            Layer::new().file("busybox", &busybox, 0o755).tar(),
            Comp::Gzip,
        )],
        "bad:1",
    );
    // Truncate the blob and rewrite the layout so that its digest and size are right.
    let blob = fs::read(dir.join("blobs/sha256").join(fx.layers[0].hex())).unwrap();
    let truncated = &blob[..blob.len() / 2];
    let new = write_blob(&dir, truncated);
    let m = fs::read_to_string(dir.join("blobs/sha256").join(fx.manifest.hex())).unwrap();
    let m = m
        .replace(&fx.layers[0].to_string(), &new.to_string())
        .replace(
            &format!("\"size\":{}", blob.len()),
            &format!("\"size\":{}", truncated.len()),
        );
    let new_m = write_blob(&dir, m.as_bytes());
    let old_len = fs::metadata(dir.join("blobs/sha256").join(fx.manifest.hex()))
        .unwrap()
        .len();
    let index = fs::read_to_string(dir.join("index.json")).unwrap();
    let index = index
        .replace(&fx.manifest.to_string(), &new_m.to_string())
        .replace(
            &format!("\"size\":{old_len}"),
            &format!("\"size\":{}", m.len()),
        );
    fs::write(dir.join("index.json"), index).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = store.load(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::LayerStream { what: "gzip", .. }),
        "{err}"
    );
    assert_store_empty(&store);
}

#[test]
fn manifest_naming_a_missing_blob_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = three_layers();
    let fx = oci_layout(&tmp.path().join("layout"), &layers, "bad:1");
    fs::remove_file(fx.dir.join("blobs/sha256").join(fx.layers[2].hex())).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = store.load(&fx.dir).unwrap_err();
    assert!(
        matches!(&err, Error::MissingBlob { digest, .. } if *digest == fx.layers[2]),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains(&format!("manifest {}", fx.manifest)),
        "{err}"
    );
    // Layers 1 and 2 were fine, but they stay staged: nothing of the failed load remains.
    assert_store_empty(&store);
}

#[test]
fn overlay_xattrs_in_a_layer_are_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    b.append_pax_extensions([
        ("SCHILY.xattr.trusted.overlay.redirect", &b"/etc"[..]),
        ("SCHILY.xattr.user.kept", &b"1"[..]),
    ])
    .unwrap();
    b.append_data(&mut h, "d", &[][..]).unwrap();
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &[(b.into_inner().unwrap(), Comp::None)],
        "x:1",
    );
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&fx.dir).unwrap();
    let d = store.layer_dirs("x:1").unwrap()[0].join("d");
    let p = std::ffi::CString::new(d.as_os_str().as_encoded_bytes()).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid string and buffer.
    let n = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    let names = String::from_utf8_lossy(&buf[..n.max(0) as usize]).into_owned();
    assert!(names.contains("user.kept"), "{names:?}");
    assert!(!names.contains("trusted.overlay"), "{names:?}");
}
