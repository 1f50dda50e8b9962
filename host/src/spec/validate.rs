//! Checks on a parsed config.json that serde cannot express: required sections, namespace
//! combinations, sysctls that need a namespace, duplicate entries. Each error names the field.

use std::collections::HashSet;

use oci_spec::runtime::{LinuxNamespaceType, Process, Spec};

use crate::error::{Result, invalid};

/// Validates `spec` for the envelope; the error names the offending field and value.
pub fn validate(spec: &Spec) -> Result<()> {
    if !spec.version().starts_with("1.") {
        return Err(invalid(format!(
            "ociVersion {:?} is not supported (1.x is)",
            spec.version()
        )));
    }
    // `process` is optional at create and required at start (config.md): a container without
    // one is created (namespaces, mounts, cgroup, hooks) and refuses `start`.
    if let Some(process) = spec.process() {
        validate_process(process)?;
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("config.json has no linux section"))?;

    if let Some(propagation) = linux.rootfs_propagation()
        && crate::envelope::mount_options::propagation_flag(propagation).is_none()
    {
        return Err(invalid(format!(
            "linux.rootfsPropagation {propagation:?} is not one of shared, slave, private, \
             unbindable (or their recursive r- forms)"
        )));
    }
    for m in spec.mounts().as_deref().unwrap_or_default() {
        validate_idmapped(m)?;
    }
    let mut seen = HashSet::new();
    let namespaces = linux.namespaces().as_deref().unwrap_or_default();
    for ns in namespaces {
        if !seen.insert(ns.typ()) {
            return Err(invalid(format!("namespace {} is listed twice", ns.typ())));
        }
        if ns.typ() == LinuxNamespaceType::Time {
            return Err(invalid("the time namespace is not supported"));
        }
        if let Some(path) = ns.path()
            && !path.exists()
        {
            return Err(invalid(format!(
                "namespace {} path {} does not exist",
                ns.typ(),
                path.display()
            )));
        }
    }
    let new = |t: LinuxNamespaceType| namespaces.iter().any(|n| n.typ() == t);
    if !new(LinuxNamespaceType::Mount) {
        return Err(invalid(
            "linux.namespaces has no mount namespace: capsa requires one (the spec lets a \
             container share the runtime's, but the rootfs bind, /proc, /dev and the masked paths \
             would then be mounted in the host's namespace)",
        ));
    }
    let user_is_new = namespaces
        .iter()
        .any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
    let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
        && linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
    if user_is_new && !has_maps {
        return Err(invalid(
            "a new user namespace needs linux.uidMappings and linux.gidMappings",
        ));
    }
    if !new(LinuxNamespaceType::User) && has_maps {
        return Err(invalid(
            "linux.uidMappings are given but there is no user namespace",
        ));
    }
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !new(LinuxNamespaceType::Uts) {
        return Err(invalid("hostname is set but there is no uts namespace"));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !new(LinuxNamespaceType::Uts) {
        return Err(invalid("domainname is set but there is no uts namespace"));
    }
    for key in linux
        .sysctl()
        .as_ref()
        .map(|m| m.keys())
        .into_iter()
        .flatten()
    {
        let needs = sysctl_namespace(key).ok_or_else(|| {
            invalid(format!(
                "sysctl {key:?} is not namespaced: it would change the host"
            ))
        })?;
        if !new(needs) {
            return Err(invalid(format!(
                "sysctl {key:?} needs a {needs} namespace, which the config does not have"
            )));
        }
    }
    crate::envelope::lsm::check_spec(spec)?;
    refuse_unsupported(linux)?;
    if let Some(seccomp) = linux.seccomp() {
        crate::envelope::seccomp::check(seccomp)?;
    }
    if let Some(hooks) = spec.hooks() {
        #[allow(deprecated)]
        let all = [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.start_container(),
            hooks.poststart(),
            hooks.poststop(),
        ];
        for hook in all.into_iter().flatten().flatten() {
            if !hook.path().is_absolute() {
                return Err(invalid(format!(
                    "hook path {} is not absolute",
                    hook.path().display()
                )));
            }
        }
    }
    Ok(())
}

/// Fields of the spec capsa-runtime does not implement: refused by name, never ignored.
fn refuse_unsupported(linux: &oci_spec::runtime::Linux) -> Result<()> {
    let unsupported = [
        ("linux.intelRdt", linux.intel_rdt().is_some()),
        ("linux.memoryPolicy", linux.memory_policy().is_some()),
        (
            "linux.netDevices",
            linux.net_devices().as_ref().is_some_and(|d| !d.is_empty()),
        ),
        (
            "linux.timeOffsets",
            linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()),
        ),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
        return Err(invalid(format!(
            "{field} is not supported by capsa-runtime"
        )));
    }
    if let Some(personality) = linux.personality()
        && personality.flags().as_ref().is_some_and(|f| !f.is_empty())
    {
        return Err(invalid(
            "linux.personality.flags are not supported (the spec defines none yet)",
        ));
    }
    Ok(())
}

/// Validates a process object: config.json's, or one `exec` runs (from `--process` or built from
/// the container's with the command line's changes).
pub fn validate_process(process: &Process) -> Result<()> {
    crate::envelope::lsm::check_process(process)?;
    if process.scheduler().is_some() {
        return Err(invalid(
            "process.scheduler is not supported by capsa-runtime",
        ));
    }
    if process.exec_cpu_affinity().is_some() {
        return Err(invalid(
            "process.execCPUAffinity is not supported by capsa-runtime",
        ));
    }
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args is empty: there is nothing to run"));
    }
    if !process.cwd().is_absolute() {
        return Err(invalid(format!(
            "process.cwd {:?} is not an absolute path",
            process.cwd()
        )));
    }
    if let Some(rlimits) = process.rlimits() {
        let mut seen = HashSet::new();
        for r in rlimits {
            if !seen.insert(format!("{:?}", r.typ())) {
                return Err(invalid(format!("rlimit {:?} is listed twice", r.typ())));
            }
            if r.soft() > r.hard() {
                return Err(invalid(format!(
                    "rlimit {:?}: soft limit {} is above hard limit {}",
                    r.typ(),
                    r.soft(),
                    r.hard()
                )));
            }
        }
    }
    Ok(())
}

/// The namespace a sysctl belongs to, or None if it is global (and so refused).
fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC: [&str; 6] = [
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
    ];
    if IPC.contains(&key)
        || key == "kernel.shmmni"
        || key == "kernel.shm_rmid_forced"
        || key.starts_with("fs.mqueue.")
    {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// An id-mapped mount (OCI 1.2): both mappings or none, on a bind mount.
fn validate_idmapped(m: &oci_spec::runtime::Mount) -> Result<()> {
    let dest = m.destination().display();
    let options = m.options().as_deref().unwrap_or_default();
    let idmap_option = crate::envelope::mount_options::asks_idmap(m);
    match (m.uid_mappings(), m.gid_mappings()) {
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(format!(
                "mount on {dest}: uidMappings and gidMappings go together (one is missing)"
            )));
        }
        (None, None) if !idmap_option => return Ok(()),
        _ => {}
    }
    let bind =
        m.typ().as_deref() == Some("bind") || options.iter().any(|o| o == "bind" || o == "rbind");
    if !bind {
        return Err(invalid(format!(
            "mount on {dest}: id-mapped mounts (uidMappings/gidMappings, idmap) are bind mounts only"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(edit: impl FnOnce(&mut serde_json::Value)) -> Spec {
        let mut value: serde_json::Value =
            serde_json::from_str(super::super::default_spec_json()).expect("default parses");
        edit(&mut value);
        serde_json::from_value(value).expect("spec parses")
    }

    #[test]
    fn global_sysctl_is_refused() {
        let spec = spec_with(|v| v["linux"]["sysctl"] = serde_json::json!({"vm.swappiness": "1"}));
        let err = validate(&spec).expect_err("refused").to_string();
        assert!(err.contains("vm.swappiness"), "{err}");
    }

    #[test]
    fn missing_mount_namespace_is_refused() {
        let spec = spec_with(|v| {
            v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        });
        let err = validate(&spec).expect_err("refused").to_string();
        assert!(err.contains("mount namespace"), "{err}");
    }

    #[test]
    fn unknown_namespace_type_names_the_value() {
        let mut value: serde_json::Value =
            serde_json::from_str(super::super::default_spec_json()).expect("default parses");
        value["linux"]["namespaces"] = serde_json::json!([{"type": "bogus"}]);
        let bytes = serde_json::to_vec(&value).expect("serialises");
        let err = super::super::parse_config(&bytes)
            .expect_err("refused")
            .to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
