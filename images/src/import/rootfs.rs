//! `docker import`: a rootfs tarball (plain, gzip or zstd) becomes a one-layer image, or a new
//! top layer on a base image (which is what `commit` needs: the container's changes as a tar).

use std::io::Read;

use serde_json::{Value, json};

use crate::error::{IoContext, Result, invalid};
use crate::reference::Reference;
use crate::store::{ImageId, Store};
use crate::unpack::Compression;

/// What `import_tar` makes of the tarball.
#[derive(Debug, Clone, Default)]
pub struct ImportOptions {
    /// The new image's name.
    pub reference: Option<Reference>,
    /// A base image (name or id): the new layer goes on top of its layers, and its config is
    /// the starting point.
    pub base: Option<String>,
    /// Replaces the config's `config` object (Entrypoint, Cmd, Env, ...), OCI JSON form.
    pub container_config: Option<Value>,
    /// The history entry's `created_by`.
    pub created_by: Option<String>,
    /// The history entry's `comment`.
    pub comment: Option<String>,
    /// The config's `author` (`commit -a`).
    pub author: Option<String>,
    /// Dockerfile instructions applied to the config last (`--change`, see [`crate::change`]).
    pub changes: Vec<String>,
}

/// Seconds since the epoch as RFC 3339 UTC (`2024-01-02T03:04:05Z`).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Store {
    /// Imports a rootfs tarball as a new image (see [`ImportOptions`]); returns its id.
    pub fn import_tar(&self, reader: &mut dyn Read, options: &ImportOptions) -> Result<ImageId> {
        // Bad `--change` lines are refused before anything is written.
        crate::change::apply(&mut json!({}), &options.changes)?;
        let base = match &options.base {
            Some(name) => Some(self.inspect(name)?),
            None => None,
        };
        let lock = self.lock()?;
        let mut txn = self.begin(&lock);
        let (blob, size) = txn.put_blob(reader, None, None)?;
        let mut head = [0u8; 4];
        let n = txn
            .open_blob(&blob)?
            .read(&mut head)
            .ctx("read", self.blob_path(&blob))?;
        let compression = Compression::sniff(&head[..n]);
        let layer = txn.unpack_layer(&blob, compression, None)?;

        let now = rfc3339(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        );
        let mut config = self.base_config(base.as_ref(), None)?;
        let obj = config
            .as_object_mut()
            .ok_or_else(|| invalid("config", "not a JSON object"))?;
        obj.insert("created".into(), json!(now));
        if let Some(c) = &options.container_config {
            obj.insert("config".into(), c.clone());
        }
        if !options.changes.is_empty() {
            let slot = obj.entry("config").or_insert_with(|| json!({}));
            crate::change::apply(slot, &options.changes)?;
        }
        if let Some(author) = &options.author {
            obj.insert("author".into(), json!(author));
        }
        let diff_ids = obj
            .entry("rootfs")
            .or_insert_with(|| json!({ "type": "layers", "diff_ids": [] }))
            .get_mut("diff_ids")
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid("config", "rootfs.diff_ids is not an array"))?;
        diff_ids.push(json!(layer.diff_id.to_string()));
        let mut entry = json!({ "created": now, "created_by": options.created_by.clone().unwrap_or_else(|| "capsa import".into()) });
        if let Some(comment) = &options.comment {
            entry["comment"] = json!(comment);
        }
        match obj.get_mut("history").and_then(Value::as_array_mut) {
            Some(history) => history.push(entry),
            None => {
                obj.insert("history".into(), json!([entry]));
            }
        }
        let config_bytes =
            serde_json::to_vec(&config).map_err(|e| invalid("config", e.to_string()))?;
        let (config_digest, manifest_digest) = crate::build::image::write_image(
            &mut txn,
            base.as_ref(),
            &config_bytes,
            Some((blob, size, compression)),
        )?;
        txn.commit()?;
        let names: Vec<Reference> = options.reference.iter().cloned().collect();
        self.record_image(&lock, &config_digest, &manifest_digest, &names)?;
        Ok(config_digest)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
    }
}
