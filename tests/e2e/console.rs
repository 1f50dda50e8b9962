//! `process.terminal` with `--console-socket`: the payload gets a pty, the caller the master.

use std::time::Duration;

use anyhow::{Result, ensure};
use capsa_tests::console::{ConsoleSocket, read_until_contains, read_until_hangup};
use capsa_tests::context::{TestContext, path_str};

#[test]
fn terminal_payload_gets_a_pty_whose_master_arrives_on_the_console_socket() -> Result<()> {
    let ctx = TestContext::new("console")?;
    let socket = ConsoleSocket::bind(&ctx.dir().join("console.sock"))?;
    let mut b = ctx.bundle()?;
    b.process().set_terminal(Some(true));
    b.payload(
        "tty; [ -t 0 ] && echo stdin-is-a-tty; [ -t 1 ] && echo stdout-is-a-tty; \
         read line; echo got-$line",
    );
    let (id, _) = ctx.create(&b, &["--console-socket", path_str(socket.path())?])?;
    let master = socket.receive_master(Duration::from_secs(10))?;
    ctx.rt(&["start", &id])?.ok()?;
    // Typed once the payload is about to read it, so the tty's echo cannot land in its output.
    let before = read_until_contains(&master, "stdout-is-a-tty\r\n", Duration::from_secs(10))?;
    nix::unistd::write(&master, b"hello\n")?;
    let out = before + &read_until_hangup(&master, Duration::from_secs(10))?;
    let lines: Vec<&str> = out.lines().map(|l| l.trim_end_matches('\r')).collect();
    ensure!(lines.contains(&"/dev/pts/0"), "tty output: {out:?}");
    ensure!(lines.contains(&"stdin-is-a-tty"), "tty output: {out:?}");
    ensure!(lines.contains(&"stdout-is-a-tty"), "tty output: {out:?}");
    ensure!(
        lines.contains(&"got-hello"),
        "input through the master: {out:?}"
    );
    ctx.wait_status(&id, "stopped", Duration::from_secs(10))?;
    Ok(())
}
