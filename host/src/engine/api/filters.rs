//! Docker's `filters` query parameter: a JSON object of key → values, in either of the shapes
//! clients send (`{"label": ["a=b"]}`, or the older `{"label": {"a=b": true}}` that
//! docker-compose 1.29 still uses).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::engine::error::{Result, invalid};

/// Parsed filters: each key with the values any of which must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters(pub BTreeMap<String, Vec<String>>);

impl Filters {
    /// Parses the query value (empty: no filters).
    pub fn parse(text: &str) -> Result<Filters> {
        if text.trim().is_empty() {
            return Ok(Filters::default());
        }
        let v: Value =
            serde_json::from_str(text).map_err(|e| invalid("filters", format!("not JSON: {e}")))?;
        let obj = v
            .as_object()
            .ok_or_else(|| invalid("filters", "expected a JSON object"))?;
        let mut out = BTreeMap::new();
        for (k, v) in obj {
            let values: Vec<String> = match v {
                Value::Array(a) => a
                    .iter()
                    .map(|x| match x {
                        Value::String(s) => Ok(s.clone()),
                        other => Err(invalid(
                            format!("filter {k:?}"),
                            format!("expected strings, got {other}"),
                        )),
                    })
                    .collect::<Result<_>>()?,
                Value::Object(m) => m
                    .iter()
                    .filter(|(_, on)| on.as_bool().unwrap_or(true))
                    .map(|(s, _)| s.clone())
                    .collect(),
                Value::String(s) => vec![s.clone()],
                other => {
                    return Err(invalid(
                        format!("filter {k:?}"),
                        format!("expected a list of strings, got {other}"),
                    ));
                }
            };
            out.insert(k.clone(), values);
        }
        Ok(Filters(out))
    }

    /// From `KEY=VALUE` flags (the CLI's `--filter`).
    pub fn from_flags(flags: &[String]) -> Result<Filters> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for f in flags {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| invalid(format!("--filter {f:?}"), "expected KEY=VALUE"))?;
            out.entry(k.to_owned()).or_default().push(v.to_owned());
        }
        Ok(Filters(out))
    }

    /// As the query value (the CLI's remote mode).
    pub fn to_query(&self) -> String {
        serde_json::to_string(&self.0).unwrap_or_default()
    }

    /// Whether no filters are set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values of `key`.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        self.0.get(key).map(Vec::as_slice)
    }

    /// Refuses keys outside `known` (dockerd: "invalid filter 'x'").
    pub fn only(&self, known: &[&str]) -> Result<()> {
        for k in self.0.keys() {
            if !known.contains(&k.as_str()) {
                return Err(invalid(format!("filter {k:?}"), "invalid filter"));
            }
        }
        Ok(())
    }

    /// `label` filters against a label map: `key` (present) or `key=value`, all must hold.
    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.get("label").is_none_or(|wanted| {
            wanted.iter().all(|w| match w.split_once('=') {
                Some((k, v)) => labels.get(k).is_some_and(|x| x == v),
                None => labels.contains_key(w),
            })
        })
    }

    /// A boolean filter (`dangling=true`): `None` when not given.
    pub fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(vals) => match vals.first().map(|s| s.to_ascii_lowercase()).as_deref() {
                Some("true") | Some("1") => Ok(Some(true)),
                Some("false") | Some("0") => Ok(Some(false)),
                _ => Err(invalid(format!("filter {key:?}"), "expected true or false")),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_shapes_parse() {
        let a = Filters::parse(r#"{"label":["a=b"],"status":["running"]}"#).unwrap();
        let b = Filters::parse(r#"{"label":{"a=b":true},"status":{"running":true}}"#).unwrap();
        assert_eq!(a, b);
        assert!(Filters::parse("[1]").is_err());
        assert!(Filters::parse(r#"{"label":[1]}"#).is_err());
        assert!(Filters::parse("").unwrap().is_empty());
    }

    #[test]
    fn labels_match_keys_and_values() {
        let f = Filters::parse(r#"{"label":["tier","env=prod"]}"#).unwrap();
        let mut labels = BTreeMap::new();
        labels.insert("tier".to_string(), "x".to_string());
        assert!(!f.labels_match(&labels));
        labels.insert("env".to_string(), "prod".to_string());
        assert!(f.labels_match(&labels));
    }
}
