//! `ps` of one container (runc's `ps`, Docker's `top`): the host's ps(1) output, keeping the header
//! and the lines of the container's processes (its cgroup's pids).

use std::process::Command;

use crate::error::{Error, Result};

/// Runs `ps ARGS` (default `-ef`) and keeps the header and the lines whose PID column is one of
/// `pids`.
pub fn ps_table(pids: &[i32], ps_args: &[String]) -> Result<String> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args.to_vec()
    };
    let step = |message: String| Error::Step {
        step: format!("ps {}", args.join(" ")),
        message,
    };
    let output = Command::new("ps")
        .args(&args)
        .output()
        .map_err(|e| step(e.to_string()))?;
    if !output.status.success() {
        return Err(step(
            String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        ));
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let pid_column = header
        .split_whitespace()
        .position(|h| h == "PID")
        .ok_or_else(|| step("its output has no PID column".into()))?;
    let mut table = format!("{header}\n");
    for line in lines {
        let pid = line
            .split_whitespace()
            .nth(pid_column)
            .and_then(|p| p.parse::<i32>().ok());
        if pid.is_some_and(|p| pids.contains(&p)) {
            table.push_str(line);
            table.push('\n');
        }
    }
    Ok(table)
}
