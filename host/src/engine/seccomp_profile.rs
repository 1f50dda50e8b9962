//! `--security-opt seccomp=PROFILE.json`: a profile in Docker's format (the one dockerd, podman
//! and `/usr/share/containers/seccomp.json` use: `archMap`, rules with `includes`/`excludes` by
//! capability, architecture and kernel version) turned into the OCI `linux.seccomp` this
//! container gets, as dockerd does: a rule is kept when every capability it includes is in the
//! container's set, none it excludes is, and the architecture and kernel match.

use serde_json::{Value, json};

use super::error::{Result, invalid};

/// The Go name of this machine's architecture, which Docker's `arches` lists use.
fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// libseccomp's name of this machine's architecture (`archMap` keys).
fn scmp_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "SCMP_ARCH_X86_64",
        "x86" => "SCMP_ARCH_X86",
        "aarch64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "powerpc64" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => "SCMP_ARCH_NATIVE",
    }
}

/// This kernel's `major.minor`, for `minKernel`.
fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_version(&release).unwrap_or((0, 0))
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok()).unwrap_or(0);
    Some((major, minor))
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// Reads the profile of `--security-opt seccomp=SOURCE` and converts it for a container with
/// `capabilities`. `source` is a file, or the profile itself: the docker CLI reads the file and
/// sends its contents in `HostConfig.SecurityOpt`.
pub(crate) fn load(source: &str, capabilities: &[String]) -> Result<Value> {
    let inline = source.trim_start().starts_with('{');
    let flag = if inline {
        "--security-opt seccomp=(the profile given inline)".to_string()
    } else {
        format!("--security-opt seccomp={source}")
    };
    let flag = flag.as_str();
    let text = if inline {
        source.to_string()
    } else {
        std::fs::read_to_string(source).map_err(|e| invalid(flag, e.to_string()))?
    };
    let profile: Value = serde_json::from_str(&text)
        .map_err(|e| invalid(flag, format!("not a seccomp profile (JSON): {e}")))?;
    to_oci(&profile, capabilities, go_arch(), kernel_version())
        .map_err(|reason| invalid(flag, reason))
}

/// Converts a profile capsa holds (the default one) for a container with `capabilities`, on this
/// machine's architecture and kernel.
pub(crate) fn convert(profile: &Value, capabilities: &[String]) -> Result<Value> {
    to_oci(profile, capabilities, go_arch(), kernel_version())
        .map_err(|reason| invalid("the default seccomp profile", reason))
}

/// The conversion itself, for a given architecture and kernel (unit-tested).
fn to_oci(
    profile: &Value,
    capabilities: &[String],
    arch: &str,
    kernel: (u32, u32),
) -> std::result::Result<Value, String> {
    let default_action = profile["defaultAction"]
        .as_str()
        .ok_or("the profile has no defaultAction")?;
    let mut oci = json!({ "defaultAction": default_action });
    if let Some(errno) = profile.get("defaultErrnoRet").filter(|v| !v.is_null()) {
        oci["defaultErrnoRet"] = errno.clone();
    }
    let mut architectures: Vec<String> = Vec::new();
    if let Some(map) = profile["archMap"].as_array() {
        for entry in map {
            if entry["architecture"] == scmp_arch() {
                architectures.push(scmp_arch().to_string());
                architectures.extend(
                    strings(&entry["subArchitectures"])
                        .iter()
                        .map(|s| s.to_string()),
                );
            }
        }
    } else {
        architectures.extend(
            strings(&profile["architectures"])
                .iter()
                .map(|s| s.to_string()),
        );
    }
    if !architectures.is_empty() {
        oci["architectures"] = json!(architectures);
    }
    for key in ["flags", "listenerPath", "listenerMetadata"] {
        if let Some(v) = profile.get(key).filter(|v| !v.is_null()) {
            oci[key] = v.clone();
        }
    }
    let has = |cap: &str| capabilities.iter().any(|c| c == cap);
    let mut syscalls = Vec::new();
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        let includes = &rule["includes"];
        let excludes = &rule["excludes"];
        if !strings(&includes["caps"]).iter().all(|c| has(c))
            || strings(&excludes["caps"]).iter().any(|c| has(c))
        {
            continue;
        }
        let arches = strings(&includes["arches"]);
        if !arches.is_empty() && !arches.contains(&arch) {
            continue;
        }
        if strings(&excludes["arches"]).contains(&arch) {
            continue;
        }
        if let Some(min) = includes["minKernel"].as_str() {
            let min = parse_version(min).ok_or(format!("minKernel {min:?} is not a version"))?;
            if kernel < min {
                continue;
            }
        }
        let mut names: Vec<&str> = strings(&rule["names"]);
        if let Some(name) = rule["name"].as_str() {
            names.push(name);
        }
        if names.is_empty() {
            continue;
        }
        let action = rule["action"]
            .as_str()
            .ok_or_else(|| format!("the rule for {names:?} has no action"))?;
        let mut out = json!({ "names": names, "action": action });
        for key in ["errnoRet", "args"] {
            if let Some(v) = rule.get(key).filter(|v| !v.is_null()) {
                out[key] = v.clone();
            }
        }
        syscalls.push(out);
    }
    oci["syscalls"] = json!(syscalls);
    Ok(oci)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_follow_capabilities_arches_and_kernel() {
        let profile = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "archMap": [
                {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
                {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
            ],
            "syscalls": [
                {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
                {"names": ["bpf"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["bpf"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
                {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64", "x32"]}},
                {"names": ["breakpoint"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["arm"]}},
                {"names": ["newcall"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.2"}},
                {"name": "socket", "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}
            ]
        });
        let oci = to_oci(&profile, &["CAP_KILL".into()], "amd64", (6, 18)).expect("converts");
        let names: Vec<&str> = oci["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| strings(&r["names"]))
            .collect();
        assert_eq!(names, ["read", "write", "bpf", "arch_prctl", "socket"]);
        assert_eq!(oci["syscalls"][1]["action"], "SCMP_ACT_ERRNO");
        assert_eq!(oci["syscalls"][3]["args"][0]["value"], 1);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(
                oci["architectures"],
                json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
            );
        }
        let admin = to_oci(&profile, &["CAP_SYS_ADMIN".into()], "amd64", (7, 3)).expect("converts");
        let names: Vec<&str> = admin["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|r| strings(&r["names"]))
            .collect();
        assert_eq!(
            names,
            ["read", "write", "bpf", "arch_prctl", "newcall", "socket"]
        );
        assert_eq!(admin["syscalls"][2]["action"], "SCMP_ACT_ALLOW");
    }

    #[test]
    fn a_profile_without_default_action_is_refused() {
        let err = to_oci(&json!({"syscalls": []}), &[], "amd64", (6, 1)).expect_err("refused");
        assert!(err.contains("defaultAction"), "{err}");
    }
}
