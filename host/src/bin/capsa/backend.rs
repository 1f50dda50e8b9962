//! What the CLI's commands need from an engine, in Docker's JSON terms, and the two ways to
//! get it: [`Local`] calls the engine library in this process (the default: no daemon), and
//! `remote::Remote` speaks the Engine API to a daemon (`-H`). Commands print from the same
//! values either way, so their output does not depend on the front door.

use std::io::{Read, Write};

use anyhow::{Context, Result};
use capsa_host::engine::api::{self, filters::Filters};
use capsa_host::engine::archive::PathStat;
use capsa_host::engine::{
    CommitOptions, Engine, EngineError, EventFilter, ExecRequest, LogLine, LogOptions, RunOptions,
    SaveFormat, State, UpdateOptions, VolumeOptions,
};
use capsa_images::registry::RegistryOptions;
use serde_json::{Map, Value, json};

/// One container's stats row for `capsa stats` (Docker's columns).
pub type Row = Map<String, Value>;

/// What a pull did.
#[derive(Debug, Clone, Default)]
pub struct Pulled {
    /// The image id.
    pub id: String,
    /// The manifest's digest.
    pub digest: String,
    /// Blobs downloaded.
    pub fetched: usize,
    /// Layer blobs that were there already.
    pub reused: usize,
}

/// Registry flags of pull/push/login.
#[derive(Debug, Clone, Default)]
pub struct RegistryFlags {
    pub insecure: bool,
    pub quiet: bool,
}

/// A build's context as the CLI has it.
pub enum BuildContext {
    /// A directory of this machine.
    Dir(std::path::PathBuf),
    /// A tar stream (a file, or stdin).
    Tar(Box<dyn Read>),
}

/// The engine as the CLI's commands see it.
pub trait Backend {
    /// `build`: returns the image id; the log goes to `log` as it comes.
    fn build(
        &self,
        context: BuildContext,
        options: &capsa_host::engine::build::BuildOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<String>;
    /// `builder prune`: (the cache entries dropped, bytes freed).
    fn builder_prune(&self) -> Result<(Vec<String>, u64)>;
    fn list_containers(&self, all: bool, size: bool, filters: &Filters) -> Result<Vec<Value>>;
    fn inspect_container(&self, name: &str) -> Result<Option<Value>>;
    fn inspect_image(&self, name: &str) -> Result<Option<Value>>;
    /// `images [-a]`: with `all`, builds' intermediate images too.
    fn list_images(&self, filters: &Filters, all: bool) -> Result<Vec<Value>>;
    fn history(&self, name: &str) -> Result<Vec<Value>>;
    fn has_image(&self, name: &str) -> Result<bool>;
    fn create(&self, options: &RunOptions) -> Result<(String, Vec<String>)>;
    /// Creates and runs in the foreground (attached); returns the exit code.
    fn run_attached(&self, id: &str, options: &RunOptions) -> Result<i32>;
    fn start(&self, name: &str) -> Result<()>;
    fn stop(&self, name: &str, timeout: Option<u64>, signal: Option<&str>) -> Result<()>;
    fn restart(&self, name: &str, timeout: Option<u64>) -> Result<()>;
    fn kill(&self, name: &str, signal: &str) -> Result<()>;
    fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()>;
    fn pause(&self, name: &str) -> Result<()>;
    fn unpause(&self, name: &str) -> Result<()>;
    fn wait(&self, name: &str) -> Result<i32>;
    fn rename(&self, name: &str, new_name: &str) -> Result<()>;
    fn update(&self, name: &str, update: &UpdateOptions) -> Result<()>;
    fn logs(&self, name: &str, options: &LogOptions, emit: &mut dyn FnMut(&LogLine)) -> Result<()>;
    fn exec(&self, name: &str, request: &ExecRequest) -> Result<i32>;
    fn top(&self, name: &str, ps_args: &[String]) -> Result<Value>;
    /// `capsa stats` rows: one sample a second apart per container (all running ones when
    /// `names` is empty).
    fn stats_rows(&self, names: &[String]) -> Result<Vec<Row>>;
    fn diff(&self, name: &str) -> Result<Vec<Value>>;
    fn commit(&self, name: &str, options: &CommitOptions) -> Result<String>;
    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        flags: &RegistryFlags,
    ) -> Result<Pulled>;
    fn push(&self, image: &str, destination: Option<&str>, flags: &RegistryFlags) -> Result<()>;
    fn login(&self, server: &str, user: &str, password: &str, insecure: bool) -> Result<()>;
    fn logout(&self, server: &str) -> Result<bool>;
    fn load(&self, input: &mut dyn Read, path: Option<&std::path::Path>) -> Result<Vec<String>>;
    fn save(&self, names: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<()>;
    /// `save --format oci-dir`: an OCI layout written into a directory of this machine.
    fn save_oci_dir(&self, names: &[String], dir: &std::path::Path) -> Result<()>;
    fn import(
        &self,
        input: &mut dyn Read,
        reference: Option<&str>,
        message: Option<&str>,
        changes: &[String],
    ) -> Result<String>;
    fn tag(&self, source: &str, target: &str) -> Result<()>;
    fn rmi(&self, name: &str, force: bool) -> Result<Vec<Value>>;
    fn image_prune(&self, all: bool) -> Result<(Vec<Value>, u64)>;
    fn volume_create(&self, options: &VolumeOptions) -> Result<Value>;
    fn volume_list(&self, filters: &Filters) -> Result<Vec<Value>>;
    fn volume_inspect(&self, name: &str) -> Result<Value>;
    fn volume_remove(&self, name: &str, force: bool) -> Result<()>;
    fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)>;
    /// `network create`: Docker's create body; returns `{"Id", "Warning"}`.
    fn network_create(&self, body: &Value) -> Result<Value>;
    fn network_list(&self, filters: &Filters) -> Result<Vec<Value>>;
    fn network_inspect(&self, name: &str) -> Result<Value>;
    fn network_remove(&self, name: &str) -> Result<()>;
    /// `network prune`: the names removed.
    fn network_prune(&self, filters: &Filters) -> Result<Vec<String>>;
    fn network_connect(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
        ip: Option<&str>,
    ) -> Result<()>;
    fn network_disconnect(&self, network: &str, container: &str) -> Result<()>;
    fn version(&self) -> Result<Value>;
    fn info(&self) -> Result<Value>;
    fn events(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        filters: &Filters,
        emit: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<()>;
    fn path_stat(&self, name: &str, path: &str) -> Result<PathStat>;
    fn copy_from(&self, name: &str, path: &str, out: &mut dyn Write) -> Result<PathStat>;
    /// `export`: the container's filesystem as a tar.
    fn export(&self, name: &str, out: &mut dyn Write) -> Result<()>;
    fn copy_to(&self, name: &str, dir: &str, input: &mut dyn Read) -> Result<()>;
}

/// The engine in this process.
pub struct Local {
    pub engine: Engine,
}

impl Local {
    fn container(&self, name: &str) -> Result<capsa_host::engine::ContainerRecord> {
        Ok(self.engine.container(name)?)
    }

    /// The engine's registry settings, with `reference`'s registry over plain HTTP when
    /// `--insecure` was given.
    fn registry(&self, reference: &str, insecure: bool) -> RegistryOptions {
        let parsed = capsa_images::registry::ImageRef::parse(reference).ok();
        let extra = parsed.as_ref().filter(|_| insecure).map(|r| r.registry());
        self.engine.registry_options(extra, None)
    }
}

/// How pull/push progress is shown on this terminal.
fn progress(quiet: bool) -> Box<dyn capsa_images::registry::Progress> {
    use std::io::IsTerminal;
    if quiet {
        Box::new(capsa_images::registry::Quiet)
    } else if std::io::stderr().is_terminal() {
        Box::new(capsa_images::registry::Bars::new())
    } else {
        Box::new(capsa_images::registry::Lines)
    }
}

impl Backend for Local {
    fn list_containers(&self, all: bool, size: bool, filters: &Filters) -> Result<Vec<Value>> {
        Ok(api::containers::list(
            &self.engine,
            all,
            None,
            size,
            filters,
        )?)
    }

    fn inspect_container(&self, name: &str) -> Result<Option<Value>> {
        match self.engine.container(name) {
            Ok(c) => Ok(Some(api::containers::inspect(&self.engine, &c, false)?)),
            Err(EngineError::NoSuchContainer(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn inspect_image(&self, name: &str) -> Result<Option<Value>> {
        match api::images::inspect(&self.engine, name) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.http_status() == 404 => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn build(
        &self,
        context: BuildContext,
        options: &capsa_host::engine::build::BuildOptions,
        log: &mut dyn FnMut(&str),
    ) -> Result<String> {
        struct Log<'a>(&'a mut dyn FnMut(&str));
        impl capsa_host::engine::build::BuildOutput for Log<'_> {
            fn stream(&mut self, text: &str) {
                (self.0)(text)
            }
            fn cancelled(&self) -> bool {
                crate::interrupted()
            }
        }
        let mut out = Log(log);
        let id = match context {
            BuildContext::Dir(dir) => {
                let options = capsa_host::engine::build::BuildOptions {
                    context: dir,
                    ..options.clone()
                };
                self.engine.build(&options, &mut out)?
            }
            BuildContext::Tar(mut input) => {
                self.engine.build_from_tar(&mut input, options, &mut out)?
            }
        };
        Ok(id.to_string())
    }

    fn builder_prune(&self) -> Result<(Vec<String>, u64)> {
        Ok(self.engine.builder_prune()?)
    }

    fn list_images(&self, filters: &Filters, all: bool) -> Result<Vec<Value>> {
        Ok(api::images::list(&self.engine, filters, all)?)
    }

    fn history(&self, name: &str) -> Result<Vec<Value>> {
        Ok(api::images::history(&self.engine, name)?)
    }

    fn has_image(&self, name: &str) -> Result<bool> {
        Ok(self.engine.has_image(name)?)
    }

    fn create(&self, options: &RunOptions) -> Result<(String, Vec<String>)> {
        let warnings = capsa_host::engine::create_warnings(options);
        Ok((self.engine.create(options)?.id, warnings))
    }

    fn run_attached(&self, id: &str, options: &RunOptions) -> Result<i32> {
        let c = self.container(id)?;
        Ok(self.engine.run_foreground(&c, options.interactive)?)
    }

    fn start(&self, name: &str) -> Result<()> {
        let c = self.container(name)?;
        self.engine.start(&c, Vec::new())?;
        Ok(())
    }

    fn stop(&self, name: &str, timeout: Option<u64>, signal: Option<&str>) -> Result<()> {
        let c = self.container(name)?;
        let signal = signal.map(capsa_host::runtime::parse_signal).transpose()?;
        self.engine
            .stop(&c, timeout.map(std::time::Duration::from_secs), signal)?;
        Ok(())
    }

    fn restart(&self, name: &str, timeout: Option<u64>) -> Result<()> {
        let c = self.container(name)?;
        self.engine
            .restart(&c, timeout.map(std::time::Duration::from_secs))?;
        Ok(())
    }

    fn kill(&self, name: &str, signal: &str) -> Result<()> {
        let c = self.container(name)?;
        self.engine
            .kill(&c, capsa_host::runtime::parse_signal(signal)?)?;
        Ok(())
    }

    fn remove(&self, name: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.container(name)?;
        Ok(self.engine.remove(&c, force, volumes)?)
    }

    fn pause(&self, name: &str) -> Result<()> {
        Ok(self.engine.pause(&self.container(name)?)?)
    }

    fn unpause(&self, name: &str) -> Result<()> {
        Ok(self.engine.unpause(&self.container(name)?)?)
    }

    fn wait(&self, name: &str) -> Result<i32> {
        Ok(self.engine.wait(&self.container(name)?)?)
    }

    fn rename(&self, name: &str, new_name: &str) -> Result<()> {
        Ok(self.engine.rename(&self.container(name)?, new_name)?)
    }

    fn update(&self, name: &str, update: &UpdateOptions) -> Result<()> {
        Ok(self.engine.update(&self.container(name)?, update)?)
    }

    fn logs(&self, name: &str, options: &LogOptions, emit: &mut dyn FnMut(&LogLine)) -> Result<()> {
        let c = self.container(name)?;
        self.engine.logs(
            &c,
            options,
            &mut |l| {
                emit(l);
                true
            },
            &|| false,
        )?;
        Ok(())
    }

    fn exec(&self, name: &str, request: &ExecRequest) -> Result<i32> {
        let c = self.container(name)?;
        Ok(self.engine.exec(&c, request)?)
    }

    fn top(&self, name: &str, ps_args: &[String]) -> Result<Value> {
        let c = self.container(name)?;
        Ok(api::containers::top(&self.engine, &c, ps_args)?)
    }

    fn stats_rows(&self, names: &[String]) -> Result<Vec<Row>> {
        let engine = &self.engine;
        let containers: Vec<_> = if names.is_empty() {
            engine
                .containers()?
                .into_iter()
                .filter(|c| matches!(engine.state(c).0, State::Running | State::Paused))
                .collect()
        } else {
            names
                .iter()
                .map(|n| engine.container(n))
                .collect::<std::result::Result<_, _>>()?
        };
        let first: Vec<_> = containers.iter().map(|c| engine.sample(c).ok()).collect();
        std::thread::sleep(std::time::Duration::from_secs(1));
        let mut rows = Vec::new();
        for (c, before) in containers.iter().zip(first) {
            let now = match (before, engine.sample(c)) {
                (Some(before), Ok(now)) => (before, now),
                (_, Err(e)) if !names.is_empty() => return Err(e.into()),
                _ => continue,
            };
            let v = api::stats::stats_json(&c.name, &c.id, &now.1, Some(&now.0));
            rows.push(stats_row(&v));
        }
        Ok(rows)
    }

    fn diff(&self, name: &str) -> Result<Vec<Value>> {
        let c = self.container(name)?;
        Ok(api::containers::changes(&self.engine, &c)?
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    fn commit(&self, name: &str, options: &CommitOptions) -> Result<String> {
        let c = self.container(name)?;
        Ok(self.engine.commit(&c, options)?.to_string())
    }

    fn pull(
        &self,
        reference: &str,
        platform: Option<&str>,
        flags: &RegistryFlags,
    ) -> Result<Pulled> {
        let report = self
            .engine
            .pull(
                reference,
                platform,
                &self.registry(reference, flags.insecure),
                progress(flags.quiet).as_ref(),
            )
            .with_context(|| format!("pull {reference}"))?;
        Ok(Pulled {
            id: report.id.to_string(),
            digest: report.manifest.to_string(),
            fetched: report.fetched.len(),
            reused: report.reused.len(),
        })
    }

    fn push(&self, image: &str, destination: Option<&str>, flags: &RegistryFlags) -> Result<()> {
        let target = destination.unwrap_or(image);
        let report = self
            .engine
            .push(
                image,
                destination,
                &self.registry(target, flags.insecure),
                progress(flags.quiet).as_ref(),
            )
            .with_context(|| format!("push {image} to {target}"))?;
        if !flags.quiet {
            println!(
                "Pushed {target}: {} blobs uploaded, {} mounted, {} already there",
                report.uploaded.len(),
                report.mounted.len(),
                report.existing.len()
            );
        }
        if let Some(digest) = report.manifest {
            println!("Digest: {digest}");
        }
        Ok(())
    }

    fn login(&self, server: &str, user: &str, password: &str, insecure: bool) -> Result<()> {
        let options = self.registry(&format!("{server}/x"), insecure);
        self.engine
            .login(server, user, password, &options)
            .with_context(|| format!("log in to {server}"))?;
        Ok(())
    }

    fn logout(&self, server: &str) -> Result<bool> {
        Ok(capsa_images::registry::logout(self.engine.store(), server)?)
    }

    fn load(&self, input: &mut dyn Read, path: Option<&std::path::Path>) -> Result<Vec<String>> {
        Ok(match path {
            Some(p) => self.engine.load(p)?,
            None => self.engine.load_stream(input)?,
        })
    }

    fn save(&self, names: &[String], format: SaveFormat, out: &mut dyn Write) -> Result<()> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(self.engine.save(&names, format, out)?)
    }

    fn save_oci_dir(&self, names: &[String], dir: &std::path::Path) -> Result<()> {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        Ok(self.engine.store().export_oci_layout(&names, dir)?)
    }

    fn import(
        &self,
        input: &mut dyn Read,
        reference: Option<&str>,
        message: Option<&str>,
        changes: &[String],
    ) -> Result<String> {
        Ok(self
            .engine
            .import(input, reference, message, changes)?
            .to_string())
    }

    fn tag(&self, source: &str, target: &str) -> Result<()> {
        Ok(self.engine.tag(source, target)?)
    }

    fn rmi(&self, name: &str, force: bool) -> Result<Vec<Value>> {
        let report = self.engine.image_remove(name, force)?;
        Ok(api::images::delete_report(&report))
    }

    fn image_prune(&self, all: bool) -> Result<(Vec<Value>, u64)> {
        let (reports, freed) = self.engine.image_prune(all, &|_| true)?;
        Ok((
            reports
                .iter()
                .flat_map(api::images::delete_report)
                .collect(),
            freed,
        ))
    }

    fn volume_create(&self, options: &VolumeOptions) -> Result<Value> {
        let v = self.engine.volume_create(options)?;
        Ok(api::system::volume_json(&self.engine, &v))
    }

    fn volume_list(&self, filters: &Filters) -> Result<Vec<Value>> {
        Ok(volume_list(&self.engine, filters)?)
    }

    fn volume_inspect(&self, name: &str) -> Result<Value> {
        let v = self.engine.volume(name)?;
        Ok(api::system::volume_json(&self.engine, &v))
    }

    fn volume_remove(&self, name: &str, force: bool) -> Result<()> {
        Ok(self.engine.volume_remove(name, force)?)
    }

    fn volume_prune(&self, all: bool) -> Result<(Vec<String>, u64)> {
        Ok(self.engine.volume_prune(all, &|_| true)?)
    }

    fn network_create(&self, body: &Value) -> Result<Value> {
        let options = api::networks::network_create_options(body)?;
        let n = self.engine.network_create(&options)?;
        Ok(json!({ "Id": n.id, "Warning": "" }))
    }

    fn network_list(&self, filters: &Filters) -> Result<Vec<Value>> {
        Ok(api::networks::network_list(&self.engine, filters)?)
    }

    fn network_inspect(&self, name: &str) -> Result<Value> {
        let n = self.engine.network(name)?;
        Ok(api::networks::network_json(&self.engine, &n))
    }

    fn network_remove(&self, name: &str) -> Result<()> {
        self.engine.network_remove(name)?;
        Ok(())
    }

    fn network_prune(&self, filters: &Filters) -> Result<Vec<String>> {
        filters.only(&["label"])?;
        Ok(self
            .engine
            .network_prune(|n| !filters.labels_match(&n.labels))?)
    }

    fn network_connect(
        &self,
        network: &str,
        container: &str,
        aliases: &[String],
        ip: Option<&str>,
    ) -> Result<()> {
        let c = self.engine.container(container)?;
        Ok(self.engine.network_connect(&c, network, aliases, ip)?)
    }

    fn network_disconnect(&self, network: &str, container: &str) -> Result<()> {
        let c = self.engine.container(container)?;
        Ok(self.engine.network_disconnect(&c, network)?)
    }

    fn version(&self) -> Result<Value> {
        Ok(api::system::version())
    }

    fn info(&self) -> Result<Value> {
        Ok(api::system::info(
            &self.engine,
            &api::system::InfoExtras::default(),
        )?)
    }

    fn events(
        &self,
        since: Option<&str>,
        until: Option<&str>,
        filters: &Filters,
        emit: &mut dyn FnMut(&Value) -> bool,
    ) -> Result<()> {
        let since = since.map(capsa_host::engine::parse_time).transpose()?;
        let until = until.map(capsa_host::engine::parse_time).transpose()?;
        let filter = EventFilter {
            filters: filters.0.clone(),
        };
        let mut reader = self.engine.event_reader(since)?;
        loop {
            // The log's history first; `until` in the past ends at the end of it.
            let next = match reader.try_next()? {
                Some(e) => Some(e),
                None => {
                    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
                    if until.is_some_and(|u| now >= u) {
                        return Ok(());
                    }
                    reader.next(Some(std::time::Duration::from_millis(500)))?
                }
            };
            let Some(e) = next else { continue };
            if until.is_some_and(|u| e.time_nano >= u) {
                return Ok(());
            }
            if filter.accepts(&e) && !emit(&serde_json::to_value(&e)?) {
                return Ok(());
            }
        }
    }

    fn path_stat(&self, name: &str, path: &str) -> Result<PathStat> {
        let c = self.container(name)?;
        Ok(self.engine.path_stat(&c, path)?)
    }

    fn copy_from(&self, name: &str, path: &str, out: &mut dyn Write) -> Result<PathStat> {
        let c = self.container(name)?;
        Ok(self.engine.archive_get(&c, path, out)?)
    }

    fn copy_to(&self, name: &str, dir: &str, input: &mut dyn Read) -> Result<()> {
        let c = self.container(name)?;
        Ok(self.engine.archive_put(&c, dir, input, false, false)?)
    }

    fn export(&self, name: &str, out: &mut dyn Write) -> Result<()> {
        let c = self.container(name)?;
        Ok(self.engine.export(&c, out)?)
    }
}

/// `volume ls` entries, filtered (`name`, `label`, `dangling`, `driver`).
pub fn volume_list(engine: &Engine, filters: &Filters) -> capsa_host::engine::Result<Vec<Value>> {
    filters.only(&["name", "label", "dangling", "driver"])?;
    let dangling = filters.bool("dangling")?;
    let mut out = Vec::new();
    for v in engine.volumes()? {
        if filters
            .get("name")
            .is_some_and(|names| !names.iter().any(|n| v.name.contains(n.as_str())))
            || filters
                .get("driver")
                .is_some_and(|d| !d.contains(&v.driver))
            || !filters.labels_match(&v.labels)
        {
            continue;
        }
        if let Some(d) = dangling
            && d != engine.volume_users(&v.name)?.is_empty()
        {
            continue;
        }
        out.push(api::system::volume_json(engine, &v));
    }
    Ok(out)
}

/// A `capsa stats` row from Docker's stats object, computed as the docker CLI does.
pub fn stats_row(v: &Value) -> Row {
    let u = |p: &str| v.pointer(p).and_then(Value::as_u64).unwrap_or(0);
    let cpu_delta = u("/cpu_stats/cpu_usage/total_usage")
        .saturating_sub(u("/precpu_stats/cpu_usage/total_usage")) as f64;
    let sys_delta =
        u("/cpu_stats/system_cpu_usage").saturating_sub(u("/precpu_stats/system_cpu_usage")) as f64;
    let cpus = u("/cpu_stats/online_cpus").max(1) as f64;
    let cpu = if sys_delta > 0.0 {
        cpu_delta / sys_delta * cpus * 100.0
    } else {
        0.0
    };
    let cache = v
        .pointer("/memory_stats/stats/total_inactive_file")
        .or_else(|| v.pointer("/memory_stats/stats/inactive_file"))
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let used = u("/memory_stats/usage").saturating_sub(cache);
    let limit = u("/memory_stats/limit").max(1);
    let id = v["id"].as_str().unwrap_or_default();
    let mut m = Row::new();
    m.insert("ID".into(), json!(&id[..12.min(id.len())]));
    m.insert("Container".into(), json!(&id[..12.min(id.len())]));
    m.insert(
        "Name".into(),
        json!(
            v["name"]
                .as_str()
                .unwrap_or_default()
                .trim_start_matches('/')
        ),
    );
    m.insert("CPUPerc".into(), json!(format!("{cpu:.2}%")));
    m.insert(
        "MemUsage".into(),
        json!(format!(
            "{} / {}",
            crate::format::binary_size(used),
            crate::format::binary_size(limit)
        )),
    );
    m.insert(
        "MemPerc".into(),
        json!(format!("{:.2}%", used as f64 / limit as f64 * 100.0)),
    );
    m.insert("PIDs".into(), json!(u("/pids_stats/current").to_string()));
    m
}
