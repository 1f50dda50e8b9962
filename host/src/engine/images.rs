//! The image verbs of the engine, over the store (`capsa_images`): what `capsa images/pull/
//! push/load/save/import/tag/rmi/image prune` and the daemon's `/images/*` call. On top of the
//! store they add what needs containers or the event log: `rmi` refuses an image a container
//! uses, every change is an event, and wasm modules are compiled as images arrive.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use capsa_images::registry::{self, ImageRef, Progress, PullOptions, PushOptions, RegistryOptions};
use capsa_images::{ImageId, ImportOptions, Reference};

use super::Engine;
use super::error::{EngineError, IoContext, Result, invalid};

/// What removing one image did, in Docker's terms.
#[derive(Debug, Clone, Default)]
pub struct ImageDeleteReport {
    /// Names removed (`Untagged`).
    pub untagged: Vec<String>,
    /// Images (and their layers) removed (`Deleted`).
    pub deleted: Vec<String>,
}

/// The formats `save` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    /// `docker save`'s tarball.
    Docker,
    /// An OCI image layout in a tar.
    OciArchive,
}

impl Engine {
    /// `pull`: from the registry into the store, its wasm module compiled; returns what was
    /// pulled. Progress goes to `progress`.
    pub fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        options: &RegistryOptions,
        progress: &dyn Progress,
    ) -> Result<registry::PullReport> {
        let parsed = ImageRef::parse(reference)?;
        let pull_options = PullOptions {
            platform: platform
                .filter(|p| !p.is_empty())
                .map(registry::Platform::parse)
                .transpose()?,
            registry: options.clone(),
            ..PullOptions::default()
        };
        let report = registry::pull(&self.store, &parsed, &pull_options, progress)?;
        // The download's threads are joined: a single-threaded caller is single-threaded again.
        if let Err(e) = self.precompile_wasm(&report.id.to_string()) {
            log::warn!("image {}: its wasm module does not compile: {e}", report.id);
        }
        let name = report.name.clone().unwrap_or_else(|| reference.to_owned());
        self.emit(
            "image",
            "pull",
            &name,
            BTreeMap::from([("name".to_owned(), name.clone())]),
        );
        Ok(report)
    }

    /// `push`: stored image `image` to `destination` (default: its own name).
    pub fn push(
        &self,
        image: &str,
        destination: Option<&str>,
        options: &RegistryOptions,
        progress: &dyn Progress,
    ) -> Result<registry::PushReport> {
        let dest = ImageRef::parse(destination.unwrap_or(image))?;
        let push_options = PushOptions {
            registry: options.clone(),
            mount_from: self.mount_sources(image, &dest)?,
            ..PushOptions::default()
        };
        let report = registry::push(&self.store, image, &dest, &push_options, progress)?;
        let name = destination.unwrap_or(image).to_owned();
        self.emit(
            "image",
            "push",
            &name,
            BTreeMap::from([("name".to_owned(), name.clone())]),
        );
        Ok(report)
    }

    /// The other repositories of `dest`'s registry that the image is named in (it was pulled
    /// from or pushed there under that name): its blobs are mounted from them instead of uploaded,
    /// as dockerd does with what it knows of where blobs came from.
    fn mount_sources(&self, image: &str, dest: &ImageRef) -> Result<Vec<String>> {
        let info = self.store.inspect(image)?;
        let mut sources: Vec<String> = Vec::new();
        for name in &info.names {
            if let Ok(r) = ImageRef::parse(name)
                && r.registry() == dest.registry()
                && r.repository() != dest.repository()
                && !sources.iter().any(|s| s == r.repository())
            {
                sources.push(r.repository().to_owned());
            }
        }
        Ok(sources)
    }

    /// `login`: checks credentials against the registry and keeps them in the store.
    pub fn login(
        &self,
        server: &str,
        username: &str,
        password: &str,
        options: &RegistryOptions,
    ) -> Result<()> {
        Ok(registry::login(
            &self.store,
            server,
            username,
            password,
            options,
        )?)
    }

    /// Checks credentials against the registry without keeping them (`POST /auth`: the docker
    /// CLI keeps them itself); the identity token the registry's token server gave, if any.
    pub fn check_login(
        &self,
        server: &str,
        username: &str,
        password: &str,
        options: &RegistryOptions,
    ) -> Result<Option<String>> {
        Ok(registry::check_login(server, username, password, options)?)
    }

    /// `load` from a file or directory: returns the loaded images' names (ids for unnamed).
    pub fn load(&self, path: &Path) -> Result<Vec<String>> {
        let loaded = self.store.load(path)?;
        let mut names = Vec::new();
        for image in &loaded {
            if let Err(e) = self.precompile_wasm(&image.id.to_string()) {
                log::warn!("image {}: its wasm module does not compile: {e}", image.id);
            }
            let shown = if image.names.is_empty() {
                vec![image.id.to_string()]
            } else {
                image.names.clone()
            };
            for n in shown {
                self.emit(
                    "image",
                    "load",
                    &n,
                    BTreeMap::from([("name".to_owned(), n.clone())]),
                );
                names.push(n);
            }
        }
        Ok(names)
    }

    /// `load` from a stream (the daemon's request body): spooled into the store's own
    /// directory (never outside it), loaded, removed.
    pub fn load_stream(&self, input: &mut dyn Read) -> Result<Vec<String>> {
        let spool = self.spool_path("load")?;
        let result = (|| {
            let mut file = std::fs::File::create(&spool).io("create", &spool)?;
            std::io::copy(input, &mut file).io("write", &spool)?;
            drop(file);
            self.load(&spool)
        })();
        let _ = std::fs::remove_file(&spool);
        result
    }

    /// A fresh file name in `<root>/spool/` for a stream the store reads in place.
    fn spool_path(&self, what: &str) -> Result<PathBuf> {
        let dir = self.root.join("spool");
        std::fs::create_dir_all(&dir).io("mkdir", &dir)?;
        Ok(dir.join(format!("{what}-{}", super::container::random_id()?)))
    }

    /// `save`: images as one archive.
    pub fn save(&self, names: &[&str], format: SaveFormat, out: &mut dyn Write) -> Result<()> {
        match format {
            SaveFormat::Docker => self.store.export_docker_archive(names, out)?,
            SaveFormat::OciArchive => self.store.export_oci_archive(names, out)?,
        }
        for n in names {
            self.emit(
                "image",
                "save",
                n,
                BTreeMap::from([("name".to_owned(), (*n).to_owned())]),
            );
        }
        Ok(())
    }

    /// `import`: a rootfs tarball as a new one-layer image.
    pub fn import(
        &self,
        input: &mut dyn Read,
        reference: Option<&str>,
        message: Option<&str>,
        changes: &[String],
    ) -> Result<ImageId> {
        let reference = reference
            .filter(|r| !r.is_empty())
            .map(Reference::parse)
            .transpose()?;
        let id = self.store.import_tar(
            input,
            &ImportOptions {
                reference,
                comment: message.map(str::to_owned),
                changes: changes.to_vec(),
                ..ImportOptions::default()
            },
        )?;
        self.emit(
            "image",
            "import",
            &id.to_string(),
            BTreeMap::from([("name".to_owned(), id.to_string())]),
        );
        Ok(id)
    }

    /// `tag`.
    pub fn tag(&self, source: &str, target: &str) -> Result<()> {
        let id = self.store.resolve(source)?;
        self.store.tag(source, target)?;
        let name = Reference::parse(target)?.to_string();
        self.emit(
            "image",
            "tag",
            &id.to_string(),
            BTreeMap::from([("name".to_owned(), name)]),
        );
        Ok(())
    }

    /// `rmi`: refuses an image a container uses (even with `force`, as Docker does for a
    /// running one; a stopped one's image is kept too, so its layers stay).
    pub fn image_remove(&self, name: &str, force: bool) -> Result<ImageDeleteReport> {
        let id = self.store.resolve(name)?;
        let info = self.store.inspect(&id.to_string())?;
        let by_id = id
            .to_string()
            .trim_start_matches("sha256:")
            .starts_with(name.trim_start_matches("sha256:"));
        // Untagging one of several names never needs the image to be unused.
        let untag_only = !by_id && info.names.len() > 1;
        if !untag_only && let Some(c) = self.image_in_use(&id)? {
            return Err(EngineError::Conflict(format!(
                "conflict: unable to remove repository reference \"{name}\" (must force) - container {c} is using its referenced image {}",
                &id.hex()[..12]
            )));
        }
        let report = self.store.remove(name, force)?;
        for u in &report.untagged {
            self.emit(
                "image",
                "untag",
                &id.to_string(),
                BTreeMap::from([("name".to_owned(), u.clone())]),
            );
        }
        let mut deleted = Vec::new();
        if let Some(d) = &report.deleted {
            self.emit(
                "image",
                "delete",
                &d.to_string(),
                BTreeMap::from([("name".to_owned(), d.to_string())]),
            );
            deleted.push(d.to_string());
        }
        Ok(ImageDeleteReport {
            untagged: report.untagged,
            deleted,
        })
    }

    /// `image prune`: images no container uses, without a name unless `all`, that pass `keep`;
    /// returns what went and the bytes freed.
    pub fn image_prune(
        &self,
        all: bool,
        keep: &dyn Fn(&capsa_images::ImageSummary) -> bool,
    ) -> Result<(Vec<ImageDeleteReport>, u64)> {
        let mut reports = Vec::new();
        let mut freed = 0;
        for i in self.store.list()? {
            if (!i.names.is_empty() && !all) || !keep(&i) || self.image_in_use(&i.id)?.is_some() {
                continue;
            }
            let report = self.image_remove(&i.id.to_string(), true)?;
            if !report.deleted.is_empty() {
                freed += i.size;
            }
            reports.push(report);
        }
        Ok((reports, freed))
    }

    /// Whether `name` names a stored image (a bad name is an error, an absent one is not).
    pub fn has_image(&self, name: &str) -> Result<bool> {
        match self.store.inspect(name) {
            Ok(_) => Ok(true),
            Err(capsa_images::Error::ImageNotFound(_)) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Checks an image name before a pull.
    pub fn check_reference(reference: &str) -> Result<()> {
        ImageRef::parse(reference)
            .map(|_| ())
            .map_err(|e| invalid(format!("reference {reference:?}"), e.to_string()))
    }
}
