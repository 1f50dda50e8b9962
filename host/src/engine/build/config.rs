//! The instructions that only change the image config (`ENV`, `LABEL`, `CMD`, `ENTRYPOINT`,
//! `EXPOSE`, `VOLUME`, `WORKDIR`, `USER`, `STOPSIGNAL`, `HEALTHCHECK`, `ONBUILD`, `SHELL`,
//! `MAINTAINER`), with Docker's classic builder's semantics: variables expanded where Docker
//! expands them (not in `CMD`/`ENTRYPOINT`/`RUN`, which the shell sees), the shell form wrapped
//! in the stage's `SHELL`, an `ENTRYPOINT` dropping an inherited `CMD`, `WORKDIR` relative to
//! the previous one. Each returns the new config and the history's `created_by`.

use capsa_images::build::dockerfile::{self, Args, Instruction};
use capsa_images::build::words;
use serde_json::{Map, Value, json};

use super::Stage;
use crate::engine::error::{Result, invalid};

/// `config[key]` as an object, made one if it is not.
pub(super) fn object<'a>(config: &'a mut Value, key: &str) -> &'a mut Map<String, Value> {
    if !config.is_object() {
        *config = json!({});
    }
    let slot = &mut config[key];
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("made an object just above"),
    }
}

/// The raw text of shell-form arguments (exec form joined, for keywords that take words).
fn text(args: &Args) -> String {
    match args {
        Args::Shell(s) => s.clone(),
        Args::Exec(v) => v.join(" "),
    }
}

/// A list as Go's `%q` prints it (`["sh" "-c" "x"]`): how Docker's classic builder writes
/// CMD, ENTRYPOINT and SHELL into the history.
fn go_list(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).unwrap_or_default())
        .collect();
    format!("[{}]", quoted.join(" "))
}

/// A command as the config stores it: the exec form as is, the shell form in the shell.
pub(super) fn command(st: &Stage, args: &Args) -> Vec<String> {
    match args {
        Args::Exec(v) => v.clone(),
        Args::Shell(s) => {
            let mut cmd = st.shell();
            cmd.push(s.clone());
            cmd
        }
    }
}

/// Applies one metadata instruction to a copy of the stage's config.
pub(super) fn apply(st: &Stage, i: &Instruction, escape: char) -> Result<(Value, String)> {
    let mut config = st.config.clone();
    if !config.is_object() {
        config = json!({});
    }
    let nop = |shown: &str| format!("/bin/sh -c #(nop)  {shown}");
    let what = |reason: String| invalid(format!("{} (line {})", i.keyword, i.line), reason);
    let expand = |w: &str| st.expand(w, escape);
    let expand_words = |t: &str| words::expand_fields(t, &|n| st.lookup(n), escape).map_err(what);
    let expose_words =
        |t: &str| words::split_and_expand(t, &|n| st.lookup(n), escape).map_err(what);
    let created_by = match i.keyword.as_str() {
        "ENV" | "LABEL" => {
            let pairs = words::key_values_for(&i.keyword, &text(&i.args), escape).map_err(what)?;
            if pairs.is_empty() {
                return Err(what(format!(
                    "{} requires at least one argument",
                    i.keyword
                )));
            }
            let mut shown = Vec::new();
            for (key, value) in pairs {
                let key = expand(&key)?;
                let value = expand(value.as_deref().unwrap_or(""))?;
                if key.is_empty() {
                    return Err(what(format!("{} names can not be blank", i.keyword)));
                }
                shown.push(format!("{key}={value}"));
                if i.keyword == "ENV" {
                    let mut env: Vec<Value> = config
                        .get("Env")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let prefix = format!("{key}=");
                    env.retain(|e| e.as_str().is_none_or(|e| !e.starts_with(&prefix)));
                    env.push(json!(format!("{key}={value}")));
                    config["Env"] = Value::Array(env);
                } else {
                    object(&mut config, "Labels").insert(key, json!(value));
                }
            }
            nop(&format!("{} {}", i.keyword, shown.join(" ")))
        }
        "CMD" | "ENTRYPOINT" => {
            let cmd = command(st, &i.args);
            let field = if i.keyword == "CMD" {
                "Cmd"
            } else {
                "Entrypoint"
            };
            let value = match &i.args {
                Args::Shell(s) if s.is_empty() && i.keyword == "ENTRYPOINT" => Value::Null,
                _ => json!(cmd),
            };
            config[field] = value;
            if i.keyword == "ENTRYPOINT" {
                // Docker: an ENTRYPOINT drops an inherited CMD (a CMD later in the stage stays).
                config["Cmd"] = Value::Null;
            }
            nop(&format!("{} {}", i.keyword, go_list(&cmd)))
        }
        "EXPOSE" => {
            let mut ports = Vec::new();
            for p in expose_words(&text(&i.args))? {
                ports.extend(exposed_ports(&p).map_err(what)?);
            }
            if ports.is_empty() {
                return Err(what("EXPOSE requires at least one argument".into()));
            }
            let exposed = object(&mut config, "ExposedPorts");
            for p in &ports {
                exposed.insert(p.clone(), json!({}));
            }
            nop(&format!("EXPOSE {}", ports.join(" ")))
        }
        "VOLUME" => {
            let paths = match &i.args {
                Args::Exec(v) => v.iter().map(|p| expand(p)).collect::<Result<Vec<_>>>()?,
                Args::Shell(s) => expand_words(s)?,
            };
            if paths.is_empty() {
                return Err(what("VOLUME requires at least one argument".into()));
            }
            let volumes = object(&mut config, "Volumes");
            for p in &paths {
                if p.is_empty() {
                    return Err(what("VOLUME specified can not be an empty string".into()));
                }
                volumes.insert(p.clone(), json!({}));
            }
            nop(&format!(
                "VOLUME {}",
                serde_json::to_string(&paths).unwrap_or_default()
            ))
        }
        "WORKDIR" => {
            let dir = expand(&text(&i.args))?;
            if dir.is_empty() {
                return Err(what("WORKDIR requires exactly one argument".into()));
            }
            let joined = if dir.starts_with('/') {
                dir
            } else {
                let base = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .filter(|w| !w.is_empty())
                    .unwrap_or("/");
                format!("{}/{dir}", base.trim_end_matches('/'))
            };
            config["WorkingDir"] = json!(joined);
            nop(&format!("WORKDIR {joined}"))
        }
        "USER" | "STOPSIGNAL" => {
            let value = expand(&text(&i.args))?;
            if value.is_empty() {
                return Err(what(format!("{} requires exactly one argument", i.keyword)));
            }
            let field = if i.keyword == "USER" {
                "User"
            } else {
                "StopSignal"
            };
            config[field] = json!(value);
            nop(&format!("{} {value}", i.keyword))
        }
        "MAINTAINER" => {
            // The image's `author`, which the builder keeps in the config here under Docker's
            // old key; history shows it.
            let who = text(&i.args);
            nop(&format!("MAINTAINER {who}"))
        }
        "SHELL" => {
            let Args::Exec(shell) = &i.args else {
                return Err(what(
                    "SHELL requires the arguments to be in JSON form".into(),
                ));
            };
            if shell.is_empty() {
                return Err(what("SHELL requires at least one argument".into()));
            }
            config["Shell"] = json!(shell);
            nop(&format!("SHELL {}", go_list(shell)))
        }
        "ONBUILD" => {
            let trigger = i.onbuild_expression().unwrap_or_else(|| text(&i.args));
            let word = trigger
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match word.as_str() {
                "" => return Err(what("ONBUILD requires at least one argument".into())),
                "ONBUILD" => {
                    return Err(what(
                        "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into(),
                    ));
                }
                "FROM" | "MAINTAINER" => {
                    return Err(what(format!("{word} isn't allowed as an ONBUILD trigger")));
                }
                _ => {}
            }
            let mut triggers: Vec<Value> = config
                .get("OnBuild")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            triggers.push(json!(trigger));
            config["OnBuild"] = Value::Array(triggers);
            nop(&format!("ONBUILD {trigger}"))
        }
        "HEALTHCHECK" => {
            let health = healthcheck(i).map_err(what)?;
            let shown = serde_json::to_string(&health["Test"]).unwrap_or_default();
            config["Healthcheck"] = health;
            nop(&format!("HEALTHCHECK &{{{shown}}}"))
        }
        other => return Err(what(format!("unknown instruction: {other}"))),
    };
    Ok((config, created_by))
}

/// `HEALTHCHECK [--interval --timeout --start-period --start-interval --retries] CMD …|NONE`.
fn healthcheck(i: &Instruction) -> std::result::Result<Value, String> {
    let test = dockerfile::healthcheck_test(&i.args)?;
    let mut health = Map::new();
    let none = test.first().is_some_and(|t| t == "NONE");
    health.insert("Test".into(), json!(test));
    if none {
        return Ok(Value::Object(health));
    }
    for (flag, value) in &i.flags {
        let key = match flag.as_str() {
            "interval" => "Interval",
            "timeout" => "Timeout",
            "start-period" => "StartPeriod",
            "start-interval" => "StartInterval",
            "retries" => {
                let n: i64 = value
                    .parse()
                    .map_err(|_| format!("--retries {value:?} is not a number"))?;
                if n < 0 {
                    return Err("--retries cannot be negative".into());
                }
                health.insert("Retries".into(), json!(n));
                continue;
            }
            other => return Err(format!("unknown flag: --{other}")),
        };
        health.insert(key.into(), json!(dockerfile::parse_go_duration(value)?));
    }
    Ok(Value::Object(health))
}

/// One `EXPOSE` word: `80`, `80/udp`, `8000-8002/tcp` (a range, one key per port).
fn exposed_ports(word: &str) -> std::result::Result<Vec<String>, String> {
    let (ports, proto) = match word.split_once('/') {
        Some((p, proto)) => (p, proto.to_ascii_lowercase()),
        None => (word, "tcp".to_owned()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let parse = |p: &str| {
        p.parse::<u16>()
            .map_err(|_| format!("invalid containerPort: {p}"))
    };
    let (low, high) = match ports.split_once('-') {
        Some((a, b)) => (parse(a)?, parse(b)?),
        None => {
            let p = parse(ports)?;
            (p, p)
        }
    };
    if high < low {
        return Err(format!("invalid range: {ports}"));
    }
    Ok((low..=high).map(|p| format!("{p}/{proto}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposed_ports_follow_docker() {
        assert_eq!(exposed_ports("80").unwrap(), vec!["80/tcp"]);
        assert_eq!(exposed_ports("53/UDP").unwrap(), vec!["53/udp"]);
        assert_eq!(
            exposed_ports("8000-8002").unwrap(),
            vec!["8000/tcp", "8001/tcp", "8002/tcp"]
        );
        assert!(exposed_ports("http").is_err());
        assert!(exposed_ports("80/icmp").is_err());
    }
}
