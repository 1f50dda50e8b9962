//! An image with 120 layers mounts: through the new mount API (`lowerdir+`, one layer per
//! call), and through `mount(2)` with the store's short links when the option string of
//! absolute paths is over a page. Its own test binary: the classic path changes the cwd.

mod common;

use std::fs;

use capsa_images::Store;
use capsa_images::rootfs::{self, InitFiles, MOUNT_DATA_MAX, MountMethod};
use common::*;

#[test]
fn image_with_120_layers_mounts_as_an_overlay() {
    let tmp = tempfile::tempdir().unwrap();
    let layers: Vec<_> = (0..120)
        .map(|i| {
            let tar = Layer::new()
                .dir("d/", 0o755)
                .file(&format!("d/f{i}"), format!("{i}").as_bytes(), 0o644)
                .tar();
            (tar, Comp::None)
        })
        .collect();
    let fx = oci_layout(&tmp.path().join("layout"), &layers, "many:layers");
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&fx.dir).unwrap();
    assert_eq!(store.layers().unwrap().len(), 120);

    let init = tmp.path().join("init");
    rootfs::write_init_layer(
        &init,
        &InitFiles {
            hosts: b"",
            hostname: b"many\n",
            resolv_conf: b"",
        },
    )
    .unwrap();
    let mut expected: Vec<String> = (0..120).map(|i| format!("d/f{i}")).collect();
    expected.extend(["d", "etc", "etc/hostname", "etc/hosts", "etc/resolv.conf"].map(String::from));
    expected.sort();

    for method in [MountMethod::Auto, MountMethod::Classic] {
        let dir = tmp.path().join(format!("{method:?}"));
        let (upper, work, merged) = (dir.join("upper"), dir.join("work"), dir.join("merged"));
        for d in [&upper, &work, &merged] {
            fs::create_dir_all(d).unwrap();
        }
        let plan = rootfs::plan(&store, "many:layers", &init, &upper, &work).unwrap();
        assert_eq!(plan.lower.len(), 121);
        assert!(
            plan.data().len() > MOUNT_DATA_MAX,
            "absolute paths would not fit a page"
        );
        assert!(plan.short_data().len() <= MOUNT_DATA_MAX);
        let used = rootfs::mount(&plan, &merged, method).unwrap();
        let _guard = MountGuard(merged.clone());
        if method == MountMethod::Classic {
            assert_eq!(used, MountMethod::Classic);
        }
        assert_eq!(tree(&merged), expected, "{method:?}");
        assert_eq!(fs::read(merged.join("d/f119")).unwrap(), b"119");
    }
}
