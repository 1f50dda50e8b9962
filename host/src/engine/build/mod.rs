//! `capsa build` and `POST /build`: an image from a Dockerfile, as Docker's classic builder
//! makes it. One implementation for the CLI and the daemon.
//!
//! Every instruction is a step that makes an image from the previous step's: `RUN` runs in a
//! real container of that image (the same envelope as `capsa run`, started through the
//! monitor, so the daemon never forks) and its upper dir becomes the step's layer; `COPY`/`ADD`
//! unpack what they copy into a container's overlay the same way (or, on `scratch`, straight
//! into a layer); the rest only change the config (`empty_layer` in the history). Each step is
//! looked up in the build cache first (`capsa_images::build::cache`): the parent image and the
//! step's key (the instruction after substitution, the build args it uses, the checksum of
//! what it copies). A failing step stops the build with its exit code, removes its container
//! and tags nothing.
//!
//! - `mod.rs`: options, output, the stages and steps (this file)
//! - `config.rs`: the metadata instructions on the image config
//! - `run.rs`: a `RUN` step's container
//! - `copy.rs`: `COPY` and `ADD`

mod config;
mod copy;
mod run;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use capsa_images::build::context::Context;
use capsa_images::build::dockerfile::{self, Args, Instruction};
use capsa_images::build::words;
use capsa_images::{ImageId, Reference};
use serde_json::{Value, json};

use super::Engine;
use super::error::{EngineError, IoContext, Result, invalid};

/// What to build, from `capsa build`'s flags or `POST /build`'s query.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The context directory.
    pub context: PathBuf,
    /// The Dockerfile: a path relative to the context (default `Dockerfile`), or absolute.
    pub dockerfile: Option<PathBuf>,
    /// The Dockerfile's text, when it does not come from a file (`-f -`).
    pub dockerfile_text: Option<String>,
    /// `-t`: names for the result.
    pub tags: Vec<String>,
    /// `--build-arg K=V`.
    pub build_args: BTreeMap<String, String>,
    /// `--target`: the last stage to build.
    pub target: Option<String>,
    /// `--no-cache`.
    pub no_cache: bool,
    /// `--pull`: pull every `FROM` image even if the store has it.
    pub pull: bool,
    /// `--platform` (`wasi/wasm` for a wasm image from scratch).
    pub platform: Option<String>,
    /// `--label`.
    pub labels: BTreeMap<String, String>,
    /// `--network` for `RUN` steps: `none` (the default here), `host`, `bridge` or a network.
    pub network: Option<String>,
}

/// Where a build's log goes: the CLI prints it, the daemon streams it as JSON lines.
pub trait BuildOutput {
    /// Text of the build's log: step headers, the steps' own output, notes.
    fn stream(&mut self, text: &str);

    /// Whether the build should stop (the CLI got SIGINT, the daemon's client went away): a
    /// running step's container is killed and removed, and the build fails.
    fn cancelled(&self) -> bool {
        false
    }
}

/// The PATH a stage gets when its image sets none (Docker's `DefaultPathEnv` on Linux).
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's predefined build args: usable without an `ARG`, kept out of the history.
const PREDEFINED_ARGS: [&str; 10] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "FTP_PROXY",
    "ftp_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// One stage's state while its steps run.
pub(super) struct Stage {
    /// The image so far; `None` on `scratch` before its first step.
    pub image: Option<ImageId>,
    /// The image config's `config` object so far.
    pub config: Value,
    /// `(os, architecture)`.
    pub platform: (String, String),
    /// Build args declared in this stage, with their values.
    pub args: BTreeMap<String, Option<String>>,
}

impl Stage {
    /// The value of `name` for substitution: `ENV` wins over `ARG`, as Docker.
    fn lookup(&self, name: &str) -> Option<String> {
        env_value(&self.config, name).or_else(|| self.args.get(name).cloned().flatten())
    }

    /// Expands one word with the stage's variables.
    fn expand(&self, word: &str, escape: char) -> Result<String> {
        words::expand(word, &|n| self.lookup(n), escape).map_err(|e| invalid("Dockerfile", e))
    }

    /// The build args a `RUN` sees: declared, with a value, not shadowed by `ENV`.
    fn run_args(&self) -> Vec<(String, String)> {
        self.args
            .iter()
            .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
            .filter(|(k, _)| env_value(&self.config, k).is_none())
            .collect()
    }

    /// The shell for shell-form commands (`SHELL`, default `/bin/sh -c`).
    fn shell(&self) -> Vec<String> {
        match self.config.get("Shell").and_then(Value::as_array) {
            Some(s) if !s.is_empty() => s
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            _ => vec!["/bin/sh".into(), "-c".into()],
        }
    }
}

/// `name`'s value in a config's `Env`.
fn env_value(config: &Value, name: &str) -> Option<String> {
    config
        .get("Env")
        .and_then(Value::as_array)?
        .iter()
        .filter_map(Value::as_str)
        .find_map(|e| {
            e.split_once('=')
                .filter(|(k, _)| *k == name)
                .map(|(_, v)| v.to_owned())
        })
}

/// The first 12 hex digits of an id, as Docker prints it.
fn short(id: &ImageId) -> String {
    id.hex().chars().take(12).collect()
}

/// A build in progress: what every step needs.
pub(super) struct Build<'a> {
    pub engine: &'a Engine,
    pub options: &'a BuildOptions,
    pub out: &'a mut dyn BuildOutput,
    pub context: Context,
    pub escape: char,
    /// The stages built so far: (name, image).
    pub stages: Vec<(Option<String>, Option<ImageId>)>,
    /// Build args some `ARG` consumed.
    pub used_args: BTreeSet<String>,
}

impl Engine {
    /// Builds an image; returns its id. The log goes to `out`.
    pub fn build(&self, options: &BuildOptions, out: &mut dyn BuildOutput) -> Result<ImageId> {
        let tags: Vec<Reference> = options
            .tags
            .iter()
            .map(|t| Reference::parse(t).map_err(EngineError::from))
            .collect::<Result<_>>()?;
        let text = match &options.dockerfile_text {
            Some(t) => t.clone(),
            None => {
                // A relative path is followed inside the context only (a link in a client's
                // tar cannot name a host file); an absolute one is the CLI user's own file.
                let path = match &options.dockerfile {
                    Some(p) if p.is_absolute() => p.clone(),
                    Some(p) => options
                        .context
                        .join(Context::plain(&options.context).follow(&p.to_string_lossy())?),
                    None => options.context.join("Dockerfile"),
                };
                std::fs::read_to_string(&path).map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => invalid(
                        "Dockerfile",
                        format!("Cannot locate specified Dockerfile: {}", path.display()),
                    ),
                    _ => EngineError::Io {
                        what: "read",
                        path: path.clone(),
                        source: e,
                    },
                })?
            }
        };
        let parsed = dockerfile::parse(&text).map_err(|e| invalid("Dockerfile", e.to_string()))?;
        self.reap_build_tmp();
        let context = Context::open(&options.context)?;
        let mut build = Build {
            engine: self,
            options,
            out,
            context,
            escape: parsed.escape,
            stages: Vec::new(),
            used_args: BTreeSet::new(),
        };
        if let Some(syntax) = &parsed.syntax {
            build.out.stream(&format!(
                "note: the syntax directive ({syntax}) is ignored: the classic builder parses the Dockerfile itself\n"
            ));
        }
        build.run(&parsed.instructions, &tags)
    }

    /// `builder prune` / `POST /build/prune`: empties the build cache and removes the images
    /// only it kept (untagged, no child, no container). Returns (the cache entries' keys,
    /// bytes freed).
    pub fn builder_prune(&self) -> Result<(Vec<String>, u64)> {
        let entries = self.store().clear_build_cache()?;
        let (_, freed) = self.image_prune(false, &|_| true)?;
        Ok((entries, freed))
    }
}

impl Build<'_> {
    fn run(&mut self, instructions: &[Instruction], tags: &[Reference]) -> Result<ImageId> {
        // Global ARGs (before the first FROM) apply to FROM lines.
        let first_from = instructions
            .iter()
            .position(|i| i.keyword == "FROM")
            .ok_or_else(|| invalid("Dockerfile", "no FROM instruction"))?;
        if let Some(i) = instructions[..first_from]
            .iter()
            .find(|i| i.keyword != "ARG")
        {
            return Err(invalid(
                format!("Dockerfile line {}", i.line),
                format!(
                    "{} before the first FROM (only ARG may come first)",
                    i.keyword
                ),
            ));
        }
        let mut stages: Vec<&[Instruction]> = Vec::new();
        let mut start = first_from;
        for (n, i) in instructions.iter().enumerate().skip(first_from + 1) {
            if i.keyword == "FROM" {
                stages.push(&instructions[start..n]);
                start = n;
            }
        }
        stages.push(&instructions[start..]);
        let names: Vec<Option<String>> = stages.iter().map(|s| stage_name(&s[0])).collect();
        let last = match &self.options.target {
            Some(t) => names
                .iter()
                .position(|n| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(t)))
                .ok_or_else(|| {
                    invalid(
                        "--target",
                        format!("failed to reach build target {t} in Dockerfile"),
                    )
                })?,
            None => stages.len() - 1,
        };
        let total = first_from + stages[..=last].iter().map(|s| s.len()).sum::<usize>();
        let mut step = 0;

        let mut meta = Stage {
            image: None,
            config: json!({}),
            platform: (String::new(), String::new()),
            args: BTreeMap::new(),
        };
        for i in &instructions[..first_from] {
            step += 1;
            self.header(step, total, i);
            self.declare_args(&mut meta, i, None)?;
        }
        let meta_args = meta.args;

        let mut result = None;
        for stage in &stages[..=last] {
            let image = self.run_stage(stage, &meta_args, &mut step, total)?;
            self.stages.push((stage_name(&stage[0]), image.clone()));
            result = image;
        }
        let Some(mut id) = result else {
            return Err(invalid(
                "Dockerfile",
                "No image was generated. Is your Dockerfile empty?",
            ));
        };
        if !self.options.labels.is_empty() {
            let mut config = self.engine.store().container_config(&id)?;
            let labels = config::object(&mut config, "Labels");
            let mut shown = Vec::new();
            for (k, v) in &self.options.labels {
                labels.insert(k.clone(), json!(v));
                shown.push(format!("{k}={v:?}"));
            }
            id = self
                .engine
                .store()
                .add_step_image(capsa_images::build::image::StepImage {
                    parent: Some(&id),
                    layer: None,
                    config,
                    created_by: format!("/bin/sh -c #(nop)  LABEL {}", shown.join(" ")),
                    platform: None,
                })?;
        }
        let unused: Vec<&String> = self
            .options
            .build_args
            .keys()
            .filter(|k| !self.used_args.contains(*k) && !PREDEFINED_ARGS.contains(&k.as_str()))
            .collect();
        if !unused.is_empty() {
            let list: Vec<&str> = unused.iter().map(|s| s.as_str()).collect();
            self.out.stream(&format!(
                "[Warning] One or more build-args [{}] were not consumed\n",
                list.join(" ")
            ));
        }
        if let Ok((os, arch)) = self.engine.store().image_platform(&id)
            && (arch == "wasm" || os.starts_with("wasi"))
            && let Err(e) = self.engine.precompile_wasm(&id.to_string())
        {
            return Err(invalid("wasm module", e.to_string()));
        }
        self.out
            .stream(&format!("Successfully built {}\n", short(&id)));
        for tag in tags {
            self.engine.store().tag(&id.to_string(), &tag.to_string())?;
            self.engine.emit(
                "image",
                "tag",
                &id.to_string(),
                BTreeMap::from([("name".to_owned(), tag.to_string())]),
            );
            self.out.stream(&format!("Successfully tagged {tag}\n"));
        }
        Ok(id)
    }

    fn header(&mut self, step: usize, total: usize, i: &Instruction) {
        self.out
            .stream(&format!("Step {step}/{total} : {}\n", i.original));
    }

    /// One stage: its FROM, its base's ONBUILD triggers, its steps. Returns its image.
    fn run_stage(
        &mut self,
        stage: &[Instruction],
        meta_args: &BTreeMap<String, Option<String>>,
        step: &mut usize,
        total: usize,
    ) -> Result<Option<ImageId>> {
        let from = &stage[0];
        *step += 1;
        self.header(*step, total, from);
        let mut st = self.from(from, meta_args)?;
        // Docker's classic builder: a stage whose image sets no PATH gets the default one.
        if env_value(&st.config, "PATH").is_none() && st.platform.0 != "windows" {
            if !st.config.is_object() {
                st.config = json!({});
            }
            let mut env: Vec<Value> = st
                .config
                .get("Env")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            env.push(json!(format!("PATH={DEFAULT_PATH}")));
            st.config["Env"] = Value::Array(env);
        }
        if let Some(triggers) = st.config.get("OnBuild").and_then(Value::as_array).cloned()
            && !triggers.is_empty()
        {
            st.config["OnBuild"] = Value::Null;
            self.out.stream(&format!(
                "# Executing {} build trigger{}\n",
                triggers.len(),
                if triggers.len() == 1 { "" } else { "s" }
            ));
            for t in triggers.iter().filter_map(Value::as_str) {
                let i = dockerfile::parse_line(t, self.escape)
                    .map_err(|e| invalid("ONBUILD trigger", e.to_string()))?;
                self.step(&mut st, &i, meta_args)?;
            }
        }
        for i in &stage[1..] {
            *step += 1;
            self.header(*step, total, i);
            self.step(&mut st, i, meta_args)?;
        }
        Ok(st.image)
    }

    /// `FROM [--platform=P] IMAGE [AS NAME]`.
    fn from(
        &mut self,
        i: &Instruction,
        meta_args: &BTreeMap<String, Option<String>>,
    ) -> Result<Stage> {
        let lookup = |n: &str| meta_args.get(n).cloned().flatten();
        let text = match &i.args {
            Args::Shell(s) => s.clone(),
            Args::Exec(v) => v.join(" "),
        };
        let words =
            words::expand_fields(&text, &lookup, self.escape).map_err(|e| invalid("FROM", e))?;
        let base = match words.as_slice() {
            [base] | [base, _, _] => base.clone(),
            _ => {
                return Err(invalid(
                    "FROM",
                    "FROM requires either one or three arguments",
                ));
            }
        };
        let platform = match i.flags.iter().find(|(k, _)| k == "platform") {
            Some((_, p)) => Some(
                words::expand(p, &lookup, self.escape)
                    .map_err(|e| invalid("FROM --platform", e))?,
            ),
            None => self.options.platform.clone(),
        };
        if base.eq_ignore_ascii_case("scratch") {
            let (os, arch) = match platform.as_deref().and_then(|p| p.split_once('/')) {
                Some((os, arch)) => (
                    os.to_owned(),
                    arch.split('/').next().unwrap_or(arch).to_owned(),
                ),
                None => (
                    "linux".to_owned(),
                    capsa_images::manifest::host_architecture().to_owned(),
                ),
            };
            self.out.stream(" ---> \n");
            return Ok(Stage {
                image: None,
                config: json!({}),
                platform: (os, arch),
                args: BTreeMap::new(),
            });
        }
        let id = match self.stage_image(&base) {
            Some(id) => id,
            None => self.base_image(&base, platform.as_deref())?,
        };
        let config = self.engine.store().container_config(&id)?;
        let platform = self.engine.store().image_platform(&id)?;
        self.out.stream(&format!(" ---> {}\n", short(&id)));
        Ok(Stage {
            image: Some(id),
            config,
            platform,
            args: BTreeMap::new(),
        })
    }

    /// A previous stage's image by name or index (`COPY --from=0`, `FROM build`).
    fn stage_image(&self, name: &str) -> Option<ImageId> {
        if let Ok(n) = name.parse::<usize>() {
            return self.stages.get(n).and_then(|(_, id)| id.clone());
        }
        self.stages
            .iter()
            .rev()
            .find(|(n, _)| n.as_deref().is_some_and(|n| n.eq_ignore_ascii_case(name)))
            .and_then(|(_, id)| id.clone())
    }

    /// An image by name: the store's, pulled first with `--pull` or when missing.
    fn base_image(&mut self, name: &str, platform: Option<&str>) -> Result<ImageId> {
        let have = self.engine.has_image(name)?;
        if self.options.pull || !have {
            let options = self.engine.registry_options(None, None);
            self.out.stream(&format!("Pulling {name}\n"));
            match self.engine.pull(
                name,
                platform,
                &options,
                &capsa_images::registry::progress::Quiet,
            ) {
                Ok(report) => return Ok(report.id),
                // `--pull` of an image only this store has (built or loaded here) uses it.
                Err(e) if !have => {
                    return Err(EngineError::NotFound(format!(
                        "FROM {name}: not in the store, and pulling it failed: {e}"
                    )));
                }
                Err(e) => self.out.stream(&format!(
                    "note: pull of {name} failed ({e}); using the stored image\n"
                )),
            }
        }
        Ok(self.engine.store().resolve(name)?)
    }

    /// `ARG` in a stage (`stage_args` = the global ones it may re-declare) or before FROM.
    fn declare_args(
        &mut self,
        st: &mut Stage,
        i: &Instruction,
        globals: Option<&BTreeMap<String, Option<String>>>,
    ) -> Result<()> {
        let Args::Shell(text) = &i.args else {
            return Err(invalid("ARG", "ARG takes NAME[=default]"));
        };
        let pairs = words::key_values(text, self.escape, false).map_err(|e| invalid("ARG", e))?;
        if pairs.is_empty() {
            return Err(invalid("ARG", "ARG requires exactly one argument"));
        }
        for (name, default) in pairs {
            let value = if let Some(v) = self.options.build_args.get(&name) {
                self.used_args.insert(name.clone());
                Some(v.clone())
            } else if let Some(d) = default {
                Some(st.expand(&d, self.escape)?)
            } else {
                globals.and_then(|g| g.get(&name).cloned().flatten())
            };
            st.args.insert(name, value);
        }
        Ok(())
    }

    /// One step of a stage: from the cache or run, then the stage moves to its image.
    fn step(
        &mut self,
        st: &mut Stage,
        i: &Instruction,
        meta_args: &BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        if self.out.cancelled() {
            return Err(cancelled());
        }
        match i.keyword.as_str() {
            "ARG" => {
                self.declare_args(st, i, Some(meta_args))?;
                // The config does not change, and the key is the instruction alone, as in
                // Docker's cache: a changed --build-arg misses at the first step that uses it
                // (a RUN's key holds the values it sees).
                let created_by = format!("/bin/sh -c #(nop)  {}", i.original);
                let key = created_by.clone();
                if self.cached(st, &key)? {
                    return Ok(());
                }
                let config = st.config.clone();
                self.commit(st, &key, config, created_by, None)
            }
            "RUN" => self.run_step(st, i),
            "COPY" | "ADD" => self.copy_step(st, i),
            "WORKDIR" => {
                let (config, created_by) = config::apply(st, i, self.escape)?;
                if self.cached(st, &created_by)? {
                    return Ok(());
                }
                let dir = config
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_owned();
                self.workdir_step(st, &dir, config, created_by)
            }
            "FROM" => Err(invalid("Dockerfile", "FROM inside a stage")),
            _ => {
                let (config, created_by) = config::apply(st, i, self.escape)?;
                if self.cached(st, &created_by)? {
                    return Ok(());
                }
                self.commit(st, &created_by.clone(), config, created_by, None)
            }
        }
    }

    /// Ends a step: the cached image for (`st.image`, `key`) unless `--no-cache`, else the
    /// image `config` + `layer` make, remembered for next time.
    pub(super) fn commit(
        &mut self,
        st: &mut Stage,
        key: &str,
        config: Value,
        created_by: String,
        layer: Option<PathBuf>,
    ) -> Result<()> {
        let store = self.engine.store();
        let made = (|| -> Result<ImageId> {
            let mut file = match &layer {
                Some(p) => Some(std::fs::File::open(p).io("open", p)?),
                None => None,
            };
            Ok(store.add_step_image(capsa_images::build::image::StepImage {
                parent: st.image.as_ref(),
                layer: file.as_mut().map(|f| f as &mut dyn std::io::Read),
                config,
                created_by,
                platform: st.image.is_none().then(|| st.platform.clone()),
            })?)
        })();
        if let Some(p) = &layer {
            let _ = std::fs::remove_file(p);
        }
        let id = made?;
        store.remember_step(st.image.as_ref(), key, &id)?;
        self.moved(st, id)
    }

    /// Looks `key` up in the cache; on a hit the stage moves to that image.
    pub(super) fn cached(&mut self, st: &mut Stage, key: &str) -> Result<bool> {
        if self.options.no_cache {
            return Ok(false);
        }
        match self.engine.store().cached_step(st.image.as_ref(), key)? {
            Some(id) => {
                self.out.stream(" ---> Using cache\n");
                self.moved(st, id)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    fn moved(&mut self, st: &mut Stage, id: ImageId) -> Result<()> {
        st.config = self.engine.store().container_config(&id)?;
        self.out.stream(&format!(" ---> {}\n", short(&id)));
        st.image = Some(id);
        Ok(())
    }
}

/// The error of a build stopped by its caller.
pub(super) fn cancelled() -> EngineError {
    EngineError::BuildStep {
        message: "the build was cancelled".into(),
        code: 130,
    }
}

/// `AS NAME` of a FROM line.
fn stage_name(from: &Instruction) -> Option<String> {
    let Args::Shell(text) = &from.args else {
        return None;
    };
    let words: Vec<&str> = text.split_whitespace().collect();
    match words.as_slice() {
        [_, as_, name] if as_.eq_ignore_ascii_case("as") => Some(name.to_ascii_lowercase()),
        _ => None,
    }
}

impl Engine {
    /// [`Engine::build`] of a context sent as a tar (`POST /build`, `capsa build -`, a tar
    /// file): unpacked into `<root>/build-tmp/` (the tar crate refuses entries that would land
    /// outside it), built, removed. `options.context` is ignored; `options.dockerfile` is a
    /// path inside the tar. The last entry may lack its padding and the end marker: the docker
    /// CLI sends `-f -`'s Dockerfile that way.
    pub fn build_from_tar(
        &self,
        input: &mut dyn std::io::Read,
        options: &BuildOptions,
        out: &mut dyn BuildOutput,
    ) -> Result<ImageId> {
        let dir = self.build_tmp("context")?;
        std::fs::create_dir(&dir).io("mkdir", &dir)?;
        let result = (|| {
            let mut head = [0u8; 4];
            let mut buffered = std::io::BufReader::new(input);
            let peek = std::io::BufRead::fill_buf(&mut buffered).io("read", "build context")?;
            let n = peek.len().min(4);
            head[..n].copy_from_slice(&peek[..n]);
            let reader = capsa_images::unpack::Compression::sniff(&head[..n])
                .decoder(buffered)
                .io("read", "build context")?;
            let mut archive = tar::Archive::new(reader);
            archive.set_preserve_permissions(true);
            archive.set_overwrite(true);
            let entries = archive
                .entries()
                .map_err(|e| invalid("build context", e.to_string()))?;
            for entry in entries {
                let mut entry = match entry {
                    Ok(e) => e,
                    // The end of a tar whose last entry has no padding or end marker (the
                    // entry itself was read whole: a short one fails its own unpack).
                    Err(e)
                        if e.kind() == std::io::ErrorKind::UnexpectedEof
                            || e.to_string().contains("unexpected EOF") =>
                    {
                        break;
                    }
                    Err(e) => return Err(invalid("build context", e.to_string())),
                };
                entry
                    .unpack_in(&dir)
                    .map_err(|e| invalid("build context", e.to_string()))?;
            }
            let options = BuildOptions {
                context: dir.clone(),
                dockerfile: options
                    .dockerfile
                    .as_ref()
                    .map(|p| PathBuf::from(p.to_string_lossy().trim_start_matches('/'))),
                ..options.clone()
            };
            self.build(&options, out)
        })();
        let _ = std::fs::remove_dir_all(&dir);
        result
    }
}
