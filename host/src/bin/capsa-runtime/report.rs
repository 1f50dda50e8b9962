//! The read-only reports: `list`, `ps` and `features`, formatted as runc formats them.

use anyhow::Result;
use capsa_host::runtime::StateRoot;

use crate::cli::Format;

/// `list`: a table (ID PID STATUS BUNDLE CREATED OWNER) or a JSON array of states.
pub fn list(root: &StateRoot, format: Format, quiet: bool) -> Result<()> {
    let records = root.list()?;
    if quiet {
        for r in &records {
            println!("{}", r.id);
        }
        return Ok(());
    }
    match format {
        Format::Json => {
            let states: Vec<_> = records.iter().map(|r| r.oci_state(r.status())).collect();
            println!("{}", serde_json::to_string(&states)?);
        }
        Format::Table => {
            let rows: Vec<[String; 6]> = records
                .iter()
                .map(|r| {
                    let status = r.status();
                    let state = r.oci_state(status);
                    [
                        r.id.clone(),
                        state.pid.to_string(),
                        status.to_string(),
                        r.bundle.display().to_string(),
                        r.created.clone(),
                        "root".to_string(),
                    ]
                })
                .collect();
            let header = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"].map(String::from);
            let mut widths = [0usize; 6];
            for row in std::iter::once(&header).chain(&rows) {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.len());
                }
            }
            for row in std::iter::once(&header).chain(&rows) {
                let line: Vec<String> = row
                    .iter()
                    .zip(widths)
                    .map(|(cell, w)| format!("{cell:<w$}"))
                    .collect();
                println!("{}", line.join("   ").trim_end());
            }
        }
    }
    Ok(())
}

/// `ps`: the container's pids as a JSON array, or ps(1)'s table filtered to them.
pub fn ps(root: &StateRoot, id: &str, format: Format, ps_args: &[String]) -> Result<()> {
    let (_, record) = root.open(id)?;
    let pids = match &record.cgroup {
        Some(cgroup) => cgroup.pids()?,
        None => Vec::new(),
    };
    match format {
        Format::Json => println!("{}", serde_json::to_string(&pids)?),
        Format::Table => print!("{}", capsa_host::runtime::ps_table(&pids, ps_args)?),
    }
    Ok(())
}

/// `features`: what this runtime supports, in the runtime spec's features format.
pub fn features() -> String {
    let features = serde_json::json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": "1.2.0",
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": [
            "async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec", "idmap", "mand",
            "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime", "nostrictatime",
            "nosuid", "private", "rbind", "relatime", "remount", "ro", "rprivate", "rshared",
            "ridmap", "rslave", "runbindable", "rw", "shared", "slave", "strictatime", "suid", "sync",
            "tmpcopyup", "unbindable"
        ],
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"],
            "capabilities": capabilities(),
            "cgroup": {"v1": true, "v2": true, "systemd": false, "systemdUser": false},
            "seccomp": capsa_host::envelope::seccomp::features(),
            // features.md: whether the runtime supports them, not whether this host has them
            // (on a host without one, a profile or label fails create).
            "apparmor": {"enabled": true},
            "selinux": {"enabled": true},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "org.opencontainers.runtime-spec.features.capsa.version": env!("CARGO_PKG_VERSION"),
            "io.github.seccomp.libseccomp.version": capsa_host::envelope::seccomp::libseccomp_version()
        }
    });
    serde_json::to_string_pretty(&features).unwrap_or_default()
}

fn capabilities() -> Vec<String> {
    let mut all: Vec<String> = caps::all().iter().map(|c| c.to_string()).collect();
    all.sort();
    all
}
