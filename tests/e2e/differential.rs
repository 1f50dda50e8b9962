//! Differential tests: the same bundle run under runc and under the runtime under test must give
//! the payload the same view of itself, once what legitimately differs between two runs (pids,
//! mount ids, device numbers, bundle and cgroup paths, the root mount's source) is normalised.
//! With `CAPSA_TEST_RUNTIME=runc` both sides are runc, which checks the normalisation itself.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use capsa_tests::bundle::Bundle;
use capsa_tests::context::{TestContext, path_str, skip};
use capsa_tests::mountinfo;
use capsa_tests::probe::{Facts, Probe};
use capsa_tests::rootfs::{EXTRA_GIDS, USER_GID, USER_UID};
use capsa_tests::runtime::{RuntimeKind, which};
use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxIdMappingBuilder, LinuxNamespaceType, MountBuilder,
    PosixRlimitBuilder, PosixRlimitType, User,
};

/// /proc/self/status lines that describe the process's identity and privileges (the others are
/// pids, memory and scheduling counters).
const STATUS_FIELDS: &[&str] = &[
    "Umask",
    "Uid",
    "Gid",
    "Groups",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
    "NoNewPrivs",
    "Seccomp",
    "Seccomp_filters",
];

/// The payload's normalised view of itself: fact name → text.
type View = BTreeMap<String, String>;

fn normalise(facts: &Facts, b: &Bundle) -> Result<View> {
    let bundle = b.dir.canonicalize()?;
    let bundle = path_str(&bundle)?.to_owned();
    let scrub = |s: &str| {
        s.replace(&bundle, "<bundle>")
            .replace(&b.cgroup, "<cgroup>")
    };
    let readonly_paths = b
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.readonly_paths().clone())
        .unwrap_or_default();
    let mut view = View::new();
    for name in facts.names() {
        let fact = facts.get(name)?;
        let text = match name {
            "status" => fact
                .output
                .lines()
                .filter(|l| {
                    l.split_once(':')
                        .is_some_and(|(k, _)| STATUS_FIELDS.contains(&k))
                })
                .collect::<Vec<_>>()
                .join("\n"),
            // Sorted by mount point (stable, so stacked mounts keep their order): the order
            // of unrelated mounts, e.g. the device binds of a user namespace, means nothing.
            "mountinfo" => {
                let mut mounts = mountinfo::parse(&fact.output)?;
                mounts.sort_by(|a, b| a.mount_point.cmp(&b.mount_point));
                mounts
                    .into_iter()
                    .map(|m| {
                        let mut mount_options = m.mount_options.clone();
                        let mut super_options = m.super_options.clone();
                        // Both legitimate, both within the spec:
                        // - runc 1.1 leaves the cgroup v1 tmpfs at /sys/fs/cgroup writable although
                        //   the mount says `ro`; capsa mounts it read-only.
                        // - capsa remounts readonlyPaths also nosuid,nodev,noexec; runc 1.1 only ro.
                        if m.mount_point == "/sys/fs/cgroup" && m.fs_type == "tmpfs" {
                            mount_options.retain(|o| o != "ro" && o != "rw");
                            super_options.retain(|o| o != "ro" && o != "rw");
                        }
                        if readonly_paths.contains(&m.mount_point) {
                            mount_options
                                .retain(|o| !["nosuid", "nodev", "noexec"].contains(&&**o));
                        }
                        mount_options.sort();
                        super_options.sort();
                        // The root mount's source is whatever the runtime mounted the rootfs from.
                        let source = if m.mount_point == "/" {
                            "<rootfs>"
                        } else {
                            &m.source
                        };
                        scrub(&format!(
                            "{} root={} type={} source={source} opts={} super={}",
                            m.mount_point,
                            m.root,
                            m.fs_type,
                            mount_options.join(","),
                            super_options.join(",")
                        ))
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
            _ => scrub(&fact.output),
        };
        view.insert(name.to_owned(), format!("{text}\n[exit {}]", fact.status));
    }
    Ok(view)
}

/// Runs the standard probe in a bundle configured by `configure` under `kind`.
fn view_under(kind: RuntimeKind, label: &str, configure: &dyn Fn(&mut Bundle)) -> Result<View> {
    let ctx = TestContext::with_runtime(label, kind)?;
    let mut b = ctx.bundle()?;
    configure(&mut b);
    let facts = ctx
        .probe(&mut b, &Probe::standard())
        .with_context(|| format!("probe under {}", kind.name()))?;
    normalise(&facts, &b)
}

/// The lines of `want` (runc) missing from `got` and the extra lines of `got`, or both texts
/// when only the order differs.
fn line_diff(want: &str, got: &str, subject: &str) -> String {
    let want_lines: Vec<&str> = want.lines().collect();
    let got_lines: Vec<&str> = got.lines().collect();
    let mut out = String::new();
    for l in want_lines.iter().filter(|l| !got_lines.contains(l)) {
        out.push_str(&format!("  only under runc:     {l}\n"));
    }
    for l in got_lines.iter().filter(|l| !want_lines.contains(l)) {
        out.push_str(&format!("  only under {subject}: {l}\n"));
    }
    if out.is_empty() {
        out = format!(
            "same lines in another order:\n--- runc ---\n{want}\n--- {subject} ---\n{got}\n"
        );
    }
    out
}

/// Compares the view under runc with the view under the runtime under test.
fn same_view_as_runc(test: &str, configure: &dyn Fn(&mut Bundle)) -> Result<()> {
    if which("runc").is_none() {
        return skip(test, "runc is not installed");
    }
    let subject = RuntimeKind::from_env()?;
    let reference = view_under(RuntimeKind::Runc, test, configure)?;
    let seen = view_under(subject, test, configure)?;
    let mut diffs = Vec::new();
    for (name, want) in &reference {
        let got = seen.get(name).map(String::as_str).unwrap_or("<missing>");
        if got != want {
            diffs.push(format!(
                "fact {name}:\n{}",
                line_diff(want, got, subject.name())
            ));
        }
    }
    if !diffs.is_empty() {
        bail!(
            "the payload's view differs from runc's:\n{}",
            diffs.join("\n")
        );
    }
    Ok(())
}

#[test]
fn default_bundle_looks_the_same_as_under_runc() -> Result<()> {
    same_view_as_runc("diff-default", &|_| {})
}

#[test]
fn configured_process_and_mounts_look_the_same_as_under_runc() -> Result<()> {
    same_view_as_runc("diff-configured", &|b| {
        let mut user = User::default();
        user.set_uid(USER_UID);
        user.set_gid(USER_GID);
        user.set_additional_gids(Some(EXTRA_GIDS.to_vec()));
        user.set_umask(Some(0o027));
        let p = b.process();
        p.set_user(user);
        p.set_cwd("/home/capsa".into());
        p.set_env(Some(vec![
            "PATH=/bin".to_owned(),
            "CAPSA=differential".to_owned(),
        ]));
        p.set_no_new_privileges(Some(false));
        let set = [Capability::Kill, Capability::NetBindService]
            .into_iter()
            .collect::<std::collections::HashSet<_>>();
        let mut caps = LinuxCapabilities::default();
        caps.set_bounding(Some(
            [
                Capability::Kill,
                Capability::NetBindService,
                Capability::Chown,
            ]
            .into_iter()
            .collect(),
        ));
        caps.set_effective(Some(set.clone()));
        caps.set_permitted(Some(set.clone()));
        caps.set_inheritable(Some(set.clone()));
        caps.set_ambient(Some(set));
        p.set_capabilities(Some(caps));
        p.set_rlimits(Some(vec![
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNofile)
                .soft(512u64)
                .hard(1024u64)
                .build()
                .expect("rlimit"),
            PosixRlimitBuilder::default()
                .typ(PosixRlimitType::RlimitNproc)
                .soft(300u64)
                .hard(400u64)
                .build()
                .expect("rlimit"),
        ]));
        b.spec.set_hostname(Some("capsa-diff".into()));
        b.mount(
            MountBuilder::default()
                .destination("/mnt/scratch")
                .typ("tmpfs")
                .source("tmpfs")
                .options(vec![
                    "nosuid".to_owned(),
                    "noexec".to_owned(),
                    "nodev".to_owned(),
                    "size=1m".to_owned(),
                ])
                .build()
                .expect("tmpfs mount"),
        );
        let rootfs = b.rootfs();
        b.bind(&rootfs.join("etc"), "/mnt/etc", &["ro"]);
        let linux = b.linux();
        let mut masked = linux.masked_paths().clone().unwrap_or_default();
        masked.push("/etc/group".to_owned());
        linux.set_masked_paths(Some(masked));
        let mut ro = linux.readonly_paths().clone().unwrap_or_default();
        ro.push("/home".to_owned());
        linux.set_readonly_paths(Some(ro));
    })
}

#[test]
fn user_namespace_looks_the_same_as_under_runc() -> Result<()> {
    same_view_as_runc("diff-userns", &|b| {
        let map = LinuxIdMappingBuilder::default()
            .container_id(0u32)
            .host_id(200000u32)
            .size(65536u32)
            .build()
            .expect("id mapping");
        b.namespace(LinuxNamespaceType::User, None);
        b.linux().set_uid_mappings(Some(vec![map]));
        b.linux().set_gid_mappings(Some(vec![map]));
    })
}
