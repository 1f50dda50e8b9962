//! The registry client against a real registry (Debian's docker-registry on 127.0.0.1):
//! pull (multi-layer, by digest, by platform from an index), no refetch of stored blobs,
//! resume after a SIGKILL, a registry that dies mid-pull, a tampered blob, push (chunked,
//! existence checks, cross-repository mounts) read back by skopeo, and htpasswd auth.

mod common;
#[path = "common/registry.rs"]
mod registry_common;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use capsa_images::registry::{
    self, Error, ImageRef, Platform, Progress, PullOptions, PushOptions, Quiet,
};
use capsa_images::{Digest, Store};
use common::*;
use registry_common::*;
use serde_json::json;

const ROOT_VAR: &str = "CAPSA_REGISTRY_TEST_ROOT";
const REF_VAR: &str = "CAPSA_REGISTRY_TEST_REF";

/// Slows downloads (a pause per chunk received), so a test can act mid-download.
struct Slow(Duration);

impl Progress for Slow {
    fn blob_progress(&self, _digest: &Digest, _done: u64) {
        std::thread::sleep(self.0);
    }
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ seed;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn pull(store: &Store, reference: &str) -> registry::Result<registry::PullReport> {
    registry::pull(
        store,
        &ImageRef::parse(reference).unwrap(),
        &PullOptions::default(),
        &Quiet,
    )
}

/// Every record's layers exist, every blob verifies, `tmp/` is empty.
fn assert_consistent(store: &Store) {
    for record in store.records().unwrap() {
        let info = store.inspect(&record.id.to_string()).unwrap();
        store.read_blob(&info.manifest_digest).unwrap();
        for layer in info.layers {
            assert!(layer.path.exists(), "{:?}", layer.path);
            assert!(store.has_blob(&layer.descriptor.digest));
        }
    }
    for blob in store.blobs().unwrap() {
        store.verify_blob(&blob).unwrap();
    }
    assert!(
        fs::read_dir(store.root().join("tmp"))
            .unwrap()
            .next()
            .is_none(),
        "tmp/ is empty"
    );
}

fn assert_nothing_recorded(store: &Store) {
    assert!(store.records().unwrap().is_empty(), "no image record");
    assert!(store.layers().unwrap().is_empty(), "no layer");
    assert_consistent(store);
}

#[test]
fn pull_of_a_multi_layer_image_unpacks_the_layers_a_load_would() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &three_layers_with(Comp::Gzip),
        "v1",
    );
    let name = format!("{}/multi/layer:v1", reg.host);
    skopeo_push(&fx.dir, "v1", &name, false, None);

    let store = Store::open(tmp.path().join("store")).unwrap();
    let report = pull(&store, &name).unwrap();
    assert_eq!(report.id, fx.config);
    assert_eq!(report.name.as_deref(), Some(name.as_str()));
    assert_eq!(report.fetched.len(), 3);
    assert_eq!(report.unpacked.len(), 3);
    assert_consistent(&store);

    // The same layers as loading the layout directly.
    let loaded = Store::open(tmp.path().join("loaded")).unwrap();
    loaded.load(&fx.dir).unwrap();
    let pulled_dirs = store.layer_dirs(&name).unwrap();
    let loaded_dirs = loaded.layer_dirs(&fx.config.to_string()).unwrap();
    assert_eq!(pulled_dirs.len(), 3);
    for (p, l) in pulled_dirs.iter().zip(&loaded_dirs) {
        assert_eq!(tree(p), tree(l));
    }
    let info = store.inspect(&name).unwrap();
    assert_eq!(info.diff_ids, fx.diff_ids);
    let bin = store.layer_diff_dir(&fx.diff_ids[0]).unwrap();
    assert_eq!(
        fs::read(bin.join("bin/busybox")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    let l2 = store.layer_diff_dir(&fx.diff_ids[1]).unwrap();
    assert_eq!(fs::read(l2.join("etc/motd")).unwrap(), b"hello\n");
    use std::os::unix::fs::FileTypeExt;
    assert!(
        fs::symlink_metadata(l2.join("etc/group"))
            .unwrap()
            .file_type()
            .is_char_device()
    );

    // By digest: the same image, recorded without a name.
    let by_digest = format!("{}/multi/layer@{}", reg.host, report.manifest);
    let again = pull(&store, &by_digest).unwrap();
    assert_eq!(again.id, fx.config);
    assert!(again.name.is_none());
}

#[test]
fn a_second_pull_fetches_no_blob() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &three_layers_with(Comp::Gzip),
        "v1",
    );
    let name = format!("{}/again:v1", reg.host);
    skopeo_push(&fx.dir, "v1", &name, false, None);
    let store = Store::open(tmp.path().join("store")).unwrap();
    pull(&store, &name).unwrap();
    let gets = reg.capsa_blob_gets();
    assert_eq!(gets, 4, "config + 3 layers");
    let second = pull(&store, &name).unwrap();
    assert!(second.fetched.is_empty(), "{:?}", second.fetched);
    assert!(second.unpacked.is_empty());
    assert_eq!(second.reused.len(), 3);
    // Only the config (small, needed to decide) is read again; no layer blob.
    assert_eq!(reg.capsa_blob_gets(), gets + 1);
    assert_consistent(&store);
}

/// An index with a linux/amd64 image and a wasi/wasm image, written as an OCI layout.
fn multi_platform_layout(dir: &Path) -> (Digest, Digest) {
    let native = oci_layout(dir, &three_layers_with(Comp::Gzip), "native");
    let module = b"\0asm\x01\0\0\0".to_vec();
    let layer = Layer::new().file("hello.wasm", &module, 0o755).tar();
    let blob = compress(&layer, Comp::Gzip);
    let layer_digest = write_blob(dir, &blob);
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm", "os": "wasi",
        "config": { "Entrypoint": ["/hello.wasm"] },
        "rootfs": { "type": "layers", "diff_ids": [Digest::of_bytes(&layer).to_string()] },
    }))
    .unwrap();
    let config_digest = write_blob(dir, &config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest.to_string(), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest.to_string(), "size": blob.len() }],
    }))
    .unwrap();
    let manifest_digest = write_blob(dir, &manifest);
    let native_manifest = fs::read(dir.join("blobs/sha256").join(native.manifest.hex())).unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest.to_string(), "size": manifest.len(), "platform": { "os": "wasi", "architecture": "wasm" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": native.manifest.to_string(), "size": native_manifest.len(), "platform": { "os": "linux", "architecture": "amd64" } },
        ],
    }))
    .unwrap();
    let index_digest = write_blob(dir, &index);
    let top = json!({
        "schemaVersion": 2,
        "manifests": [{ "mediaType": "application/vnd.oci.image.index.v1+json", "digest": index_digest.to_string(), "size": index.len(), "annotations": { "org.opencontainers.image.ref.name": "multi" } }],
    });
    fs::write(dir.join("index.json"), serde_json::to_vec(&top).unwrap()).unwrap();
    (native.config, config_digest)
}

#[test]
fn an_index_yields_the_manifest_for_the_platform_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let layout = tmp.path().join("layout");
    let (native_id, wasm_id) = multi_platform_layout(&layout);
    let name = format!("{}/multi:v1", reg.host);
    skopeo_push(&layout, "multi", &name, true, None);
    let reference = ImageRef::parse(&name).unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();

    let native = pull(&store, &name).unwrap();
    assert_eq!(native.id, native_id, "the default is linux/amd64");
    let wasm = registry::pull(
        &store,
        &reference,
        &PullOptions {
            platform: Some(Platform::wasm()),
            ..PullOptions::default()
        },
        &Quiet,
    )
    .unwrap();
    assert_eq!(wasm.id, wasm_id);
    assert_eq!(
        store.inspect(&wasm_id.to_string()).unwrap().platform(),
        ("wasi".into(), "wasm".into())
    );
    let none = registry::pull(
        &store,
        &reference,
        &PullOptions {
            platform: Some(Platform::parse("linux/arm64").unwrap()),
            ..PullOptions::default()
        },
        &Quiet,
    )
    .unwrap_err();
    let text = none.to_string();
    assert!(matches!(none, Error::NoMatchingPlatform { .. }), "{text}");
    assert!(
        text.contains("linux/arm64") && text.contains("wasi/wasm"),
        "{text}"
    );
    assert_consistent(&store);
}

/// Run in a child process by the kill test; does nothing in a normal test run.
#[test]
fn pull_helper_child() {
    let (Ok(root), Ok(reference)) = (std::env::var(ROOT_VAR), std::env::var(REF_VAR)) else {
        return;
    };
    let store = Store::open(root).unwrap();
    registry::pull(
        &store,
        &ImageRef::parse(&reference).unwrap(),
        &PullOptions::default(),
        &Slow(Duration::from_millis(2)),
    )
    .unwrap();
}

/// A layout whose second layer is `big` MiB of noise (uncompressed), after busybox.
fn big_layout(dir: &Path, big: usize) -> Fixture {
    let busybox = fs::read("/bin/busybox").unwrap();
    let small = Layer::new().file("bin/busybox", &busybox, 0o755).tar();
    let large = Layer::new()
        .file("noise", &noise(big << 20, 7), 0o644)
        .tar();
    oci_layout(dir, &[(small, Comp::Gzip), (large, Comp::None)], "v1")
}

/// Waits until the partial download of `digest` has at least `min` bytes; false if `alive`
/// says the puller ended first.
fn wait_partial(root: &Path, digest: &Digest, min: u64, mut alive: impl FnMut() -> bool) -> bool {
    let path = root.join("downloads").join(digest.hex());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if fs::metadata(&path).map(|m| m.len() >= min).unwrap_or(false) {
            return true;
        }
        if !alive() || Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_pull_killed_mid_download_resumes_with_a_range_request() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let fx = big_layout(&tmp.path().join("layout"), 48);
    let name = format!("{}/big:v1", reg.host);
    skopeo_push(&fx.dir, "v1", &name, false, None);
    let root = tmp.path().join("store");
    let (big, big_size) = remote_layers(&name)[1].clone();

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "pull_helper_child", "--test-threads=1"])
        .env(ROOT_VAR, &root)
        .env(REF_VAR, &name)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = wait_partial(&root, &big, 8 << 20, || child.try_wait().unwrap().is_none());
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(seen, "the child was killed mid-download");

    let store = Store::open(&root).unwrap();
    assert_nothing_recorded(&store);
    assert!(
        !store.has_blob(&big),
        "the partial blob is not in the store"
    );
    let partial = fs::metadata(root.join("downloads").join(big.hex()))
        .unwrap()
        .len();
    assert!(partial > 0 && partial < big_size, "{partial} of {big_size}");

    let report = pull(&store, &name).unwrap();
    let resumed = report.fetched.iter().find(|f| f.digest == big).unwrap();
    assert!(
        resumed.resumed_from >= partial,
        "{resumed:?} vs partial {partial}"
    );
    assert_eq!(resumed.received, big_size - resumed.resumed_from);
    assert_eq!(report.id, fx.config);
    assert_consistent(&store);
    assert_eq!(store.layer_dirs(&name).unwrap().len(), 2);
    assert!(!root.join("downloads").join(big.hex()).exists());
    assert!(
        fs::read_to_string(&reg.log).unwrap().contains("\" 206 "),
        "a 206 response to the Range request"
    );
}

#[test]
fn a_registry_gone_mid_pull_fails_clearly_and_stores_nothing_half_done() {
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(&tmp.path().join("registry"), None);
    let fx = big_layout(&tmp.path().join("layout"), 32);
    let name = format!("{}/gone:v1", reg.host);
    skopeo_push(&fx.dir, "v1", &name, false, None);
    let store = Store::open(tmp.path().join("store")).unwrap();
    let big = remote_layers(&name)[1].0.clone();

    let err = std::thread::scope(|s| {
        let puller = s.spawn(|| {
            registry::pull(
                &store,
                &ImageRef::parse(&name).unwrap(),
                &PullOptions::default(),
                &Slow(Duration::from_millis(2)),
            )
        });
        let seen = wait_partial(store.root(), &big, 1 << 20, || !puller.is_finished());
        reg.stop();
        assert!(seen, "the registry stopped mid-download");
        puller.join().unwrap().unwrap_err()
    });
    let text = err.to_string();
    assert!(
        matches!(err, Error::Transport { .. } | Error::Unreachable { .. }),
        "{text}"
    );
    assert!(text.contains(&reg.host), "{text}");
    assert_nothing_recorded(&store);
    assert!(!store.has_blob(&big));
}

#[test]
fn a_tampered_blob_is_refused_with_a_digest_error_and_not_stored() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &three_layers_with(Comp::Gzip),
        "v1",
    );
    let name = format!("{}/tampered:v1", reg.host);
    skopeo_push(&fx.dir, "v1", &name, false, None);
    let victim = remote_layers(&name)[2].0.clone();
    let data = reg.blob_data(&victim);
    let mut bytes = fs::read(&data).unwrap();
    let last = bytes.len() / 2;
    bytes[last] ^= 0x55;
    fs::write(&data, bytes).unwrap();

    let store = Store::open(tmp.path().join("store")).unwrap();
    let err = pull(&store, &name).unwrap_err();
    let text = err.to_string();
    match &err {
        Error::DigestMismatch { expected, .. } => assert_eq!(*expected, victim, "{text}"),
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(
        text.contains(&reg.host) && text.contains("tampered") && text.contains(&victim.to_string()),
        "{text}"
    );
    assert_nothing_recorded(&store);
    assert!(!store.has_blob(&victim));
    assert!(!store.root().join("downloads").join(victim.hex()).exists());
}

#[test]
fn push_uploads_in_chunks_then_reuses_and_mounts_shared_blobs() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let layers = three_layers_with(Comp::Gzip);
    let fx = oci_layout(&tmp.path().join("a"), &layers, "a:v1");
    let mut second = layers[..2].to_vec();
    second.push((Layer::new().file("second", b"2\n", 0o644).tar(), Comp::Gzip));
    let fx2 = oci_layout(&tmp.path().join("b"), &second, "b:v1");
    let store = Store::open(tmp.path().join("store")).unwrap();
    store.load(&fx.dir).unwrap();
    store.load(&fx2.dir).unwrap();

    let options = PushOptions {
        chunk_size: 64 << 10,
        ..PushOptions::default()
    };
    let dest = ImageRef::parse(&format!("{}/pushed/a:v1", reg.host)).unwrap();
    let report = registry::push(&store, "a:v1", &dest, &options, &Quiet).unwrap();
    assert_eq!(report.uploaded.len(), 4, "config + 3 layers: {report:?}");
    assert_eq!(report.manifest.as_ref(), Some(&fx.manifest));
    assert!(
        reg.capsa_requests("PATCH", "/blobs/uploads/") > 1,
        "the busybox layer went in chunks"
    );
    let seen = skopeo_inspect(&dest.to_string(), false);
    assert_eq!(seen["Digest"], fx.manifest.to_string());
    assert_eq!(seen["Layers"].as_array().map(Vec::len), Some(3), "{seen}");

    // The second image into the same repository: the shared layers exist already.
    let dest_b = ImageRef::parse(&format!("{}/pushed/a:b", reg.host)).unwrap();
    let same_repo = registry::push(&store, "b:v1", &dest_b, &options, &Quiet).unwrap();
    assert_eq!(
        same_repo.existing,
        fx2.layers[..2].to_vec(),
        "{same_repo:?}"
    );
    // Into another repository: mounted from the first.
    let dest_c = ImageRef::parse(&format!("{}/pushed/c:v1", reg.host)).unwrap();
    let mounting = PushOptions {
        mount_from: vec!["pushed/a".to_owned()],
        ..options.clone()
    };
    let mounted = registry::push(&store, "b:v1", &dest_c, &mounting, &Quiet).unwrap();
    assert_eq!(
        mounted.mounted.len(),
        4,
        "config and all layers are in pushed/a: {mounted:?}"
    );
    assert!(mounted.uploaded.is_empty());
    let seen = skopeo_inspect(&dest_c.to_string(), false);
    assert_eq!(seen["Digest"], fx2.manifest.to_string());

    // And it pulls back, by digest, into a fresh store as the same image.
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let back = pull(&fresh, &format!("{}/pushed/c@{}", reg.host, fx2.manifest)).unwrap();
    assert_eq!(back.id, fx2.config);
}

#[test]
fn htpasswd_auth_needs_login_and_refuses_a_wrong_password() {
    let tmp = tempfile::tempdir().unwrap();
    let htpasswd = tmp.path().join("htpasswd");
    let out = Command::new("htpasswd")
        .args(["-Bbn", "alice", "s3cret"])
        .output()
        .expect("htpasswd (apache2-utils) is installed");
    assert!(out.status.success());
    fs::write(&htpasswd, out.stdout).unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), Some(&htpasswd));
    let fx = oci_layout(
        &tmp.path().join("layout"),
        &three_layers_with(Comp::Gzip),
        "v1",
    );
    let name = format!("{}/private:v1", reg.host);
    skopeo_push(&fx.dir, "v1", &name, false, Some("alice:s3cret"));
    let store = Store::open(tmp.path().join("store")).unwrap();
    let options = registry::RegistryOptions::default();

    let err = pull(&store, &name).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");
    assert!(
        err.to_string()
            .contains(&format!("capsa login {}", reg.host)),
        "{err}"
    );

    let wrong = registry::login(&store, &reg.host, "alice", "nope", &options).unwrap_err();
    assert!(matches!(wrong, Error::LoginRefused { .. }), "{wrong}");
    assert!(wrong.to_string().contains("alice"), "{wrong}");
    assert!(!store.root().join("auth.json").exists());

    registry::login(&store, &reg.host, "alice", "s3cret", &options).unwrap();
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(store.root().join("auth.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(pull(&store, &name).unwrap().id, fx.config);

    assert!(registry::logout(&store, &reg.host).unwrap());
    assert!(!registry::logout(&store, &reg.host).unwrap());
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    assert!(matches!(
        pull(&fresh, &name),
        Err(Error::Unauthorized { .. })
    ));
}

#[test]
fn bad_references_hosts_and_names_fail_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&tmp.path().join("registry"), None);
    let store = Store::open(tmp.path().join("store")).unwrap();
    assert!(matches!(
        ImageRef::parse("Bad//name"),
        Err(Error::InvalidReference { .. })
    ));
    let missing = pull(&store, &format!("{}/nothing:here", reg.host)).unwrap_err();
    assert!(matches!(missing, Error::NotFound { .. }), "{missing}");
    assert!(missing.to_string().contains("nothing"), "{missing}");
    // A port nothing listens on.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let refused = pull(&store, &format!("127.0.0.1:{closed}/x:y")).unwrap_err();
    assert!(matches!(refused, Error::Unreachable { .. }), "{refused}");
    let unknown = pull(&store, "no-such-host.invalid/x:y").unwrap_err();
    assert!(matches!(unknown, Error::Unreachable { .. }), "{unknown}");
    assert!(
        unknown.to_string().contains("no-such-host.invalid"),
        "{unknown}"
    );
    assert_nothing_recorded(&store);
}
