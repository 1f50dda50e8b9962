//! What a daemon does when it starts (after a crash, a SIGKILL or a reboot): find each
//! container's state on disk and put right what a dead process left behind, as dockerd's
//! restore does. Running containers need nothing: their monitors never depended on the daemon.

use super::Engine;
use super::container::State;
use super::lifecycle::unmount;

/// What [`Engine::reconcile`] found and did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReconcileReport {
    /// Containers that run (or wait to restart) under their monitors.
    pub running: usize,
    /// Exited containers started again by their restart policy (`always`, `unless-stopped`).
    pub restarted: usize,
    /// Leftovers put right: overlays of exited containers unmounted, stale runtime records
    /// deleted, `--rm` containers removed.
    pub cleaned: usize,
}

impl Engine {
    /// Reconciles every container with what runs (see the module's documentation). Best
    /// effort: one container's failure is logged and the others go on.
    pub fn reconcile(&self) -> ReconcileReport {
        let mut report = ReconcileReport::default();
        let Ok(containers) = self.containers() else {
            return report;
        };
        for c in containers {
            let (state, _) = self.state(&c);
            let monitored = self.monitor_alive(&c);
            if monitored || matches!(state, State::Running | State::Paused) {
                if !monitored {
                    log::warn!(
                        "container {} runs without its monitor: its output is not logged and its exit will be seen late",
                        c.name
                    );
                }
                report.running += 1;
                continue;
            }
            if self.runtime_status(&c).is_some() {
                // It ran and its monitor died with it (a crash, a reboot): its exit was never
                // recorded. Docker's code for that is 255.
                if self.exit_record(&c).is_none() {
                    let _ = self.write_exit(
                        &c,
                        &super::ExitRecord {
                            code: 255,
                            started: self.run_state(&c).started,
                            finished: super::container::now_rfc3339(),
                            error: Some("the container's monitor died".to_owned()),
                        },
                    );
                    self.emit_container(&c, "die", &[("exitCode", "255".to_owned())]);
                }
                let _ = crate::runtime::delete(&self.runtime, &c.id, true);
                report.cleaned += 1;
            }
            if state == State::Created && self.exit_record(&c).is_none() {
                continue;
            }
            if c.auto_remove {
                if self.remove_files(&c).is_ok() {
                    self.remove_anonymous_volumes(&c);
                    self.emit_container(&c, "destroy", &[]);
                    report.cleaned += 1;
                }
                continue;
            }
            let rootfs = self.rootfs_dir(&c);
            if super::lifecycle::is_mounted(&rootfs) && unmount(&rootfs).is_ok() {
                report.cleaned += 1;
            }
            let stopped_by_user = self
                .container_dir(&c.id)
                .join(super::monitor::STOPPED_MARKER)
                .exists();
            let restarts = match c.options.restart.name.as_str() {
                "always" => true,
                "unless-stopped" => !stopped_by_user,
                _ => false,
            };
            if restarts {
                match self.start(&c, Vec::new()) {
                    Ok(_) => report.restarted += 1,
                    Err(e) => log::warn!("restart container {}: {e}", c.name),
                }
            }
        }
        report.cleaned += self.reconcile_networks();
        report
    }
}
