//! `COPY`/`ADD` source patterns, as Docker's classic builder reads them.
//!
//! A source holding a wildcard is matched with Go's `filepath.Match` against the relative path
//! of everything in the build context (moby's `copier.copyWithWildcards`): `*` and `?` never
//! match `/`, `[...]` is a character class (negated by `^`, not `!`), `\` escapes the next
//! character, and the pattern must match the whole path. So `src/*.txt` names `src/a.txt` but
//! not `src/sub/b.txt`, and there is no `**` here (it is two `*`s); that is `.dockerignore`'s.
//!
//! [`matches`] is a line-by-line port of Go's `filepath.Match` (Unix flavour), errors included,
//! so a pattern behaves here exactly as it does in Docker.

use std::path::Path;

/// Go's `filepath.ErrBadPattern` text, kept so messages read as Docker's do.
const BAD_PATTERN: &str = "syntax error in pattern";

/// Whether `pattern` holds any of Go's `filepath.Match` metacharacters, which decides whether
/// a `COPY` source is expanded against the context or taken as a literal path.
///
/// This is the classic builder's `containsWildcards`: `*`, `?` and `[` count, and a `\` hides
/// the character after it (`a\*b` has none), so a backslash alone does not make a pattern.
pub fn has_wildcards(pattern: &str) -> bool {
    let bytes = pattern.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b'*' | b'?' | b'[' => return true,
            _ => {}
        }
        i += 1;
    }
    false
}

/// Go's `filepath.Match`: whether all of `name` matches `pattern` (both `/`-separated relative
/// paths), so `COPY` wildcards pick exactly the paths Docker's would.
///
/// Errors with Go's `ErrBadPattern` text for a malformed pattern (an unclosed `[`, an empty
/// class, a trailing `\`, ...). Like Go, a pattern is only checked as far as matching reads
/// it: `x*[` against `abc` is `Ok(false)` (the first chunk already fails); use [`validate`]
/// to check all of it.
pub fn matches(pattern: &str, name: &str) -> Result<bool, String> {
    match_bytes(pattern.as_bytes(), name.as_bytes()).map_err(|()| bad(pattern))
}

/// Checks that all of `pattern` is well-formed for [`matches`], so a caller can refuse a bad
/// pattern up front instead of it silently matching nothing (which is what Docker does).
pub fn validate(pattern: &str) -> Result<(), String> {
    let mut rest = pattern.as_bytes();
    while !rest.is_empty() {
        let (_, chunk, after) = scan_chunk(rest);
        rest = after;
        match_chunk(chunk, b"").map_err(|()| bad(pattern))?;
    }
    Ok(())
}

fn bad(pattern: &str) -> String {
    format!("bad pattern {pattern:?}: {BAD_PATTERN}")
}

/// Expands a wildcard source against directory `root` (a build context): every path below
/// root that `pattern` matches, relative and `/`-separated, in the order Docker's
/// `filepath.WalkDir` visits them (depth first, a directory's entries sorted by name), which is
/// the order a multi-source `COPY` lays them down in.
///
/// A leading `/` and then a leading `./` are dropped from `pattern` as the classic builder
/// does. Only as many levels are read as the pattern could match (`*` never crosses `/`).
/// Symlinks are not followed: a link is a candidate itself, never walked into. `skip` is asked
/// about each match and leaves out those it returns true for (the caller's `.dockerignore`);
/// directories are still walked into, as an exception may have kept something below them.
/// A malformed pattern is an `InvalidInput` error; a directory that cannot be read is an error
/// naming it.
pub fn expand(
    root: &Path,
    pattern: &str,
    skip: &dyn Fn(&str) -> bool,
) -> std::io::Result<Vec<String>> {
    let pattern = pattern.strip_prefix('/').unwrap_or(pattern);
    let pattern = pattern.strip_prefix("./").unwrap_or(pattern);
    validate(pattern).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut found = Vec::new();
    let depth = max_depth(pattern);
    walk(root, "", 1, depth, pattern, skip, &mut found)?;
    Ok(found)
}

/// The most path components a name matching `pattern` can have: one, plus one for each
/// character that can match a `/` (a literal or escaped `/`, or a character class).
fn max_depth(pattern: &str) -> usize {
    1 + pattern.bytes().filter(|&b| b == b'/' || b == b'[').count()
}

fn walk(
    dir: &Path,
    rel: &str,
    depth: usize,
    max: usize,
    pattern: &str,
    skip: &dyn Fn(&str) -> bool,
    found: &mut Vec<String>,
) -> std::io::Result<()> {
    let with_path = |e: std::io::Error| {
        std::io::Error::new(e.kind(), format!("read directory {}: {e}", dir.display()))
    };
    let mut entries = std::fs::read_dir(dir)
        .map_err(with_path)?
        .map(|e| e.map_err(with_path))
        .collect::<std::io::Result<Vec<_>>>()?;
    // Go sorts names as bytes; so does comparing the raw OS strings.
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            // A name that is not UTF-8 cannot be named by a (UTF-8) Dockerfile pattern.
            continue;
        };
        let child = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        if matches(pattern, &child).unwrap_or(false) && !skip(&child) {
            found.push(child.clone());
        }
        if depth < max && entry.file_type().map_err(with_path)?.is_dir() {
            walk(&entry.path(), &child, depth + 1, max, pattern, skip, found)?;
        }
    }
    Ok(())
}

// ---- Go's filepath.Match, ported (Unix: `\` escapes, the separator is `/`) ----

/// Go's `Match` over bytes; `Err(())` is `ErrBadPattern`.
fn match_bytes(mut pattern: &[u8], mut name: &[u8]) -> Result<bool, ()> {
    'pattern: while !pattern.is_empty() {
        let (star, chunk, rest) = scan_chunk(pattern);
        pattern = rest;
        if star && chunk.is_empty() {
            // A trailing * matches the rest of the name unless it holds a /.
            return Ok(!name.contains(&b'/'));
        }
        // Look for a match at the current position.
        let (t, ok) = match_chunk(chunk, name)?;
        // On the last chunk the name must be used up, or a star could still match more.
        if ok && (t.is_empty() || !pattern.is_empty()) {
            name = t;
            continue;
        }
        if star {
            // Look for a match skipping i+1 bytes; a star cannot skip a /.
            let mut i = 0;
            while i < name.len() && name[i] != b'/' {
                let (t, ok) = match_chunk(chunk, &name[i + 1..])?;
                if ok {
                    if pattern.is_empty() && !t.is_empty() {
                        i += 1;
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
                i += 1;
            }
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// The next segment of `pattern`: a run of non-star terms, possibly after stars.
/// Returns (there were stars, the segment, the rest).
fn scan_chunk(mut pattern: &[u8]) -> (bool, &[u8], &[u8]) {
    let mut star = false;
    while let [b'*', rest @ ..] = pattern {
        pattern = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < pattern.len() {
        match pattern[i] {
            // The error check (a trailing \) is match_chunk's.
            b'\\' if i + 1 < pattern.len() => i += 1,
            b'[' => in_range = true,
            b']' => in_range = false,
            b'*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &pattern[..i], &pattern[i..])
}

/// Whether `chunk` (no stars) matches the start of `s`; if so, the rest of `s`. Goes on
/// reading the chunk after a mismatch so a malformed chunk is always an error.
fn match_chunk<'a>(mut chunk: &[u8], mut s: &'a [u8]) -> Result<(&'a [u8], bool), ()> {
    let mut failed = false;
    while let Some(&c) = chunk.first() {
        failed = failed || s.is_empty();
        match c {
            b'[' => {
                let mut r = '\0';
                if !failed {
                    let (ch, n) = decode_rune(s);
                    r = ch;
                    s = &s[n..];
                }
                chunk = &chunk[1..];
                let negated = chunk.first() == Some(&b'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&b']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, after) = get_esc(chunk)?;
                    chunk = after;
                    let mut hi = lo;
                    if chunk.first() == Some(&b'-') {
                        let (h, after) = get_esc(&chunk[1..])?;
                        hi = h;
                        chunk = after;
                    }
                    matched = matched || (lo <= r && r <= hi);
                    ranges += 1;
                }
                failed = failed || matched == negated;
            }
            b'?' => {
                if !failed {
                    failed = s[0] == b'/';
                    let (_, n) = decode_rune(s);
                    s = &s[n..];
                }
                chunk = &chunk[1..];
            }
            _ => {
                if c == b'\\' {
                    chunk = &chunk[1..];
                    if chunk.is_empty() {
                        return Err(());
                    }
                }
                if !failed {
                    failed = chunk[0] != s[0];
                    s = &s[1..];
                }
                chunk = &chunk[1..];
            }
        }
    }
    if failed {
        Ok((&[], false))
    } else {
        Ok((s, true))
    }
}

/// A possibly escaped character of a class, and the chunk after it.
fn get_esc(mut chunk: &[u8]) -> Result<(char, &[u8]), ()> {
    match chunk.first() {
        None | Some(b'-') | Some(b']') => return Err(()),
        Some(b'\\') => {
            chunk = &chunk[1..];
            if chunk.is_empty() {
                return Err(());
            }
        }
        Some(_) => {}
    }
    let (r, n) = decode_rune(chunk);
    if r == char::REPLACEMENT_CHARACTER && n == 1 {
        return Err(());
    }
    let rest = &chunk[n..];
    if rest.is_empty() {
        return Err(());
    }
    Ok((r, rest))
}

/// Go's `utf8.DecodeRuneInString`: the first character of `b` and its length, U+FFFD and 1
/// for bytes that are not UTF-8, U+FFFD and 0 for nothing.
fn decode_rune(b: &[u8]) -> (char, usize) {
    let Some(&first) = b.first() else {
        return (char::REPLACEMENT_CHARACTER, 0);
    };
    let len = match first {
        0x00..=0x7f => 1,
        0xc0..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf7 => 4,
        _ => return (char::REPLACEMENT_CHARACTER, 1),
    };
    b.get(..len)
        .and_then(|head| std::str::from_utf8(head).ok())
        .and_then(|s| s.chars().next())
        .map_or((char::REPLACEMENT_CHARACTER, 1), |c| (c, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go's own table (path/filepath/match_test.go), Unix flavour: (pattern, name, result).
    /// `None` is ErrBadPattern.
    const GO_MATCH_TESTS: &[(&str, &str, Option<bool>)] = &[
        ("abc", "abc", Some(true)),
        ("*", "abc", Some(true)),
        ("*c", "abc", Some(true)),
        ("a*", "a", Some(true)),
        ("a*", "abc", Some(true)),
        ("a*", "ab/c", Some(false)),
        ("a*/b", "abc/b", Some(true)),
        ("a*/b", "a/c/b", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxe/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Some(true)),
        ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Some(false)),
        ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Some(false)),
        ("a*b?c*x", "abxbbxdbxebxczzx", Some(true)),
        ("a*b?c*x", "abxbbxdbxebxczzy", Some(false)),
        ("ab[c]", "abc", Some(true)),
        ("ab[b-d]", "abc", Some(true)),
        ("ab[e-g]", "abc", Some(false)),
        ("ab[^c]", "abc", Some(false)),
        ("ab[^b-d]", "abc", Some(false)),
        ("ab[^e-g]", "abc", Some(true)),
        ("a\\*b", "a*b", Some(true)),
        ("a\\*b", "ab", Some(false)),
        ("a?b", "a☺b", Some(true)),
        ("a[^a]b", "a☺b", Some(true)),
        ("a???b", "a☺b", Some(false)),
        ("a[^a][^a][^a]b", "a☺b", Some(false)),
        ("[a-ζ]*", "α", Some(true)),
        ("*[a-ζ]", "A", Some(false)),
        ("a?b", "a/b", Some(false)),
        ("a*b", "a/b", Some(false)),
        ("[\\]a]", "]", Some(true)),
        ("[\\-]", "-", Some(true)),
        ("[x\\-]", "x", Some(true)),
        ("[x\\-]", "-", Some(true)),
        ("[x\\-]", "z", Some(false)),
        ("[\\-x]", "x", Some(true)),
        ("[\\-x]", "-", Some(true)),
        ("[\\-x]", "a", Some(false)),
        ("[]a]", "]", None),
        ("[-]", "-", None),
        ("[x-]", "x", None),
        ("[x-]", "-", None),
        ("[x-]", "z", None),
        ("[-x]", "x", None),
        ("[-x]", "-", None),
        ("[-x]", "a", None),
        ("\\", "a", None),
        ("[a-b-c]", "a", None),
        ("[", "a", None),
        ("[^", "a", None),
        ("[^bc", "a", None),
        ("a[", "a", None),
        ("a[", "ab", None),
        ("a[", "x", None),
        ("a/b[", "x", None),
        ("*x", "xxx", Some(true)),
    ];

    #[test]
    fn matches_go_filepath_match_table() {
        for &(pattern, name, want) in GO_MATCH_TESTS {
            let got = matches(pattern, name).ok();
            assert_eq!(got, want, "Match({pattern:?}, {name:?})");
        }
    }

    #[test]
    fn bad_pattern_error_names_the_pattern() {
        let err = matches("src/[ab", "src/a").unwrap_err();
        assert!(err.contains("\"src/[ab\""), "{err}");
        assert!(err.contains("syntax error in pattern"), "{err}");
    }

    #[test]
    fn star_and_question_mark_never_cross_a_slash() {
        assert_eq!(matches("src/*.txt", "src/a.txt"), Ok(true));
        assert_eq!(matches("src/*.txt", "src/sub/b.txt"), Ok(false));
        assert_eq!(matches("*", "dir/file"), Ok(false));
        assert_eq!(matches("*/*", "dir/file"), Ok(true));
        assert_eq!(matches("a?c", "a/c"), Ok(false));
    }

    #[test]
    fn double_star_is_just_two_stars_not_any_depth() {
        // Unlike .dockerignore (and gitignore), COPY has no `**`.
        assert_eq!(matches("**/*.txt", "a/b.txt"), Ok(true));
        assert_eq!(matches("**/*.txt", "b.txt"), Ok(false));
        assert_eq!(matches("**/*.txt", "a/b/c.txt"), Ok(false));
        assert_eq!(matches("src/**", "src/a/b"), Ok(false));
    }

    #[test]
    fn classes_negate_with_caret_not_bang() {
        assert_eq!(matches("conf/[ab]?.ini", "conf/a1.ini"), Ok(true));
        assert_eq!(matches("conf/[ab]?.ini", "conf/c1.ini"), Ok(false));
        assert_eq!(matches("[^a]x", "bx"), Ok(true));
        assert_eq!(matches("[^a]x", "ax"), Ok(false));
        // `!` is an ordinary member, as in Go (shells differ).
        assert_eq!(matches("[!a]x", "!x"), Ok(true));
        assert_eq!(matches("[!a]x", "bx"), Ok(false));
    }

    #[test]
    fn a_class_can_match_a_slash() {
        // Go's classes exclude nothing, not even the separator.
        assert_eq!(matches("a[/]b", "a/b"), Ok(true));
        assert_eq!(matches("a[^x]b", "a/b"), Ok(true));
    }

    #[test]
    fn match_is_case_sensitive_and_whole_name() {
        assert_eq!(matches("*.TXT", "a.txt"), Ok(false));
        assert_eq!(matches("a", "ab"), Ok(false));
        assert_eq!(matches("b", "ab"), Ok(false));
    }

    #[test]
    fn like_go_a_bad_chunk_past_a_failing_one_is_not_reported() {
        assert_eq!(matches("x*[", "abc"), Ok(false));
        assert!(matches("x*[", "xa").is_err());
        assert!(validate("x*[").is_err());
        assert!(validate("a\\").is_err());
        assert!(validate("[]").is_err());
        assert!(validate("src/*.txt").is_ok());
        assert!(validate("").is_ok());
    }

    #[test]
    fn has_wildcards_follows_the_classic_builder() {
        assert!(has_wildcards("*.txt"));
        assert!(has_wildcards("a?c"));
        assert!(has_wildcards("conf/[ab].ini"));
        assert!(!has_wildcards("src/main.rs"));
        assert!(!has_wildcards(""));
        // A backslash hides the next character and is not a wildcard itself.
        assert!(!has_wildcards("a\\*b"));
        assert!(!has_wildcards("a\\b"));
        assert!(has_wildcards("a\\b*"));
        assert!(!has_wildcards("trailing\\"));
    }

    fn tree(paths: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for p in paths {
            let full = dir.path().join(p);
            if let Some(d) = p.strip_suffix('/') {
                std::fs::create_dir_all(dir.path().join(d)).unwrap();
            } else {
                std::fs::create_dir_all(full.parent().unwrap()).unwrap();
                std::fs::write(full, p).unwrap();
            }
        }
        dir
    }

    fn no_skip(_: &str) -> bool {
        false
    }

    #[test]
    fn expand_finds_matches_one_level_down() {
        let dir = tree(&[
            "src/a.txt",
            "src/b.txt",
            "src/c.rs",
            "src/sub/d.txt",
            "e.txt",
        ]);
        let got = expand(dir.path(), "src/*.txt", &no_skip).unwrap();
        assert_eq!(got, ["src/a.txt", "src/b.txt"]);
    }

    #[test]
    fn expand_classes_and_question_marks() {
        let dir = tree(&[
            "conf/a1.ini",
            "conf/b2.ini",
            "conf/c3.ini",
            "conf/a10.ini",
            "conf/ab.txt",
        ]);
        let got = expand(dir.path(), "conf/[ab]?.ini", &no_skip).unwrap();
        assert_eq!(got, ["conf/a1.ini", "conf/b2.ini"]);
    }

    #[test]
    fn expand_matches_directories_too() {
        let dir = tree(&["app1/x", "app2/y", "apple", "other/app3/z"]);
        let got = expand(dir.path(), "app*", &no_skip).unwrap();
        assert_eq!(got, ["app1", "app2", "apple"]);
        let got = expand(dir.path(), "*/app*", &no_skip).unwrap();
        assert_eq!(got, ["other/app3"]);
    }

    #[test]
    fn expand_orders_as_go_walkdir_visits() {
        // Depth first with each directory's entries sorted: "a/x" comes before "a.txt" although
        // a plain string sort would put "a.txt" ('.' < '/') first.
        let dir = tree(&["a/x", "a.txt", "b"]);
        let got = expand(dir.path(), "*", &no_skip).unwrap();
        assert_eq!(got, ["a", "a.txt", "b"]);
        let got = expand(dir.path(), "a*", &no_skip).unwrap();
        assert_eq!(got, ["a", "a.txt"]);
        let dir = tree(&["a/x", "a.b/x"]);
        // Here a plain sort would give "a.b/x" first.
        let got = expand(dir.path(), "a*/x", &no_skip).unwrap();
        assert_eq!(got, ["a/x", "a.b/x"]);
    }

    #[test]
    fn expand_leaves_out_what_skip_refuses_but_walks_below_it() {
        let dir = tree(&["logs/a.log", "logs/keep/b.log", "c.log"]);
        let skip = |p: &str| p == "c.log" || p == "logs";
        let got = expand(dir.path(), "*", &skip).unwrap();
        assert!(got.is_empty(), "{got:?}");
        let got = expand(dir.path(), "logs/*", &skip).unwrap();
        assert_eq!(got, ["logs/a.log", "logs/keep"]);
    }

    #[test]
    fn expand_drops_a_leading_slash_and_dot_slash() {
        let dir = tree(&["src/a.txt"]);
        assert_eq!(
            expand(dir.path(), "/src/*.txt", &no_skip).unwrap(),
            ["src/a.txt"]
        );
        assert_eq!(
            expand(dir.path(), "./src/*.txt", &no_skip).unwrap(),
            ["src/a.txt"]
        );
    }

    #[test]
    fn expand_does_not_follow_symlinks() {
        let dir = tree(&["real/a.txt"]);
        std::os::unix::fs::symlink("real", dir.path().join("link")).unwrap();
        let got = expand(dir.path(), "*/a.txt", &no_skip).unwrap();
        assert_eq!(got, ["real/a.txt"]);
        // The link itself is a candidate.
        let got = expand(dir.path(), "l*", &no_skip).unwrap();
        assert_eq!(got, ["link"]);
    }

    #[test]
    fn expand_reads_only_as_deep_as_the_pattern_reaches() {
        let dir = tree(&["a/b/c/d.txt", "a/e.txt"]);
        // An unreadable directory deeper than the pattern reaches is never opened.
        let deep = dir.path().join("a/b");
        std::fs::set_permissions(&deep, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        let got = expand(dir.path(), "a/*.txt", &no_skip);
        std::fs::set_permissions(&deep, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        assert_eq!(got.unwrap(), ["a/e.txt"]);
        let got = expand(dir.path(), "*/*/*/*.txt", &no_skip).unwrap();
        assert_eq!(got, ["a/b/c/d.txt"]);
    }

    #[test]
    fn expand_with_a_class_matching_slash_reaches_deeper() {
        let dir = tree(&["a/b"]);
        let got = expand(dir.path(), "a[/]b", &no_skip).unwrap();
        assert_eq!(got, ["a/b"]);
    }

    #[test]
    fn expand_refuses_a_malformed_pattern() {
        let dir = tree(&["a"]);
        let err = expand(dir.path(), "x*[", &no_skip).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("x*["), "{err}");
    }

    #[test]
    fn expand_of_a_missing_root_is_an_error_naming_it() {
        let dir = tree(&[]);
        let missing = dir.path().join("nope");
        let err = expand(&missing, "*", &no_skip).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn expand_with_nothing_matching_is_empty() {
        let dir = tree(&["a.txt"]);
        assert!(expand(dir.path(), "*.rs", &no_skip).unwrap().is_empty());
    }
}
