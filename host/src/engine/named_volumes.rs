//! Named volumes (Docker's `local` driver): a directory per volume under the store root, which
//! outlives the containers that mount it.
//!
//! ```text
//! <root>/volumes/<name>/volume.json   name, driver, labels, options, created (written once)
//! <root>/volumes/<name>/_data/        what containers see at the mount point
//! ```
//!
//! A volume is made by `volume create`, or by `create` when `-v NAME:/path` names one that does
//! not exist (as Docker does); `-v /path` and `--mount type=volume` without a source make an
//! anonymous one (a 64-hex name), removed with its container by `rm -v` and by `volume prune`.
//! A new (empty) volume is filled with the image's content at the mount point on first use,
//! unless `nocopy`. A volume that a container uses is not removed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Engine;
use super::container::{now_rfc3339, random_id, read_json, write_atomic};
use super::error::{EngineError, IoContext, Result, invalid};
use super::spec::validate_volume_name;

/// A volume's record: Docker's `Volume` object less what is derived (mount point, usage).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VolumeRecord {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "Driver")]
    pub driver: String,
    #[serde(rename = "Labels", default)]
    pub labels: BTreeMap<String, String>,
    #[serde(rename = "Options", default)]
    pub options: BTreeMap<String, String>,
    #[serde(rename = "CreatedAt")]
    pub created_at: String,
    /// Made for one container (no name given): goes with it on `rm -v`.
    #[serde(default)]
    pub anonymous: bool,
}

/// What `volume create` takes.
#[derive(Debug, Clone, Default)]
pub struct VolumeOptions {
    /// Empty: a random (anonymous-looking) name, as `docker volume create` without one.
    pub name: String,
    /// Only `local` (or empty).
    pub driver: String,
    pub labels: BTreeMap<String, String>,
    /// The local driver's `type`/`device`/`o` options are refused: no mount is made here.
    pub driver_opts: BTreeMap<String, String>,
}

impl Engine {
    fn volumes_dir(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// The directory containers see: `<root>/volumes/<name>/_data`.
    pub fn volume_data(&self, name: &str) -> PathBuf {
        self.volumes_dir().join(name).join("_data")
    }

    /// Creates a volume; an existing one of that name is returned as it is (Docker's
    /// behaviour), unless asked for another driver.
    pub fn volume_create(&self, options: &VolumeOptions) -> Result<VolumeRecord> {
        self.volume_create_inner(options, false).map(|(v, _)| v)
    }

    /// Creates (or finds) a volume; also says whether it was made now.
    pub(crate) fn volume_create_inner(
        &self,
        options: &VolumeOptions,
        anonymous: bool,
    ) -> Result<(VolumeRecord, bool)> {
        let name = if options.name.is_empty() {
            random_id()?
        } else {
            validate_volume_name(&options.name)?;
            options.name.clone()
        };
        match options.driver.as_str() {
            "" | "local" => {}
            other => {
                return Err(invalid(
                    format!("volume driver {other:?}"),
                    "only the local driver is available",
                ));
            }
        }
        if let Some(k) = options.driver_opts.keys().next() {
            return Err(invalid(
                format!("volume option {k:?}"),
                "the local driver takes no options here",
            ));
        }
        if let Ok(existing) = self.volume(&name) {
            return Ok((existing, false));
        }
        let record = VolumeRecord {
            name: name.clone(),
            driver: "local".into(),
            labels: options.labels.clone(),
            options: BTreeMap::new(),
            created_at: now_rfc3339(),
            anonymous,
        };
        let dir = self.volumes_dir().join(&name);
        // Made under a temporary name and renamed, so a half-made volume is never listed.
        let tmp = self.volumes_dir().join(format!(".new-{name}"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(tmp.join("_data")).io("mkdir", &tmp)?;
        let bytes =
            serde_json::to_vec_pretty(&record).map_err(|e| invalid("volume", e.to_string()))?;
        write_atomic(&tmp.join("volume.json"), &bytes)?;
        match std::fs::rename(&tmp, &dir) {
            Ok(()) => {}
            // Another front door made it meanwhile: theirs stands.
            Err(e)
                if e.kind() == std::io::ErrorKind::AlreadyExists
                    || e.raw_os_error() == Some(libc::ENOTEMPTY) =>
            {
                let _ = std::fs::remove_dir_all(&tmp);
                return Ok((self.volume(&name)?, false));
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e).io("rename", &dir);
            }
        }
        self.emit(
            "volume",
            "create",
            &name,
            BTreeMap::from([("driver".to_owned(), "local".to_owned())]),
        );
        Ok((record, true))
    }

    /// One volume by name.
    pub fn volume(&self, name: &str) -> Result<VolumeRecord> {
        if validate_volume_name(name).is_err() {
            return Err(EngineError::NoSuchVolume(name.to_owned()));
        }
        read_json(&self.volumes_dir().join(name).join("volume.json"))
            .map_err(|_| EngineError::NoSuchVolume(name.to_owned()))
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Result<Vec<VolumeRecord>> {
        let dir = self.volumes_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).io("read_dir", dir),
        };
        let mut list: Vec<VolumeRecord> = entries
            .filter_map(|e| e.ok())
            .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
            .filter_map(|e| read_json(&e.path().join("volume.json")).ok())
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    /// The containers that mount volume `name`.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .containers()?
            .into_iter()
            .filter(|c| {
                c.mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == name)
            })
            .map(|c| c.name)
            .collect())
    }

    /// Removes a volume; refused while a container uses it (even with `force`, as Docker).
    pub fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        let volume = match self.volume(name) {
            Ok(v) => v,
            Err(EngineError::NoSuchVolume(_)) if force => return Ok(()),
            Err(e) => return Err(e),
        };
        let users = self.volume_users(name)?;
        if !users.is_empty() {
            return Err(EngineError::Conflict(format!(
                "remove {name}: volume is in use - [{}]",
                users.join(", ")
            )));
        }
        let dir = self.volumes_dir().join(&volume.name);
        // Renamed away first, so a crash mid-removal never leaves a half volume listed.
        let doomed = self.volumes_dir().join(format!(".gone-{}", volume.name));
        std::fs::rename(&dir, &doomed).io("rename", &dir)?;
        std::fs::remove_dir_all(&doomed).io("remove", &doomed)?;
        self.emit(
            "volume",
            "destroy",
            name,
            BTreeMap::from([("driver".to_owned(), "local".to_owned())]),
        );
        Ok(())
    }

    /// `volume prune`: removes unused volumes (only anonymous ones unless `all`, as Docker's
    /// API ≥ 1.42) that pass `keep`; returns their names and the bytes freed.
    pub fn volume_prune(
        &self,
        all: bool,
        keep: &dyn Fn(&VolumeRecord) -> bool,
    ) -> Result<(Vec<String>, u64)> {
        let mut removed = Vec::new();
        let mut freed = 0;
        for v in self.volumes()? {
            if (!all && !v.anonymous) || !keep(&v) || !self.volume_users(&v.name)?.is_empty() {
                continue;
            }
            let size = super::usage::disk_usage(&self.volume_data(&v.name));
            if self.volume_remove(&v.name, false).is_ok() {
                freed += size;
                removed.push(v.name);
            }
        }
        Ok((removed, freed))
    }

    /// Rejects volume names with a clear error when the directory has been removed by hand.
    pub(crate) fn volume_dir_for_mount(&self, name: &str) -> Result<PathBuf> {
        let data = self.volume_data(name);
        if !data.is_dir() {
            return Err(EngineError::NoSuchVolume(name.to_owned()));
        }
        Ok(data)
    }
}
