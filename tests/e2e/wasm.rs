//! Wasm payloads (issue 4): a module in the container's rootfs runs under `capsa-shim` inside the
//! same envelope as a native program. The programs are built here, from C (clang-14 for
//! wasm32-wasi) and WAT (the `wat` crate); nothing binary is committed.
//!
//! capsa only: runc has no wasm handler, so every test skips under `CAPSA_TEST_RUNTIME=runc`.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::bundle::Bundle;
use capsa_tests::context::{TestContext, path_str, skip};
use capsa_tests::rootfs::{MARKER, MARKER_CONTENT};
use oci_spec::runtime::LinuxResources;

const WAIT: Duration = Duration::from_secs(10);

/// One C program, several behaviours chosen by argv[1], so the tests build (and cache) it once.
const PROBE_C: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    const char *cmd = argc > 1 ? argv[1] : "info";
    if (!strcmp(cmd, "info")) {
        char cwd[512];
        printf("argc=%d\n", argc);
        for (int i = 0; i < argc; i++) printf("arg[%d]=%s\n", i, argv[i]);
        const char *g = getenv("GREETING");
        printf("GREETING=%s\n", g ? g : "(unset)");
        printf("cwd=%s\n", getcwd(cwd, sizeof cwd) ? cwd : strerror(errno));
        FILE *rel = fopen("rel.txt", "r");
        char line[128] = "";
        if (rel && fgets(line, sizeof line, rel)) printf("rel=%s", line);
        else printf("rel=error %s\n", strerror(errno));
        return 0;
    }
    if (!strcmp(cmd, "read") && argc > 2) {
        FILE *f = fopen(argv[2], "r");
        if (!f) { printf("read %s: error %s\n", argv[2], strerror(errno)); return 1; }
        char buf[256]; size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0;
        printf("read %s: %s", argv[2], buf);
        return 0;
    }
    if (!strcmp(cmd, "write") && argc > 2) {
        FILE *f = fopen(argv[2], "w");
        if (!f) { printf("write %s: error %s\n", argv[2], strerror(errno)); return 1; }
        fputs("written by wasm\n", f); fclose(f);
        printf("write %s: ok\n", argv[2]);
        return 0;
    }
    if (!strcmp(cmd, "exit") && argc > 2) return atoi(argv[2]);
    if (!strcmp(cmd, "tick") && argc > 2) {
        for (;;) {
            FILE *f = fopen(argv[2], "a");
            if (f) { fputs(".\n", f); fclose(f); }
            usleep(50000);
        }
    }
    if (!strcmp(cmd, "alloc")) {
        /* Blocks are chained and touched so the compiler cannot elide the allocations. */
        size_t mib = 0;
        void **head = NULL;
        for (;;) {
            void **p = malloc(1 << 20);
            if (!p) { printf("allocation failed after %zu MiB\n", mib); fflush(stdout); return 12; }
            memset(p, 1, 1 << 20);
            *p = head;
            head = p;
            mib++;
        }
    }
    fprintf(stderr, "probe: unknown command %s\n", cmd);
    return 2;
}
"#;

/// An endless loop, for the deadline and `kill`.
const SPIN_WAT: &str = r#"(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $l (br $l))))"#;

/// A module that needs a host function nobody provides.
const MISSING_IMPORT_WAT: &str = r#"(module
  (import "env" "capsa_no_such_function" (func))
  (memory (export "memory") 1)
  (func (export "_start")))"#;

/// Skips under runc; fails when the static capsa-shim was not built beside capsa-runtime.
fn wasm_context(label: &str) -> Result<Option<TestContext>> {
    let ctx = TestContext::new(label)?;
    if ctx.runtime.is_runc() {
        skip(label, "runc has no wasm handler")?;
        return Ok(None);
    }
    let shim = ctx.runtime.bin.with_file_name("capsa-shim");
    ensure!(
        shim.is_file(),
        "{} is missing: build it with scripts/build-shim.sh (scripts/test.sh does)",
        shim.display()
    );
    Ok(Some(ctx))
}

/// Compiles `source` (C) for wasm32-wasi with clang-14, once per source: the result is kept in
/// the temp dir under the source's hash, written atomically so concurrent tests share it.
fn build_c(source: &str) -> Result<Vec<u8>> {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut hasher);
    let dir = std::env::temp_dir().join("capsa-wasm-programs");
    std::fs::create_dir_all(&dir).with_context(|| format!("mkdir {}", dir.display()))?;
    let out = dir.join(format!("{:016x}.wasm", hasher.finish()));
    if let Ok(bytes) = std::fs::read(&out) {
        return Ok(bytes);
    }
    let pid = std::process::id();
    let src = dir.join(format!("src-{pid}.c"));
    let tmp = dir.join(format!("out-{pid}.wasm"));
    std::fs::write(&src, source).with_context(|| format!("write {}", src.display()))?;
    let status = Command::new("clang-14")
        .args(["--target=wasm32-wasi", "-O2", "-Wl,--strip-all", "-o"])
        .arg(&tmp)
        .arg(&src)
        .status()
        .context(
            "run clang-14 (apt-get install clang-14 lld-14 wasi-libc libclang-rt-14-dev-wasm32)",
        )?;
    let _ = std::fs::remove_file(&src);
    ensure!(
        status.success(),
        "clang-14 --target=wasm32-wasi failed: {status}"
    );
    std::fs::rename(&tmp, &out).with_context(|| format!("rename to {}", out.display()))?;
    std::fs::read(&out).with_context(|| format!("read {}", out.display()))
}

fn wat(text: &str) -> Result<Vec<u8>> {
    wat::parse_str(text).context("WAT")
}

/// A bundle whose rootfs holds `module` at `/app.wasm`, run with `args` after it, under the
/// annotation `handler` (`wasm` or `wasm-smart`).
fn wasm_bundle(ctx: &TestContext, module: &[u8], args: &[&str], handler: &str) -> Result<Bundle> {
    let mut b = ctx.bundle()?;
    let path = b.rootfs().join("app.wasm");
    std::fs::write(&path, module).with_context(|| format!("write {}", path.display()))?;
    let mut argv = vec!["/app.wasm".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    b.process().set_args(Some(argv));
    annotate(&mut b, &[("run.oci.handler", handler)]);
    Ok(b)
}

fn annotate(b: &mut Bundle, pairs: &[(&str, &str)]) {
    let mut annotations = b.spec.annotations().clone().unwrap_or_default();
    for (k, v) in pairs {
        annotations.insert(k.to_string(), v.to_string());
    }
    b.spec.set_annotations(Some(annotations));
}

fn memory_limit(b: &mut Bundle, bytes: i64) -> Result<()> {
    let resources: LinuxResources =
        serde_json::from_value(serde_json::json!({"memory": {"limit": bytes}}))
            .context("resources")?;
    b.linux().set_resources(Some(resources));
    Ok(())
}

fn probe() -> Result<Vec<u8>> {
    build_c(PROBE_C)
}

#[test]
fn wasm_module_sees_the_configs_args_env_and_cwd() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-args")? else {
        return Ok(());
    };
    let mut b = wasm_bundle(&ctx, &probe()?, &["info", "two words", "--flag"], "wasm")?;
    b.env("GREETING=hello from config.json");
    b.process().set_cwd("/work".into());
    std::fs::create_dir_all(b.rootfs().join("work"))?;
    std::fs::write(b.rootfs().join("work/rel.txt"), "in the cwd\n")?;
    std::fs::write(b.rootfs().join("rel.txt"), "at the root\n")?;
    let out = ctx.run(&b)?.ok()?;
    for line in [
        "argc=4",
        "arg[0]=/app.wasm",
        "arg[1]=info",
        "arg[2]=two words",
        "arg[3]=--flag",
        "GREETING=hello from config.json",
    ] {
        ensure!(
            out.stdout.lines().any(|l| l == line),
            "no {line:?} in {out}"
        );
    }
    // wasi-libc (2022) starts every program in "/" and resolves relative paths there; WASI
    // preview 1 has no working directory to pass. README documents the limit.
    if !out.stdout.contains("rel=in the cwd") {
        eprintln!(
            "NOTE wasm-args: relative paths resolve against / under this wasi-libc, not process.cwd: {}",
            out.stdout
        );
        ensure!(
            out.stdout.contains("rel=at the root") && out.stdout.contains("cwd=/\n"),
            "relative paths resolve neither in the cwd nor at the root: {out}"
        );
    }
    Ok(())
}

#[test]
fn wasm_module_reads_the_rootfs_and_cannot_reach_host_files() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-fs")? else {
        return Ok(());
    };
    let module = probe()?;
    let b = wasm_bundle(&ctx, &module, &["read", MARKER], "wasm")?;
    let out = ctx.run(&b)?.ok()?;
    ensure!(
        out.stdout == format!("read {MARKER}: {MARKER_CONTENT}"),
        "the rootfs marker: {out}"
    );

    let secret = ctx.dir().join("host-only-secret");
    std::fs::write(&secret, "host secret\n")?;
    for path in [
        path_str(&secret)?.to_string(),
        format!("/../../../../{}", path_str(&secret)?),
        "/proc/1/root/etc/hostname".to_string(),
    ] {
        let b = wasm_bundle(&ctx, &module, &["read", &path], "wasm")?;
        let out = ctx.run(&b)?;
        ensure!(
            out.code() == 1 && out.stdout.contains("error") && !out.stdout.contains("host secret"),
            "{path} was readable from the module: {out}"
        );
    }
    Ok(())
}

#[test]
fn wasm_module_reads_file_bind_mounts_as_containerd_gives_them() -> Result<()> {
    // containerd (CRI) binds the files /etc/hostname, /etc/hosts and /etc/resolv.conf into every
    // container; `-v FILE:PATH` does the same. A file is reached through the preopened `/`.
    let Some(ctx) = wasm_context("wasm-file-bind")? else {
        return Ok(());
    };
    let module = probe()?;
    let host = ctx.subdir("host-files")?;
    std::fs::write(host.join("hostname"), "capsa-test-pod\n")?;
    std::fs::write(host.join("data.txt"), "from a file bind\n")?;
    std::fs::create_dir(host.join("dir"))?;
    std::fs::write(host.join("dir/inner.txt"), "from a directory bind\n")?;
    for (dest, expected) in [
        ("/etc/hostname", "capsa-test-pod\n"),
        ("/mnt/data.txt", "from a file bind\n"),
        ("/mnt/dir/inner.txt", "from a directory bind\n"),
    ] {
        let mut b = wasm_bundle(&ctx, &module, &["read", dest], "wasm")?;
        b.bind(&host.join("hostname"), "/etc/hostname", &["ro"]);
        b.bind(&host.join("data.txt"), "/mnt/data.txt", &["ro"]);
        b.bind(&host.join("dir"), "/mnt/dir", &["rw"]);
        let out = ctx.run(&b)?.ok()?;
        ensure!(
            out.stdout == format!("read {dest}: {expected}"),
            "{dest} through a bind mount: {out}"
        );
    }
    Ok(())
}

#[test]
fn wasm_module_cannot_write_a_readonly_root_but_can_write_a_writable_one() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-ro")? else {
        return Ok(());
    };
    let module = probe()?;
    let mut b = wasm_bundle(&ctx, &module, &["write", "/new-file"], "wasm")?;
    b.spec
        .root_mut()
        .as_mut()
        .context("root")?
        .set_readonly(Some(true));
    let out = ctx.run(&b)?;
    ensure!(out.code() == 1, "write on a read-only root: {out}");
    ensure!(
        !b.rootfs().join("new-file").exists(),
        "the file was created"
    );

    let b = wasm_bundle(&ctx, &module, &["write", "/new-file"], "wasm")?;
    ctx.run(&b)?.ok()?;
    let written = std::fs::read_to_string(b.rootfs().join("new-file"))?;
    ensure!(written == "written by wasm\n", "content {written:?}");

    // A bind mount is preopened at its destination with its own mode.
    let data = ctx.subdir("data")?;
    std::fs::write(data.join("in.txt"), "from the bind mount\n")?;
    let mut b = wasm_bundle(&ctx, &module, &["write", "/data/out.txt"], "wasm")?;
    b.bind(&data, "/data", &["ro"]);
    ensure!(ctx.run(&b)?.code() == 1, "wrote to a read-only bind mount");
    let mut b = wasm_bundle(&ctx, &module, &["read", "/data/in.txt"], "wasm")?;
    b.bind(&data, "/data", &["ro"]);
    let out = ctx.run(&b)?.ok()?;
    ensure!(out.stdout.contains("from the bind mount"), "{out}");
    Ok(())
}

#[test]
fn wasm_exit_code_is_the_containers() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-exit")? else {
        return Ok(());
    };
    let b = wasm_bundle(&ctx, &probe()?, &["exit", "42"], "wasm")?;
    let out = ctx.run(&b)?;
    ensure!(out.code() == 42, "expected 42: {out}");
    Ok(())
}

#[test]
fn wasm_shim_runs_in_the_containers_cgroup_and_namespaces_and_obeys_state_pause_kill() -> Result<()>
{
    let Some(ctx) = wasm_context("wasm-env")? else {
        return Ok(());
    };
    let b = wasm_bundle(&ctx, &probe()?, &["tick", "/tmp/count"], "wasm")?;
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    ctx.wait_status(&id, "running", WAIT)?;
    let pid = ctx.pid_of(&id)?;

    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
    ensure!(
        exe.file_name().is_some_and(|n| n == "capsa-shim"),
        "the container's process is {}",
        exe.display()
    );
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    ensure!(
        cgroup.contains(&b.cgroup),
        "/proc/{pid}/cgroup does not name {}: {cgroup}",
        b.cgroup
    );
    for ns in ["pid", "mnt", "net", "uts", "ipc"] {
        let theirs = std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))?;
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}"))?;
        ensure!(theirs != ours, "the shim shares the host's {ns} namespace");
    }

    let count = || {
        std::fs::read_to_string(b.rootfs().join("tmp/count"))
            .unwrap_or_default()
            .lines()
            .count()
    };
    std::thread::sleep(Duration::from_millis(300));
    ctx.rt(&["pause", &id])?.ok()?;
    ensure!(ctx.state(&id)?["status"] == "paused", "state after pause");
    let frozen = count();
    std::thread::sleep(Duration::from_millis(400));
    ensure!(count() == frozen, "the module ran while paused");
    ctx.rt(&["resume", &id])?.ok()?;
    std::thread::sleep(Duration::from_millis(400));
    ensure!(count() > frozen, "the module did not run after resume");

    // SIGTERM stops it (the shim is pid 1 of its namespace: it must handle the signal itself).
    ctx.rt(&["kill", &id, "TERM"])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    Ok(())
}

#[test]
fn wasm_memory_past_the_limit_fails_cleanly_with_a_message() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-mem")? else {
        return Ok(());
    };
    let mut b = wasm_bundle(&ctx, &probe()?, &["alloc"], "wasm")?;
    memory_limit(&mut b, 64 << 20)?;
    let out = ctx.run(&b)?;
    ensure!(
        out.code() != 137,
        "the module was OOM-killed instead of failing its allocation: {out}"
    );
    ensure!(
        out.code() == 12 && out.stdout.contains("allocation failed after"),
        "the module's allocation did not fail cleanly: {out}"
    );
    ensure!(
        out.stderr.contains("memory limit"),
        "the shim did not say the memory limit refused a growth: {out}"
    );
    Ok(())
}

#[test]
fn wasm_endless_loop_is_stopped_by_its_deadline() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-deadline")? else {
        return Ok(());
    };
    let mut b = wasm_bundle(&ctx, &wat(SPIN_WAT)?, &[], "wasm")?;
    annotate(&mut b, &[("capsa.wasm/deadline-ms", "300")]);
    let started = Instant::now();
    let out = ctx.run(&b)?;
    ensure!(out.code() == 124, "expected 124 (deadline): {out}");
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn wasm_endless_loop_is_stopped_by_kill() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-kill")? else {
        return Ok(());
    };
    let b = wasm_bundle(&ctx, &wat(SPIN_WAT)?, &[], "wasm")?;
    let (id, _) = ctx.run_detached(&b)?;
    ctx.wait_status(&id, "running", WAIT)?;
    ctx.rt(&["kill", &id, "KILL"])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    Ok(())
}

/// A WASI preview 2 command component written by hand in WAT (no p2 toolchain is needed), shared
/// with the shim's tests.
const HELLO_COMPONENT_WAT: &str = include_str!("../../shim/tests/programs/hello-component.wat");

#[test]
fn wasm_component_runs_and_prints() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-component")? else {
        return Ok(());
    };
    // The header (layer byte 0x0d, version 1) makes it a component: the shim gets --component.
    let component = wat(HELLO_COMPONENT_WAT)?;
    ensure!(
        component[4..8] == [0x0d, 0x00, 0x01, 0x00],
        "not a component header"
    );
    let b = wasm_bundle(&ctx, &component, &[], "wasm")?;
    let out = ctx.run(&b)?.ok()?;
    ensure!(
        out.stdout == "hello from a component\n",
        "the component's output: {out}"
    );
    Ok(())
}

#[test]
fn wasm_invalid_modules_fail_create_clearly_and_leave_nothing() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-bad")? else {
        return Ok(());
    };
    let truncated = wat(SPIN_WAT)?;
    for (what, module) in [
        ("truncated", truncated[..truncated.len() - 3].to_vec()),
        ("not wasm", b"this is neither wasm nor text".to_vec()),
        ("unknown version", b"\0asm\x09\0\0\0".to_vec()),
    ] {
        let b = wasm_bundle(&ctx, &module, &[], "wasm")?;
        b.write()?;
        let id = ctx.new_id();
        let out = ctx.rt(&["run", "--bundle", path_str(&b.dir)?, &id])?;
        ensure!(!out.success(), "{what} module ran: {out}");
        ensure!(
            out.stderr.contains("/app.wasm"),
            "{what}: the error does not name the program: {out}"
        );
        ctx.assert_nothing_left(&id, &b)?;
    }
    Ok(())
}

#[test]
fn wasm_missing_import_fails_with_a_message() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-import")? else {
        return Ok(());
    };
    let b = wasm_bundle(&ctx, &wat(MISSING_IMPORT_WAT)?, &[], "wasm")?;
    let out = ctx.run(&b)?;
    ensure!(out.code() == 127, "expected 127 (not runnable): {out}");
    ensure!(
        out.stderr.contains("capsa_no_such_function"),
        "the error does not name the import: {out}"
    );
    Ok(())
}

/// The one artifact in the test's wasm cache.
fn cached_artifact(ctx: &TestContext) -> Result<PathBuf> {
    let dir = ctx.runtime.root.join(".wasm-cache");
    let mut artifacts: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("read {}", dir.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "cwasm"))
        .collect();
    if artifacts.len() != 1 {
        bail!("expected one artifact in {}: {artifacts:?}", dir.display());
    }
    Ok(artifacts.remove(0))
}

#[test]
fn wasm_corrupt_cache_entry_is_rebuilt_not_run() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-cache")? else {
        return Ok(());
    };
    let b = wasm_bundle(&ctx, &probe()?, &["exit", "7"], "wasm")?;
    ensure!(ctx.run(&b)?.code() == 7, "first run");
    let artifact = cached_artifact(&ctx)?;
    let good = std::fs::read(&artifact)?;

    // Flipped bytes in the code section, then a truncated file: each is rebuilt.
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    for byte in &mut flipped[middle..middle + 64] {
        *byte ^= 0xff;
    }
    for corrupt in [flipped, good[..good.len() / 3].to_vec()] {
        std::fs::write(&artifact, &corrupt)?;
        let out = ctx.run(&b)?;
        ensure!(out.code() == 7, "run with a corrupt cache entry: {out}");
        ensure!(
            std::fs::read(cached_artifact(&ctx)?)? == good,
            "the entry was not rebuilt"
        );
    }
    Ok(())
}

#[test]
fn wasm_smart_mode_keeps_a_native_sidecar_native() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-smart")? else {
        return Ok(());
    };
    let mut b = wasm_bundle(&ctx, &probe()?, &["exit", "5"], "wasm-smart")?;
    let out = ctx.run(&b)?;
    ensure!(out.code() == 5, "the wasm program in smart mode: {out}");

    b.payload("echo native $((40 + 2))");
    let out = ctx.run(&b)?.ok()?;
    ensure!(out.stdout == "native 42\n", "the native sidecar: {out}");

    // The same annotations through the wasm image variant of crun and youki.
    let mut b = wasm_bundle(&ctx, &probe()?, &["exit", "6"], "wasm-smart")?;
    b.spec.set_annotations(None);
    annotate(&mut b, &[("module.wasm.image/variant", "compat-smart")]);
    ensure!(ctx.run(&b)?.code() == 6, "compat-smart");
    Ok(())
}

#[test]
fn wasm_exec_into_a_running_container_goes_through_the_shim() -> Result<()> {
    let Some(ctx) = wasm_context("wasm-exec")? else {
        return Ok(());
    };
    let mut b = wasm_bundle(&ctx, &probe()?, &[], "wasm-smart")?;
    b.payload("sleep 30");
    let (id, _) = ctx.run_detached(&b)?;
    ctx.wait_status(&id, "running", WAIT)?;
    let out = ctx
        .rt(&[
            "exec",
            "--env",
            "GREETING=exec'd",
            &id,
            "/app.wasm",
            "info",
            "x",
        ])?
        .ok()?;
    for line in ["arg[0]=/app.wasm", "arg[2]=x", "GREETING=exec'd"] {
        ensure!(out.stdout.lines().any(|l| l == line), "no {line:?}: {out}");
    }
    let out = ctx.rt(&["exec", &id, "/app.wasm", "exit", "9"])?;
    ensure!(out.code() == 9, "exit code of an exec'd module: {out}");
    // A native program in the same container stays native.
    let out = ctx.rt(&["exec", &id, "sh", "-c", "echo native"])?.ok()?;
    ensure!(out.stdout == "native\n", "{out}");
    ctx.rt(&["kill", &id, "KILL"])?.ok()?;
    Ok(())
}
