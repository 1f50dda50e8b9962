//! Output as Docker users expect: aligned tables, `-q`, `--format json` (one object per line)
//! and Go-template-like `--format '{{.Field}}'` (with an optional `table` prefix for a header).

use serde_json::{Map, Value};

/// How a listing is printed.
pub enum Output {
    /// Docker's table with these columns: (header, field).
    Table(&'static [(&'static str, &'static str)]),
    /// One JSON object per line.
    Json,
    /// A template; `header` when it started with `table`.
    Template { template: String, header: bool },
}

impl Output {
    /// Picks the output for `--format` (none → the default table).
    pub fn new(format: Option<&str>, columns: &'static [(&'static str, &'static str)]) -> Output {
        match format {
            None | Some("") | Some("table") => Output::Table(columns),
            Some("json") | Some("{{json .}}") => Output::Json,
            Some(t) => match t.strip_prefix("table ") {
                Some(rest) => Output::Template {
                    template: rest.to_owned(),
                    header: true,
                },
                None => Output::Template {
                    template: t.to_owned(),
                    header: false,
                },
            },
        }
    }

    /// Prints rows (objects with the fields named in the columns/template).
    pub fn print(&self, rows: &[Map<String, Value>]) {
        match self {
            Output::Json => {
                for r in rows {
                    println!("{}", Value::Object(r.clone()));
                }
            }
            Output::Table(columns) => {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|r| columns.iter().map(|(_, f)| text(r.get(*f))).collect())
                    .collect();
                let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
                table(&header, &cells);
            }
            Output::Template { template, header } => {
                let t = template.replace("\\t", "\t").replace("\\n", "\n");
                if *header {
                    let names: Map<String, Value> = fields(&t)
                        .into_iter()
                        .map(|f| (f.clone(), Value::String(f.to_uppercase())))
                        .collect();
                    println!("{}", render(&t, &names));
                }
                for r in rows {
                    println!("{}", render(&t, r));
                }
            }
        }
    }
}

/// `{{.A.B.C}}`: a field of a field (inspect's nested objects), as Go templates walk them.
fn lookup<'a>(row: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = row.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    Some(value)
}

/// Prints inspect's objects: Docker's indented JSON array, or each through `--format`.
pub fn print_inspect(objects: &[Value], format: Option<&str>) -> anyhow::Result<()> {
    match format {
        None | Some("") | Some("json") => {
            println!("{}", serde_json::to_string_pretty(objects)?);
        }
        Some(t) => {
            for o in objects {
                let empty = Map::new();
                println!("{}", render(t, o.as_object().unwrap_or(&empty)));
            }
        }
    }
    Ok(())
}

/// A cell's text.
fn text(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

/// The `{{.Field}}` names in a template.
fn fields(t: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start..].find("}}") else {
            break;
        };
        let inner = rest[start + 2..start + end].trim();
        if let Some(f) = inner.strip_prefix('.') {
            out.push(f.to_owned());
        }
        rest = &rest[start + end + 2..];
    }
    out
}

/// Replaces each `{{.Field}}` (and `{{json .Field}}`) with the row's value.
pub fn render(t: &str, row: &Map<String, Value>) -> String {
    let mut out = String::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let Some(end) = rest[start..].find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let inner = rest[start + 2..start + end].trim();
        if let Some(f) = inner.strip_prefix("json ") {
            let f = f.trim().trim_start_matches('.');
            if f.is_empty() {
                out.push_str(&Value::Object(row.clone()).to_string());
            } else {
                out.push_str(&lookup(row, f).cloned().unwrap_or(Value::Null).to_string());
            }
        } else if let Some(f) = inner.strip_prefix('.') {
            out.push_str(&text(lookup(row, f)));
        }
        rest = &rest[start + end + 2..];
    }
    out.push_str(rest);
    out
}

/// Prints an aligned table (three spaces between columns, as Docker).
pub fn table(header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}   ", w = widths[i]));
            }
        }
        println!("{}", s.trim_end());
    };
    line(header);
    for r in rows {
        line(r);
    }
}

/// `bytes` divided by `base` until below it (or out of units): the value and its unit index.
fn scaled(bytes: u64, base: f64, units: usize) -> (f64, usize) {
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= base && i + 1 < units {
        v /= base;
        i += 1;
    }
    (v, i)
}

/// Docker's image sizes: decimal units, three decimals at most (`1.999MB`).
pub fn size(bytes: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    match scaled(bytes, 1000.0, units.len()) {
        (_, 0) => format!("{bytes}B"),
        (v, i) => format!("{:.3}{}", v, units[i]).replace(".000", ""),
    }
}

/// Docker's `stats` sizes: binary units, two decimals (`1.50MiB`).
pub fn binary_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    match scaled(bytes, 1024.0, units.len()) {
        (_, 0) => format!("{bytes}B"),
        (v, i) => format!("{v:.2}{}", units[i]),
    }
}

/// "3 minutes ago" from an RFC 3339 time.
pub fn ago(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_owned();
    };
    let secs = (chrono::Utc::now() - t.with_timezone(&chrono::Utc))
        .num_seconds()
        .max(0);
    let (n, unit) = match secs {
        s if s < 60 => (s, "second"),
        s if s < 3600 => (s / 60, "minute"),
        s if s < 86_400 => (s / 3600, "hour"),
        s if s < 86_400 * 30 => (s / 86_400, "day"),
        s if s < 86_400 * 365 => (s / (86_400 * 30), "month"),
        s => (s / (86_400 * 365), "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_walk_nested_fields() {
        let row = serde_json::json!({"State": {"Pid": 42, "Status": "running"}, "Name": "/x"});
        let row = row.as_object().unwrap();
        assert_eq!(
            render("{{.State.Pid}} {{.State.Status}}", row),
            "42 running"
        );
        assert_eq!(
            render("{{json .State}}", row),
            r#"{"Pid":42,"Status":"running"}"#
        );
        assert_eq!(render("{{.State.Nope}}|{{.Name}}", row), "|/x");
    }
}
