//! Content digests (`sha256:<hex>`) and hashing readers/writers, so that every byte that enters
//! the store is hashed as it streams past and never read twice to be checked.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A validated sha256 content digest. Only sha256 is accepted: it is what every image tool writes,
/// and one algorithm keeps the store's paths (`blobs/sha256/<hex>`) simple.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else is refused (it would become a path).
    pub fn parse(value: &str) -> Result<Digest> {
        let bad = |reason| Error::InvalidDigest {
            value: value.to_owned(),
            reason,
        };
        let (algorithm, hex) = value.split_once(':').ok_or_else(|| bad("missing ':'"))?;
        if algorithm != "sha256" {
            return Err(bad("only sha256 digests are supported"));
        }
        Digest::from_hex(hex).map_err(|_| bad("expected 64 lowercase hex digits"))
    }

    /// Builds a digest from its 64 hex digits (a file name in `blobs/sha256/`).
    pub fn from_hex(hex: &str) -> Result<Digest> {
        if hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Digest {
                hex: hex.to_owned(),
            })
        } else {
            Err(Error::InvalidDigest {
                value: hex.to_owned(),
                reason: "expected 64 lowercase hex digits",
            })
        }
    }

    /// The digest of a byte string (manifests and configs, which are small).
    pub fn of_bytes(bytes: &[u8]) -> Digest {
        let mut hasher = Hasher::new();
        hasher.update(bytes);
        hasher.finish()
    }

    /// The 64 hex digits, as used in store paths.
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = Error;
    fn from_str(s: &str) -> Result<Digest> {
        Digest::parse(s)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = String::deserialize(d)?;
        Digest::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An incremental sha256 that yields a [`Digest`].
pub(crate) struct Hasher {
    inner: Sha256,
}

impl Hasher {
    pub(crate) fn new() -> Hasher {
        Hasher {
            inner: Sha256::new(),
        }
    }

    pub(crate) fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    pub(crate) fn finish(self) -> Digest {
        let out = self.inner.finalize();
        let mut hex = String::with_capacity(64);
        for b in out.iter() {
            hex.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            hex.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
        }
        Digest { hex }
    }
}

/// A reader that hashes and counts what passes through it: the way layers are verified while
/// they are decompressed and unpacked, in one pass.
pub(crate) struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }

    /// Reads the rest of the stream (tar padding after the end-of-archive blocks counts toward
    /// the diff_id too), then returns the digest and the byte count.
    pub(crate) fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.finish(), self.count))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts what passes through it (blobs written into the store).
pub(crate) struct HashingWriter<W> {
    pub(crate) inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Hasher::new(),
            count: 0,
        }
    }

    pub(crate) fn finish(self) -> (W, Digest, u64) {
        (self.inner, self.hasher.finish(), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_of_empty_input_is_the_well_known_one() {
        assert_eq!(
            Digest::of_bytes(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn digests_that_could_be_paths_are_refused() {
        for bad in [
            "sha256:../../etc",
            "sha512:abcd",
            "e3b0",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }
}
