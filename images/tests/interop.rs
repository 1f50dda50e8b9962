//! Interop with the peers' tools: what skopeo and podman write loads; what capsa exports,
//! umoci unpacks and skopeo inspects. A tool that is not installed skips its part, and says so.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;

use capsa_images::Store;
use common::*;

fn have(tool: &str) -> bool {
    let found = Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("skipping the {tool} part: {tool} is not installed");
    }
    found
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The image, loaded into a fresh store.
fn loaded(tmp: &Path) -> (Store, Fixture) {
    let fx = oci_layout(
        &tmp.join("layout"),
        &three_layers_with(Comp::Gzip),
        "interop:v1",
    );
    let store = Store::open(tmp.join("store")).unwrap();
    store.load(&fx.dir).unwrap();
    (store, fx)
}

#[test]
fn exported_oci_layout_is_read_by_umoci_and_skopeo() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, fx) = loaded(tmp.path());
    let out = tmp.path().join("export");
    store.export_oci_layout(&["interop:v1"], &out).unwrap();
    if have("skopeo") {
        let json = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci:{}:v1", out.display())));
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["Layers"].as_array().map(Vec::len), Some(3), "{json}");
        let archive = tmp.path().join("export.tar");
        store
            .export_oci_archive(&["interop:v1"], &mut fs::File::create(&archive).unwrap())
            .unwrap();
        run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}:v1", archive.display())));
        let docker = tmp.path().join("docker.tar");
        store
            .export_docker_archive(&["interop:v1"], &mut fs::File::create(&docker).unwrap())
            .unwrap();
        let json = run(Command::new("skopeo")
            .arg("inspect")
            .arg(format!("docker-archive:{}", docker.display())));
        assert!(json.contains(&fx.diff_ids[0].to_string()), "{json}");
        // And back: both archives load into a fresh store as the same image.
        for file in [&archive, &docker] {
            let again = Store::open(tmp.path().join(format!(
                "again-{}",
                file.file_name().unwrap().to_string_lossy()
            )))
            .unwrap();
            let loaded = again.load(file).unwrap();
            assert_eq!(loaded[0].id, fx.config);
            assert_eq!(loaded[0].names, vec!["interop:v1".to_owned()]);
        }
    }
    if have("umoci") {
        let bundle = tmp.path().join("bundle");
        run(Command::new("umoci")
            .arg("unpack")
            .arg("--image")
            .arg(format!("{}:v1", out.display()))
            .arg(&bundle));
        let rootfs = bundle.join("rootfs");
        assert!(rootfs.join("etc/motd").exists());
        assert!(!rootfs.join("etc/group").exists(), "whiteout applied");
        assert!(!rootfs.join("data/a").exists(), "opaque dir applied");
        assert_eq!(fs::read(rootfs.join("data/c")).unwrap(), b"c\n");
    }
}

#[test]
fn skopeo_docker_archive_and_oci_archive_load() {
    if !have("skopeo") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &three_layers_with(Comp::Gzip),
        "interop:v1",
    );
    let src = format!("oci:{}:interop:v1", fx.dir.display());
    let docker = tmp.path().join("skopeo-docker.tar");
    run(Command::new("skopeo")
        .args(["copy", "-q", &src])
        .arg(format!(
            "docker-archive:{}:example.com/skopeo/img:v2",
            docker.display()
        )));
    let oci = tmp.path().join("skopeo-oci.tar");
    run(Command::new("skopeo")
        .args(["copy", "-q", &src])
        .arg(format!(
            "oci-archive:{}:example.com/skopeo/img:v3",
            oci.display()
        )));
    let store = Store::open(tmp.path().join("store")).unwrap();
    let a = store.load(&docker).unwrap();
    assert_eq!(a[0].names, vec!["example.com/skopeo/img:v2".to_owned()]);
    let b = store.load(&oci).unwrap();
    let info = store.inspect(&b[0].id.to_string()).unwrap();
    assert_eq!(info.diff_ids, fx.diff_ids);
    assert_eq!(
        store.inspect("example.com/skopeo/img:v2").unwrap().diff_ids,
        fx.diff_ids
    );
    assert_eq!(
        store.layers().unwrap().len(),
        3,
        "both loads share the layers"
    );
}

#[test]
fn podman_save_in_both_formats_loads() {
    if !have("podman") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (store, fx) = loaded(tmp.path());
    // A name of its own, so that the test never touches another image in podman's store.
    let name = format!("capsa-images-test:{}", std::process::id());
    store.tag("interop:v1", &name).unwrap();
    let archive = tmp.path().join("for-podman.tar");
    store
        .export_oci_archive(&[&name], &mut fs::File::create(&archive).unwrap())
        .unwrap();
    let loaded = run(Command::new("podman")
        .args(["load", "-q", "-i"])
        .arg(&archive));
    let podman_name = loaded
        .trim()
        .strip_prefix("Loaded image: ")
        .unwrap_or_default()
        .to_owned();
    assert_eq!(podman_name, format!("docker.io/library/{name}"));
    let result = std::panic::catch_unwind(|| {
        for format in ["oci-archive", "docker-archive"] {
            let out = tmp.path().join(format!("podman-{format}.tar"));
            run(Command::new("podman")
                .args(["save", "-q", "--format", format, "-o"])
                .arg(&out)
                .arg(&podman_name));
            let fresh = Store::open(tmp.path().join(format!("store-{format}"))).unwrap();
            let images = fresh.load(&out).unwrap();
            let info = fresh.inspect(&images[0].id.to_string()).unwrap();
            assert_eq!(info.diff_ids, fx.diff_ids, "{format}");
            assert_eq!(
                fresh.layer_dirs(&images[0].id.to_string()).unwrap().len(),
                3
            );
        }
    });
    let _ = Command::new("podman")
        .args(["rmi", "-f", &podman_name])
        .output();
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
