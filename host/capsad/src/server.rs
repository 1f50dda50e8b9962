//! Listeners and connections: unix sockets (mode 0660, `--group`), TCP (plain only on
//! loopback), TLS with client-certificate verification; each connection served by hyper's
//! HTTP/1.1 with upgrades (attach and exec hijack it). SIGTERM/SIGINT stop the daemon and leave
//! every container running.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Flags;
use crate::daemon::Daemon;

/// One `-H`.
pub enum Listen {
    Unix {
        path: PathBuf,
        gid: Option<u32>,
    },
    Tcp {
        addr: SocketAddr,
        tls: Option<Arc<rustls::ServerConfig>>,
    },
}

/// Checks every `-H` and the TLS files before anything is bound.
pub fn plan(flags: &Flags) -> Result<Vec<Listen>> {
    let tls = if flags.tls || flags.tlsverify {
        Some(tls_config(flags)?)
    } else {
        None
    };
    let gid = match &flags.group {
        Some(g) => Some(
            nix::unistd::Group::from_name(g)
                .ok()
                .flatten()
                .map(|gr| gr.gid.as_raw())
                .with_context(|| format!("--group {g:?}: no such group"))?,
        ),
        None => None,
    };
    let mut out = Vec::new();
    for h in &flags.hosts {
        if let Some(path) = h.strip_prefix("unix://") {
            if path.is_empty() {
                bail!("-H {h:?}: no socket path");
            }
            out.push(Listen::Unix {
                path: PathBuf::from(path),
                gid,
            });
        } else if let Some(addr) = h.strip_prefix("tcp://") {
            let addr = addr.trim_end_matches('/');
            let addr: SocketAddr = match addr.parse() {
                Ok(a) => a,
                Err(_) => std::net::ToSocketAddrs::to_socket_addrs(addr)
                    .ok()
                    .and_then(|mut a| a.next())
                    .with_context(|| format!("-H {h:?}: expected tcp://HOST:PORT"))?,
            };
            if tls.is_none() && !addr.ip().is_loopback() {
                bail!(
                    "-H {h}: refusing plain TCP on a non-loopback address (anyone who reaches it is root on this host); use --tlsverify with --tlscacert, --tlscert and --tlskey"
                );
            }
            out.push(Listen::Tcp {
                addr,
                tls: tls.clone(),
            });
        } else if h.starts_with("fd://") {
            bail!("-H {h:?}: socket activation (fd://) is not supported; use unix:// or tcp://");
        } else {
            bail!("-H {h:?}: use unix:///path or tcp://host:port");
        }
    }
    Ok(out)
}

/// The TLS server configuration: the daemon's certificate, and with `--tlsverify` the CA
/// whose client certificates are accepted (every other client is refused at the handshake).
fn tls_config(flags: &Flags) -> Result<Arc<rustls::ServerConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let cert = flags
        .tlscert
        .as_ref()
        .context("--tls/--tlsverify need --tlscert and --tlskey")?;
    let key = flags
        .tlskey
        .as_ref()
        .context("--tls/--tlsverify need --tlscert and --tlskey")?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read --tlscert {}", cert.display()))?
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("parse --tlscert {}", cert.display()))?;
    if certs.is_empty() {
        bail!("--tlscert {}: no certificate in it", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("read --tlskey {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    let config = if flags.tlsverify {
        let ca = flags
            .tlscacert
            .as_ref()
            .context("--tlsverify needs --tlscacert (the CA of accepted client certificates)")?;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca)
            .with_context(|| format!("read --tlscacert {}", ca.display()))?
        {
            roots
                .add(c.with_context(|| format!("parse --tlscacert {}", ca.display()))?)
                .with_context(|| format!("--tlscacert {}", ca.display()))?;
        }
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .context("client certificate verifier")?;
        builder
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .context("the daemon's certificate and key")?
    } else {
        builder
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .context("the daemon's certificate and key")?
    };
    Ok(Arc::new(config))
}

/// Binds a unix socket: refuses one another daemon answers on, replaces a stale one.
fn bind_unix(path: &Path, gid: Option<u32>) -> Result<tokio::net::UnixListener> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        bail!(
            "{} is in use by another daemon (it answers); stop it or choose another -H",
            path.display()
        );
    }
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("listen on {}", path.display()))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .with_context(|| format!("chmod {}", path.display()))?;
    if let Some(gid) = gid {
        nix::unistd::chown(path, None, Some(nix::unistd::Gid::from_raw(gid)))
            .with_context(|| format!("chown {}", path.display()))?;
    }
    listener.set_nonblocking(true)?;
    Ok(tokio::net::UnixListener::from_std(listener)?)
}

/// Serves one connection.
fn spawn_connection<S>(daemon: Arc<Daemon>, stream: S)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let service = service_fn(move |req| crate::router::handle(daemon.clone(), req));
        let conn = http1::Builder::new()
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        if let Err(e) = conn.await {
            log::debug!("connection: {e}");
        }
    });
}

/// Binds every listener, serves until SIGTERM or SIGINT, then removes the unix sockets.
pub async fn serve(daemon: Daemon, listeners: Vec<Listen>) -> Result<()> {
    let daemon = Arc::new(daemon);
    let mut sockets = Vec::new();
    let mut tasks = Vec::new();
    for l in listeners {
        match l {
            Listen::Unix { path, gid } => {
                let listener = bind_unix(&path, gid)?;
                log::info!("API listen on {}", path.display());
                sockets.push(path);
                let d = daemon.clone();
                tasks.push(tokio::spawn(async move {
                    loop {
                        match listener.accept().await {
                            Ok((stream, _)) => spawn_connection(d.clone(), stream),
                            Err(e) => {
                                log::warn!("accept: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            }
                        }
                    }
                }));
            }
            Listen::Tcp { addr, tls } => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listen on {addr}"))?;
                log::info!(
                    "API listen on {addr}{}",
                    if tls.is_some() { " (TLS)" } else { "" }
                );
                let d = daemon.clone();
                let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
                tasks.push(tokio::spawn(async move {
                    loop {
                        let (stream, peer) = match listener.accept().await {
                            Ok(s) => s,
                            Err(e) => {
                                log::warn!("accept: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        match &acceptor {
                            None => spawn_connection(d.clone(), stream),
                            Some(acceptor) => {
                                let acceptor = acceptor.clone();
                                let d = d.clone();
                                tokio::spawn(async move {
                                    // A handshake that stalls must not hold a task forever.
                                    let accepted = tokio::time::timeout(
                                        std::time::Duration::from_secs(10),
                                        acceptor.accept(stream),
                                    )
                                    .await;
                                    match accepted {
                                        Ok(Ok(tls)) => spawn_connection(d, tls),
                                        Ok(Err(e)) => log::info!("TLS handshake with {peer}: {e}"),
                                        Err(_) => {
                                            log::info!("TLS handshake with {peer}: timed out")
                                        }
                                    }
                                });
                            }
                        }
                    }
                }));
            }
        }
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .context("SIGINT handler")?;
    let _hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    tokio::select! {
        _ = term.recv() => log::info!("SIGTERM: stopping (containers keep running)"),
        _ = int.recv() => log::info!("SIGINT: stopping (containers keep running)"),
    }
    for t in tasks {
        t.abort();
    }
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    Ok(())
}
