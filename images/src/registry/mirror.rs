//! Registry mirrors, as Docker's `registry-mirrors`: pull-through caches of Docker Hub, tried in
//! order before Docker Hub itself. A mirror is only a source of bytes: everything it serves is
//! verified against the digests the reference and the manifests name, exactly as the origin's.

use super::error::{Error, Result};
use super::reference::is_host;

/// A validated mirror: `http(s)://host[:port]`, with no path (the mirror serves `/v2/` at its root,
/// as Docker requires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mirror {
    url: String,
    host: String,
}

impl Mirror {
    /// Parses `http(s)://host[:port][/]`; anything else is refused with what is wrong.
    pub fn parse(value: &str) -> Result<Mirror> {
        let bad = |reason: &str| Error::InvalidMirror {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = value
            .split_once("://")
            .ok_or_else(|| bad("not a URL: expected http://host[:port] or https://host[:port]"))?;
        if scheme != "http" && scheme != "https" {
            return Err(bad(&format!("the scheme {scheme:?} is not http or https")));
        }
        let host = rest.strip_suffix('/').unwrap_or(rest);
        if host.is_empty() {
            return Err(bad("no host"));
        }
        if host.contains(['/', '?', '#']) {
            return Err(bad(
                "a mirror has no path, query or fragment: only scheme://host[:port]",
            ));
        }
        if host.contains('@') {
            return Err(bad(
                "credentials do not belong in the URL: use `capsa login HOST`",
            ));
        }
        if !is_host(host) {
            return Err(bad("the host has characters a host name cannot have"));
        }
        Ok(Mirror {
            url: format!("{scheme}://{host}"),
            host: host.to_owned(),
        })
    }

    /// `scheme://host[:port]`, as shown to users and used as the API's base.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `host[:port]`: what credentials and CA files are filed under.
    pub fn host(&self) -> &str {
        &self.host
    }
}

impl std::fmt::Display for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirrors_are_scheme_and_host_only() {
        let m = Mirror::parse("https://mirror.gcr.io/").unwrap();
        assert_eq!(m.url(), "https://mirror.gcr.io");
        assert_eq!(m.host(), "mirror.gcr.io");
        assert_eq!(
            Mirror::parse("http://127.0.0.1:5000").unwrap().host(),
            "127.0.0.1:5000"
        );
        for bad in [
            "mirror.gcr.io",
            "ftp://mirror",
            "https://",
            "https://m/path",
            "https://u:p@m",
            "https://m?x=1",
        ] {
            assert!(Mirror::parse(bad).is_err(), "{bad} was accepted");
        }
        let e = Mirror::parse("ftp://m").unwrap_err().to_string();
        assert!(
            e.contains("\"ftp://m\"") && e.contains("not http or https"),
            "{e}"
        );
    }
}
