//! Bridge networking end to end: netavark + aardvark-dns under the `capsa` CLI and capsad, with
//! networks, subnets and bridges of each test's own (`capsa-test-*`, 10.231.N.0/24), traffic only
//! between the host's loopback and namespaces the tests made, and a check after every test that
//! nothing is left: no veth, no rule naming a container, no lease, no namespace, no DNS entry.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use capsa_tests::daemon::Daemon;
use capsa_tests::engine::EngineContext;

/// Cleans up after a test, even a failed one: removes its containers and networks through
/// capsa first (so netavark takes the rules down with the bridges its keepers hold up), then
/// deletes the test's bridges if one is left and ends the aardvark-dns it started, by pid.
struct NetGuard {
    bridges: Vec<String>,
    root: std::path::PathBuf,
    state: std::path::PathBuf,
}

impl NetGuard {
    fn capsa(&self, args: &[&str]) -> String {
        let Ok(bin) = capsa_tests::engine::capsa_bin() else {
            return String::new();
        };
        std::process::Command::new(bin)
            .arg("--root")
            .arg(&self.root)
            .arg("--state")
            .arg(&self.state)
            .args(["--bridge", "none"])
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        for id in self.capsa(&["ps", "-aq"]).split_whitespace() {
            self.capsa(&["rm", "-f", id]);
        }
        self.capsa(&["network", "prune", "-f"]);
        for pid in aardvark_pids(&self.state) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for b in &self.bridges {
            if b.starts_with("capsa-test-") && link_exists(b) {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", b])
                    .status();
            }
        }
    }
}

fn guard(root: &Path, state: &Path, bridges: &[&str]) -> NetGuard {
    NetGuard {
        bridges: bridges.iter().map(|b| (*b).to_owned()).collect(),
        root: root.to_owned(),
        state: state.to_owned(),
    }
}

/// aardvark-dns processes whose configuration is under `state`.
fn aardvark_pids(state: &Path) -> Vec<i32> {
    let needle = state.join("netavark").display().to_string();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if text.contains("aardvark-dns") && text.contains(&needle) {
            out.push(pid);
        }
    }
    out
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The host-side interface indexes of the keepers' veths (a keeper's namespace holds a bridge
/// up between containers: `eth0@ifN` in it is host interface N).
fn keeper_veths(state: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(state.join("keepers"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "netns") {
            continue;
        }
        let net = format!("--net={}", path.display());
        let link = sh("nsenter", &[&net, "ip", "-o", "link", "show", "eth0"]).unwrap_or_default();
        if let Some(index) = link
            .split_once("@if")
            .and_then(|(_, rest)| rest.split(':').next())
        {
            out.push(index.to_owned());
        }
    }
    out
}

/// The keepers left in the state dir (one per network whose bridge is held up).
fn keepers(state: &Path) -> Vec<String> {
    std::fs::read_dir(state.join("keepers"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect()
}

fn sh(cmd: &str, args: &[&str]) -> Result<String> {
    let out = std::process::Command::new(cmd).args(args).output()?;
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The upstream DNS server of a test (`--dns ADDR`), on a loopback address of its own at port
/// 53 (aardvark-dns forwards there, never to the host's resolver): answers `A` for
/// `upstream.capsa-test` with 10.9.9.9, NXDOMAIN for everything else, and records every name
/// it was asked.
struct UpstreamDns {
    addr: String,
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl UpstreamDns {
    fn start(addr: &str) -> Result<UpstreamDns> {
        let sock = UdpSocket::bind((addr, 53)).with_context(|| format!("bind {addr}:53"))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (a, s) = (asked.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(std::sync::atomic::Ordering::SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((name, reply)) = dns_reply(&buf[..n]) {
                    a.lock().map(|mut l| l.push(name)).ok();
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        Ok(UpstreamDns {
            addr: addr.to_owned(),
            asked,
            stop,
            thread: Some(thread),
        })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for UpstreamDns {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The answer to one DNS query: (the name asked, the reply).
fn dns_reply(q: &[u8]) -> Option<(String, Vec<u8>)> {
    let mut i = 12;
    let mut labels = Vec::new();
    while *q.get(i)? != 0 {
        let len = usize::from(q[i]);
        labels.push(String::from_utf8_lossy(q.get(i + 1..i + 1 + len)?).into_owned());
        i += 1 + len;
    }
    let qtype = u16::from_be_bytes([*q.get(i + 1)?, *q.get(i + 2)?]);
    let question_end = i + 5;
    let name = labels.join(".").to_ascii_lowercase();
    let known = name == "upstream.capsa-test";
    let answer = known && qtype == 1;
    let mut r = q.get(..2)?.to_vec();
    r.extend_from_slice(if known { &[0x81, 0x80] } else { &[0x81, 0x83] });
    r.extend_from_slice(&[0, 1, 0, u8::from(answer), 0, 0, 0, 0]);
    r.extend_from_slice(q.get(12..question_end)?);
    if answer {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
    }
    Some((name, r))
}

/// `capsa network create ARGS` (the flags, then the name).
fn create_network(ctx: &EngineContext, args: &[&str]) -> Result<()> {
    let mut all = vec!["network", "create"];
    all.extend_from_slice(args);
    ctx.capsa(&all)?.ok()?;
    Ok(())
}

/// Polls `f` until it returns true.
fn eventually(what: &str, timeout: Duration, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !f()? {
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// A port the host has free now.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The busybox applets the network tests use besides the harness's.
const NET_APPLETS: &[&str] = &["wget", "httpd", "nc", "ping", "nslookup"];

/// The UDP echo server the published-port test runs in its container (busybox has none).
const UDP_ECHO_C: &str = include_str!("probes/udp_echo.c");

/// A busybox rootfs tarball with the network applets and `/bin/udp_echo`, under `ctx`'s dir.
fn net_image_tar(ctx: &EngineContext) -> Result<std::path::PathBuf> {
    let rootfs = ctx.busybox_rootfs("net-rootfs")?;
    let source = ctx.dir().join("udp_echo.c");
    std::fs::write(&source, UDP_ECHO_C)?;
    let status = std::process::Command::new("gcc")
        .args(["-O1", "-static", "-o"])
        .arg(rootfs.join("bin/udp_echo"))
        .arg(&source)
        .status()
        .context("gcc (build-essential)")?;
    ensure!(status.success(), "gcc failed to build udp_echo");
    for applet in NET_APPLETS {
        let link = rootfs.join("bin").join(applet);
        if !link.exists() {
            std::os::unix::fs::symlink("busybox", &link)?;
        }
    }
    let tar = ctx.dir().join("net-rootfs.tar");
    capsa_tests::engine::tar_dir(&rootfs, &tar)?;
    Ok(tar)
}

/// An engine world whose containers may use bridges: the default bridge is `bridge` with `bip`.
fn network_ctx(label: &str, bridge: &str, bip: &str) -> Result<EngineContext> {
    let mut ctx = EngineContext::new(label)?;
    ctx.bridge = bridge.to_owned();
    ctx.bip = Some(bip.to_owned());
    let tar = net_image_tar(&ctx)?;
    ctx.capsa(&["import", &tar.to_string_lossy(), "bb:1"])?
        .ok()?;
    Ok(ctx)
}

/// Fails if anything of the containers `ids` or of the bridges is still on the host or in the
/// state dir 10 s from now (a foreground `run --rm` returns before its network is torn down,
/// in a background process of its own).
fn assert_nothing_left(state: &Path, ids: &[String], bridges: &[&str]) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match leftovers(state, ids, bridges) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

fn leftovers(state: &Path, ids: &[String], bridges: &[&str]) -> Result<()> {
    let leases: Vec<String> = std::fs::read_dir(state.join("networks"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ensure!(leases.is_empty(), "attachments left: {leases:?}");
    let namespaces: Vec<String> = std::fs::read_dir(state.join("netns"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    ensure!(
        namespaces.is_empty(),
        "network namespaces left: {namespaces:?}"
    );
    let links = sh("ip", &["-o", "link"])?;
    let kept = keeper_veths(state);
    for b in bridges {
        let in_bridge: Vec<&str> = links
            .lines()
            .filter(|l| l.contains(&format!("master {b} ")))
            .filter(|l| !kept.iter().any(|k| l.starts_with(&format!("{k}: "))))
            .collect();
        ensure!(
            in_bridge.is_empty(),
            "a veth is still in {b}: {in_bridge:?}"
        );
    }
    let rules = sh("iptables-save", &[])? + &sh("iptables-save", &["-t", "nat"])?;
    for id in ids {
        ensure!(!rules.contains(id.as_str()), "a rule names {id}:\n{rules}");
    }
    let dns_dir = state.join("netavark/aardvark-dns");
    for entry in std::fs::read_dir(&dns_dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        for id in ids {
            ensure!(
                !text.contains(id.as_str()),
                "a DNS entry of {id} is left in {}",
                entry.path().display()
            );
        }
    }
    Ok(())
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name_alias_and_short_id() -> Result<()> {
    let ctx = network_ctx("net-user", "capsa-test-d1", "10.231.1.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-n1", "capsa-test-d1"]);
    create_network(
        &ctx,
        &[
            "--subnet",
            "10.231.2.0/24",
            "-o",
            "com.docker.network.bridge.name=capsa-test-n1",
            "--label",
            "team=a",
            "capsa-test-net1",
        ],
    )?;
    // Every container's names go to aardvark-dns, and what it does not know to this upstream.
    let upstream = UpstreamDns::start("127.231.1.1")?;
    let client = |args: &[&str]| {
        let mut all = vec![
            "--rm",
            "--network",
            "capsa-test-net1",
            "--dns",
            &upstream.addr,
        ];
        all.extend_from_slice(args);
        ctx.run(&all)
    };
    let web = ctx
        .run(&[
            "-d",
            "--name",
            "web",
            "--network",
            "capsa-test-net1",
            "--dns",
            &upstream.addr,
            "--network-alias",
            "www",
            "bb:1",
            "sh",
            "-c",
            "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 80 -h /www",
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let inspect = ctx.capsa(&["inspect", "web"])?.ok()?.json()?;
    let net = &inspect[0]["NetworkSettings"]["Networks"]["capsa-test-net1"];
    let ip = net["IPAddress"].as_str().unwrap_or_default().to_owned();
    ensure!(ip == "10.231.2.2", "the first address of the subnet: {net}");
    ensure!(net["Gateway"] == "10.231.2.1", "{net}");
    ensure!(
        net["MacAddress"].as_str().is_some_and(|m| m.len() == 17),
        "{net}"
    );
    // The client resolves the server by name, alias and short id, through aardvark-dns.
    let short = web[..12].to_owned();
    for name in ["web", "www", short.as_str()] {
        let got = client(&["bb:1", "wget", "-q", "-O", "-", &format!("http://{name}/")])?;
        ensure!(
            got.code() == 0 && got.stdout.contains("hello-from-web"),
            "wget http://{name}/: {got}"
        );
    }
    let lookup = client(&["bb:1", "nslookup", "web"])?;
    ensure!(lookup.stdout.contains(&ip), "{lookup}");
    // A name aardvark does not know goes to the container's --dns upstream.
    let outside = client(&["bb:1", "nslookup", "upstream.capsa-test"])?;
    ensure!(
        outside.stdout.contains("10.9.9.9"),
        "forwarded to --dns: {outside}"
    );
    let asked = upstream.asked();
    ensure!(
        asked.iter().any(|n| n == "upstream.capsa-test")
            && !asked.iter().any(|n| n == "web" || n == "www"),
        "only unknown names are forwarded: {asked:?}"
    );
    // --ip and --mac-address are what the interface gets.
    let fixed = client(&[
        "--ip",
        "10.231.2.200",
        "--mac-address",
        "02:42:0a:e7:02:c8",
        "bb:1",
        "sh",
        "-c",
        "ip -o link show eth0; ip -4 -o addr show eth0",
    ])?;
    ensure!(
        fixed.code() == 0
            && fixed.stdout.contains("inet 10.231.2.200/24")
            && fixed.stdout.contains("02:42:0a:e7:02:c8"),
        "{fixed}"
    );
    let resolv = client(&["bb:1", "cat", "/etc/resolv.conf"])?;
    ensure!(
        resolv.stdout.contains("nameserver 10.231.2.1"),
        "aardvark-dns on the gateway: {resolv}"
    );
    // Its own /etc/hosts names its address; lo is up.
    let hosts = ctx.capsa(&["exec", "web", "cat", "/etc/hosts"])?.ok()?;
    ensure!(hosts.stdout.contains(&format!("{ip}\t")), "{hosts}");
    let lo = ctx.capsa(&["exec", "web", "wget", "-q", "-O", "-", "http://127.0.0.1/"])?;
    ensure!(lo.stdout.contains("hello-from-web"), "loopback: {lo}");
    // ps and network inspect show it.
    let listed = ctx
        .capsa(&["network", "ls", "--format", "{{.Name}} {{.Driver}}"])?
        .ok()?;
    for want in [
        "bridge bridge",
        "host host",
        "none null",
        "capsa-test-net1 bridge",
    ] {
        ensure!(listed.stdout.contains(want), "{listed}");
    }
    let ni = ctx
        .capsa(&["network", "inspect", "capsa-test-net1"])?
        .ok()?
        .json()?;
    ensure!(
        ni[0]["IPAM"]["Config"][0]["Subnet"] == "10.231.2.0/24",
        "{ni}"
    );
    ensure!(ni[0]["Containers"][&web]["Name"] == "web", "{ni}");
    ensure!(ni[0]["Labels"]["team"] == "a", "{ni}");
    let filtered = ctx
        .capsa(&[
            "network",
            "ls",
            "-q",
            "--filter",
            "label=team=a",
            "--no-trunc",
        ])?
        .ok()?;
    ensure!(filtered.stdout.trim() == ni[0]["Id"], "{filtered}");
    // In use: refused; after rm: nothing left, and the network goes.
    let busy = ctx.capsa(&["network", "rm", "capsa-test-net1"])?;
    ensure!(
        busy.code() != 0 && busy.stderr.contains("has active endpoints"),
        "{busy}"
    );
    ctx.capsa(&["rm", "-f", "web"])?.ok()?;
    assert_nothing_left(&ctx.state, &[web], &["capsa-test-n1"])?;
    // A user-defined network keeps its bridge (and its rules, and aardvark) after its last
    // container, as Docker's do, until `network rm`.
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        link_exists("capsa-test-n1") && keepers(&ctx.state).len() == 1,
        "the network's bridge went with its last container: keepers {:?}",
        keepers(&ctx.state)
    );
    // The keeper holds the subnet's highest address; a container that asks for it gets it.
    let high = run_with_ip(&ctx, "capsa-test-net1", "10.231.2.254")?;
    ensure!(
        high.code() == 0 && high.stdout.contains("inet 10.231.2.254/24"),
        "{high}"
    );
    ctx.capsa(&["network", "rm", "capsa-test-net1"])?.ok()?;
    let gone = ctx.capsa(&["network", "inspect", "capsa-test-net1"])?;
    ensure!(
        gone.code() != 0 && gone.stderr.contains("network capsa-test-net1 not found"),
        "{gone}"
    );
    eventually(
        "the bridge, its keeper and aardvark-dns to go with the network",
        Duration::from_secs(10),
        || {
            Ok(!link_exists("capsa-test-n1")
                && keepers(&ctx.state).is_empty()
                && aardvark_pids(&ctx.state).is_empty())
        },
    )?;
    let rules = sh("iptables-save", &["-t", "nat"])?;
    ensure!(
        !rules.contains("10.231.2.0/24"),
        "the network's NAT rules outlived it:\n{rules}"
    );
    Ok(())
}

#[test]
fn the_default_bridge_gives_an_address_of_its_subnet_and_no_names() -> Result<()> {
    let ctx = network_ctx("net-default", "capsa-test-d2", "10.231.3.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-d2"]);
    // No --network: the default bridge, as docker run.
    let first = ctx
        .run(&["-d", "--name", "first", "bb:1", "sleep", "300"])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let addr = ctx
        .capsa(&["exec", "first", "ip", "-4", "-o", "addr", "show", "eth0"])?
        .ok()?;
    ensure!(addr.stdout.contains("inet 10.231.3.2/24"), "{addr}");
    let inspect = ctx.capsa(&["inspect", "first"])?.ok()?.json()?;
    ensure!(
        inspect[0]["HostConfig"]["NetworkMode"] == "bridge"
            && inspect[0]["NetworkSettings"]["IPAddress"] == "10.231.3.2",
        "{}",
        inspect[0]["NetworkSettings"]
    );
    let route = ctx.capsa(&["exec", "first", "ip", "route"])?.ok()?;
    ensure!(route.stdout.contains("default via 10.231.3.1"), "{route}");
    // The second container reaches the first by address, not by name.
    let ping = ctx.run_rm_default(&["bb:1", "ping", "-c", "1", "-W", "5", "10.231.3.2"])?;
    ensure!(ping.code() == 0, "{ping}");
    // No name server on the default bridge's gateway (and no lookup leaves the host).
    let by_name = ctx.run_rm_default(&["bb:1", "nslookup", "first", "10.231.3.1"])?;
    ensure!(
        by_name.code() != 0,
        "no names on the default bridge: {by_name}"
    );
    let alias = ctx.run(&["--rm", "--network-alias", "x", "bb:1", "true"])?;
    ensure!(
        alias.code() != 0 && alias.stderr.contains("user defined networks"),
        "{alias}"
    );
    let fixed = ctx.run(&["--rm", "--ip", "10.231.3.9", "bb:1", "true"])?;
    ensure!(
        fixed.code() != 0 && fixed.stderr.contains("user defined"),
        "{fixed}"
    );
    // The host's resolvers, less loopback ones.
    let resolv = ctx.run_rm_default(&["bb:1", "cat", "/etc/resolv.conf"])?;
    ensure!(
        resolv.code() == 0 && !resolv.stdout.contains("nameserver 127."),
        "{resolv}"
    );
    let rm = ctx.capsa(&["network", "rm", "bridge"])?;
    ensure!(rm.code() != 0 && rm.stderr.contains("pre-defined"), "{rm}");
    let removed = Instant::now();
    ctx.capsa(&["rm", "-f", "first"])?.ok()?;
    // The default bridge lingers a moment after its last container (the next run of a script
    // finds it up), then goes with its rules.
    if removed.elapsed() < Duration::from_secs(2) {
        ensure!(
            link_exists("capsa-test-d2"),
            "the default bridge went at once"
        );
    }
    assert_nothing_left(&ctx.state, &[first], &["capsa-test-d2"])?;
    eventually(
        "the default bridge to go after its last container",
        Duration::from_secs(15),
        || Ok(!link_exists("capsa-test-d2") && keepers(&ctx.state).is_empty()),
    )?;
    let rules = sh("iptables-save", &["-t", "nat"])?;
    ensure!(
        !rules.contains("10.231.3.0/24"),
        "the default bridge's NAT rules outlived it:\n{rules}"
    );
    Ok(())
}

/// `run --rm --network NETWORK --ip IP`, printing the address its eth0 got.
fn run_with_ip(
    ctx: &EngineContext,
    network: &str,
    ip: &str,
) -> Result<capsa_tests::runtime::CmdOutput> {
    ctx.run(&[
        "--rm",
        "--network",
        network,
        "--ip",
        ip,
        "bb:1",
        "ip",
        "-4",
        "-o",
        "addr",
        "show",
        "eth0",
    ])
}

/// An HTTP GET from the host.
fn http_get(port: u16) -> Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

#[test]
fn published_ports_reach_the_container_from_the_host() -> Result<()> {
    let ctx = network_ctx("net-ports", "capsa-test-d3", "10.231.4.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-d3"]);
    let port = free_port()?;
    let udp_port = free_port()?;
    let serve = "mkdir -p /www && echo hello-over-dnat > /www/index.html && \
                 (udp_echo 9999 /tmp/udp &) && exec httpd -f -p 80 -h /www";
    let web = ctx
        .run(&[
            "-d",
            "--name",
            "web",
            "-p",
            &format!("127.0.0.1:{port}:80"),
            "-p",
            &format!("127.0.0.1:{udp_port}:9999/udp"),
            "--expose",
            "7000",
            "-P",
            "bb:1",
            "sh",
            "-c",
            serve,
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let mut body = String::new();
    eventually("httpd through the DNAT", Duration::from_secs(10), || {
        body = http_get(port).unwrap_or_default();
        Ok(body.contains("hello-over-dnat"))
    })?;
    // UDP: a datagram from the host lands in the container.
    let sock = UdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_millis(500)))?;
    let mut echoed = Vec::new();
    eventually("a udp echo", Duration::from_secs(10), || {
        sock.send_to(b"ping-over-udp\n", ("127.0.0.1", udp_port))?;
        let mut buf = [0u8; 64];
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            echoed = buf[..n].to_vec();
        }
        Ok(!echoed.is_empty())
    })?;
    ensure!(echoed == b"ping-over-udp\n", "{echoed:?}");
    let got = ctx.capsa(&["exec", "web", "cat", "/tmp/udp"])?.ok()?;
    ensure!(got.stdout.contains("ping-over-udp"), "{got}");
    // -P published the exposed 7000 on a random port; `port` shows every mapping.
    let ports = ctx.capsa(&["port", "web"])?.ok()?;
    ensure!(
        ports
            .stdout
            .contains(&format!("80/tcp -> 127.0.0.1:{port}"))
            && ports
                .stdout
                .contains(&format!("9999/udp -> 127.0.0.1:{udp_port}"))
            && ports.stdout.contains("7000/tcp -> 0.0.0.0:"),
        "{ports}"
    );
    let one = ctx.capsa(&["port", "web", "80"])?.ok()?;
    ensure!(one.stdout.trim() == format!("127.0.0.1:{port}"), "{one}");
    let ps = ctx
        .capsa(&["ps", "--format", "{{.Ports}}", "--filter", "name=web"])?
        .ok()?;
    ensure!(
        ps.stdout.contains(&format!("127.0.0.1:{port}->80/tcp")),
        "{ps}"
    );
    // The same host port again: a clear error at run, and nothing of the refused one is left.
    let taken = ctx.run(&[
        "-d",
        "--name",
        "second",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "bb:1",
        "sleep",
        "300",
    ])?;
    ensure!(
        taken.code() != 0 && taken.stderr.contains("port is already allocated"),
        "{taken}"
    );
    // -P publishes what the image EXPOSEs.
    let tar = ctx.dir().join("net-rootfs.tar");
    ctx.capsa(&[
        "import",
        "-c",
        "EXPOSE 7001/tcp",
        &tar.to_string_lossy(),
        "exposing:1",
    ])?
    .ok()?;
    let exposing = ctx
        .run(&[
            "-d",
            "--name",
            "exposing",
            "-P",
            "exposing:1",
            "sleep",
            "300",
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let image_ports = ctx.capsa(&["port", "exposing"])?.ok()?;
    ensure!(
        image_ports.stdout.contains("7001/tcp -> 0.0.0.0:"),
        "-P of the image's EXPOSE: {image_ports}"
    );
    // `run --rm` returns before its teardown ends; the next run of the same port waits for it.
    let again = free_port()?;
    for _ in 0..3 {
        let quick = ctx.run(&[
            "--rm",
            "-p",
            &format!("127.0.0.1:{again}:80"),
            "bb:1",
            "true",
        ])?;
        ensure!(quick.code() == 0, "the same -p in a row: {quick}");
    }
    // A port a host process holds is refused too.
    let held = TcpListener::bind("127.0.0.1:0")?;
    let held_port = held.local_addr()?.port();
    let host_taken = ctx.run(&[
        "--rm",
        "-p",
        &format!("127.0.0.1:{held_port}:80"),
        "bb:1",
        "true",
    ])?;
    ensure!(
        host_taken.code() != 0 && host_taken.stderr.contains("port is already allocated"),
        "{host_taken}"
    );
    let second_id = ctx
        .capsa(&["ps", "-aq", "--no-trunc", "--filter", "name=second"])?
        .stdout
        .trim()
        .to_owned();
    ctx.capsa(&["rm", "-f", "web", "second", "exposing"])?;
    let rules = sh("iptables-save", &["-t", "nat"])?;
    ensure!(!rules.contains(&format!("--dport {port} ")), "{rules}");
    ensure!(http_get(port).is_err(), "the port still answers after rm");
    assert_nothing_left(&ctx.state, &[web, second_id, exposing], &["capsa-test-d3"])?;
    Ok(())
}

#[test]
fn an_internal_network_has_no_route_out_and_publishes_nothing() -> Result<()> {
    let ctx = network_ctx("net-internal", "none", "10.231.5.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-n5"]);
    create_network(
        &ctx,
        &[
            "--internal",
            "--subnet",
            "10.231.6.0/24",
            "-o",
            "com.docker.network.bridge.name=capsa-test-n5",
            "capsa-test-int",
        ],
    )?;
    let route = ctx.run_on("capsa-test-int", &["bb:1", "ip", "route"])?;
    ensure!(
        route.code() == 0
            && route.stdout.contains("10.231.6.0/24")
            && !route.stdout.contains("default"),
        "{route}"
    );
    let published = ctx.run(&[
        "--rm",
        "--network",
        "capsa-test-int",
        "-p",
        "80",
        "bb:1",
        "true",
    ])?;
    ensure!(
        published.code() != 0 && published.stderr.contains("internal"),
        "{published}"
    );
    // A --rm container whose start failed is removed, as under Docker.
    ctx.ensure_no_containers()?;
    assert_nothing_left(&ctx.state, &[], &["capsa-test-n5"])?;
    Ok(())
}

#[test]
fn connect_and_disconnect_add_and_remove_a_second_interface() -> Result<()> {
    let ctx = network_ctx("net-connect", "none", "10.231.7.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-n7", "capsa-test-n8"]);
    for (name, subnet, bridge) in [
        ("capsa-test-a", "10.231.7.0/24", "capsa-test-n7"),
        ("capsa-test-b", "10.231.8.0/24", "capsa-test-n8"),
    ] {
        ctx.capsa(&[
            "network",
            "create",
            "--subnet",
            subnet,
            "-o",
            &format!("com.docker.network.bridge.name={bridge}"),
            name,
        ])?
        .ok()?;
    }
    let id = ctx
        .run(&[
            "-d",
            "--name",
            "multi",
            "--network",
            "capsa-test-a",
            "bb:1",
            "sleep",
            "300",
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    ctx.capsa(&[
        "network",
        "connect",
        "--alias",
        "second-name",
        "--ip",
        "10.231.8.50",
        "capsa-test-b",
        "multi",
    ])?
    .ok()?;
    let eth1 = ctx
        .capsa(&["exec", "multi", "ip", "-4", "-o", "addr", "show", "eth1"])?
        .ok()?;
    ensure!(eth1.stdout.contains("inet 10.231.8.50/24"), "{eth1}");
    let upstream = UpstreamDns::start("127.231.7.1")?;
    let by_alias = ctx.run(&[
        "--rm",
        "--network",
        "capsa-test-b",
        "--dns",
        &upstream.addr,
        "bb:1",
        "ping",
        "-c",
        "1",
        "-W",
        "5",
        "second-name",
    ])?;
    ensure!(by_alias.code() == 0, "{by_alias}");
    let again = ctx.capsa(&["network", "connect", "capsa-test-b", "multi"])?;
    ensure!(
        again.code() != 0 && again.stderr.contains("already exists"),
        "{again}"
    );
    ctx.capsa(&["network", "disconnect", "capsa-test-b", "multi"])?
        .ok()?;
    let gone = ctx.capsa(&["exec", "multi", "ip", "link", "show", "eth1"])?;
    ensure!(gone.code() != 0, "eth1 is still there: {gone}");
    let inspect = ctx.capsa(&["inspect", "multi"])?.ok()?.json()?;
    let nets = &inspect[0]["NetworkSettings"]["Networks"];
    ensure!(
        nets.get("capsa-test-b").is_none() && nets.get("capsa-test-a").is_some(),
        "{nets}"
    );
    // The other network can go now; the first cannot.
    ctx.capsa(&["network", "rm", "capsa-test-b"])?.ok()?;
    ctx.capsa(&["rm", "-f", "multi"])?.ok()?;
    ctx.capsa(&["network", "prune", "-f"])?.ok()?;
    let left = ctx
        .capsa(&["network", "ls", "-q", "--filter", "type=custom"])?
        .ok()?;
    ensure!(left.stdout.trim().is_empty(), "prune left {left}");
    assert_nothing_left(&ctx.state, &[id], &["capsa-test-n7", "capsa-test-n8"])?;
    Ok(())
}

#[test]
fn a_container_can_share_another_containers_network() -> Result<()> {
    let ctx = network_ctx("net-share", "none", "10.231.9.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-n9"]);
    create_network(
        &ctx,
        &[
            "--subnet",
            "10.231.10.0/24",
            "-o",
            "com.docker.network.bridge.name=capsa-test-n9",
            "capsa-test-share",
        ],
    )?;
    let web = ctx
        .run(&[
            "-d",
            "--name",
            "web",
            "--network",
            "capsa-test-share",
            "bb:1",
            "sh",
            "-c",
            "mkdir -p /www && echo shared-netns > /www/index.html && exec httpd -f -p 80 -h /www",
        ])?
        .ok()?
        .stdout
        .trim()
        .to_owned();
    let side = ctx.run(&[
        "--rm",
        "--network",
        "container:web",
        "bb:1",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; wget -q -O - http://127.0.0.1/",
    ])?;
    ensure!(
        side.code() == 0
            && side.stdout.contains("inet 10.231.10.2/24")
            && side.stdout.contains("shared-netns"),
        "{side}"
    );
    let publish = ctx.run(&[
        "--rm",
        "--network",
        "container:web",
        "-p",
        "80",
        "bb:1",
        "true",
    ])?;
    ensure!(
        publish.code() != 0 && publish.stderr.contains("conflicting options"),
        "{publish}"
    );
    ctx.capsa(&["rm", "-f", "web"])?.ok()?;
    assert_nothing_left(&ctx.state, &[web], &["capsa-test-n9"])?;
    Ok(())
}

#[test]
fn a_killed_engine_leaves_a_lease_that_the_next_start_reclaims() -> Result<()> {
    let ctx = network_ctx("net-crash", "none", "10.231.11.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-nb"]);
    create_network(
        &ctx,
        &[
            "--subnet",
            "10.231.12.0/24",
            "-o",
            "com.docker.network.bridge.name=capsa-test-nb",
            "capsa-test-crash",
        ],
    )?;
    // A foreground run, killed with SIGKILL while its payload runs.
    let mut child = ctx
        .command(&[
            "run",
            "--cgroup-parent",
            &ctx.cgroup_parent,
            "--name",
            "victim",
            "--network",
            "capsa-test-crash",
            "--ip",
            "10.231.12.77",
            "bb:1",
            "sleep",
            "300",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let leases = ctx.state.join("networks");
    eventually("the attachment", Duration::from_secs(20), || {
        Ok(std::fs::read_dir(&leases)
            .map(|d| {
                d.flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "json"))
            })
            .unwrap_or(false))
    })?;
    std::thread::sleep(Duration::from_millis(300));
    child.kill()?;
    child.wait()?;
    let victim = ctx
        .capsa(&["ps", "-aq", "--no-trunc", "--filter", "name=victim"])?
        .stdout
        .trim()
        .to_owned();
    ensure!(!victim.is_empty(), "the container record");
    // Its payload outlived the CLI; the engine's kill ends it.
    let _ = ctx.capsa(&["kill", "victim"]);
    // The next start on the network takes the same fixed address: the dead lease was reaped.
    let next = run_with_ip(&ctx, "capsa-test-crash", "10.231.12.77")?;
    ensure!(
        next.code() == 0 && next.stdout.contains("10.231.12.77/24"),
        "{next}"
    );
    ctx.capsa(&["rm", "-f", "victim"])?;
    assert_nothing_left(&ctx.state, &[victim], &["capsa-test-nb"])?;
    Ok(())
}

#[test]
fn bad_network_input_is_refused_clearly_and_leaves_nothing() -> Result<()> {
    let ctx = network_ctx("net-bad", "none", "10.231.13.1/24")?;
    let _g = guard(&ctx.root, &ctx.state, &["capsa-test-nd"]);
    create_network(
        &ctx,
        &[
            "--subnet",
            "10.231.14.0/24",
            "-o",
            "com.docker.network.bridge.name=capsa-test-nd",
            "capsa-test-ok",
        ],
    )?;
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.231.14.128/25",
                "capsa-test-x",
            ],
            "overlaps",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.231.15.0/24",
                "--gateway",
                "10.231.16.1",
                "capsa-test-x",
            ],
            "not a host address of the subnet",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.231.15.5/24",
                "capsa-test-x",
            ],
            "host bits set",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.231.15.0/24",
                "capsa-test-ok",
            ],
            "already exists",
        ),
        (
            &["network", "create", "-d", "overlay", "capsa-test-x"],
            "only the bridge driver",
        ),
        (
            &["network", "create", "-o", "foo=bar", "capsa-test-x"],
            "not supported",
        ),
        (&["network", "create", "bad name"], "network name"),
        (&["network", "rm", "none"], "pre-defined"),
        (&["network", "rm", "capsa-test-nothere"], "not found"),
        (
            &[
                "run",
                "--rm",
                "--network",
                "capsa-test-nothere",
                "bb:1",
                "true",
            ],
            "network capsa-test-nothere not found",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "capsa-test-ok",
                "-p",
                "80:x",
                "bb:1",
                "true",
            ],
            "not a port",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "capsa-test-ok",
                "-p",
                "1-3:5-6",
                "bb:1",
                "true",
            ],
            "differ in length",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "capsa-test-ok",
                "--network-alias",
                "a",
                "--network-alias",
                "a",
                "bb:1",
                "true",
            ],
            "given twice",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "capsa-test-ok",
                "--ip",
                "10.231.99.2",
                "bb:1",
                "true",
            ],
            "no configured subnet",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "capsa-test-ok",
                "--mac-address",
                "zz",
                "bb:1",
                "true",
            ],
            "six hex bytes",
        ),
    ];
    for (args, want) in cases {
        let out = ctx.capsa(args)?;
        ensure!(
            out.code() != 0 && out.stderr.contains(want),
            "capsa {}: expected an error with {want:?}: {out}",
            args.join(" ")
        );
    }
    ctx.ensure_no_containers()?;
    let nets = ctx
        .capsa(&["network", "ls", "-q", "--filter", "type=custom"])?
        .ok()?;
    ensure!(
        nets.stdout.lines().count() == 1,
        "only the one good network: {nets}"
    );
    assert_nothing_left(&ctx.state, &[], &["capsa-test-nd"])?;
    Ok(())
}

#[test]
fn docker_cli_and_compose_use_networks_through_capsad() -> Result<()> {
    let mut d = Daemon::start_with(
        "net-daemon",
        &["--bridge", "capsa-test-d4", "--bip", "10.231.17.1/24"],
    )?;
    let _g = guard(
        &d.root.clone(),
        &d.state.clone(),
        &["capsa-test-d4", "capsa-test-nc", "capsa-test-ne"],
    );
    let images = EngineContext::new("net-daemon-image")?;
    let tar = net_image_tar(&images)?;
    d.capsa(&["import", &tar.to_string_lossy(), "bb:1"])?.ok()?;
    d.docker(&[
        "network",
        "create",
        "--subnet",
        "10.231.18.0/24",
        "-o",
        "com.docker.network.bridge.name=capsa-test-ne",
        "capsa-test-dn",
    ])?
    .ok()?;
    let ls = d
        .docker(&["network", "ls", "--format", "{{.Name}}"])?
        .ok()?;
    ensure!(
        ls.stdout.contains("capsa-test-dn") && ls.stdout.contains("bridge"),
        "{ls}"
    );
    let port = free_port()?;
    d.docker(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "capsa-test-dn",
        "-p",
        &format!("127.0.0.1:{port}:80"),
        "bb:1",
        "sh",
        "-c",
        "mkdir -p /www && echo via-docker > /www/index.html && exec httpd -f -p 80 -h /www",
    ])?
    .ok()?;
    eventually(
        "httpd through docker run -p",
        Duration::from_secs(10),
        || Ok(http_get(port).unwrap_or_default().contains("via-docker")),
    )?;
    let p = d.docker(&["port", "web", "80"])?.ok()?;
    ensure!(p.stdout.contains(&format!("127.0.0.1:{port}")), "{p}");
    let nets = d
        .docker(&["inspect", "-f", "{{json .NetworkSettings.Networks}}", "web"])?
        .ok()?;
    ensure!(
        nets.stdout.contains("\"IPAddress\":\"10.231.18.2\""),
        "{nets}"
    );
    let ni = d.docker(&["network", "inspect", "capsa-test-dn"])?.ok()?;
    ensure!(ni.stdout.contains("\"web\""), "{ni}");
    let busy = d.docker(&["network", "rm", "capsa-test-dn"])?;
    ensure!(busy.code() != 0, "{busy}");
    d.docker(&["rm", "-f", "web"])?.ok()?;
    d.docker(&["network", "rm", "capsa-test-dn"])?.ok()?;
    // docker-compose: a web service and a client on the project's network, by service name.
    let compose_file = d.dir().join("compose.yml");
    std::fs::write(
        &compose_file,
        r#"version: "3.8"
services:
  web:
    image: bb:1
    command: ["sh", "-c", "mkdir -p /www && echo from-compose-web > /www/index.html && exec httpd -f -p 80 -h /www"]
  client:
    image: bb:1
    dns: [127.231.17.1]
    depends_on: [web]
    command: ["sh", "-c", "for i in $$(seq 50); do wget -q -O - http://web/ && break; sleep 0.2; done; sleep 300"]
networks:
  default:
    driver_opts:
      com.docker.network.bridge.name: capsa-test-nc
    ipam:
      config:
        - subnet: 10.231.19.0/24
"#,
    )?;
    let _upstream = UpstreamDns::start("127.231.17.1")?;
    let compose = |args: &[&str]| d.compose("capsanet", &compose_file, args);
    compose(&["up", "-d"])?.ok()?;
    eventually(
        "the client's wget of http://web/",
        Duration::from_secs(20),
        || {
            Ok(compose(&["logs", "client"])?
                .stdout
                .contains("from-compose-web"))
        },
    )?;
    compose(&["down", "-t", "1"])?.ok()?;
    let none = d.docker(&["ps", "-aq"])?.ok()?;
    ensure!(none.stdout.trim().is_empty(), "{none}");
    let nets = d
        .docker(&["network", "ls", "--format", "{{.Name}}"])?
        .ok()?;
    ensure!(
        !nets.stdout.contains("capsanet"),
        "compose down removes its network: {nets}"
    );
    assert_nothing_left(
        &d.state,
        &[],
        &["capsa-test-d4", "capsa-test-nc", "capsa-test-ne"],
    )?;
    d.terminate().context("stop capsad")?;
    Ok(())
}
