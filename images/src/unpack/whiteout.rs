//! OCI whiteouts in a tar layer, and what overlayfs wants instead: `.wh.NAME` becomes a char
//! device 0:0 named NAME, `.wh..wh..opq` marks its directory with `trusted.overlay.opaque=y`.

/// The prefix of every whiteout file name.
const PREFIX: &[u8] = b".wh.";
/// The opaque-directory marker.
const OPAQUE: &[u8] = b".wh..wh..opq";

/// The xattr overlayfs reads to hide everything below a directory in lower layers.
pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a tar entry's file name means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary entry.
    None,
    /// The parent directory hides all lower content.
    Opaque,
    /// The sibling NAME is deleted.
    Remove(&'a [u8]),
    /// Other `.wh..wh.` metadata (aufs hardlink dirs): skipped, as Docker does.
    Meta,
}

/// Classifies an entry's last path component.
pub(crate) fn classify(name: &[u8]) -> Whiteout<'_> {
    if name == OPAQUE {
        Whiteout::Opaque
    } else if name.starts_with(b".wh..wh.") {
        Whiteout::Meta
    } else if let Some(rest) = name.strip_prefix(PREFIX) {
        Whiteout::Remove(rest)
    } else {
        Whiteout::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_classify_as_oci_whiteouts() {
        assert_eq!(classify(b".wh..wh..opq"), Whiteout::Opaque);
        assert_eq!(classify(b".wh.passwd"), Whiteout::Remove(b"passwd"));
        assert_eq!(classify(b".wh..wh.plnk"), Whiteout::Meta);
        assert_eq!(classify(b"whatever"), Whiteout::None);
    }
}
