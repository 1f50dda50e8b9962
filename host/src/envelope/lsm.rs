//! Linux security modules: `process.apparmorProfile`, `process.selinuxLabel` and
//! `linux.mountLabel`. A security setting is never a silent no-op: one the kernel cannot apply
//! (no AppArmor, no SELinux) fails `create` (or `exec`) before anything exists, as runc and crun
//! do; one it can apply is, on the next exec (`/proc/self/attr/.../exec`) and as the `context=`
//! option of the container's own mounts.

use std::path::Path;

use oci_spec::runtime::{Process, Spec};

use crate::error::{Context, Result, invalid};

/// Whether AppArmor is enabled in this kernel (what runc's `apparmor.IsEnabled` reads).
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|v| v.trim_start().starts_with('Y'))
}

/// Whether SELinux is enabled: its filesystem is mounted (what libselinux checks).
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

fn non_empty(value: &Option<String>) -> Option<&str> {
    value.as_deref().filter(|v| !v.is_empty())
}

/// Refuses a process whose profile or label this kernel cannot apply.
pub fn check_process(process: &Process) -> Result<()> {
    if let Some(profile) = non_empty(process.apparmor_profile())
        && !apparmor_enabled()
    {
        return Err(invalid(format!(
            "process.apparmorProfile {profile:?} cannot be applied: AppArmor is not enabled in \
             this kernel (/sys/module/apparmor/parameters/enabled)"
        )));
    }
    if let Some(label) = non_empty(process.selinux_label())
        && !selinux_enabled()
    {
        return Err(invalid(format!(
            "process.selinuxLabel {label:?} cannot be applied: SELinux is not enabled on this \
             host (no /sys/fs/selinux)"
        )));
    }
    Ok(())
}

/// Refuses a `linux.mountLabel` this kernel cannot apply.
pub fn check_spec(spec: &Spec) -> Result<()> {
    let label = spec
        .linux()
        .as_ref()
        .and_then(|l| non_empty(l.mount_label()));
    if let Some(label) = label
        && !selinux_enabled()
    {
        return Err(invalid(format!(
            "linux.mountLabel {label:?} cannot be applied: SELinux is not enabled on this host \
             (no /sys/fs/selinux)"
        )));
    }
    Ok(())
}

/// Sets the AppArmor profile and the SELinux label the payload gets at its exec. Called in the
/// container (its /proc) before the capabilities are dropped and before no_new_privs.
pub fn apply_process_labels(process: &Process) -> Result<()> {
    if let Some(profile) = non_empty(process.apparmor_profile()) {
        // The AppArmor-specific file on kernels with stacking (5.1+), the shared one before.
        let path = ["/proc/self/attr/apparmor/exec", "/proc/self/attr/exec"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or_else(|| {
                invalid("process.apparmorProfile: the container has no /proc/self/attr")
            })?;
        std::fs::write(path, format!("exec {profile}"))
            .with(|| format!("process.apparmorProfile {profile:?}: write {path}"))?;
    }
    if let Some(label) = non_empty(process.selinux_label()) {
        std::fs::write("/proc/self/attr/exec", label)
            .with(|| format!("process.selinuxLabel {label:?}: write /proc/self/attr/exec"))?;
    }
    Ok(())
}

/// `data` with the SELinux `context=` option for a mount of type `typ`, as runc labels the
/// container's own filesystems (tmpfs, devpts, mqueue…; not proc, sysfs or cgroup, which
/// SELinux labels by policy, nor binds, which keep their source's labels).
pub fn with_mount_label(data: &str, typ: &str, label: Option<&str>) -> String {
    let Some(label) = label.filter(|l| !l.is_empty()) else {
        return data.to_string();
    };
    if matches!(typ, "proc" | "sysfs" | "cgroup" | "cgroup2" | "bind" | "") {
        return data.to_string();
    }
    let context = format!("context=\"{label}\"");
    if data.is_empty() {
        context
    } else {
        format!("{data},{context}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_label_is_added_to_the_container_s_own_filesystems() {
        let label = Some("system_u:object_r:container_file_t:s0:c1,c2");
        assert_eq!(
            with_mount_label("mode=755", "tmpfs", label),
            "mode=755,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
        assert_eq!(with_mount_label("", "mqueue", Some("l")), "context=\"l\"");
        assert_eq!(with_mount_label("", "proc", label), "");
        assert_eq!(with_mount_label("x", "tmpfs", None), "x");
    }
}
