//! A small blocking HTTP/1.1 client for Docker's Engine API: unix sockets, TCP and TLS (with a
//! client certificate), request bodies whole or chunked, responses by length, chunked or to
//! the end, and hijacked connections (`101 Switching Protocols`) for attach and exec. One
//! connection per request: the CLI makes few, and a daemon on a unix socket answers in
//! microseconds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};

/// Where the daemon is.
#[derive(Debug, Clone)]
pub enum Target {
    Unix(PathBuf),
    Tcp(String),
}

/// A connection to the daemon.
pub enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Conn {
    /// The socket's descriptor (for poll).
    pub fn raw_fd(&self) -> RawFd {
        match self {
            Conn::Unix(s) => s.as_raw_fd(),
            Conn::Tcp(s) => s.as_raw_fd(),
            Conn::Tls(s) => s.sock.as_raw_fd(),
        }
    }

    /// Ends our side (the daemon sees end of file: stdin closed).
    pub fn shutdown_write(&mut self) {
        match self {
            Conn::Unix(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            Conn::Tcp(s) => {
                let _ = s.shutdown(std::net::Shutdown::Write);
            }
            Conn::Tls(s) => {
                s.conn.send_close_notify();
                let _ = s.flush();
                let _ = s.sock.shutdown(std::net::Shutdown::Write);
            }
        }
    }

    /// Whether decrypted bytes wait in the TLS buffer (poll on the socket would not show
    /// them).
    pub fn has_buffered(&mut self) -> bool {
        match self {
            Conn::Tls(s) => s
                .conn
                .process_new_packets()
                .is_ok_and(|st| st.plaintext_bytes_to_read() > 0),
            _ => false,
        }
    }

    /// Sets the socket non-blocking (the interactive loop polls it).
    pub fn set_nonblocking(&self, on: bool) {
        let _ = match self {
            Conn::Unix(s) => s.set_nonblocking(on),
            Conn::Tcp(s) => s.set_nonblocking(on),
            Conn::Tls(s) => s.sock.set_nonblocking(on),
        };
    }
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.read(buf),
            Conn::Tcp(s) => s.read(buf),
            Conn::Tls(s) => match s.read(buf) {
                // A daemon that closes without close_notify (after a hijack) just ended.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(0),
                other => other,
            },
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Unix(s) => s.write(buf),
            Conn::Tcp(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Unix(s) => s.flush(),
            Conn::Tcp(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
        }
    }
}

/// A request body.
pub enum Body<'a> {
    None,
    Bytes(Vec<u8>),
    /// Sent chunked, read to its end.
    Stream(&'a mut dyn Read),
}

/// An answer: status, headers (lower-case names), and the body to read.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Box<dyn Read>,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The whole body.
    pub fn bytes(mut self) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        self.body.read_to_end(&mut out).context("read the answer")?;
        Ok(out)
    }

    /// The body as JSON (`null` when empty).
    pub fn json(self) -> Result<serde_json::Value> {
        let bytes = self.bytes()?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_slice(&bytes).context("the daemon's answer is not JSON")
    }

    /// Fails with the daemon's `message` unless the status is 2xx (or 304).
    pub fn ok(self) -> Result<Response> {
        if (200..300).contains(&self.status) || self.status == 304 || self.status == 101 {
            return Ok(self);
        }
        let status = self.status;
        let bytes = self.bytes().unwrap_or_default();
        let message = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&bytes).trim().to_owned());
        Err(DaemonError { status, message }.into())
    }
}

/// An error answer of the daemon.
#[derive(Debug)]
pub struct DaemonError {
    pub status: u16,
    pub message: String,
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error response from daemon: {}", self.message)
    }
}

impl std::error::Error for DaemonError {}

/// The daemon's address and how to reach it.
pub struct Client {
    target: Target,
    tls: Option<(
        Arc<rustls::ClientConfig>,
        rustls_pki_types::ServerName<'static>,
    )>,
}

impl Client {
    /// `unix:///path` or `tcp://host:port`, with TLS when `tls` is given.
    pub fn new(host: &str, tls: Option<Arc<rustls::ClientConfig>>) -> Result<Client> {
        let target = if let Some(p) = host.strip_prefix("unix://") {
            Target::Unix(PathBuf::from(p))
        } else if let Some(a) = host.strip_prefix("tcp://") {
            Target::Tcp(a.trim_end_matches('/').to_owned())
        } else if host.starts_with('/') {
            Target::Unix(PathBuf::from(host))
        } else {
            bail!("-H {host:?}: use unix:///path or tcp://host:port");
        };
        let tls = match (tls, &target) {
            (Some(c), Target::Tcp(addr)) => {
                let host = addr.rsplit_once(':').map_or(addr.as_str(), |(h, _)| h);
                let host = host.trim_start_matches('[').trim_end_matches(']');
                let name = rustls_pki_types::ServerName::try_from(host.to_owned())
                    .with_context(|| format!("{host}: not a server name for TLS"))?;
                Some((c, name))
            }
            (Some(_), Target::Unix(_)) => bail!("TLS is for tcp:// hosts"),
            (None, _) => None,
        };
        Ok(Client { target, tls })
    }

    fn connect(&self) -> Result<Conn> {
        match &self.target {
            Target::Unix(p) => Ok(Conn::Unix(UnixStream::connect(p).with_context(|| {
                format!(
                    "Cannot connect to the capsa daemon at unix://{}. Is capsad running?",
                    p.display()
                )
            })?)),
            Target::Tcp(a) => {
                let s = TcpStream::connect(a).with_context(|| {
                    format!("Cannot connect to the capsa daemon at tcp://{a}. Is capsad running?")
                })?;
                let _ = s.set_nodelay(true);
                match &self.tls {
                    None => Ok(Conn::Tcp(s)),
                    Some((config, name)) => {
                        let conn = rustls::ClientConnection::new(config.clone(), name.clone())
                            .context("TLS")?;
                        let mut tls = rustls::StreamOwned::new(conn, s);
                        // The handshake now, so that a refused certificate says so here.
                        while tls.conn.is_handshaking() {
                            tls.conn
                                .complete_io(&mut tls.sock)
                                .with_context(|| format!("TLS handshake with {a}"))?;
                        }
                        Ok(Conn::Tls(Box::new(tls)))
                    }
                }
            }
        }
    }

    /// Sends a request and reads the answer's head.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
    ) -> Result<Response> {
        let (conn, response) = self.send(method, path, headers, body, false)?;
        drop(conn);
        Ok(response)
    }

    /// Sends a request that hijacks the connection: returns the raw connection after a `101`
    /// (an error answer otherwise).
    pub fn hijack(&self, method: &str, path: &str, body: Body<'_>) -> Result<Conn> {
        let (conn, response) = self.send(
            method,
            path,
            &[("Connection", "Upgrade".into()), ("Upgrade", "tcp".into())],
            body,
            true,
        )?;
        let response = response.ok()?;
        if response.status != 101 {
            bail!(
                "the daemon answered {} instead of upgrading the connection",
                response.status
            );
        }
        conn.context("the upgraded connection")
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        hijack: bool,
    ) -> Result<(Option<Conn>, Response)> {
        let mut conn = self.connect()?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: capsa\r\nUser-Agent: capsa/{}\r\n",
            env!("CARGO_PKG_VERSION")
        );
        if !hijack {
            head.push_str("Connection: close\r\n");
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &body {
            Body::None => head.push_str("Content-Length: 0\r\n"),
            Body::Bytes(b) => {
                head.push_str(&format!("Content-Length: {}\r\n", b.len()));
                if !headers
                    .iter()
                    .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                {
                    head.push_str("Content-Type: application/json\r\n");
                }
            }
            Body::Stream(_) => head.push_str("Transfer-Encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        conn.write_all(head.as_bytes())
            .context("send the request")?;
        match body {
            Body::None => {}
            Body::Bytes(b) => conn.write_all(&b).context("send the request body")?,
            Body::Stream(r) => {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = r.read(&mut buf).context("read the request body")?;
                    if n == 0 {
                        break;
                    }
                    conn.write_all(format!("{n:x}\r\n").as_bytes())?;
                    conn.write_all(&buf[..n])?;
                    conn.write_all(b"\r\n")?;
                }
                conn.write_all(b"0\r\n\r\n")?;
            }
        }
        conn.flush()?;
        // The head is read byte by byte so nothing after it is taken from the connection
        // (a hijacked stream starts right after it).
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if conn.read(&mut byte).context("read the answer")? == 0 {
                bail!("the daemon closed the connection without answering");
            }
            head.push(byte[0]);
            if head.len() > 64 * 1024 {
                bail!("the daemon's answer head is too large");
            }
        }
        let text = String::from_utf8_lossy(&head);
        let mut lines = text.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .context("the daemon's answer has no status")?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let find = |k: &str| headers.iter().find(|(h, _)| h == k).map(|(_, v)| v.clone());
        if hijack && status == 101 {
            return Ok((
                Some(conn),
                Response {
                    status,
                    headers,
                    body: Box::new(std::io::empty()),
                },
            ));
        }
        let body: Box<dyn Read> = if method == "HEAD" || status == 204 || status == 304 {
            Box::new(std::io::empty())
        } else if find("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
            Box::new(Chunked {
                inner: BufReader::new(conn),
                left: 0,
                done: false,
            })
        } else if let Some(len) = find("content-length").and_then(|l| l.parse::<u64>().ok()) {
            Box::new(conn.take(len))
        } else {
            Box::new(conn)
        };
        Ok((
            None,
            Response {
                status,
                headers,
                body,
            },
        ))
    }
}

/// A chunked body.
struct Chunked<R: BufRead> {
    inner: R,
    left: usize,
    done: bool,
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.inner.read_line(&mut line)?;
            let size = line.trim().split(';').next().unwrap_or("");
            self.left = usize::from_str_radix(size, 16).map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunk size")
            })?;
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = out.len().min(self.left);
        let n = self.inner.read(&mut out[..n])?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the answer ended mid-chunk",
            ));
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = String::new();
            self.inner.read_line(&mut crlf)?;
        }
        Ok(n)
    }
}

/// The TLS client configuration: the daemon's CA, and a client certificate.
pub fn tls_config(
    ca: Option<&std::path::Path>,
    cert: Option<&std::path::Path>,
    key: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = ca.context("--tlsverify needs --tlscacert (the daemon's CA)")?;
    for c in CertificateDer::pem_file_iter(ca).with_context(|| format!("read {}", ca.display()))? {
        roots
            .add(c.with_context(|| format!("parse {}", ca.display()))?)
            .with_context(|| format!("{}", ca.display()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS versions")?
        .with_root_certificates(roots);
    let config = match (cert, key) {
        (Some(cert), Some(key)) => {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .with_context(|| format!("read {}", cert.display()))?
                .collect::<std::result::Result<_, _>>()
                .with_context(|| format!("parse {}", cert.display()))?;
            let key = PrivateKeyDer::from_pem_file(key)
                .with_context(|| format!("read {}", key.display()))?;
            builder
                .with_client_auth_cert(certs, key)
                .context("the client certificate and key")?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => bail!("--tlscert and --tlskey go together"),
    };
    Ok(Arc::new(config))
}
