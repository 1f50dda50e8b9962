//! The HTTP side of the daemon, and only that: response bodies (whole, streamed from a blocking
//! engine call, empty), Docker's JSON errors, query parameters, and request bodies read by
//! blocking engine code.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Write};

use bytes::Bytes;
use capsa_host::engine::EngineError;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Response, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc;

/// Every response body: whole or streamed; a streamed body's errors end the connection.
pub type Body = BoxBody<Bytes, Infallible>;

/// A handler's answer, or the error that becomes Docker's `{"message": …}`.
pub type Reply = Result<Response<Body>, ApiError>;

/// An error answer: a status and Docker's message.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, message)
    }

    /// The response: `{"message": …}` as JSON.
    pub fn into_response(self) -> Response<Body> {
        let mut r = json_response(self.status, &json!({ "message": self.message }));
        if self.status == StatusCode::INTERNAL_SERVER_ERROR {
            log::warn!("500: {}", self.message);
        }
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("application/json"),
        );
        r
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        ApiError::new(e.http_status(), e.to_string())
    }
}

impl From<capsa_images::Error> for ApiError {
    fn from(e: capsa_images::Error) -> ApiError {
        EngineError::from(e).into()
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> ApiError {
        ApiError::new(500, format!("the handler failed: {e}"))
    }
}

/// A whole body.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// An empty body.
pub fn empty() -> Body {
    full(Bytes::new())
}

/// A JSON answer.
pub fn json_response(status: StatusCode, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

/// 200 with JSON.
pub fn ok_json(v: &Value) -> Reply {
    Ok(json_response(StatusCode::OK, v))
}

/// An answer with no body.
pub fn status(code: u16) -> Reply {
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::NO_CONTENT);
    Ok(r)
}

/// The sending end of a streamed body, for blocking code: `Write`s become body chunks.
/// `closed` tells when the client went away.
pub struct StreamWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
    /// Send every write at once (progress lines, log frames) instead of filling 64 KiB.
    pub eager: bool,
}

impl StreamWriter {
    /// Whether the client went away.
    pub fn closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// A second handle on the same stream.
    pub fn sender(&self) -> mpsc::Sender<Bytes> {
        self.tx.clone()
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "client went away"))
    }
}

impl Write for StreamWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.eager || self.buf.len() >= 64 * 1024 {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let _ = self.send();
    }
}

/// A body streamed by blocking code: the writer for it, and the body.
pub fn stream() -> (StreamWriter, Body) {
    let (tx, rx) = mpsc::channel::<Bytes>(16);
    let body = StreamBody::new(ChannelStream(rx)).boxed();
    (
        StreamWriter {
            tx,
            buf: Vec::new(),
            eager: false,
        },
        body,
    )
}

/// A channel's receiver as a stream of body frames.
pub struct ChannelStream(mpsc::Receiver<Bytes>);

impl futures_core::Stream for ChannelStream {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

/// The query parameters (a name may repeat).
#[derive(Debug, Default)]
pub struct Query(HashMap<String, Vec<String>>);

impl Query {
    pub fn parse(query: Option<&str>) -> Query {
        let mut map: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
            map.entry(k.into_owned()).or_default().push(v.into_owned());
        }
        Query(map)
    }

    /// The first value.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.first()).map(String::as_str)
    }

    /// Every value.
    pub fn all(&self, key: &str) -> Vec<String> {
        self.0.get(key).cloned().unwrap_or_default()
    }

    /// A boolean: `1`, `true`, `True`, `yes` (docker-compose sends Python's `True`); absent
    /// is `default`.
    pub fn bool(&self, key: &str, default: bool) -> Result<bool, ApiError> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" | "" => Ok(false),
                _ => Err(ApiError::bad_request(format!(
                    "invalid boolean value {v:?} for query parameter {key:?}"
                ))),
            },
        }
    }

    /// An integer.
    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key).filter(|v| !v.is_empty()) {
            None => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value {v:?} for query parameter {key:?}"))
            }),
        }
    }
}

/// The largest JSON request body read whole.
pub const JSON_LIMIT: usize = 16 << 20;

/// Reads a whole (small) body.
pub async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(ApiError::new(
                    413,
                    format!("request body larger than {limit} bytes"),
                ))
            } else {
                Err(ApiError::bad_request(format!(
                    "reading the request body: {e}"
                )))
            }
        }
    }
}

/// Reads a whole (small) body without taking it from its request (which a connection
/// upgrade needs afterwards).
pub async fn read_body_in_place(body: &mut Incoming, limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::bad_request(format!("reading the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if out.len() + data.len() > limit {
                return Err(ApiError::new(
                    413,
                    format!("request body larger than {limit} bytes"),
                ));
            }
            out.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(out))
}

/// Reads a JSON body (empty: `null`).
pub async fn read_json(body: Incoming) -> Result<Value, ApiError> {
    let bytes = read_body(body, JSON_LIMIT).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(format!("invalid JSON in the request body: {e}")))
}

/// A request body for blocking code (`Read`), fed by a task as frames arrive.
pub struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, String>>,
    current: Bytes,
}

impl Read for BodyReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(b)) => self.current = b,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len());
        out[..n].copy_from_slice(&self.current[..n]);
        let _ = self.current.split_to(n);
        Ok(n)
    }
}

/// Streams `body` into a [`BodyReader`].
pub fn body_reader(mut body: Incoming) -> BodyReader {
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data()
                        && tx.send(Ok(data)).await.is_err()
                    {
                        return;
                    }
                }
                Some(Err(e)) => {
                    let _ = tx.send(Err(e.to_string())).await;
                    return;
                }
                None => return,
            }
        }
    });
    BodyReader {
        rx,
        current: Bytes::new(),
    }
}

/// Runs blocking engine code on the blocking pool; its engine error becomes the answer.
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}
