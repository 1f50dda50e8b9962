//! `--change` for `commit` and `import`: Dockerfile instructions applied to an image config's
//! `config` object (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME,
//! WORKDIR), with Docker's semantics: the exec (JSON) form or the shell form wrapped in
//! `/bin/sh -c`, ENTRYPOINT clearing an inherited CMD, WORKDIR relative to the previous one.

use serde_json::{Map, Value, json};

use crate::error::{Result, invalid};

/// Applies `changes` in order to `config` (the image config's `config` object, Docker keys:
/// `Cmd`, `Entrypoint`, `Env`, ...). A line that is not a supported instruction is refused,
/// naming it, and `config` is left as it was.
pub fn apply(config: &mut Value, changes: &[String]) -> Result<()> {
    let mut next = match config {
        Value::Object(m) => m.clone(),
        Value::Null => Map::new(),
        _ => return Err(invalid("image config", "`config` is not a JSON object")),
    };
    let mut cmd_set = false;
    for line in changes {
        apply_one(&mut next, line.trim(), &mut cmd_set)
            .map_err(|reason| invalid(format!("--change {line:?}"), reason))?;
    }
    *config = Value::Object(next);
    Ok(())
}

/// One instruction; the error is the reason only (the caller names the line).
fn apply_one(
    config: &mut Map<String, Value>,
    line: &str,
    cmd_set: &mut bool,
) -> std::result::Result<(), String> {
    let (word, rest) = match line.split_once(char::is_whitespace) {
        Some((w, r)) => (w, r.trim()),
        None => (line, ""),
    };
    let word = word.to_ascii_uppercase();
    if rest.is_empty() && word != "CMD" && word != "ENTRYPOINT" {
        return Err(format!("{word} needs an argument"));
    }
    match word.as_str() {
        "CMD" => {
            config.insert("Cmd".into(), command_form(rest)?);
            *cmd_set = true;
        }
        "ENTRYPOINT" => {
            config.insert("Entrypoint".into(), command_form(rest)?);
            // Docker: an ENTRYPOINT drops the CMD it did not set itself.
            if !*cmd_set {
                config.insert("Cmd".into(), Value::Null);
            }
        }
        "ENV" => {
            let mut env: Vec<String> = strings(config.get("Env"));
            for (key, value) in key_values(rest, true)? {
                env.retain(|e| e.split('=').next() != Some(key.as_str()));
                env.push(format!("{key}={value}"));
            }
            config.insert("Env".into(), json!(env));
        }
        "LABEL" => {
            let labels = object(config, "Labels");
            for (key, value) in key_values(rest, false)? {
                labels.insert(key, json!(value));
            }
        }
        "EXPOSE" => {
            let mut ports = Vec::new();
            for port in rest.split_whitespace() {
                ports.push(exposed_port(port)?);
            }
            let exposed = object(config, "ExposedPorts");
            for p in ports {
                exposed.insert(p, json!({}));
            }
        }
        "VOLUME" => {
            let paths = if rest.starts_with('[') {
                json_strings(rest)?
            } else {
                rest.split_whitespace().map(String::from).collect()
            };
            if let Some(p) = paths.iter().find(|p| !p.starts_with('/')) {
                return Err(format!("volume {p:?} is not an absolute path"));
            }
            let volumes = object(config, "Volumes");
            for p in paths {
                volumes.insert(p, json!({}));
            }
        }
        "WORKDIR" => {
            let dir = unquote(rest);
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
            config.insert("WorkingDir".into(), json!(joined));
        }
        "USER" => {
            config.insert("User".into(), json!(unquote(rest)));
        }
        "STOPSIGNAL" => {
            config.insert("StopSignal".into(), json!(unquote(rest)));
        }
        "ONBUILD" => {
            let mut onbuild = strings(config.get("OnBuild"));
            onbuild.push(rest.to_owned());
            config.insert("OnBuild".into(), json!(onbuild));
        }
        "" => return Err("empty instruction".into()),
        other => {
            return Err(format!(
                "{other} is not supported by --change (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, \
                 ONBUILD, STOPSIGNAL, USER, VOLUME, WORKDIR are)"
            ));
        }
    }
    Ok(())
}

/// The JSON (exec) form `["a", "b"]`, or the shell form wrapped in `/bin/sh -c`.
fn command_form(rest: &str) -> std::result::Result<Value, String> {
    if rest.is_empty() {
        return Ok(Value::Null);
    }
    if rest.starts_with('[')
        && let Ok(list) = json_strings(rest)
    {
        return Ok(json!(list));
    }
    Ok(json!(["/bin/sh", "-c", rest]))
}

/// A JSON array of strings.
fn json_strings(text: &str) -> std::result::Result<Vec<String>, String> {
    serde_json::from_str(text).map_err(|e| format!("not a JSON array of strings: {e}"))
}

/// The strings of a JSON array (missing or null: none).
fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

/// The object under `key`, created (or replacing a null) when absent.
fn object<'a>(config: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = config.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    match slot {
        Value::Object(m) => m,
        _ => unreachable!("replaced by an object above"),
    }
}

/// `80`, `80/tcp`, `53/udp` → Docker's `port/proto` key.
fn exposed_port(port: &str) -> std::result::Result<String, String> {
    let (number, proto) = port.split_once('/').unwrap_or((port, "tcp"));
    let valid = |n: &str| n.parse::<u16>().is_ok_and(|p| p > 0);
    let number_ok = match number.split_once('-') {
        Some((a, b)) => valid(a) && valid(b),
        None => valid(number),
    };
    let proto = proto.to_ascii_lowercase();
    if !number_ok || !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid port {port:?}"));
    }
    Ok(format!("{number}/{proto}"))
}

/// Removes one pair of surrounding double or single quotes.
fn unquote(text: &str) -> String {
    for q in ['"', '\''] {
        if text.len() >= 2 && text.starts_with(q) && text.ends_with(q) {
            return text[1..text.len() - 1].to_owned();
        }
    }
    text.to_owned()
}

/// `k=v k2="v 2"` pairs; with `legacy`, `KEY value with spaces` (ENV's old form) too.
fn key_values(text: &str, legacy: bool) -> std::result::Result<Vec<(String, String)>, String> {
    let first = text.split_whitespace().next().unwrap_or_default();
    if !first.contains('=') {
        if !legacy {
            return Err(format!("{first:?} is not KEY=VALUE"));
        }
        let (key, value) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
        return Ok(vec![(key.to_owned(), unquote(value.trim()))]);
    }
    let mut pairs = Vec::new();
    for word in words(text)? {
        let (key, value) = word
            .split_once('=')
            .ok_or_else(|| format!("{word:?} is not KEY=VALUE"))?;
        if key.is_empty() {
            return Err(format!("{word:?} has an empty key"));
        }
        pairs.push((key.to_owned(), value.to_owned()));
    }
    Ok(pairs)
}

/// Splits on whitespace outside quotes, removing the quotes and backslash escapes.
fn words(text: &str) -> std::result::Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some('"') | None, '\\') => {
                if let Some(n) = chars.next() {
                    current.push(n);
                }
                in_word = true;
            }
            (Some(_), c) => current.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unterminated quote".into());
    }
    if in_word {
        out.push(current);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::apply;
    use serde_json::json;

    fn changed(start: serde_json::Value, changes: &[&str]) -> serde_json::Value {
        let mut config = start;
        let changes: Vec<String> = changes.iter().map(|s| s.to_string()).collect();
        apply(&mut config, &changes).expect("changes apply");
        config
    }

    #[test]
    fn cmd_and_entrypoint_forms() {
        let c = changed(
            json!({"Cmd": ["old"]}),
            &[r#"CMD ["echo", "hi there"]"#, "ENTRYPOINT /bin/tini --"],
        );
        assert_eq!(c["Cmd"], json!(["echo", "hi there"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/tini --"]));
        // An ENTRYPOINT without a CMD of its own drops the inherited one.
        let c = changed(json!({"Cmd": ["old"]}), &[r#"ENTRYPOINT ["/e"]"#]);
        assert_eq!(c["Cmd"], json!(null));
        assert_eq!(c["Entrypoint"], json!(["/e"]));
    }

    #[test]
    fn env_label_expose_volume_workdir_user() {
        let c = changed(
            json!({"Env": ["A=1", "B=2"], "WorkingDir": "/srv"}),
            &[
                "ENV A=10 C=\"x y\"",
                "env D legacy form",
                "LABEL org.example=\"a b\" k=v",
                "EXPOSE 80 53/udp",
                "VOLUME [\"/data\", \"/logs\"]",
                "WORKDIR app",
                "USER 1000:1000",
                "STOPSIGNAL SIGINT",
            ],
        );
        assert_eq!(c["Env"], json!(["B=2", "A=10", "C=x y", "D=legacy form"]));
        assert_eq!(c["Labels"], json!({"org.example": "a b", "k": "v"}));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}, "/logs": {}}));
        assert_eq!(c["WorkingDir"], json!("/srv/app"));
        assert_eq!(c["User"], json!("1000:1000"));
        assert_eq!(c["StopSignal"], json!("SIGINT"));
    }

    #[test]
    fn bad_changes_are_refused_and_change_nothing() {
        for bad in [
            "RUN echo hi",
            "FROM busybox",
            "EXPOSE 99999",
            "EXPOSE 80/foo",
            "VOLUME relative",
            "LABEL novalue",
            "ENV A=\"unterminated",
            "USER",
            "",
        ] {
            let mut config = json!({"Cmd": ["x"]});
            let err = apply(&mut config, &["ENV Z=1".to_string(), bad.to_string()])
                .expect_err(bad)
                .to_string();
            assert!(err.contains("--change"), "{bad}: {err}");
            assert_eq!(config, json!({"Cmd": ["x"]}), "{bad}");
        }
    }
}
