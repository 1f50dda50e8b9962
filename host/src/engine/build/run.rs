//! A `RUN` step: a real container of the stage's image (the image's `ENTRYPOINT` left out, the
//! build args in scope in its environment, no network unless `--network` says otherwise),
//! started through the monitor like `capsa run -d` and attached from its first byte; its upper
//! dir becomes the step's layer. The container is removed however the step ends.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use capsa_images::build::dockerfile::{self, Args, Instruction};
use serde_json::Value;

use super::{Build, Stage, config};
use crate::engine::attach::{Demux, Hello};
use crate::engine::error::{EngineError, IoContext, Result, invalid};
use crate::engine::spec::{Healthcheck, Network, RunOptions};
use crate::engine::{ContainerRecord, Engine};

/// Removes a step's container when the step is over, whatever happened.
pub(super) struct StepContainer<'a> {
    pub engine: &'a Engine,
    pub record: ContainerRecord,
}

impl Drop for StepContainer<'_> {
    fn drop(&mut self) {
        let _ = self.engine.remove(&self.record, true, true);
    }
}

/// The short id Docker prints for a container.
fn short_id(c: &ContainerRecord) -> &str {
    &c.id[..c.id.len().min(12)]
}

/// The network a `RUN` step gets: none unless asked (`--network`).
fn step_network(name: Option<&str>) -> Network {
    match name {
        None | Some("" | "none" | "default") => Network::None,
        Some("host") => Network::Host,
        Some(other) => Network::Bridge(other.to_owned()),
    }
}

impl<'a> Build<'a> {
    /// A container of the stage's image for one step (`RUN`, or a `COPY` target), not started.
    pub(super) fn step_container(
        &self,
        st: &Stage,
        command: Vec<String>,
        env: Vec<String>,
    ) -> Result<StepContainer<'a>> {
        let engine: &'a Engine = self.engine;
        let image = st
            .image
            .as_ref()
            .ok_or_else(|| invalid("step", "no image to run in (the stage is FROM scratch)"))?;
        let field = |k: &str| {
            st.config
                .get(k)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
        };
        let options = RunOptions {
            image: image.to_string(),
            command,
            entrypoint: Some(Vec::new()),
            env,
            workdir: field("WorkingDir"),
            user: field("User"),
            network: step_network(self.options.network.as_deref()),
            healthcheck: Some(Healthcheck {
                test: vec!["NONE".into()],
                ..Healthcheck::default()
            }),
            ..RunOptions::default()
        };
        let record = engine.create(&options)?;
        Ok(StepContainer { engine, record })
    }

    /// `RUN`.
    pub(super) fn run_step(&mut self, st: &mut Stage, i: &Instruction) -> Result<()> {
        if let Some((flag, _)) = i.flags.first() {
            return Err(invalid(
                format!("RUN --{flag} (line {})", i.line),
                "this flag needs BuildKit; the classic builder has none",
            ));
        }
        let cmd = match (&i.args, i.heredocs.as_slice()) {
            // `RUN <<EOF` alone: the heredoc is the script.
            (Args::Shell(s), [doc])
                if dockerfile::heredoc_name(s.trim()).as_deref() == Some(doc.name.as_str()) =>
            {
                let mut cmd = st.shell();
                cmd.push(doc.body());
                cmd
            }
            // Heredocs in a longer command: the shell reads them itself.
            (Args::Shell(s), docs) if !docs.is_empty() => {
                let mut script = s.clone();
                for d in docs {
                    script.push('\n');
                    script.push_str(&d.content);
                    script.push_str(&d.name);
                }
                let mut cmd = st.shell();
                cmd.push(script);
                cmd
            }
            (args, _) => config::command(st, args),
        };
        if cmd.is_empty() || cmd.iter().all(String::is_empty) {
            return Err(invalid(
                format!("RUN (line {})", i.line),
                "RUN requires at least one argument",
            ));
        }
        let args = st.run_args();
        let shown_cmd = cmd.join(" ");
        let created_by = if args.is_empty() {
            shown_cmd.clone()
        } else {
            let pairs: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("|{} {} {shown_cmd}", args.len(), pairs.join(" "))
        };
        let key = format!(
            "RUN {}",
            serde_json::to_string(&(&args, &cmd)).unwrap_or_default()
        );
        if self.cached(st, &key)? {
            return Ok(());
        }
        let env: Vec<String> = args.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let container = self.step_container(st, cmd.clone(), env)?;
        self.out.stream(&format!(
            " ---> Running in {}\n",
            short_id(&container.record)
        ));
        let code = self.run_attached(&container.record)?;
        if code != 0 {
            return Err(EngineError::BuildStep {
                message: format!("The command '{shown_cmd}' returned a non-zero code: {code}"),
                code,
            });
        }
        let layer = self.write_layer(&container.record)?;
        let short = short_id(&container.record).to_owned();
        drop(container);
        self.out
            .stream(&format!(" ---> Removed intermediate container {short}\n"));
        let config = st.config.clone();
        self.commit(st, &key, config, created_by, Some(layer))
    }

    /// Starts `c` with this build attached to its output (from the first byte), streams that
    /// output to the log, and returns the exit code.
    fn run_attached(&mut self, c: &ContainerRecord) -> Result<i32> {
        let (mut ours, theirs) = UnixStream::pair().io("socketpair", "attach")?;
        let hello = Hello {
            stdout: true,
            stderr: true,
            ..Hello::default()
        };
        let mut line = serde_json::to_vec(&hello).map_err(|e| invalid("attach", e.to_string()))?;
        line.push(b'\n');
        ours.write_all(&line).io("write", "attach")?;
        self.engine.start(c, vec![theirs.into()])?;
        // Read with a timeout, so that a cancelled build is noticed while a step runs.
        ours.set_read_timeout(Some(std::time::Duration::from_millis(200)))
            .io("set a timeout on", "attach")?;
        let mut demux = Demux::default();
        let mut buf = vec![0u8; 64 << 10];
        let mut killed = false;
        loop {
            let n = match ours.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock
                            | std::io::ErrorKind::TimedOut
                            | std::io::ErrorKind::Interrupted
                    ) =>
                {
                    if !killed && self.out.cancelled() {
                        let _ = self.engine.kill(c, libc::SIGKILL);
                        killed = true;
                    }
                    continue;
                }
                Err(_) => break,
            };
            for (_, bytes) in demux.push(&buf[..n]) {
                self.out.stream(&String::from_utf8_lossy(&bytes));
            }
        }
        let code = self.engine.wait(c)?;
        if killed {
            return Err(super::cancelled());
        }
        Ok(code)
    }

    /// The container's changes as a tar layer in `<root>/build-tmp` (the step's commit
    /// removes it).
    pub(super) fn write_layer(&self, c: &ContainerRecord) -> Result<std::path::PathBuf> {
        let path = self.engine.build_tmp("layer")?;
        let mut file = std::fs::File::create(&path).io("create", &path)?;
        capsa_images::commit::write_layer(&self.engine.upper_dir(c), &mut file)?;
        file.sync_all().io("fsync", &path)?;
        Ok(path)
    }
}
