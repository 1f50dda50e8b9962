//! A load killed at any moment (SIGKILL while a blob is copied, while a layer is unpacked)
//! leaves a store that reopens consistent: no half-written blob, layer or record, and a later
//! load completes.

mod common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capsa_images::Store;
use common::*;

const ROOT_VAR: &str = "CAPSA_IMAGES_CRASH_ROOT";
const LAYOUT_VAR: &str = "CAPSA_IMAGES_CRASH_LAYOUT";

/// Run in a child process by the test below; does nothing in a normal test run.
#[test]
fn crash_helper_child() {
    let (Ok(root), Ok(layout)) = (std::env::var(ROOT_VAR), std::env::var(LAYOUT_VAR)) else {
        return;
    };
    let store = Store::open(root).unwrap();
    store.load(Path::new(&layout)).unwrap();
}

fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn assert_consistent(store: &Store) {
    for record in store.records().unwrap() {
        let info = store.inspect(&record.id.to_string()).unwrap();
        for layer in info.layers {
            assert!(layer.path.exists());
        }
    }
    for blob in store.blobs().unwrap() {
        store.verify_blob(&blob).unwrap();
    }
    for layer in store.layers().unwrap() {
        store.layer_meta(&layer).unwrap();
    }
    assert!(
        fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp cleaned at open"
    );
}

#[test]
fn a_load_killed_midway_leaves_a_consistent_store() {
    let tmp = tempfile::tempdir().unwrap();
    let big = Layer::new().file("noise", &noise(48 << 20), 0o644).tar();
    let mut many = Layer::new().dir("many/", 0o755);
    for i in 0..15_000 {
        many = many.file(&format!("many/{i}"), b"x", 0o644);
    }
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &[(big, Comp::None), (many.tar(), Comp::Gzip)],
        "crash:1",
    );
    let root = tmp.path().join("store");
    let exe = std::env::current_exe().unwrap();

    // Kill while the big blob is copied in, then while the many-file layer is unpacked.
    for stage in ["blob-", "layer-"] {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_helper_child", "--test-threads=1"])
            .env(ROOT_VAR, &root)
            .env(LAYOUT_VAR, &fx.dir)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = loop {
            let found = fs::read_dir(root.join("tmp"))
                .map(|d| {
                    d.flatten()
                        .any(|e| e.file_name().to_string_lossy().starts_with(stage))
                })
                .unwrap_or(false);
            if found {
                break true;
            }
            if child.try_wait().unwrap().is_some() || Instant::now() > deadline {
                break false;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        if stage == "layer-" {
            // Let the unpack get going before the kill.
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(seen, "the child reached the {stage} stage before it ended");

        let store = Store::open(&root).unwrap();
        assert_consistent(&store);
        assert!(
            store.records().unwrap().is_empty(),
            "no record after a kill during {stage}"
        );
        assert!(
            store.layers().unwrap().is_empty(),
            "no layer after a kill during {stage}"
        );
    }

    let store = Store::open(&root).unwrap();
    store.load(&fx.dir).unwrap();
    assert_consistent(&store);
    assert_eq!(store.layer_dirs("crash:1").unwrap().len(), 2);
}
