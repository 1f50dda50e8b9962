//! The OCI runtime spec where runtimes commonly depart from it: `linux.rootfsPropagation`,
//! `delete` of a container that is not stopped, a config without `process`, security settings
//! the kernel cannot apply, and `linux.resources` fields that must be set or refused, never
//! ignored. Each test says what the spec says; those where capsa is stricter than runc skip under
//! `CAPSA_TEST_RUNTIME=runc` and say so.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use capsa_tests::bundle::Bundle;
use capsa_tests::cleanup::cgroup_dirs;
use capsa_tests::context::{TestContext, path_str, skip};
use capsa_tests::probe::Probe;
use oci_spec::runtime::{Capability, HookBuilder, Hooks, LinuxCapabilities, LinuxResources};

const WAIT: Duration = Duration::from_secs(10);

/// Gives the payload CAP_SYS_ADMIN, so it can mount.
fn with_sys_admin(b: &mut Bundle) {
    let set: HashSet<Capability> = [Capability::SysAdmin].into_iter().collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(HashSet::new()));
    caps.set_ambient(Some(HashSet::new()));
    b.process().set_capabilities(Some(caps));
}

/// The optional fields of the mountinfo line of the container's `/` (the topmost one).
const ROOT_PROPAGATION: &str = "awk '$5 == \"/\" { line = \"\"; for (i = 7; $i != \"-\"; i++) line = line \" \" $i; last = line } END { print \"[\" last \" ]\" }' /proc/self/mountinfo";

/// Runs a probe under `rootfsPropagation: value` that reports the propagation of `/`, whether a
/// mount under `/` shows up in an rbind copy of `/`, and whether `/` can be rbound at all.
fn propagation_probe(value: &str) -> Result<capsa_tests::probe::Facts> {
    let ctx = TestContext::new(&format!("propagation-{value}"))?;
    let mut b = ctx.bundle()?;
    with_sys_admin(&mut b);
    b.linux().set_rootfs_propagation(Some(value.to_string()));
    let probe = Probe::new()
        .fact("root", ROOT_PROPAGATION)
        .fact(
            "rbind",
            "mkdir -p /tmp/copy /mnt/p && mount --rbind / /tmp/copy",
        )
        .fact(
            "seen-in-copy",
            "mount -t tmpfs capsa-probe /mnt/p && grep -c ' /tmp/copy/mnt/p ' /proc/self/mountinfo",
        );
    ctx.probe(&mut b, &probe)
}

#[test]
fn rootfs_propagation_shared_makes_root_a_peer_of_its_copies() -> Result<()> {
    if capsa_tests::runtime::RuntimeKind::from_env()? == capsa_tests::runtime::RuntimeKind::Runc {
        return skip(
            "rootfs_propagation_shared_makes_root_a_peer_of_its_copies",
            "capsa is stricter: runc 1.1 leaves / private under shared",
        );
    }
    // config-linux.md: rootfsPropagation sets the rootfs's mount propagation. With `shared`,
    // a mount under `/` propagates to an rbind copy of `/` (its peer).
    for value in ["shared", "rshared"] {
        let facts = propagation_probe(value)?;
        let root = facts.ok("root")?;
        ensure!(root.contains("shared:"), "{value}: / is not shared: {root}");
        facts.ok("rbind").context("rbind of / under shared")?;
        let seen = facts.ok("seen-in-copy")?;
        ensure!(
            seen.trim() == "1",
            "{value}: a mount under / does not reach its rbind copy: {seen:?}"
        );
    }
    Ok(())
}

#[test]
fn rootfs_propagation_private_and_slave_keep_mounts_to_themselves() -> Result<()> {
    // (A slave of a private mount is private: whether `/` shows a `master:` tag depends on the
    // host's own propagation, so only what must not be there is checked.)
    for value in ["private", "rprivate", "slave", "rslave"] {
        let facts = propagation_probe(value)?;
        let root = facts.ok("root")?;
        ensure!(!root.contains("shared:"), "{value}: / is shared: {root}");
        ensure!(
            !root.contains("unbindable"),
            "{value}: / is unbindable: {root}"
        );
        facts.ok("rbind").context("rbind of /")?;
        let seen = facts.out("seen-in-copy")?;
        ensure!(
            seen.trim().starts_with('0'),
            "{value}: a mount under / reached the copy: {seen:?}"
        );
    }
    Ok(())
}

#[test]
fn rootfs_propagation_unbindable_refuses_a_bind_of_root() -> Result<()> {
    if capsa_tests::runtime::RuntimeKind::from_env()? == capsa_tests::runtime::RuntimeKind::Runc {
        return skip(
            "rootfs_propagation_unbindable_refuses_a_bind_of_root",
            "runc 1.1 fails at the rootfs bind (EINVAL) under unbindable",
        );
    }
    for value in ["unbindable", "runbindable"] {
        let facts = propagation_probe(value)?;
        let root = facts.ok("root")?;
        ensure!(
            root.contains("unbindable"),
            "{value}: / is not unbindable: {root}"
        );
        let rbind = facts.get("rbind")?;
        ensure!(
            rbind.status != 0 && rbind.output.contains("Invalid argument"),
            "{value}: mount --rbind / should fail with EINVAL: {rbind:?}"
        );
    }
    Ok(())
}

#[test]
fn rootfs_propagation_shared_with_masked_and_readonly_paths_sysctl_and_rlimits() -> Result<()> {
    if capsa_tests::runtime::RuntimeKind::from_env()? == capsa_tests::runtime::RuntimeKind::Runc {
        return skip(
            "rootfs_propagation_shared_with_masked_and_readonly_paths_sysctl_and_rlimits",
            "capsa is stricter: runc 1.1 leaves / private under shared",
        );
    }
    let ctx = TestContext::new("propagation-shared-full")?;
    let mut b = ctx.bundle()?;
    b.linux().set_rootfs_propagation(Some("rshared".into()));
    b.linux().set_sysctl(Some(
        [("kernel.shmmax".to_string(), "123456789".to_string())].into(),
    ));
    let facts = ctx.probe(
        &mut b,
        &Probe::new()
            .fact("root", ROOT_PROPAGATION)
            .fact("sysctl", "cat /proc/sys/kernel/shmmax")
            .fact("nofile", "ulimit -n")
            .fact("masked", "wc -c < /proc/timer_list")
            .fact("readonly", "echo 1 > /proc/sysrq-trigger"),
    )?;
    ensure!(facts.ok("root")?.contains("shared:"), "/ is shared");
    ensure!(facts.ok("sysctl")?.trim() == "123456789", "sysctl applied");
    ensure!(facts.ok("nofile")?.trim() == "1024", "rlimit applied");
    ensure!(
        facts.ok("masked")?.trim() == "0",
        "/proc/timer_list is masked"
    );
    let readonly = facts.get("readonly")?;
    ensure!(
        readonly.status != 0,
        "/proc/sysrq-trigger is read-only: {readonly:?}"
    );
    Ok(())
}

#[test]
fn rootfs_propagation_with_an_unknown_value_is_refused() -> Result<()> {
    let ctx = TestContext::new("propagation-bogus")?;
    if ctx.runtime.is_runc() {
        return skip(
            "rootfs_propagation_with_an_unknown_value_is_refused",
            "capsa is stricter: runc 1.1 refuses it too but only at the mount",
        );
    }
    let mut b = ctx.bundle()?;
    b.linux().set_rootfs_propagation(Some("sideways".into()));
    create_fails_naming(&ctx, &b, "rootfsPropagation", "sideways")
}

#[test]
fn delete_of_a_created_container_without_force_fails_and_changes_nothing() -> Result<()> {
    let ctx = TestContext::new("delete-created")?;
    if ctx.runtime.is_runc() {
        // runtime.md "Delete": attempting to delete a container that is not stopped MUST
        // generate an error. runc 1.1 kills and deletes a `created` one.
        return skip(
            "delete_of_a_created_container_without_force_fails_and_changes_nothing",
            "capsa is stricter: runc deletes a created container without --force",
        );
    }
    let mut b = ctx.bundle()?;
    b.payload("echo ran");
    let (id, _) = ctx.create(&b, &[])?;
    let pid = ctx.pid_of(&id)?;
    let out = ctx.rt(&["delete", &id])?.failed()?;
    ensure!(
        out.stderr.contains("created") && out.stderr.contains("not stopped"),
        "delete says why: {out}"
    );
    let state = ctx.state(&id)?;
    ensure!(state["status"] == "created", "still created: {state}");
    ensure!(state["pid"] == pid, "same init: {state}");
    ensure!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "the init still lives"
    );
    ensure!(
        !cgroup_dirs(&b.cgroup)?.is_empty(),
        "the cgroup is still there"
    );
    // It can still be started after the refused delete.
    ctx.rt(&["start", &id])?.ok()?;
    ctx.wait_status(&id, "stopped", WAIT)?;
    ctx.rt(&["delete", &id])?.ok()?;
    ctx.assert_nothing_left(&id, &b)
}

#[test]
fn delete_force_of_a_created_container_removes_it() -> Result<()> {
    let ctx = TestContext::new("delete-created-force")?;
    let mut b = ctx.bundle()?;
    b.payload("echo ran");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    ctx.assert_nothing_left(&id, &b)
}

/// A hook that appends `word` to `log`.
fn appending_hook(log: &std::path::Path, word: &str) -> Result<oci_spec::runtime::Hook> {
    Ok(HookBuilder::default()
        .path("/bin/busybox")
        .args(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!("echo {word} >> {}", path_str(log)?),
        ])
        .build()?)
}

#[test]
fn config_without_process_creates_and_refuses_start() -> Result<()> {
    let ctx = TestContext::new("no-process")?;
    if ctx.runtime.is_runc() {
        // config.md: process is OPTIONAL at create and REQUIRED at start. runc 1.1 refuses the
        // config at create ("process property must not be empty").
        return skip(
            "config_without_process_creates_and_refuses_start",
            "runc refuses a config without process at create",
        );
    }
    let log_dir = ctx.subdir("hooks")?;
    let log = log_dir.join("log");
    let mut b = ctx.bundle()?;
    let mut hooks = Hooks::default();
    hooks.set_create_runtime(Some(vec![appending_hook(&log, "createRuntime")?]));
    b.spec.set_hooks(Some(hooks));
    b.spec.set_process(None);
    let (id, _) = ctx.create(&b, &[])?;
    let state = ctx.state(&id)?;
    ensure!(state["status"] == "created", "created: {state}");
    let ran = std::fs::read_to_string(&log).context("the createRuntime hook did not run")?;
    ensure!(ran.contains("createRuntime"), "{ran}");
    ensure!(
        !cgroup_dirs(&b.cgroup)?.is_empty(),
        "the container has its cgroup"
    );
    let out = ctx.rt(&["start", &id])?.failed()?;
    ensure!(
        out.stderr.contains("no process"),
        "start says there is no process: {out}"
    );
    ctx.wait_status(&id, "stopped", WAIT)?;
    ctx.rt(&["delete", &id])?.ok()?;
    ctx.assert_nothing_left(&id, &b)?;

    // `run` is create + start: refused before anything exists.
    let id = ctx.new_id();
    let out = ctx
        .rt(&["run", "--bundle", path_str(&b.dir)?, &id])?
        .failed()?;
    ensure!(out.stderr.contains("no process"), "run says why: {out}");
    ctx.assert_nothing_left(&id, &b)
}

#[test]
fn config_without_a_mount_namespace_is_refused_with_the_reason() -> Result<()> {
    let ctx = TestContext::new("no-mount-ns")?;
    if ctx.runtime.is_runc() {
        return skip(
            "config_without_a_mount_namespace_is_refused_with_the_reason",
            "the spec allows it and runc runs it; capsa refuses it (README)",
        );
    }
    let mut b = ctx.bundle()?;
    b.without_namespace(oci_spec::runtime::LinuxNamespaceType::Mount);
    create_fails_naming(&ctx, &b, "mount namespace", "host")
}

/// Creates a container from `b` and expects a failure naming `field`, with nothing left.
fn create_fails_naming(ctx: &TestContext, b: &Bundle, field: &str, reason: &str) -> Result<()> {
    b.write()?;
    let id = ctx.new_id();
    let out = ctx
        .rt(&["create", "--bundle", path_str(&b.dir)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.contains(field) && out.stderr.contains(reason),
        "the error should name {field} and say {reason:?}: {out}"
    );
    ctx.assert_nothing_left(&id, b)
}

#[test]
fn apparmor_profile_without_apparmor_fails_create() -> Result<()> {
    if std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.starts_with('Y'))
    {
        return skip(
            "apparmor_profile_without_apparmor_fails_create",
            "this host has AppArmor",
        );
    }
    let ctx = TestContext::new("apparmor")?;
    if ctx.runtime.is_runc() {
        return skip(
            "apparmor_profile_without_apparmor_fails_create",
            "runc 1.1 ignores the profile when AppArmor is disabled",
        );
    }
    let mut b = ctx.bundle()?;
    b.process()
        .set_apparmor_profile(Some("capsa-test-profile".into()));
    create_fails_naming(&ctx, &b, "apparmorProfile", "AppArmor is not enabled")
}

#[test]
fn selinux_labels_without_selinux_fail_create() -> Result<()> {
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        return skip(
            "selinux_labels_without_selinux_fail_create",
            "this host has SELinux",
        );
    }
    let ctx = TestContext::new("selinux")?;
    if ctx.runtime.is_runc() {
        return skip(
            "selinux_labels_without_selinux_fail_create",
            "runc ignores SELinux labels when SELinux is disabled",
        );
    }
    let label = "system_u:system_r:container_t:s0:c1,c2";
    let mut b = ctx.bundle()?;
    b.process().set_selinux_label(Some(label.into()));
    create_fails_naming(&ctx, &b, "selinuxLabel", "SELinux is not enabled")?;
    let mut b = ctx.bundle()?;
    b.linux().set_mount_label(Some(label.into()));
    create_fails_naming(&ctx, &b, "mountLabel", "SELinux is not enabled")
}

#[test]
fn unsupported_fields_are_refused_by_name() -> Result<()> {
    let ctx = TestContext::new("unsupported")?;
    if ctx.runtime.is_runc() {
        return skip(
            "unsupported_fields_are_refused_by_name",
            "runc 1.1 ignores fields it does not know",
        );
    }
    for (pointer, value, field) in [
        (
            "/linux/intelRdt",
            serde_json::json!({"closID": "capsa-test"}),
            "linux.intelRdt",
        ),
        (
            "/linux/memoryPolicy",
            serde_json::json!({"mode": "MPOL_BIND", "nodes": "0"}),
            "linux.memoryPolicy",
        ),
        (
            "/process/scheduler",
            serde_json::json!({"policy": "SCHED_BATCH"}),
            "process.scheduler",
        ),
    ] {
        let mut b = ctx.bundle()?;
        let mut json = b.to_json()?;
        let (parent, key) = pointer.rsplit_once('/').context("pointer")?;
        json.pointer_mut(parent)
            .and_then(|v| v.as_object_mut())
            .context("parent object")?
            .insert(key.to_string(), value);
        b.spec = serde_json::from_value(json).with_context(|| format!("{field} in the spec"))?;
        create_fails_naming(&ctx, &b, field, "not supported")?;
    }
    Ok(())
}

#[test]
fn io_priority_and_personality_reach_the_payload() -> Result<()> {
    let ctx = TestContext::new("ioprio")?;
    if ctx.runtime.is_runc() {
        return skip(
            "io_priority_and_personality_reach_the_payload",
            "runc 1.1 has no ioPriority",
        );
    }
    let b = ctx.bundle()?;
    let mut json = b.to_json()?;
    json["process"]["ioPriority"] = serde_json::json!({"class": "IOPRIO_CLASS_BE", "priority": 6});
    json["linux"]["personality"] = serde_json::json!({"domain": "LINUX32"});
    json["process"]["args"] = serde_json::json!(["/bin/sh", "-c", "uname -m; sleep 1000"]);
    let mut b = b;
    b.spec = serde_json::from_value(json).context("spec")?;
    let (id, create) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    let pid = ctx.pid_of(&id)?;
    let ionice = std::process::Command::new("ionice")
        .args(["-p", &pid.to_string()])
        .output()
        .context("ionice")?;
    let ionice = String::from_utf8_lossy(&ionice.stdout).to_string();
    ensure!(
        ionice.contains("best-effort: prio 6"),
        "ioPriority reaches the payload: {ionice:?}"
    );
    let deadline = std::time::Instant::now() + WAIT;
    let machine = loop {
        let out = create.stdout_now();
        if !out.trim().is_empty() || std::time::Instant::now() > deadline {
            break out.trim().to_string();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    ensure!(
        machine == "i686" || machine == "armv8l" || machine == "armv7l",
        "LINUX32 personality: uname -m says {machine:?}"
    );
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    Ok(())
}

fn memory_file(cgroup: &str, file: &str) -> Result<Option<std::path::PathBuf>> {
    Ok(cgroup_dirs(cgroup)?
        .into_iter()
        .map(|d| d.join(file))
        .find(|p| p.exists()))
}

fn is_pure_v2() -> bool {
    !std::path::Path::new("/sys/fs/cgroup/memory").exists()
        && std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

#[test]
fn memory_kernel_tcp_is_applied_on_v1_and_warned_about_on_v2() -> Result<()> {
    let ctx = TestContext::new("kernel-tcp")?;
    let mut b = ctx.bundle()?;
    let resources: LinuxResources =
        serde_json::from_value(serde_json::json!({"memory": {"kernelTCP": 10485760}}))?;
    b.linux().set_resources(Some(resources));
    b.payload("sleep 1000");
    let (id, out) = ctx.create(&b, &[])?;
    if is_pure_v2() {
        if !ctx.runtime.is_runc() {
            ensure!(
                out.stderr.contains("kernelTCP"),
                "create warns that kernelTCP has no effect on v2: {out}"
            );
        }
    } else {
        let file = memory_file(&b.cgroup, "memory.kmem.tcp.limit_in_bytes")?
            .context("the container's memory cgroup has no memory.kmem.tcp.limit_in_bytes")?;
        let value = std::fs::read_to_string(&file)?;
        if ctx.runtime.is_runc() && value.trim() != "10485760" {
            return skip(
                "memory_kernel_tcp_is_applied_on_v1_and_warned_about_on_v2",
                "runc 1.1 ignores kernelTCP",
            );
        }
        ensure!(value.trim() == "10485760", "kmem.tcp limit: {value}");
    }
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    Ok(())
}

#[test]
fn resources_that_cannot_be_honoured_fail_create_naming_the_field() -> Result<()> {
    let ctx = TestContext::new("resources-refused")?;
    if ctx.runtime.is_runc() {
        return skip(
            "resources_that_cannot_be_honoured_fail_create_naming_the_field",
            "runc 1.1 skips unknown hugepage sizes and ignores rdma without the controller",
        );
    }
    let mut cases = vec![
        (
            serde_json::json!({"hugepageLimits": [{"pageSize": "3MB", "limit": 1048576}]}),
            "hugepageLimits",
        ),
        (
            serde_json::json!({"rdma": {"capsa_test_hca": {"hcaHandles": 2}}}),
            "rdma",
        ),
    ];
    if is_pure_v2() {
        cases.push((
            serde_json::json!({"memory": {"swappiness": 10}}),
            "swappiness",
        ));
        cases.push((
            serde_json::json!({"memory": {"disableOOMKiller": true}}),
            "disableOOMKiller",
        ));
    } else {
        cases.push((
            serde_json::json!({"memory": {"useHierarchy": false}}),
            "useHierarchy",
        ));
    }
    for (json, field) in cases {
        let mut b = ctx.bundle()?;
        b.linux().set_resources(Some(serde_json::from_value(json)?));
        create_fails_naming(&ctx, &b, "linux.resources", field)?;
    }
    Ok(())
}

#[test]
fn check_before_update_refuses_a_limit_below_usage() -> Result<()> {
    let ctx = TestContext::new("check-before-update")?;
    if ctx.runtime.is_runc() {
        return skip(
            "check_before_update_refuses_a_limit_below_usage",
            "runc 1.1 checks on v2 only",
        );
    }
    let mut b = ctx.bundle()?;
    // Hold about 8 MiB in tmpfs-backed memory (charged to the cgroup).
    b.payload("dd if=/dev/zero of=/dev/shm/fill bs=1M count=8 2>/dev/null; sleep 1000");
    let (id, _) = ctx.create(&b, &[])?;
    ctx.rt(&["start", &id])?.ok()?;
    let usage_file = memory_file(&b.cgroup, "memory.usage_in_bytes")?
        .or(memory_file(&b.cgroup, "memory.current")?)
        .context("no memory usage file")?;
    let deadline = std::time::Instant::now() + WAIT;
    while std::fs::read_to_string(&usage_file)?
        .trim()
        .parse::<u64>()
        .unwrap_or(0)
        < 8 << 20
    {
        ensure!(
            std::time::Instant::now() < deadline,
            "the payload did not fill memory"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let update = ctx.subdir("update")?.join("resources.json");
    std::fs::write(
        &update,
        serde_json::json!({"memory": {"limit": 4194304, "checkBeforeUpdate": true}}).to_string(),
    )?;
    let out = ctx
        .rt(&["update", "--resources", path_str(&update)?, &id])?
        .failed()?;
    ensure!(
        out.stderr.contains("checkBeforeUpdate") && out.stderr.contains("usage"),
        "update says why: {out}"
    );
    ensure!(
        ctx.state(&id)?["status"] == "running",
        "the container still runs"
    );
    ctx.rt(&["delete", "--force", &id])?.ok()?;
    Ok(())
}
