//! Hijacked connections (attach, exec start): the `101 Switching Protocols` answer that the
//! docker CLI insists on, and the copy between the raw client connection and the other end (a
//! container monitor's attach socket, an exec's pipes or pty), with Docker's detach keys.

use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_TYPE, HeaderValue, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::http::{ApiError, Body, empty};
use capsa_host::engine::attach::DetachWatch;

/// The raw connection after the upgrade.
pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// Answers `101` (the client must have asked `Upgrade: tcp`) and returns the future of the
/// raw connection. `multiplexed` picks Docker's content type for framed output.
pub fn upgrade(
    req: &mut Request<Incoming>,
    multiplexed: bool,
) -> Result<(Response<Body>, hyper::upgrade::OnUpgrade), ApiError> {
    let asked = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"));
    if !asked {
        return Err(ApiError::bad_request(
            "this endpoint hijacks the connection: send Connection: Upgrade and Upgrade: tcp",
        ));
    }
    let on = hyper::upgrade::on(req);
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(UPGRADE, HeaderValue::from_static("tcp"));
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(if multiplexed {
            "application/vnd.docker.multiplexed-stream"
        } else {
            "application/vnd.docker.raw-stream"
        }),
    );
    Ok((r, on))
}

/// Copies the client's bytes to `to` through the detach watcher until the client ends its
/// stdin (then `to`'s write side is shut: end of file for the payload) or types the detach
/// keys (then returns true).
pub async fn pump_stdin<R, W>(mut from: R, mut to: W, mut watch: DetachWatch) -> bool
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; 16384];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = to.shutdown().await;
                return false;
            }
            Ok(n) => n,
        };
        let (data, detached) = watch.filter(&buf[..n]);
        if !data.is_empty() && to.write_all(&data).await.is_err() {
            return false;
        }
        if detached {
            return true;
        }
    }
}

/// Copies `from` to the client until `from` ends; then ends the client's stream.
pub async fn pump_output<R, W>(mut from: R, mut to: W)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let _ = tokio::io::copy(&mut from, &mut to).await;
    let _ = to.flush().await;
    let _ = to.shutdown().await;
}
