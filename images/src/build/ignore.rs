//! `.dockerignore`: which paths of the build context are left out, by Docker's exact rules.
//!
//! Reading the file is the CLI's `ignorefile.ReadAll`; matching is moby's `patternmatcher` as
//! the context walkers (the classic CLI's `TarWithOptions`, BuildKit's fsutil) apply it:
//!
//! - A UTF-8 BOM is dropped. A line whose *first column* is `#` is a comment (` #x` is a
//!   pattern). Lines are trimmed; blank ones are skipped.
//! - A leading `!` makes an exception; the pattern is cleaned like Go's `filepath.Clean` (so
//!   `./a/`, `a//b/..` are `a`) and a leading `/` is dropped: every pattern is anchored at the
//!   context root, `/foo` and `foo` are the same and neither matches `src/foo`.
//! - `*` matches any run of characters but `/`, `?` one character but `/`, `[...]` a class
//!   (negated by `^`), `\` escapes; `**` matches any number of directories, zero included.
//! - A pattern matching a directory matches everything below it. Patterns apply in order and
//!   the last one that matches a path (or one of its parent directories) decides, so a later
//!   `!` line can take a file back in even from inside an excluded directory.
//!
//! Where this differs from `.gitignore` (and from the crates that implement it): `*.go`
//! matches only at the root (write `**/*.go` for any depth); `dir/` also matches a *file*
//! named `dir`; a trailing `\ ` does not keep a space (the line is trimmed, then the lone `\`
//! is a bad pattern); and an exception can re-include below an excluded directory.
//!
//! The matcher reproduces patternmatcher's regexp translation, quirks included: a pattern
//! that starts with `**` and has no other wildcard is a plain suffix test (`**.txt` matches
//! `a/b.txt`, `**foo` matches `barfoo`), and a trailing `/**` does not match the directory
//! itself (`abc/**` matches `abc/d`, not `abc`). Known deviations, all in patterns no one
//! writes: an escaped letter or digit (`\d`) is that character here, where Go's regexp reads
//! it as a class, anchor or error; `*`, `?` inside `[...]` are members here, where Docker's
//! translation garbles them; and a class must be well-formed by `filepath.Match`'s grammar
//! everywhere in the pattern.

use super::glob;

/// Parsed `.dockerignore`: the rules that decide which context paths a build leaves out.
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
}

/// One line of the file, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    /// A `!` line: a match takes the path back in.
    exception: bool,
    /// The cleaned pattern, without the `!` (patternmatcher's `Pattern.String()`).
    text: String,
    matcher: Matcher,
}

/// How a pattern is tested: patternmatcher's four match types.
#[derive(Debug, Clone)]
enum Matcher {
    /// No wildcard at all: the path must equal the pattern.
    Exact,
    /// Literal text then a trailing `**`: the path must start with the text.
    Prefix(String),
    /// A leading `**` then literal text: the path must end with it (or be it without the `/`).
    Suffix(String),
    /// Anything else: what Docker compiles to a regular expression.
    Tokens(Vec<Token>),
}

/// One piece of a compiled pattern, named for the regexp patternmatcher emits for it.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    /// A literal character.
    Char(char),
    /// `?`: `[^/]`.
    One,
    /// `*`: `[^/]*`.
    Star,
    /// `**` (eating a following `/`) before more pattern: `(.*/)?`.
    Dirs,
    /// `**` at the end: `.*`.
    Rest,
    /// `[...]`: a class, by `filepath.Match`'s grammar.
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
    /// `^` outside a class: the regexp's start-of-text assertion, which Docker leaves unescaped.
    Start,
}

impl IgnoreRules {
    /// Parses the file's text as the Docker CLI reads a `.dockerignore`.
    ///
    /// A bad pattern (an unclosed `[`, a trailing `\`, a class range running backwards, a lone
    /// `!`) is an error naming the line and the pattern: Docker fails the build on it too.
    pub fn parse(text: &str) -> Result<IgnoreRules, String> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let Some(raw) = read_line(line) else {
                continue;
            };
            let line_no = index + 1;
            let pattern = Pattern::new(&raw)
                .map_err(|e| format!(".dockerignore line {line_no}: pattern {raw:?}: {e}"))?;
            patterns.push(pattern);
        }
        Ok(IgnoreRules { patterns })
    }

    /// No rules at all, so the caller can skip matching (and descend everywhere).
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any rule is a `!` exception, i.e. whether an excluded directory may still hold
    /// something that is sent.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exception)
    }

    /// Whether `rel` (relative to the context root, `/`-separated, e.g. "src/a.txt") is left
    /// out of the context.
    ///
    /// Parent directories count: a file under an excluded directory is excluded unless an
    /// exception takes it back in. The answer is the one Docker's walkers reach visiting
    /// `rel`'s parents first (patternmatcher's `MatchesUsingParentResults`), so it does not
    /// depend on the order callers ask in. The root itself (`""` or `.`) is never excluded.
    pub fn excludes(&self, rel: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let rel = clean_rel(rel);
        if rel.is_empty() {
            return false;
        }
        // parent[i]: pattern i matched a parent directory of the path being looked at.
        let mut parent = vec![false; self.patterns.len()];
        let mut end = 0;
        loop {
            end = rel[end..].find('/').map_or(rel.len(), |i| end + i);
            let path = &rel[..end];
            let mut excluded = false;
            for (i, pattern) in self.patterns.iter().enumerate() {
                let mut matched = parent[i];
                if !matched {
                    // As Docker, skip a pattern that cannot change the answer: an exclusion
                    // while already excluded, an exception while not.
                    if pattern.exception != excluded {
                        continue;
                    }
                    matched = pattern.matches(path);
                }
                parent[i] = matched;
                if matched {
                    excluded = !pattern.exception;
                }
            }
            if end == rel.len() {
                return excluded;
            }
            end += 1;
        }
    }

    /// Whether a walker must still descend into excluded directory `rel` because an exception
    /// may take something below it back in; if false, the whole directory can be skipped.
    ///
    /// BuildKit's rule: with no exceptions, never; if any exception holds a wildcard (beyond a
    /// trailing `/*` or `/**`), always, as it could match anywhere; otherwise when an
    /// exception's path lies below (or at) `rel`. The classic CLI used only the last test, so
    /// it never re-included through a wildcard exception such as `!**/*.md`; BuildKit (today's
    /// `docker build`) does, and so does this.
    pub fn may_include_below(&self, rel: &str) -> bool {
        let rel = clean_rel(rel);
        let dir_slash = format!("{rel}/");
        let mut exceptions = self.patterns.iter().filter(|p| p.exception).peekable();
        if exceptions.peek().is_none() {
            return false;
        }
        let stems: Vec<&str> = exceptions.map(|p| without_trailing_glob(&p.text)).collect();
        if stems
            .iter()
            .any(|s| s.contains(['*', '[', ']', '?', '^', '\\']))
        {
            return true;
        }
        rel.is_empty()
            || stems
                .iter()
                .any(|s| format!("{s}/").starts_with(&dir_slash))
    }
}

/// One line as `ignorefile.ReadAll` turns it into a pattern, or None for a comment or blank.
fn read_line(line: &str) -> Option<String> {
    if line.starts_with('#') {
        return None;
    }
    let mut pattern = line.trim();
    if pattern.is_empty() {
        return None;
    }
    let invert = pattern.starts_with('!');
    if invert {
        pattern = pattern[1..].trim();
    }
    let mut out = String::new();
    if !pattern.is_empty() {
        let cleaned = go_clean(pattern);
        out = match cleaned.strip_prefix('/') {
            Some(rest) if !rest.is_empty() => rest.to_owned(),
            _ => cleaned,
        };
    }
    if invert {
        out.insert(0, '!');
    }
    Some(out)
}

impl Pattern {
    /// patternmatcher's `New` for one (already read) pattern.
    fn new(raw: &str) -> Result<Pattern, String> {
        let mut p = go_clean(raw.trim());
        let exception = p.starts_with('!');
        if exception {
            if p.len() == 1 {
                return Err("illegal exclusion pattern: \"!\"".to_owned());
            }
            p.remove(0);
        }
        // Docker checks the syntax with filepath.Match(p, "."), then compiles (and fails on
        // what the regexp refuses); the compile below refuses both.
        glob::matches(&p, ".")?;
        let matcher = compile(&p).map_err(|e| format!("bad pattern {p:?}: {e}"))?;
        Ok(Pattern {
            exception,
            text: p,
            matcher,
        })
    }

    /// Whether this pattern alone matches `path` (no parent directories).
    fn matches(&self, path: &str) -> bool {
        match &self.matcher {
            Matcher::Exact => path == self.text,
            Matcher::Prefix(prefix) => path.starts_with(prefix.as_str()),
            Matcher::Suffix(suffix) => {
                path.ends_with(suffix.as_str())
                    || suffix.strip_prefix('/').is_some_and(|bare| path == bare)
            }
            Matcher::Tokens(tokens) => match_tokens(tokens, path),
        }
    }
}

/// patternmatcher's `compile`: decides the match type exactly as Docker does and, for the
/// regexp type, turns the pattern into tokens.
fn compile(pattern: &str) -> Result<Matcher, String> {
    #[derive(PartialEq)]
    enum Kind {
        Exact,
        Prefix,
        Suffix,
        Regexp,
    }
    let chars: Vec<char> = pattern.chars().collect();
    let mut kind = Kind::Exact;
    let mut tokens = Vec::new();
    let mut pos = 0;
    let mut first = true;
    while pos < chars.len() {
        let ch = chars[pos];
        pos += 1;
        match ch {
            '*' if chars.get(pos) == Some(&'*') => {
                pos += 1;
                // `**/` is `**`: eat the slash.
                if chars.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == chars.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        tokens.push(Token::Rest);
                        kind = Kind::Regexp;
                    }
                } else {
                    tokens.push(Token::Dirs);
                    kind = Kind::Regexp;
                }
                if first {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                tokens.push(Token::Star);
                kind = Kind::Regexp;
            }
            '?' => {
                tokens.push(Token::One);
                kind = Kind::Regexp;
            }
            '\\' => {
                if let Some(&next) = chars.get(pos) {
                    pos += 1;
                    tokens.push(Token::Char(next));
                    kind = Kind::Regexp;
                } else {
                    tokens.push(Token::Char('\\'));
                }
            }
            '[' => {
                let (class, used) = parse_class(&chars[pos..])?;
                pos += used;
                tokens.push(class);
                kind = Kind::Regexp;
            }
            ']' => {
                tokens.push(Token::Char(']'));
                kind = Kind::Regexp;
            }
            '^' => tokens.push(Token::Start),
            c => tokens.push(Token::Char(c)),
        }
        first = false;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact,
        Kind::Prefix => Matcher::Prefix(pattern[..pattern.len() - 2].to_owned()),
        Kind::Suffix => Matcher::Suffix(pattern[2..].to_owned()),
        Kind::Regexp => Matcher::Tokens(tokens),
    })
}

/// A class after its `[`: the token and how many characters it used (the `]` included).
fn parse_class(chars: &[char]) -> Result<(Token, usize), String> {
    let unclosed = || "unclosed or empty character class".to_owned();
    let mut pos = 0;
    let negated = chars.first() == Some(&'^');
    if negated {
        pos += 1;
    }
    let mut ranges = Vec::new();
    loop {
        match chars.get(pos) {
            Some(']') if !ranges.is_empty() => {
                return Ok((Token::Class { negated, ranges }, pos + 1));
            }
            None | Some(']') | Some('-') => return Err(unclosed()),
            _ => {}
        }
        let lo = class_char(chars, &mut pos).ok_or_else(unclosed)?;
        let mut hi = lo;
        if chars.get(pos) == Some(&'-') {
            pos += 1;
            hi = class_char(chars, &mut pos).ok_or_else(unclosed)?;
        }
        if lo > hi {
            return Err(format!("character class range {lo}-{hi} runs backwards"));
        }
        ranges.push((lo, hi));
    }
}

/// One (possibly `\`-escaped) member of a class at `pos`, advancing past it. None where
/// `filepath.Match`'s `getEsc` errs.
fn class_char(chars: &[char], pos: &mut usize) -> Option<char> {
    let mut c = *chars.get(*pos)?;
    if c == '-' || c == ']' {
        return None;
    }
    if c == '\\' {
        *pos += 1;
        c = *chars.get(*pos)?;
    }
    *pos += 1;
    // Go also errs when the class ends right after a member.
    chars.get(*pos)?;
    Some(c)
}

/// Whether `tokens` match all of `path`, as the regexp Docker builds from them would: one pass
/// per token over the set of positions reached so far (no backtracking blow-up).
fn match_tokens(tokens: &[Token], path: &str) -> bool {
    let chars: Vec<char> = path.chars().collect();
    let n = chars.len();
    let mut reached = vec![false; n + 1];
    reached[0] = true;
    let mut next = vec![false; n + 1];
    for token in tokens {
        next.fill(false);
        for pos in (0..=n).filter(|&p| reached[p]) {
            match token {
                Token::Char(c) => {
                    if chars.get(pos) == Some(c) {
                        next[pos + 1] = true;
                    }
                }
                Token::One => {
                    if chars.get(pos).is_some_and(|&c| c != '/') {
                        next[pos + 1] = true;
                    }
                }
                Token::Class { negated, ranges } => {
                    if let Some(&c) = chars.get(pos) {
                        let inside = ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi);
                        if inside != *negated {
                            next[pos + 1] = true;
                        }
                    }
                }
                Token::Star => {
                    next[pos] = true;
                    for (end, &c) in chars.iter().enumerate().skip(pos) {
                        if c == '/' {
                            break;
                        }
                        next[end + 1] = true;
                    }
                }
                // `(.*/)?`: nothing, or anything up to and including a `/` (Go's `.` does not
                // match a newline).
                Token::Dirs => {
                    next[pos] = true;
                    for (end, &c) in chars.iter().enumerate().skip(pos) {
                        match c {
                            '\n' => break,
                            '/' => next[end + 1] = true,
                            _ => {}
                        }
                    }
                }
                Token::Rest => {
                    next[pos] = true;
                    for (end, &c) in chars.iter().enumerate().skip(pos) {
                        if c == '\n' {
                            break;
                        }
                        next[end + 1] = true;
                    }
                }
                Token::Start => {
                    if pos == 0 {
                        next[0] = true;
                    }
                }
            }
        }
        std::mem::swap(&mut reached, &mut next);
        if !reached.contains(&true) {
            return false;
        }
    }
    reached[n]
}

/// fsutil's `patternWithoutTrailingGlob`: an exception's text without a trailing `/**`, then
/// without a trailing `/*`.
fn without_trailing_glob(text: &str) -> &str {
    let text = text.strip_suffix("/**").unwrap_or(text);
    text.strip_suffix("/*").unwrap_or(text)
}

/// A path the caller hands in, made like the walkers' (clean, relative, no trailing `/`); the
/// root is "".
fn clean_rel(rel: &str) -> String {
    let cleaned = go_clean(rel);
    let cleaned = cleaned.trim_start_matches('/');
    if cleaned == "." {
        String::new()
    } else {
        cleaned.to_owned()
    }
}

/// Go's `filepath.Clean` (Unix): the shortest path naming the same file by lexical processing
/// alone, as Docker cleans every pattern.
fn go_clean(path: &str) -> String {
    if path.is_empty() {
        return ".".to_owned();
    }
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|&p| p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".to_owned(),
        (false, false) => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(lines: &[&str]) -> IgnoreRules {
        IgnoreRules::parse(&lines.join("\n")).unwrap()
    }

    /// patternmatcher's own table (`TestMatches`): (pattern, path, matches the path itself,
    /// matches it or a parent). A path ending in `/` is left as is, as the Go test does.
    const PATTERNMATCHER_TESTS: &[(&str, &str, bool, bool)] = &[
        ("**", "file", true, true),
        ("**", "file/", true, true),
        ("**/", "file", true, true),
        ("**/", "file/", true, true),
        ("**", "/", true, true),
        ("**/", "/", true, true),
        ("**", "dir/file", true, true),
        ("**/", "dir/file", true, true),
        ("**", "dir/file/", true, true),
        ("**/", "dir/file/", true, true),
        ("**/**", "dir/file", true, true),
        ("**/**", "dir/file/", true, true),
        ("dir/**", "dir/file", true, true),
        ("dir/**", "dir/file/", true, true),
        ("dir/**", "dir/dir2/file", true, true),
        ("dir/**", "dir/dir2/file/", true, true),
        ("**/dir", "dir", true, true),
        ("**/dir", "dir/file", false, true),
        ("**/dir2/*", "dir/dir2/file", true, true),
        ("**/dir2/*", "dir/dir2/file/", false, true),
        ("**/dir2/**", "dir/dir2/dir3/file", true, true),
        ("**/dir2/**", "dir/dir2/dir3/file/", true, true),
        ("**file", "file", true, true),
        ("**file", "dir/file", true, true),
        ("**/file", "dir/file", true, true),
        ("**file", "dir/dir/file", true, true),
        ("**/file", "dir/dir/file", true, true),
        ("**/file*", "dir/dir/file", true, true),
        ("**/file*", "dir/dir/file.txt", true, true),
        ("**/file*txt", "dir/dir/file.txt", true, true),
        ("**/file*.txt", "dir/dir/file.txt", true, true),
        ("**/file*.txt*", "dir/dir/file.txt", true, true),
        ("**/**/*.txt", "dir/dir/file.txt", true, true),
        ("**/**/*.txt2", "dir/dir/file.txt", false, false),
        ("**/*.txt", "file.txt", true, true),
        ("**/**/*.txt", "file.txt", true, true),
        ("a**/*.txt", "a/file.txt", true, true),
        ("a**/*.txt", "a/dir/file.txt", true, true),
        ("a**/*.txt", "a/dir/dir/file.txt", true, true),
        ("a/*.txt", "a/dir/file.txt", false, false),
        ("a/*.txt", "a/file.txt", true, true),
        ("a/*.txt**", "a/file.txt", true, true),
        ("a[b-d]e", "ae", false, false),
        ("a[b-d]e", "ace", true, true),
        ("a[b-d]e", "aae", false, false),
        ("a[^b-d]e", "aze", true, true),
        (".*", ".foo", true, true),
        (".*", "foo", false, false),
        ("abc.def", "abcdef", false, false),
        ("abc.def", "abc.def", true, true),
        ("abc.def", "abcZdef", false, false),
        ("abc?def", "abcZdef", true, true),
        ("abc?def", "abcdef", false, false),
        ("**/foo/bar", "foo/bar", true, true),
        ("**/foo/bar", "dir/foo/bar", true, true),
        ("**/foo/bar", "dir/dir2/foo/bar", true, true),
        ("abc/**", "abc", false, false),
        ("abc/**", "abc/def", true, true),
        ("abc/**", "abc/def/ghi", true, true),
        ("**/.foo", ".foo", true, true),
        ("**/.foo", "bar.foo", false, false),
        ("a(b)c/def", "a(b)c/def", true, true),
        ("a(b)c/def", "a(b)c/xyz", false, false),
        ("a.|)$(}+{bc", "a.|)$(}+{bc", true, true),
        (
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
            true,
        ),
        (
            "dist/*.whl",
            "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
            true,
            true,
        ),
        ("a\\\\", "a\\", true, true),
        ("a\\*b", "a*b", true, true),
    ];

    /// patternmatcher's `MatchesOrParentMatches` on a raw path: the pattern against the path,
    /// then against each parent (`filepath.Dir` of the path, split).
    fn or_parent(pattern: &Pattern, path: &str) -> bool {
        if pattern.matches(path) {
            return true;
        }
        let parent = match path.rfind('/') {
            Some(0) => "/",
            Some(i) => &path[..i],
            None => ".",
        };
        if parent == "." {
            return false;
        }
        let dirs: Vec<&str> = parent.split('/').collect();
        (1..=dirs.len()).any(|k| pattern.matches(&dirs[..k].join("/")))
    }

    #[test]
    fn patternmatcher_match_table() {
        for &(pattern, path, exact, with_parents) in PATTERNMATCHER_TESTS {
            let p = Pattern::new(pattern).unwrap();
            assert_eq!(p.matches(path), exact, "pattern {pattern:?} path {path:?}");
            assert_eq!(
                or_parent(&p, path),
                with_parents,
                "pattern {pattern:?} path {path:?} (parents)"
            );
        }
    }

    #[test]
    fn patternmatcher_table_through_excludes() {
        // The same table through the public API, for the paths a walker would hand in.
        for &(pattern, path, _, with_parents) in PATTERNMATCHER_TESTS {
            if path.ends_with('/') {
                continue;
            }
            let r = IgnoreRules::parse(pattern).unwrap();
            assert_eq!(
                r.excludes(path),
                with_parents,
                "pattern {pattern:?} path {path:?}"
            );
        }
    }

    #[test]
    fn match_types_are_docker_s() {
        // patternmatcher's TestCompile: which of exact/prefix/suffix/regexp each pattern is.
        let kind = |p: &str| match Pattern::new(p).unwrap().matcher {
            Matcher::Exact => "exact",
            Matcher::Prefix(_) => "prefix",
            Matcher::Suffix(_) => "suffix",
            Matcher::Tokens(_) => "regexp",
        };
        for (p, want) in [
            ("*", "regexp"),
            ("file*", "regexp"),
            ("*file", "regexp"),
            ("a*/b", "regexp"),
            ("**", "suffix"),
            ("**/**", "regexp"),
            ("dir/**", "prefix"),
            ("**/dir", "suffix"),
            ("**/dir2/*", "regexp"),
            ("**/dir2/**", "regexp"),
            ("**file", "suffix"),
            ("**/file*txt", "regexp"),
            ("**/**/*.txt", "regexp"),
            ("a[b-d]e", "regexp"),
            (".*", "regexp"),
            ("abc.def", "exact"),
            ("abc?def", "regexp"),
            ("**/foo/bar", "suffix"),
            ("a(b)c/def", "exact"),
            ("a.|)$(}+{bc", "exact"),
        ] {
            assert_eq!(kind(p), want, "{p:?}");
        }
    }

    #[test]
    fn multi_pattern_tables() {
        // patternmatcher's multiPatternTests.
        let cases: &[(&[&str], &str, bool)] = &[
            (&["**", "!util/docker/web"], "util/docker/web/foo", false),
            (
                &["**", "!util/docker/web", "util/docker/web/foo"],
                "util/docker/web/foo",
                true,
            ),
            (
                &[
                    "**",
                    "!dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                ],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
            (
                &["**", "!dist/*.whl"],
                "dist/proxy.py-2.4.0rc3.dev36+g08acad9-py3-none-any.whl",
                false,
            ),
        ];
        for &(lines, path, want) in cases {
            assert_eq!(rules(lines).excludes(path), want, "{lines:?} {path:?}");
        }
    }

    #[test]
    fn simple_matches_from_patternmatcher_tests() {
        assert!(rules(&["*"]).excludes("fileutils.go"));
        assert!(rules(&["*.go"]).excludes("fileutils.go"));
        // An exception before the pattern it would undo has no effect.
        assert!(rules(&["!fileutils.go", "*.go"]).excludes("fileutils.go"));
        assert!(!rules(&["*.go", "!fileutils.go"]).excludes("fileutils.go"));
        assert!(!rules(&["*.go"]).excludes("."));
        assert!(!rules(&["*.go"]).excludes(""));
        assert!(!IgnoreRules::default().excludes("any/path/there"));
    }

    #[test]
    fn folder_pattern_with_exception_re_includes_the_file() {
        for folder in ["docs", "docs/", "docs/*"] {
            let r = rules(&[folder, "!docs/README.md"]);
            assert!(!r.excludes("docs/README.md"), "{folder}");
            assert!(r.excludes("docs/other.md"), "{folder}");
        }
    }

    #[test]
    fn go_filepath_match_table_through_the_matcher() {
        // patternmatcher's TestMatch: Go's own Match table through Docker's matcher.
        // (pattern, path, excluded); the bad patterns are in bad_patterns_are_errors.
        for (pattern, path, want) in [
            ("abc", "abc", true),
            ("*", "abc", true),
            ("*c", "abc", true),
            ("a*", "a", true),
            ("a*", "abc", true),
            ("a*", "ab/c", true), // through the parent "ab"
            ("a*/b", "abc/b", true),
            ("a*/b", "a/c/b", false),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", true),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", false),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", false),
            ("a*b?c*x", "abxbbxdbxebxczzx", true),
            ("a*b?c*x", "abxbbxdbxebxczzy", false),
            ("ab[c]", "abc", true),
            ("ab[b-d]", "abc", true),
            ("ab[e-g]", "abc", false),
            ("ab[^c]", "abc", false),
            ("ab[^b-d]", "abc", false),
            ("ab[^e-g]", "abc", true),
            ("a\\*b", "a*b", true),
            ("a\\*b", "ab", false),
            ("a?b", "a☺b", true),
            ("a[^a]b", "a☺b", true),
            ("a???b", "a☺b", false),
            ("a[^a][^a][^a]b", "a☺b", false),
            ("[a-ζ]*", "α", true),
            ("*[a-ζ]", "A", false),
            ("a?b", "a/b", false),
            ("a*b", "a/b", false),
            ("[\\]a]", "]", true),
            ("[\\-]", "-", true),
            ("[x\\-]", "x", true),
            ("[x\\-]", "-", true),
            ("[x\\-]", "z", false),
            ("[\\-x]", "x", true),
            ("[\\-x]", "-", true),
            ("[\\-x]", "a", false),
            ("*x", "xxx", true),
        ] {
            assert_eq!(
                rules(&[pattern]).excludes(path),
                want,
                "{pattern:?} {path:?}"
            );
        }
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        for bad in [
            "[]a]", "[-]", "[x-]", "[-x]", "\\", "[a-b-c]", "[", "[^", "[^bc", "a[",
        ] {
            let err = IgnoreRules::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
        let err = IgnoreRules::parse("ok\n\nsrc/[ab").unwrap_err();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("src/[ab"), "{err}");
    }

    #[test]
    fn lone_bang_is_an_error() {
        for text in ["!", "! ", "!/"] {
            let err = IgnoreRules::parse(text).unwrap_err();
            assert!(err.contains("illegal exclusion pattern"), "{text:?}: {err}");
        }
    }

    #[test]
    fn backwards_class_range_is_an_error() {
        // Go's Match accepts it; Docker's regexp then refuses it (moby issue 52203).
        let err = IgnoreRules::parse("[Local-Only]/").unwrap_err();
        assert!(err.contains("[Local-Only]"), "{err}");
        assert!(IgnoreRules::parse("[a-a]").is_ok());
    }

    #[test]
    fn a_bad_class_after_a_failing_chunk_is_still_an_error() {
        // filepath.Match(p, ".") lets `x*[` through; Docker's regexp compile then fails.
        assert!(IgnoreRules::parse("x*[").is_err());
    }

    #[test]
    fn read_all_normalises_lines_like_the_cli() {
        // ignorefile's TestReadAll, minus the lone "!" lines (errors here, as in New).
        let text =
            "test1\n/test2\n/a/file/here\n\nlastfile\n# this is a comment\n! /inverted/abs/path\n";
        let got: Vec<String> = text.lines().filter_map(read_line).collect();
        assert_eq!(
            got,
            [
                "test1",
                "test2",
                "a/file/here",
                "lastfile",
                "!inverted/abs/path"
            ]
        );
        assert_eq!(read_line("!"), Some("!".to_owned()));
        assert_eq!(read_line("! "), Some("!".to_owned()));
    }

    #[test]
    fn comments_only_in_the_first_column() {
        let r = rules(&["# secret", " #notacomment"]);
        assert!(!r.excludes("# secret"));
        assert!(r.excludes("#notacomment"));
        assert!(!r.excludes("secret"));
    }

    #[test]
    fn whitespace_is_trimmed_around_pattern_and_bang() {
        let r = rules(&["  docs  ", "\t!  docs/README.md \t"]);
        assert!(r.excludes("docs/a"));
        assert!(!r.excludes("docs/README.md"));
        assert!(r.has_exceptions());
    }

    #[test]
    fn bom_and_crlf_are_handled() {
        let r = IgnoreRules::parse("\u{feff}*.log\r\n!keep.log\r\n").unwrap();
        assert!(r.excludes("a.log"));
        assert!(!r.excludes("keep.log"));
    }

    #[test]
    fn empty_and_comment_only_files_have_no_rules() {
        assert!(IgnoreRules::parse("").unwrap().is_empty());
        assert!(IgnoreRules::parse("\n  \n# x\n").unwrap().is_empty());
        assert!(!IgnoreRules::parse("a").unwrap().is_empty());
        assert!(IgnoreRules::default().is_empty());
    }

    #[test]
    fn patterns_are_cleaned_and_anchored_at_the_root() {
        for p in [
            "/foo/bar",
            "foo/bar",
            "./foo/bar",
            "foo/bar/",
            "foo//bar",
            "foo/x/../bar",
        ] {
            let r = rules(&[p]);
            assert!(r.excludes("foo/bar"), "{p}");
            assert!(r.excludes("foo/bar/baz"), "{p}");
            assert!(!r.excludes("x/foo/bar"), "{p}");
            assert!(!r.excludes("foo"), "{p}");
        }
    }

    #[test]
    fn a_dot_pattern_excludes_nothing() {
        let r = rules(&["."]);
        assert!(!r.excludes("a"));
        assert!(!r.excludes(""));
        let r = rules(&["/"]);
        assert!(!r.excludes("a"));
    }

    #[test]
    fn directory_pattern_excludes_everything_below() {
        let r = rules(&["node_modules"]);
        assert!(r.excludes("node_modules"));
        assert!(r.excludes("node_modules/a/b/c.js"));
        assert!(!r.excludes("node_modules_old"));
        assert!(!r.excludes("src/node_modules"));
    }

    #[test]
    fn exceptions_later_lines_win() {
        // The docs' examples.
        let r = rules(&["*.md", "!README*.md", "README-secret.md"]);
        assert!(r.excludes("CHANGES.md"));
        assert!(!r.excludes("README.md"));
        assert!(r.excludes("README-secret.md"));
        let r = rules(&["*.md", "README-secret.md", "!README*.md"]);
        assert!(!r.excludes("README-secret.md"));
        assert!(!r.excludes("README.md"));
        assert!(r.excludes("CHANGES.md"));
    }

    #[test]
    fn include_only_list_with_star_and_exceptions() {
        let r = rules(&["*", "!src", "!Cargo.toml"]);
        assert!(r.excludes("target"));
        assert!(r.excludes("target/debug/x"));
        assert!(!r.excludes("src"));
        assert!(!r.excludes("src/main.rs"));
        assert!(!r.excludes("Cargo.toml"));
    }

    #[test]
    fn exception_re_includes_deep_inside_an_excluded_directory() {
        let r = rules(&["vendor", "!vendor/keep/me.txt"]);
        assert!(r.excludes("vendor"));
        assert!(r.excludes("vendor/keep"));
        assert!(r.excludes("vendor/keep/other.txt"));
        assert!(!r.excludes("vendor/keep/me.txt"));
        let r = rules(&["vendor", "!vendor/keep"]);
        assert!(!r.excludes("vendor/keep"));
        assert!(!r.excludes("vendor/keep/anything/below"));
        assert!(r.excludes("vendor/drop"));
    }

    #[test]
    fn docs_temp_examples() {
        let r = rules(&["# comment", "*/temp*", "*/*/temp*", "temp?"]);
        assert!(r.excludes("somedir/temporary.txt"));
        assert!(r.excludes("somedir/temp"));
        assert!(r.excludes("somedir/subdir/temporary.txt"));
        assert!(r.excludes("tempa"));
        assert!(r.excludes("tempb"));
        assert!(!r.excludes("temp"));
        assert!(!r.excludes("temporary.txt"));
        assert!(!r.excludes("a/b/c/temp"));
    }

    // ---- where .dockerignore is not .gitignore ----

    #[test]
    fn unlike_gitignore_star_dot_go_matches_only_at_the_root() {
        let r = rules(&["*.go"]);
        assert!(r.excludes("main.go"));
        assert!(!r.excludes("cmd/main.go"));
        let r = rules(&["**/*.go"]);
        assert!(r.excludes("main.go"));
        assert!(r.excludes("cmd/main.go"));
        assert!(r.excludes("a/b/c/main.go"));
    }

    #[test]
    fn unlike_gitignore_a_bare_name_matches_only_at_the_root() {
        let r = rules(&["build"]);
        assert!(r.excludes("build"));
        assert!(r.excludes("build/out.o"));
        assert!(!r.excludes("src/build"));
    }

    #[test]
    fn unlike_gitignore_a_trailing_slash_also_matches_files() {
        let r = rules(&["dist/"]);
        assert!(r.excludes("dist"));
        assert!(r.excludes("dist/a.js"));
    }

    #[test]
    fn unlike_gitignore_a_leading_slash_changes_nothing() {
        let a = rules(&["/*.log"]);
        let b = rules(&["*.log"]);
        for p in ["a.log", "x/a.log"] {
            assert_eq!(a.excludes(p), b.excludes(p), "{p}");
        }
    }

    #[test]
    fn unlike_gitignore_exceptions_reach_into_excluded_directories() {
        // gitignore: "It is not possible to re-include a file if a parent directory of that
        // file is excluded." Docker can.
        let r = rules(&["logs/", "!logs/important.log"]);
        assert!(!r.excludes("logs/important.log"));
        assert!(r.may_include_below("logs"));
    }

    #[test]
    fn unlike_gitignore_escaped_trailing_space_is_a_bad_pattern() {
        // gitignore keeps the space of `foo\ `; Docker trims the line, leaving a lone `\`.
        assert!(IgnoreRules::parse("foo\\ ").is_err());
    }

    #[test]
    fn unlike_gitignore_double_star_prefix_is_a_suffix_test() {
        // Docker's suffix match: with no other wildcard, `**X` is "ends with X".
        let r = rules(&["**.txt"]);
        assert!(r.excludes("a.txt"));
        assert!(r.excludes("dir/b.txt"));
        let r = rules(&["**foo"]);
        assert!(r.excludes("barfoo"));
        assert!(r.excludes("x/barfoo"));
        // With another wildcard it is a regexp, and `**` before a name stands for directories.
        let r = rules(&["**foo*"]);
        assert!(!r.excludes("barfoo"));
        assert!(r.excludes("x/foo1"));
    }

    #[test]
    fn trailing_double_star_does_not_match_the_directory_itself() {
        let r = rules(&["abc/**"]);
        assert!(!r.excludes("abc"));
        assert!(r.excludes("abc/def"));
        let r = rules(&["ab*/**"]);
        assert!(!r.excludes("abc"));
        assert!(r.excludes("abc/def"));
        // Without the slash it is a prefix.
        let r = rules(&["abc**"]);
        assert!(r.excludes("abc"));
        assert!(r.excludes("abcdef"));
    }

    #[test]
    fn double_star_in_the_middle_means_zero_or_more_directories() {
        let r = rules(&["a/**/b"]);
        assert!(r.excludes("a/b"));
        assert!(r.excludes("a/x/b"));
        assert!(r.excludes("a/x/y/b"));
        assert!(!r.excludes("a/xb"));
        // `a**b` is `a(.*/)?b`: "ab", "ax/b", but not "axb".
        let r = rules(&["a**b"]);
        assert!(r.excludes("ab"));
        assert!(r.excludes("ax/b"));
        assert!(!r.excludes("axb"));
    }

    #[test]
    fn star_and_class_do_or_do_not_cross_slashes_like_go() {
        let r = rules(&["a*"]);
        assert!(!r.excludes("xa/b"));
        let r = rules(&["a[/]b"]);
        assert!(r.excludes("a/b"));
    }

    #[test]
    fn regexp_metacharacters_are_literal() {
        let r = rules(&["a+b.c*"]);
        assert!(r.excludes("a+b.cd"));
        assert!(!r.excludes("aab.cd"));
        assert!(!r.excludes("a+bxcd"));
        let r = rules(&["{a,b}*"]);
        assert!(r.excludes("{a,b}x"));
        assert!(!r.excludes("a"));
    }

    #[test]
    fn caret_outside_a_class_is_docker_s_regexp_anchor() {
        // Literal in an exact pattern...
        assert!(rules(&["a^b"]).excludes("a^b"));
        // ...but an unescaped start-of-text assertion once the pattern is a regexp.
        assert!(!rules(&["a^b*"]).excludes("a^bc"));
        assert!(rules(&["^ab*"]).excludes("abc"));
    }

    #[test]
    fn double_star_does_not_cross_newlines() {
        // Go's `.` does not match "\n"; `*` (a negated class) does.
        assert!(!rules(&["x/**/y*"]).excludes("x/a\nb/y"));
        assert!(rules(&["x/*/y*"]).excludes("x/a\nb/y"));
    }

    #[test]
    fn parent_results_are_carried_down_like_docker_s_walkers() {
        // `d/f` excludes d/f, and `!d` (skipped for d, which was not excluded) cannot undo
        // that below it: the walkers only test `!d` against each path itself.
        let r = rules(&["d/f", "!d"]);
        assert!(!r.excludes("d"));
        assert!(r.excludes("d/f"));
        assert!(r.excludes("d/f/g"));
    }

    #[test]
    fn excludes_accepts_unclean_paths() {
        let r = rules(&["a/b"]);
        assert!(r.excludes("./a/b"));
        assert!(r.excludes("a//b/"));
        assert!(r.excludes("/a/b/c"));
    }

    #[test]
    fn may_include_below_without_exceptions_is_false() {
        let r = rules(&["vendor", "*.log"]);
        assert!(!r.may_include_below("vendor"));
        assert!(!IgnoreRules::default().may_include_below("vendor"));
    }

    #[test]
    fn may_include_below_with_literal_exceptions_needs_one_below() {
        let r = rules(&["vendor", "!vendor/keep/me.txt", "!other"]);
        assert!(r.may_include_below("vendor"));
        assert!(r.may_include_below("vendor/keep"));
        assert!(r.may_include_below("vendor/keep/me.txt"));
        assert!(!r.may_include_below("vendor/drop"));
        assert!(!r.may_include_below("vend"));
        assert!(!r.may_include_below("vendor/kee"));
        // The root always.
        assert!(r.may_include_below(""));
    }

    #[test]
    fn may_include_below_ignores_a_trailing_glob_on_the_exception() {
        let r = rules(&["vendor", "!vendor/keep/**"]);
        assert!(r.may_include_below("vendor"));
        assert!(r.may_include_below("vendor/keep"));
        assert!(!r.may_include_below("vendor/drop"));
        let r = rules(&["vendor", "!vendor/keep/*"]);
        assert!(r.may_include_below("vendor/keep"));
        assert!(!r.may_include_below("vendor/drop"));
    }

    #[test]
    fn may_include_below_with_a_wildcard_exception_is_always_true() {
        let r = rules(&["vendor", "!**/*.md"]);
        assert!(r.may_include_below("vendor"));
        assert!(r.may_include_below("anything/at/all"));
        assert!(!r.excludes("vendor/x/README.md"));
        assert!(r.excludes("vendor/x/a.go"));
    }

    #[test]
    fn go_clean_matches_go() {
        // From Go's path/filepath clean tests.
        for (input, want) in [
            ("", "."),
            ("abc", "abc"),
            ("abc/def", "abc/def"),
            ("a/b/c", "a/b/c"),
            (".", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../../abc", "../../abc"),
            ("/abc", "/abc"),
            ("/", "/"),
            ("abc/", "abc"),
            ("abc/def/", "abc/def"),
            ("a/b/c/", "a/b/c"),
            ("./", "."),
            ("../", ".."),
            ("../../", "../.."),
            ("/abc/", "/abc"),
            ("abc//def//ghi", "abc/def/ghi"),
            ("//abc", "/abc"),
            ("///abc", "/abc"),
            ("//abc//", "/abc"),
            ("abc//", "abc"),
            ("abc/./def", "abc/def"),
            ("/./abc/def", "/abc/def"),
            ("abc/.", "abc"),
            ("abc/def/ghi/../jkl", "abc/def/jkl"),
            ("abc/def/../ghi/../jkl", "abc/jkl"),
            ("abc/def/..", "abc"),
            ("abc/def/../..", "."),
            ("/abc/def/../..", "/"),
            ("abc/def/../../..", ".."),
            ("/abc/def/../../..", "/"),
            ("abc/def/../../../ghi/jkl/../../../mno", "../../mno"),
            ("/../abc", "/abc"),
            ("abc/./../def", "def"),
            ("abc//./../def", "def"),
            ("abc/../../././../def", "../../def"),
        ] {
            assert_eq!(go_clean(input), want, "Clean({input:?})");
        }
    }
}
