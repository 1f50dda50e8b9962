//! One registry, one repository, over HTTP(S): the blocking HTTP client (ureq), the scheme
//! (plain HTTP only for insecure registries), TLS roots (the system's plus a per-registry CA),
//! and the 401 dance: on a challenge, fetch a token (Bearer) or send the credentials (Basic),
//! then replay the request once. A token is reused until it expires (`expires_in`, at least 60 s
//! as Docker counts it), then renewed from the same challenge before the next request; a 401 is
//! answered with a new token, and a new token refused at once (expired on arrival, clock skew)
//! with one more. A token for
//! another scope (a push after a pull's checks) comes from the registry's new challenge. With an
//! identity token (an OAuth2 refresh token from an earlier login) the token server is asked by
//! `POST grant_type=refresh_token`, as Docker does; else by `GET` with the credentials.
//!
//! Blocking and thread-based on purpose: no async runtime to carry, and the registry client is
//! never on the container-start path, so its threads never meet a fork.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ureq::http::{self, Response};
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body as RespBody};

use super::RegistryOptions;
use super::auth::{Challenge, TokenResponse, encode, parse_challenge};
use super::credentials::Credentials;
use super::error::{Error, Result};
use super::mirror::Mirror;
use super::reference::api_host;

/// The shortest life a token is given, whatever `expires_in` says (Docker's
/// `minimumTokenLifetimeSeconds`): a token server that omits it means 60 s.
const MINIMUM_TOKEN_LIFETIME: Duration = Duration::from_secs(60);
/// The `client_id` capsa names itself by to OAuth2 token servers.
const CLIENT_ID: &str = "capsa";

/// Where the system's CA bundle is on Debian and its kin.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A request body that can be sent twice (after a 401, the request is replayed).
#[derive(Clone, Copy)]
pub(crate) enum Body<'a> {
    /// No body.
    Empty,
    /// Bytes in memory (manifests, upload chunks).
    Bytes(&'a [u8]),
    /// A whole file (a blob from the store).
    File(&'a Path),
}

/// A client for one repository of one registry.
pub(crate) struct Client {
    agent: Agent,
    pub(crate) registry: String,
    pub(crate) repository: String,
    base: String,
    credentials: Option<Credentials>,
    /// Scopes asked of a token server beyond the challenge's (push, mount sources).
    scopes: Vec<String>,
    authorization: Mutex<Option<Authorization>>,
    /// Ask token servers for a refresh token (`offline_token=true`): `login` does, to store it.
    want_refresh_token: bool,
    /// The refresh token a token server gave (see `want_refresh_token`).
    refresh_token: Mutex<Option<String>>,
}

/// The `Authorization` value in use and how to renew it.
#[derive(Clone)]
struct Authorization {
    header: String,
    /// When a bearer token stops being sent (Basic credentials never expire).
    expires: Option<Instant>,
    /// The challenge it answers, to fetch the next token from.
    challenge: Challenge,
}

impl Authorization {
    fn expired(&self) -> bool {
        self.expires.is_some_and(|e| Instant::now() >= e)
    }
}

/// Whether a registry is reached over plain HTTP: listed as insecure, or on the loopback
/// (Docker's default insecure registries).
pub(crate) fn is_insecure(registry: &str, options: &RegistryOptions) -> bool {
    if options.insecure.iter().any(|r| r == registry) {
        return true;
    }
    // The API's host: Docker Hub's test stand-in is on the loopback too.
    let api = api_host(registry);
    let host = match api.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => api,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

fn tls_config(registry: &str, options: &RegistryOptions) -> Result<TlsConfig> {
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    let mut add = |path: &Path, required: bool| -> Result<()> {
        let pem = match std::fs::read(path) {
            Ok(p) => p,
            Err(_) if !required => return Ok(()),
            Err(e) => {
                return Err(Error::Io {
                    op: "read",
                    path: path.to_owned(),
                    source: e,
                });
            }
        };
        for item in ureq::tls::parse_pem(&pem) {
            if let Ok(PemItem::Certificate(c)) = item {
                certs.push(c.to_owned());
            }
        }
        Ok(())
    };
    add(Path::new(SYSTEM_CA_BUNDLE), false)?;
    if let Some(ca) = options.ca_files.get(registry) {
        add(ca, true)?;
    }
    let roots = if certs.is_empty() {
        RootCerts::WebPki
    } else {
        RootCerts::new_with_certs(&certs)
    };
    Ok(TlsConfig::builder().root_certs(roots).build())
}

impl Client {
    /// A client for `registry`/`repository`; `scopes` are extra token scopes (each
    /// `repository:NAME:ACTIONS`) asked for along with what the registry's challenge names.
    pub(crate) fn new(
        registry: &str,
        repository: &str,
        credentials: Option<Credentials>,
        options: &RegistryOptions,
        scopes: Vec<String>,
    ) -> Result<Client> {
        let scheme = if is_insecure(registry, options) {
            "http"
        } else {
            "https"
        };
        let base = format!("{scheme}://{}", api_host(registry));
        Client::with_base(registry, base, repository, credentials, options, scopes)
    }

    /// A client for `repository` on a mirror of Docker Hub: the mirror's scheme and host, the
    /// mirror's own credentials (the origin's are not sent to a third party).
    pub(crate) fn for_mirror(
        mirror: &Mirror,
        repository: &str,
        credentials: Option<Credentials>,
        options: &RegistryOptions,
    ) -> Result<Client> {
        Client::with_base(
            mirror.host(),
            mirror.url().to_owned(),
            repository,
            credentials,
            options,
            Vec::new(),
        )
    }

    fn with_base(
        registry: &str,
        base: String,
        repository: &str,
        credentials: Option<Credentials>,
        options: &RegistryOptions,
        scopes: Vec<String>,
    ) -> Result<Client> {
        let config = Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls_config(registry, options)?)
            .timeout_connect(Some(Duration::from_secs(30)))
            .timeout_recv_response(Some(Duration::from_secs(120)))
            .timeout_per_read(Some(Duration::from_secs(120)))
            .max_idle_connections_per_host(16)
            .user_agent(concat!("capsa/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Client {
            agent: Agent::new_with_config(config),
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            base,
            credentials,
            scopes,
            authorization: Mutex::new(None),
            want_refresh_token: false,
            refresh_token: Mutex::new(None),
        })
    }

    /// Asks token servers for a refresh token too (for `login`, which stores it).
    pub(crate) fn asking_refresh_token(mut self) -> Client {
        self.want_refresh_token = true;
        self
    }

    /// The refresh token a token server gave, if one was asked for and given.
    pub(crate) fn refresh_token(&self) -> Option<String> {
        self.refresh_token.lock().ok().and_then(|t| t.clone())
    }

    /// `<base>/v2/<repository>/<rest>`.
    pub(crate) fn repo_url(&self, rest: &str) -> String {
        format!("{}/v2/{}/{rest}", self.base, self.repository)
    }

    /// `scheme://host[:port]` of the API.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    /// `<base>/v2/`: the API's root, what `login` checks.
    pub(crate) fn root_url(&self) -> String {
        format!("{}/v2/", self.base)
    }

    /// A URL from a `Location` header: absolute, or relative to the registry.
    pub(crate) fn resolve(&self, location: &str) -> String {
        if location.starts_with("http://") || location.starts_with("https://") {
            location.to_owned()
        } else if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            format!("{}/{location}", self.base)
        }
    }

    fn classify(&self, what: &str, e: ureq::Error) -> Error {
        let unreachable = match &e {
            ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Tls(_) => true,
            // std reports a failed getaddrinfo as an uncategorised error: known by its text.
            ureq::Error::Io(io) => {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::HostUnreachable
                        | std::io::ErrorKind::NetworkUnreachable
                ) || io.to_string().contains("lookup address")
            }
            _ => false,
        };
        if unreachable {
            Error::Unreachable {
                registry: self.registry.clone(),
                source: Box::new(e),
            }
        } else {
            Error::Transport {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: what.to_owned(),
                source: Box::new(e),
            }
        }
    }

    fn run_once(
        &self,
        method: &http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        authorization: Option<&str>,
        what: &str,
    ) -> Result<Response<RespBody>> {
        let mut builder = http::Request::builder().method(method.clone()).uri(url);
        for (k, v) in headers {
            builder = builder.header(*k, v.as_str());
        }
        if let Some(a) = authorization {
            builder = builder.header("Authorization", a);
        }
        let bad = |e: http::Error| Error::Invalid {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what: what.to_owned(),
            reason: format!("cannot build request for {url}: {e}"),
        };
        let result = match body {
            Body::Empty => self.agent.run(builder.body(()).map_err(bad)?),
            Body::Bytes(b) => self.agent.run(builder.body(b).map_err(bad)?),
            Body::File(p) => {
                let file = File::open(p).map_err(|e| Error::Io {
                    op: "open",
                    path: p.to_owned(),
                    source: e,
                })?;
                self.agent.run(builder.body(file).map_err(bad)?)
            }
        };
        result.map_err(|e| self.classify(what, e))
    }

    /// Sends a request; on a 401 authenticates as the challenge asks and replays it once.
    /// Returns any other status as is, for the caller to judge.
    pub(crate) fn send(
        &self,
        method: http::Method,
        url: &str,
        headers: &[(&str, String)],
        body: Body<'_>,
        what: &str,
    ) -> Result<Response<RespBody>> {
        let mut current = self.authorization.lock().ok().and_then(|a| a.clone());
        if let Some(expired) = current.as_ref().filter(|a| a.expired()) {
            // Renewed before it is refused: one round trip, not two.
            let renewed = self.authorize(&expired.challenge.clone())?;
            self.remember(&renewed);
            current = Some(renewed);
        }
        let header = current.as_ref().map(|a| a.header.as_str());
        let response = self.run_once(&method, url, headers, body, header, what)?;
        if response.status() != 401 {
            return Ok(response);
        }
        // A bearer token refused as soon as it was issued (expired on arrival: the token
        // server's clock is behind the registry's; or revoked) gets one more try.
        let mut response = response;
        for _ in 0..2 {
            let challenge = response
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_challenge);
            let Some(challenge) = challenge else {
                return Err(self.unauthorized(response, "no challenge capsa can answer"));
            };
            let authorization = self.authorize(&challenge)?;
            self.remember(&authorization);
            response = self.run_once(
                &method,
                url,
                headers,
                body,
                Some(&authorization.header),
                what,
            )?;
            if response.status() != 401 {
                return Ok(response);
            }
            if challenge == Challenge::Basic {
                break;
            }
        }
        let detail = if self.credentials.is_some() {
            "the registry refused the credentials"
        } else {
            "no credentials stored"
        };
        Err(self.unauthorized(response, detail))
    }

    fn unauthorized(&self, mut response: Response<RespBody>, detail: &str) -> Error {
        let said = error_detail(&mut response);
        Error::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            detail: if said.is_empty() {
                detail.to_owned()
            } else {
                format!("{detail}: {said}")
            },
        }
    }

    fn remember(&self, authorization: &Authorization) {
        if let Ok(mut slot) = self.authorization.lock() {
            *slot = Some(authorization.clone());
        }
    }

    /// The `Authorization` value that answers `challenge`.
    fn authorize(&self, challenge: &Challenge) -> Result<Authorization> {
        match challenge {
            Challenge::Basic => match &self.credentials {
                Some(c) if c.identity_token.is_none() => Ok(Authorization {
                    header: c.basic(),
                    expires: None,
                    challenge: challenge.clone(),
                }),
                Some(_) => Err(Error::Unauthorized {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    detail: "the registry asks for a password; only an identity token is stored"
                        .to_owned(),
                }),
                None => Err(Error::Unauthorized {
                    registry: self.registry.clone(),
                    repository: self.repository.clone(),
                    detail: "the registry asks for a user name and password".to_owned(),
                }),
            },
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => {
                let asked = Instant::now();
                let token = self.token(realm, service.as_deref(), scope.as_deref())?;
                let life = token_life(token.expires_in);
                Ok(Authorization {
                    header: format!("Bearer {}", token.value),
                    expires: asked.checked_add(life),
                    challenge: challenge.clone(),
                })
            }
        }
    }

    fn token(&self, realm: &str, service: Option<&str>, scope: Option<&str>) -> Result<Token> {
        if !(realm.starts_with("https://") || realm.starts_with("http://")) {
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail: format!("the token realm {realm:?} is not an http(s) URL"),
            });
        }
        let mut scopes: Vec<&str> = scope.into_iter().collect();
        for s in &self.scopes {
            if !scopes.contains(&s.as_str()) {
                scopes.push(s);
            }
        }
        let identity_token = self
            .credentials
            .as_ref()
            .and_then(|c| c.identity_token.as_deref());
        let request = match identity_token {
            // OAuth2's refresh grant, as Docker sends it (scopes space-separated).
            Some(refresh) => {
                let mut form = vec![
                    ("grant_type", "refresh_token".to_owned()),
                    ("refresh_token", refresh.to_owned()),
                    ("client_id", CLIENT_ID.to_owned()),
                ];
                if let Some(s) = service {
                    form.push(("service", s.to_owned()));
                }
                if !scopes.is_empty() {
                    form.push(("scope", scopes.join(" ")));
                }
                let body = form
                    .iter()
                    .map(|(k, v)| format!("{k}={}", encode(v)))
                    .collect::<Vec<_>>()
                    .join("&");
                http::Request::builder()
                    .method("POST")
                    .uri(realm)
                    .header("Content-Type", "application/x-www-form-urlencoded")
                    .body(body.into_bytes())
            }
            None => {
                let mut query = Vec::new();
                if let Some(s) = service {
                    query.push(format!("service={}", encode(s)));
                }
                for s in &scopes {
                    query.push(format!("scope={}", encode(s)));
                }
                if self.want_refresh_token {
                    query.push("offline_token=true".to_owned());
                    query.push(format!("client_id={CLIENT_ID}"));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = format!("{realm}{sep}{}", query.join("&"));
                let mut builder = http::Request::builder().method("GET").uri(&url);
                if let Some(c) = &self.credentials {
                    builder = builder.header("Authorization", c.basic());
                }
                builder.body(Vec::new())
            }
        };
        let request = request.map_err(|e| Error::Unauthorized {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            detail: format!("bad token request to {realm}: {e}"),
        })?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| self.classify("token", e))?;
        if !response.status().is_success() {
            let status = response.status().as_u16();
            let said = error_detail(&mut response);
            return Err(Error::Unauthorized {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail: format!("the token server {realm} answered HTTP {status} {said}")
                    .trim_end()
                    .to_owned(),
            });
        }
        let answer: TokenResponse = response
            .body_mut()
            .with_config()
            .limit(1 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
            .map_err(|e| Error::Unauthorized {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail: format!("the token server's answer: {e}"),
            })?;
        if self.want_refresh_token
            && let Some(refresh) = answer.refresh_token.clone()
            && let Ok(mut slot) = self.refresh_token.lock()
        {
            *slot = Some(refresh);
        }
        let value = answer
            .token
            .or(answer.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| Error::Unauthorized {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                detail: "the token server sent no token".to_owned(),
            })?;
        Ok(Token {
            value,
            expires_in: answer.expires_in,
        })
    }

    /// The error for an unexpected status: 404 → not found, 401/403 → unauthorized, else the
    /// status with the registry's message.
    pub(crate) fn status_error(&self, mut response: Response<RespBody>, what: &str) -> Error {
        let status = response.status().as_u16();
        match status {
            404 => Error::NotFound {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: what.to_owned(),
            },
            401 | 403 => self.unauthorized(response, "access denied"),
            _ => Error::Status {
                registry: self.registry.clone(),
                repository: self.repository.clone(),
                what: what.to_owned(),
                status,
                detail: error_detail(&mut response),
            },
        }
    }

    /// Reads a small body whole, refusing more than `limit` bytes.
    pub(crate) fn read_limited(
        &self,
        response: Response<RespBody>,
        limit: u64,
        what: &str,
    ) -> Result<Vec<u8>> {
        if response
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|n| n > limit)
        {
            return Err(self.too_large(what, limit));
        }
        let mut bytes = Vec::new();
        response
            .into_body()
            .into_reader()
            .take(limit + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| self.classify(what, ureq::Error::Io(e)))?;
        if bytes.len() as u64 > limit {
            return Err(self.too_large(what, limit));
        }
        Ok(bytes)
    }

    fn too_large(&self, what: &str, limit: u64) -> Error {
        Error::TooLarge {
            registry: self.registry.clone(),
            repository: self.repository.clone(),
            what: what.to_owned(),
            limit,
        }
    }

    /// Maps a read error in the middle of a body.
    pub(crate) fn body_error(&self, what: &str, e: std::io::Error) -> Error {
        self.classify(what, ureq::Error::Io(e))
    }
}

/// How long a token is used: what the server said, at least [`MINIMUM_TOKEN_LIFETIME`] (a
/// server that says nothing, or less, means 60 s, as Docker reads it).
fn token_life(expires_in: Option<u64>) -> Duration {
    expires_in
        .map(Duration::from_secs)
        .unwrap_or(MINIMUM_TOKEN_LIFETIME)
        .max(MINIMUM_TOKEN_LIFETIME)
}

/// A token from a token server.
struct Token {
    value: String,
    /// Seconds it is valid for, as the server said.
    expires_in: Option<u64>,
}

/// The registry's error message: the `errors[].message` of its JSON body, else the start of
/// the body.
fn error_detail(response: &mut Response<RespBody>) -> String {
    let text = response
        .body_mut()
        .with_config()
        .limit(64 << 10)
        .read_to_string()
        .unwrap_or_default();
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        #[serde(default)]
        code: String,
        #[serde(default)]
        message: String,
    }
    if let Ok(e) = serde_json::from_str::<Errors>(&text) {
        return e
            .errors
            .iter()
            .map(|i| format!("{}: {}", i.code, i.message))
            .collect::<Vec<_>>()
            .join("; ");
    }
    text.chars().take(200).collect::<String>().trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_live_at_least_a_minute_and_expire_by_the_clock() {
        assert_eq!(token_life(None), Duration::from_secs(60));
        assert_eq!(token_life(Some(5)), Duration::from_secs(60));
        assert_eq!(token_life(Some(300)), Duration::from_secs(300));
        let challenge = Challenge::Basic;
        let past = Authorization {
            header: String::new(),
            expires: Instant::now().checked_sub(Duration::from_secs(1)),
            challenge: challenge.clone(),
        };
        let future = Authorization {
            expires: Instant::now().checked_add(Duration::from_secs(60)),
            ..past.clone()
        };
        let basic = Authorization {
            expires: None,
            ..past.clone()
        };
        assert!(past.expired() && !future.expired() && !basic.expired());
    }
}
