//! The Dockerfile parser: text → a list of [`Instruction`]s, validated once here so the builder
//! can trust their shape. It follows BuildKit's `frontend/dockerfile/parser` and
//! `instructions` packages (which the classic builder uses too), so a Dockerfile is accepted,
//! split and rejected as under `docker build`:
//!
//! - parser directives (`# escape=`, `# syntax=`) only in the comment lines at the very top;
//! - comment lines (`#` first after blanks) dropped everywhere, also between continuation lines;
//! - a line ending in the escape character (`\`, or `` ` `` with `# escape=`` ` ``) continues on
//!   the next one; blank continuation lines are skipped;
//! - heredocs (`RUN <<EOF`, `COPY <<EOF /dst`) for RUN, COPY and ADD (and ONBUILD of them);
//! - JSON ("exec") form for the instructions that have one;
//! - the argument checks of Docker ("COPY requires at least two arguments, …").
//!
//! Nothing is expanded here: variables depend on the build's state when an instruction runs,
//! which is the builder's business (see [`super::words`]).

use serde_json::Value;

use super::words::{self, LexOptions};

/// A parsed Dockerfile.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// `# escape=` directive (default '\\'); '`' allowed.
    pub escape: char,
    /// `# syntax=` directive if present (the builder ignores it with a note).
    pub syntax: Option<String>,
    /// The instructions in file order; never empty.
    pub instructions: Vec<Instruction>,
}

/// One instruction, with its raw (unexpanded) flags and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Instruction {
    /// 1-based line where the instruction starts.
    pub line: usize,
    /// Upper-case keyword: one of [`KEYWORDS`].
    pub keyword: String,
    /// Leading `--name=value` / `--name` flags, in order, with Docker's quote and `\` removal
    /// but unexpanded: `("from", "build")`, `("link", "")` for a bare `--link`. Only the
    /// instructions that take flags have any (FROM, RUN, COPY, ADD, HEALTHCHECK); the names are
    /// checked against the ones Docker knows for the instruction, and the values of
    /// HEALTHCHECK's flags are checked too.
    pub flags: Vec<(String, String)>,
    /// The arguments after the flags.
    pub args: Args,
    /// Heredocs of this instruction, in the order of their markers.
    pub heredocs: Vec<Heredoc>,
    /// The instruction as written, continuation lines joined (escape and line break removed),
    /// comment lines dropped, heredoc bodies left out, trimmed: what Docker prints in
    /// `Step 2/5 : RUN echo a &&     echo b`.
    pub original: String,
}

/// An instruction's arguments, as written.
#[derive(Debug, Clone, PartialEq)]
pub enum Args {
    /// JSON array form, for the keywords that accept it (RUN CMD ENTRYPOINT SHELL COPY ADD
    /// VOLUME) when the rest parses as a JSON array of strings.
    Exec(Vec<String>),
    /// Everything else: the rest of the instruction after the flags, leading/trailing whitespace
    /// trimmed, unexpanded, quotes kept. HEALTHCHECK's arguments are always this form (see
    /// [`healthcheck_test`]).
    Shell(String),
}

/// A heredoc body attached to an instruction (`RUN <<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq)]
pub struct Heredoc {
    /// The terminator word, quotes removed (`<<'EOF'` → `EOF`); COPY and ADD use it as the
    /// source's file name.
    pub name: String,
    /// The lines between the marker's line and the terminator, each with its line ending, as
    /// written (tabs are not stripped here: a RUN that hands the heredoc to the shell needs them;
    /// see [`Heredoc::body`]).
    pub content: String,
    /// Whether variables in the content are expanded: false when the terminator word was quoted
    /// (`<<"EOF"`, `<<'EOF'`, `<<E"O"F`).
    pub expand: bool,
    /// `<<-EOF`: leading tabs are stripped from the content's lines and the terminator's.
    pub strip_tabs: bool,
}

impl Heredoc {
    /// The content as a COPY writes it or a RUN runs it: [`Heredoc::content`] with the leading
    /// tabs of every line removed for `<<-`.
    pub fn body(&self) -> String {
        if !self.strip_tabs {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|line| line.trim_start_matches('\t'))
            .collect()
    }
}

/// Why a Dockerfile was refused, and where.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("Dockerfile parse error line {line}: {message}")]
pub struct ParseError {
    /// The 1-based line of the instruction (or directive) at fault; for a file without
    /// instructions, its number of lines.
    pub line: usize,
    /// Docker's message where it has one.
    pub message: String,
}

/// The instructions Docker knows, as [`Instruction::keyword`] spells them.
pub const KEYWORDS: [&str; 18] = [
    "FROM",
    "RUN",
    "CMD",
    "ENTRYPOINT",
    "COPY",
    "ADD",
    "ENV",
    "ARG",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "LABEL",
    "VOLUME",
    "STOPSIGNAL",
    "HEALTHCHECK",
    "ONBUILD",
    "SHELL",
    "MAINTAINER",
];

impl Args {
    /// Whether this is the JSON (exec) form.
    pub fn is_exec(&self) -> bool {
        matches!(self, Args::Exec(_))
    }
}

impl Instruction {
    /// The value of flag `name` (the last one if repeated, as `--mount` may be), `""` for a bare
    /// boolean flag; `None` when it was not given.
    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(flag, _)| flag == name)
            .map(|(_, value)| value.as_str())
    }

    /// For ONBUILD, the trigger as Docker stores it in the image's `OnBuild` list: the text after
    /// `ONBUILD`, each heredoc appended as `\n<content><name>` so that [`parse_line`] reads it
    /// back whole. `None` for other instructions.
    pub fn onbuild_expression(&self) -> Option<String> {
        if self.keyword != "ONBUILD" {
            return None;
        }
        let Args::Shell(trigger) = &self.args else {
            return None;
        };
        let mut expression = trigger.clone();
        for heredoc in &self.heredocs {
            expression.push('\n');
            expression.push_str(&heredoc.content);
            expression.push_str(&heredoc.name);
        }
        Some(expression)
    }
}

/// Parses a Dockerfile. A leading UTF-8 BOM and CRLF line endings are accepted.
pub fn parse(text: &str) -> Result<Dockerfile, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let (escape, syntax) = read_directives(text)?;
    let instructions = parse_body(text, escape)?;
    Ok(Dockerfile {
        escape,
        syntax,
        instructions,
    })
}

/// One instruction from a single (already joined) line, for ONBUILD triggers stored in an image
/// config ([`Instruction::onbuild_expression`]); heredoc bodies after the line are read as in a
/// Dockerfile. No directives are recognised; `escape` is the one to use. Exactly one instruction
/// must be there. Whether the instruction is allowed as a trigger is the caller's question.
pub fn parse_line(text: &str, escape: char) -> Result<Instruction, ParseError> {
    let mut instructions = parse_body(text, escape)?;
    if instructions.len() != 1 {
        return Err(ParseError {
            line: instructions.get(1).map_or(1, |i| i.line),
            message: format!("expected one instruction, found {}", instructions.len()),
        });
    }
    Ok(instructions.remove(0))
}

/// A heredoc marker's name: `Some("EOF")` for `<<EOF`, `<<-EOF`, `<<"EOF"`, `2<<EOF`,
/// `<< EOF`. The builder uses it to tell which COPY/ADD sources are heredocs (and which
/// [`Heredoc`] of the instruction each is) and whether a RUN is a single heredoc.
pub fn heredoc_name(word: &str) -> Option<String> {
    heredoc_marker(word).ok().flatten().map(|h| h.name)
}

/// Docker's `Test` for a HEALTHCHECK's arguments (the image config's `Healthcheck.Test`):
/// `["NONE"]`, `["CMD", arg…]` for the JSON form, `["CMD-SHELL", "command"]` for the shell form.
/// Errors are Docker's ("HEALTHCHECK NONE takes no arguments", …); [`parse`] has already
/// checked the instructions it returns.
pub fn healthcheck_test(args: &Args) -> Result<Vec<String>, String> {
    let Args::Shell(text) = args else {
        return Err("HEALTHCHECK must be followed by CMD or NONE".to_owned());
    };
    let text = text.trim();
    if text.is_empty() {
        return Err("HEALTHCHECK requires at least one argument".to_owned());
    }
    let (kind, rest) = match text.find(char::is_whitespace) {
        Some(at) => (&text[..at], text[at..].trim_start()),
        None => (text, ""),
    };
    let kind = kind.to_uppercase();
    match kind.as_str() {
        "NONE" if rest.is_empty() => Ok(vec![kind]),
        "NONE" => Err("HEALTHCHECK NONE takes no arguments".to_owned()),
        "CMD" => match json_array(rest) {
            Json::Strings(args) if args.is_empty() => Err(MISSING_HEALTH_COMMAND.to_owned()),
            Json::Strings(args) => Ok(std::iter::once(kind).chain(args).collect()),
            Json::NotStrings => Err(NOT_STRING_ARRAY.to_owned()),
            Json::NotArray if rest.is_empty() => Err(MISSING_HEALTH_COMMAND.to_owned()),
            Json::NotArray => Ok(vec!["CMD-SHELL".to_owned(), rest.to_owned()]),
        },
        _ => Err(format!(
            "Unknown type {} in HEALTHCHECK (try CMD)",
            words::go_quote(&kind)
        )),
    }
}

/// Go's `time.ParseDuration` (`1h30m`, `1.5s`, `300ms`), in nanoseconds: the syntax of
/// HEALTHCHECK's `--interval`, `--timeout`, `--start-period` and `--start-interval`, and the
/// unit of the image config's `Healthcheck` durations. Errors are Go's.
pub fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", words::go_quote(text));
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u128 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let int_part = &rest[..int_len];
        rest = &rest[int_len..];
        let mut fraction = "";
        if let Some(after) = rest.strip_prefix('.') {
            let len = after.bytes().take_while(u8::is_ascii_digit).count();
            fraction = &after[..len];
            rest = &after[len..];
        }
        if int_part.is_empty() && fraction.is_empty() {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                words::go_quote(text)
            ));
        }
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let per_unit: u128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    words::go_quote(unit),
                    words::go_quote(text)
                ));
            }
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| invalid())?
        };
        total = whole
            .checked_mul(per_unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(invalid)?;
        // Digits past nanosecond precision cannot change the result.
        let fraction = &fraction[..fraction.len().min(30)];
        if !fraction.is_empty() {
            let digits: u128 = fraction.parse().map_err(|_| invalid())?;
            let scale = 10u128.pow(u32::try_from(fraction.len()).map_err(|_| invalid())?);
            total = total
                .checked_add(digits.saturating_mul(per_unit) / scale)
                .ok_or_else(invalid)?;
        }
        if total > 1 << 63 {
            return Err(invalid());
        }
    }
    if negative {
        i64::try_from(-(i128::try_from(total).map_err(|_| invalid())?)).map_err(|_| invalid())
    } else {
        i64::try_from(total).map_err(|_| invalid())
    }
}

const NOT_STRING_ARRAY: &str =
    "when using JSON array syntax, arrays must be comprised of strings only";
const MISSING_HEALTH_COMMAND: &str = "Missing command after HEALTHCHECK CMD";

/// The smallest HEALTHCHECK interval Docker accepts (`container.MinimumDuration`), in ns.
const MINIMUM_HEALTH_INTERVAL: i64 = 1_000_000;

/// Reads the parser directives at the top of the file: the escape character and the syntax.
fn read_directives(text: &str) -> Result<(char, Option<String>), ParseError> {
    let mut escape = None;
    let mut syntax = None;
    let mut check = false;
    for (index, raw) in text.split_inclusive('\n').enumerate() {
        let Some((name, value)) = directive(trim_newline(raw).trim_start()) else {
            break;
        };
        let name = name.to_ascii_lowercase();
        let error = |message: String| ParseError {
            line: index + 1,
            message,
        };
        let duplicate = || error(format!("only one {name} parser directive can be used"));
        match name.as_str() {
            "escape" => {
                if escape.is_some() {
                    return Err(duplicate());
                }
                escape = Some(match value {
                    "\\" => '\\',
                    "`" => '`',
                    _ => {
                        return Err(error(format!(
                            "invalid escape token '{value}' does not match ` or \\"
                        )));
                    }
                });
            }
            "syntax" => {
                if syntax.is_some() {
                    return Err(duplicate());
                }
                syntax = Some(value.to_owned());
            }
            "check" => {
                if check {
                    return Err(duplicate());
                }
                check = true;
            }
            // An unknown directive is a comment, and ends the directives.
            _ => break,
        }
    }
    Ok((escape.unwrap_or('\\'), syntax))
}

/// `# name = value` (Docker's `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$`).
fn directive(line: &str) -> Option<(&str, &str)> {
    let is_space = |c: char| matches!(c, ' ' | '\t' | '\n' | '\u{c}' | '\r');
    let rest = line.strip_prefix('#')?.trim_start_matches(is_space);
    let name_len = rest
        .find(|c: char| !c.is_ascii_alphanumeric())
        .unwrap_or(rest.len());
    let name = &rest[..name_len];
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return None;
    }
    let value = rest[name_len..]
        .trim_start_matches(is_space)
        .strip_prefix('=')?
        .trim_matches(is_space);
    (!value.is_empty()).then_some((name, value))
}

/// The instructions of `text` (directives already read: they are comments here).
fn parse_body(text: &str, escape: char) -> Result<Vec<Instruction>, ParseError> {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut next = 0;
    let mut instructions = Vec::new();
    while next < lines.len() {
        let first = trim_newline(lines[next]).trim_start();
        next += 1;
        let start_line = next;
        let first = if first.starts_with('#') { "" } else { first };
        let (mut line, mut complete) = trim_continuation(first, escape);
        if complete && line.is_empty() {
            continue;
        }
        while !complete && next < lines.len() {
            let raw = trim_newline(lines[next]);
            next += 1;
            let lead = raw.trim_start();
            // Comment lines and blank lines inside a continuation are skipped.
            if lead.starts_with('#') || lead.is_empty() {
                continue;
            }
            let (part, done) = trim_continuation(raw, escape);
            line.push_str(&part);
            complete = done;
        }
        if line.trim().is_empty() {
            continue;
        }
        let at = |message: String| ParseError {
            line: start_line,
            message,
        };
        let mut instruction = parse_instruction(&line, escape).map_err(at)?;
        instruction.line = start_line;
        if line.contains("<<") && can_contain_heredoc(&instruction, escape) {
            for mut heredoc in heredocs_from_line(&line).map_err(at)? {
                let mut terminated = false;
                while next < lines.len() {
                    let raw = lines[next];
                    next += 1;
                    let mut candidate = trim_newline(raw);
                    if heredoc.strip_tabs {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == heredoc.name {
                        terminated = true;
                        break;
                    }
                    heredoc.content.push_str(raw);
                }
                if !terminated {
                    return Err(at("unterminated heredoc".to_owned()));
                }
                instruction.heredocs.push(heredoc);
            }
        }
        instructions.push(instruction);
    }
    if instructions.is_empty() {
        return Err(ParseError {
            line: lines.len(),
            message: "file with no instructions".to_owned(),
        });
    }
    Ok(instructions)
}

fn trim_newline(line: &str) -> &str {
    line.trim_end_matches(['\r', '\n'])
}

/// Removes a line-continuation escape at the end of `line` (blanks after it allowed); the
/// flag says whether the instruction ends on this line. An escaped escape (`\\`) at the end does
/// not continue, as in Docker.
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let body = line.trim_end_matches([' ', '\t']);
    if let Some(before) = body.strip_suffix(escape) {
        if before.is_empty() {
            return (String::new(), false);
        }
        if !before.ends_with(escape) {
            return (before.to_owned(), false);
        }
    }
    (line.to_owned(), true)
}

/// The characters Docker splits an instruction's keyword and fields on.
fn is_field_separator(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// How a flag takes its value (BuildKit's `BFlags` types).
#[derive(Clone, Copy, PartialEq)]
enum FlagKind {
    /// `--link`, `--link=true|false`.
    Bool,
    /// `--chown=…`, once.
    Value,
    /// `--mount=…`, any number of times.
    Repeated,
}

/// The flags each instruction accepts.
fn flag_spec(keyword: &str) -> &'static [(&'static str, FlagKind)] {
    use FlagKind::{Bool, Repeated, Value};
    match keyword {
        "FROM" => &[("platform", Value)],
        "RUN" => &[("mount", Repeated), ("network", Value), ("security", Value)],
        "COPY" => &[
            ("from", Value),
            ("chown", Value),
            ("chmod", Value),
            ("link", Bool),
            ("parents", Bool),
            ("exclude", Repeated),
        ],
        "ADD" => &[
            ("chown", Value),
            ("chmod", Value),
            ("link", Bool),
            ("keep-git-dir", Bool),
            ("checksum", Value),
            ("unpack", Bool),
            ("exclude", Repeated),
        ],
        "HEALTHCHECK" => &[
            ("interval", Value),
            ("timeout", Value),
            ("start-period", Value),
            ("start-interval", Value),
            ("retries", Value),
        ],
        _ => &[],
    }
}

/// Splits `--name=value` words (without validating them).
fn split_flags(words: Vec<String>) -> Result<Vec<(String, Option<String>)>, String> {
    words
        .into_iter()
        .map(|word| {
            let Some(flag) = word.strip_prefix("--") else {
                return Err(format!("arg should start with -- : {word}"));
            };
            Ok(match flag.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (flag.to_owned(), None),
            })
        })
        .collect()
}

/// Checks flags against an instruction's [`flag_spec`], as BuildKit's `BFlags.Parse` does (with
/// its messages since BuildKit 0.17, which name the flag with its `--`).
fn check_flags(
    flags: Vec<(String, Option<String>)>,
    spec: &[(&str, FlagKind)],
) -> Result<Vec<(String, String)>, String> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(flags.len());
    for (name, value) in flags {
        let Some(&(_, kind)) = spec.iter().find(|(known, _)| *known == name) else {
            return Err(format!("unknown flag: --{name}"));
        };
        if kind != FlagKind::Repeated && seen.contains(&name) {
            return Err(format!("duplicate flag specified: --{name}"));
        }
        seen.push(name.clone());
        let value = match (kind, value) {
            (FlagKind::Bool, None) => String::new(),
            (FlagKind::Bool, Some(value)) if value.is_empty() => {
                return Err(format!("missing a value on flag: --{name}"));
            }
            (FlagKind::Bool, Some(value)) => {
                if !value.eq_ignore_ascii_case("true") && !value.eq_ignore_ascii_case("false") {
                    return Err(format!(
                        "expecting boolean value for flag --{name}, not: {value}"
                    ));
                }
                value
            }
            (_, None) => return Err(format!("missing a value on flag: --{name}")),
            (_, Some(value)) => value,
        };
        out.push((name, value));
    }
    Ok(out)
}

/// Checks the values of HEALTHCHECK's flags as Docker does when it parses them.
fn check_health_flags(flags: &[(String, String)]) -> Result<(), String> {
    for (name, value) in flags {
        if value.is_empty() {
            continue;
        }
        if name == "retries" {
            let retries: i32 = value.parse().map_err(|_| {
                format!(
                    "strconv.ParseInt: parsing {}: invalid syntax",
                    words::go_quote(value)
                )
            })?;
            if retries < 1 {
                return Err(format!("--retries must be at least 1 (not {retries})"));
            }
        } else {
            let nanos = parse_go_duration(value)?;
            if nanos != 0 && nanos < MINIMUM_HEALTH_INTERVAL {
                return Err(format!(
                    "Interval {} cannot be less than 1ms",
                    words::go_quote(name)
                ));
            }
        }
    }
    Ok(())
}

/// Docker's `extractBuilderFlags`: the leading words starting with `--` (quotes removed, `\`
/// escapes applied) and the rest of the line. A bare `--` ends the flags.
fn extract_builder_flags(line: &str) -> (Vec<String>, &str) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut blank_ok = false;
    let mut pos = 0;
    while pos < chars.len() {
        let (offset, mut ch) = chars[pos];
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    pos += 1;
                    continue;
                }
                if ch != '-' || chars.get(pos + 1).map(|&(_, c)| c) != Some('-') {
                    return (words, &line[offset..]);
                }
                phase = Phase::Word;
                continue;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (words, &line[offset..]);
                    }
                    if blank_ok || !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    word.clear();
                    blank_ok = false;
                } else if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                } else {
                    if ch == '\\' {
                        pos += 1;
                        match chars.get(pos) {
                            Some(&(_, escaped)) => ch = escaped,
                            None => continue,
                        }
                    }
                    word.push(ch);
                }
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                } else {
                    if ch == '\\' {
                        pos += 1;
                        match chars.get(pos) {
                            Some(&(_, escaped)) => ch = escaped,
                            None => {
                                phase = Phase::Word;
                                continue;
                            }
                        }
                    }
                    word.push(ch);
                }
            }
        }
        pos += 1;
    }
    if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    (words, "")
}

/// A JSON array's fate, as Docker's `parseJSON` sees it.
enum Json {
    Strings(Vec<String>),
    /// A JSON array with something else than strings: an error, not the shell form.
    NotStrings,
    /// Not a JSON array (or not valid JSON): the shell form.
    NotArray,
}

/// Parses `text` as a JSON array of strings. Like Go's `json.Decoder`, text after the array is
/// ignored.
fn json_array(text: &str) -> Json {
    let text = text.trim_start();
    if !text.starts_with('[') {
        return Json::NotArray;
    }
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    match stream.next() {
        Some(Ok(Value::Array(items))) => {
            let strings: Option<Vec<String>> = items
                .into_iter()
                .map(|item| match item {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect();
            strings.map_or(Json::NotStrings, Json::Strings)
        }
        _ => Json::NotArray,
    }
}

/// The exec form if `rest` is a JSON array of strings, else the shell form.
fn exec_or_shell(rest: &str) -> Result<Args, String> {
    match json_array(rest) {
        Json::Strings(args) => Ok(Args::Exec(args)),
        Json::NotStrings => Err(NOT_STRING_ARRAY.to_owned()),
        Json::NotArray => Ok(Args::Shell(rest.to_owned())),
    }
}

/// Parses one joined instruction line (no heredoc bodies) and checks it.
fn parse_instruction(line: &str, escape: char) -> Result<Instruction, String> {
    let line = line.trim();
    let (word, rest) = match line.find(is_field_separator) {
        Some(at) => (
            &line[..at],
            line[at..].trim_start_matches(is_field_separator),
        ),
        None => (line, ""),
    };
    let keyword = word.to_uppercase();
    if !KEYWORDS.contains(&keyword.as_str()) {
        return Err(format!("unknown instruction: {keyword}"));
    }
    let (flag_words, rest) = extract_builder_flags(rest);
    let rest = rest.trim();
    let raw_flags = split_flags(flag_words)?;
    let args = match keyword.as_str() {
        "RUN" | "CMD" | "ENTRYPOINT" | "SHELL" | "COPY" | "ADD" | "VOLUME" => exec_or_shell(rest)?,
        _ => Args::Shell(rest.to_owned()),
    };
    let flags = if keyword == "HEALTHCHECK" {
        let test = healthcheck_test(&args)?;
        if test[0] == "NONE" {
            // Docker does not look at the flags of HEALTHCHECK NONE.
            raw_flags
                .into_iter()
                .map(|(name, value)| (name, value.unwrap_or_default()))
                .collect()
        } else {
            let flags = check_flags(raw_flags, flag_spec("HEALTHCHECK"))?;
            check_health_flags(&flags)?;
            flags
        }
    } else {
        check_flags(raw_flags, flag_spec(&keyword))?
    };
    check_arguments(&keyword, rest, &args, escape)?;
    Ok(Instruction {
        line: 1,
        keyword,
        flags,
        args,
        heredocs: Vec::new(),
        original: line.to_owned(),
    })
}

/// Docker's argument checks for each instruction (those of `instructions.Parse`).
fn check_arguments(keyword: &str, rest: &str, args: &Args, escape: char) -> Result<(), String> {
    let at_least_one = || format!("{keyword} requires at least one argument");
    let exactly_one = || format!("{keyword} requires exactly one argument");
    match keyword {
        "FROM" => {
            let fields = words::fields(rest);
            match fields.as_slice() {
                [_] => {}
                [_, as_word, name] if as_word.eq_ignore_ascii_case("as") => {
                    let lower = name.to_lowercase();
                    let valid = lower.starts_with(|c: char| c.is_ascii_lowercase())
                        && lower.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "-_.".contains(c)
                        });
                    if !valid {
                        return Err(format!(
                            "invalid name for build stage: {}, name can't start with a number \
                             or contain symbols",
                            words::go_quote(name)
                        ));
                    }
                }
                _ => return Err("FROM requires either one or three arguments".to_owned()),
            }
        }
        "COPY" | "ADD" => {
            let count = match args {
                Args::Exec(items) => items.len(),
                Args::Shell(text) => {
                    let fields = words::fields(text);
                    let dest = fields.last().filter(|_| fields.len() >= 2);
                    if dest.is_some_and(|dest| heredoc_marker(dest).ok().flatten().is_some()) {
                        return Err(format!(
                            "{keyword} cannot accept a heredoc as a destination"
                        ));
                    }
                    fields.len()
                }
            };
            if count < 2 {
                return Err(format!(
                    "{keyword} requires at least two arguments, but only one was provided. \
                     Destination could not be determined"
                ));
            }
        }
        "ENV" | "LABEL" | "ARG" => {
            words::key_values_for(keyword, rest, escape)?;
        }
        "WORKDIR" | "USER" | "STOPSIGNAL" | "MAINTAINER" if rest.is_empty() => {
            return Err(exactly_one());
        }
        "EXPOSE" if rest.is_empty() => return Err(at_least_one()),
        "VOLUME" => match args {
            Args::Exec(items) if items.is_empty() => return Err(at_least_one()),
            Args::Exec(items) if items.iter().any(|v| v.trim().is_empty()) => {
                return Err("VOLUME specified can not be an empty string".to_owned());
            }
            Args::Shell(text) if text.is_empty() => return Err(at_least_one()),
            _ => {}
        },
        "SHELL" => match args {
            Args::Exec(items) if items.is_empty() => return Err(at_least_one()),
            Args::Shell(text) if text.is_empty() => return Err(at_least_one()),
            Args::Shell(_) => {
                return Err("SHELL requires the arguments to be in JSON form".to_owned());
            }
            Args::Exec(_) => {}
        },
        "ONBUILD" => {
            if rest.is_empty() {
                return Err(at_least_one());
            }
            let trigger = rest
                .split(is_field_separator)
                .next()
                .unwrap_or_default()
                .to_uppercase();
            match trigger.as_str() {
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".to_owned());
                }
                "MAINTAINER" | "FROM" => {
                    return Err(format!("{trigger} isn't allowed as an ONBUILD trigger"));
                }
                _ => {
                    parse_instruction(rest, escape)?;
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Whether heredoc bodies follow this instruction: RUN, COPY and ADD in shell form, directly or
/// as an ONBUILD trigger.
fn can_contain_heredoc(instruction: &Instruction, escape: char) -> bool {
    match (instruction.keyword.as_str(), &instruction.args) {
        ("RUN" | "COPY" | "ADD", args) => !args.is_exec(),
        ("ONBUILD", Args::Shell(trigger)) => parse_instruction(trigger, escape).is_ok_and(|t| {
            matches!(t.keyword.as_str(), "RUN" | "COPY" | "ADD") && !t.args.is_exec()
        }),
        _ => false,
    }
}

/// The heredoc markers of a line, in order (BuildKit's `heredocsFromLine`).
fn heredocs_from_line(line: &str) -> Result<Vec<Heredoc>, String> {
    let mut heredocs = Vec::new();
    for word in words::heredoc_words(line) {
        if let Some(heredoc) = heredoc_marker(&word)? {
            heredocs.push(heredoc);
        }
    }
    Ok(heredocs)
}

/// Parses one word as a heredoc marker (BuildKit's `ParseHeredoc`): `[fd]<<[-][blanks]word`,
/// where `word` must lex as a single word. The content is left empty. A quote anywhere in the
/// word (not escaped) turns expansion off.
fn heredoc_marker(word: &str) -> Result<Option<Heredoc>, String> {
    let after_fd = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let Some(after) = after_fd.strip_prefix("<<") else {
        return Ok(None);
    };
    let (strip_tabs, after) = match after.strip_prefix('-') {
        Some(after) => (true, after),
        None => (false, after),
    };
    let rest = after.trim_start_matches([' ', '\t', '\n', '\u{c}', '\r']);
    if rest.is_empty() || rest.contains('<') {
        return Ok(None);
    }
    let unquoted = LexOptions {
        skip_unset: true,
        ..LexOptions::default()
    };
    let (_, names) = words::process(rest, &|_| None, '\\', unquoted)?;
    let [name] = names.as_slice() else {
        return Ok(None);
    };
    let quoted = LexOptions {
        raw_quotes: true,
        ..unquoted
    };
    let (_, raw_names) = words::process(rest, &|_| None, '\\', quoted)?;
    let [raw_name] = raw_names.as_slice() else {
        return Err(format!(
            "internal lexing of heredoc produced inconsistent results: {rest}"
        ));
    };
    let quotes = |s: &str| s.chars().filter(|&c| c == '\'' || c == '"').count();
    Ok(Some(Heredoc {
        name: name.clone(),
        content: String::new(),
        expand: quotes(name) == quotes(raw_name),
        strip_tabs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(text: &str) -> Args {
        Args::Shell(text.to_owned())
    }

    fn exec(items: &[&str]) -> Args {
        Args::Exec(items.iter().map(|s| (*s).to_owned()).collect())
    }

    fn one(text: &str) -> Instruction {
        let file = parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(file.instructions.len(), 1, "{text:?}");
        file.instructions.into_iter().next().unwrap()
    }

    fn error(text: &str) -> ParseError {
        parse(text).expect_err(text)
    }

    fn heredoc(name: &str, content: &str, expand: bool, strip_tabs: bool) -> Heredoc {
        Heredoc {
            name: name.to_owned(),
            content: content.to_owned(),
            expand,
            strip_tabs,
        }
    }

    #[test]
    fn parses_a_simple_dockerfile() {
        let file = parse(
            "FROM alpine:3.19\nRUN apk add curl\nENV A=1\nCMD [\"sh\", \"-c\", \"echo hi\"]\n",
        )
        .unwrap();
        assert_eq!(file.escape, '\\');
        assert_eq!(file.syntax, None);
        let summary: Vec<_> = file
            .instructions
            .iter()
            .map(|i| (i.line, i.keyword.as_str(), i.args.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (1, "FROM", shell("alpine:3.19")),
                (2, "RUN", shell("apk add curl")),
                (3, "ENV", shell("A=1")),
                (4, "CMD", exec(&["sh", "-c", "echo hi"])),
            ]
        );
        assert_eq!(
            file.instructions[3].original,
            "CMD [\"sh\", \"-c\", \"echo hi\"]"
        );
    }

    #[test]
    fn keywords_are_case_insensitive() {
        let i = one("from alpine");
        assert_eq!(i.keyword, "FROM");
        assert_eq!(one("HealthCheck NONE").keyword, "HEALTHCHECK");
        assert_eq!(i.original, "from alpine");
    }

    #[test]
    fn unknown_instruction_is_an_error_at_its_line() {
        let e = error("FROM a\n\nFOO bar\n");
        assert_eq!(e.line, 3);
        assert_eq!(e.message, "unknown instruction: FOO");
        assert_eq!(
            e.to_string(),
            "Dockerfile parse error line 3: unknown instruction: FOO"
        );
        assert_eq!(error("foo").message, "unknown instruction: FOO");
    }

    #[test]
    fn empty_or_comment_only_files_have_no_instructions() {
        for text in ["", "\n\n", "# just a comment\n", "  \n# a\n   # b\n"] {
            assert_eq!(error(text).message, "file with no instructions", "{text:?}");
        }
    }

    #[test]
    fn continuation_lines_join_as_docker_prints_them() {
        let file = parse("FROM a\nRUN echo a && \\\n    echo b\nRUN x\n").unwrap();
        let run = &file.instructions[1];
        assert_eq!(run.line, 2);
        assert_eq!(run.original, "RUN echo a &&     echo b");
        assert_eq!(run.args, shell("echo a &&     echo b"));
        assert_eq!(file.instructions[2].line, 4);
    }

    #[test]
    fn blanks_after_the_continuation_escape_are_allowed() {
        assert_eq!(one("RUN a \\  \t\n b").args, shell("a  b"));
    }

    #[test]
    fn comments_and_blank_lines_inside_continuations_are_dropped() {
        let file = parse(
            "FROM alpine:3.6\n\nRUN something \\\n\n    following \\\n\n    more\n\n\
             RUN non-indented \\\n# this is a comment\n   after-comment\n\n\
             RUN indented \\\n    # this is an indented comment\n    comment\n",
        )
        .unwrap();
        let originals: Vec<_> = file
            .instructions
            .iter()
            .map(|i| i.original.as_str())
            .collect();
        assert_eq!(
            originals,
            [
                "FROM alpine:3.6",
                "RUN something     following     more",
                "RUN non-indented    after-comment",
                "RUN indented     comment",
            ]
        );
        let lines: Vec<_> = file.instructions.iter().map(|i| i.line).collect();
        assert_eq!(lines, [1, 3, 9, 13]);
    }

    #[test]
    fn a_comment_line_ending_in_the_escape_does_not_continue() {
        let file = parse("# comment \\\nFROM a\n").unwrap();
        assert_eq!(file.instructions[0].original, "FROM a");
    }

    #[test]
    fn an_escaped_escape_at_the_end_does_not_continue() {
        let file = parse("FROM a\nRUN echo \\\\\nRUN b\n").unwrap();
        assert_eq!(file.instructions.len(), 3);
        assert_eq!(file.instructions[1].args, shell("echo \\\\"));
    }

    #[test]
    fn a_lone_escape_line_continues() {
        let file = parse("FROM a\n\\\nRUN b\n").unwrap();
        assert_eq!(file.instructions[1].original, "RUN b");
        assert_eq!(file.instructions[1].line, 2);
    }

    #[test]
    fn continuation_at_end_of_file_ends_the_instruction() {
        assert_eq!(one("RUN a \\").args, shell("a"));
    }

    #[test]
    fn leading_whitespace_of_the_first_line_is_ignored() {
        let i = one("   RUN  echo hi  ");
        assert_eq!(i.original, "RUN  echo hi");
        assert_eq!(i.args, shell("echo hi"));
    }

    #[test]
    fn crlf_line_endings_and_a_bom_are_accepted() {
        let file = parse("\u{feff}# escape=`\r\nFROM a\r\nRUN x `\r\n  y\r\n").unwrap();
        assert_eq!(file.escape, '`');
        assert_eq!(file.instructions[0].original, "FROM a");
        assert_eq!(file.instructions[1].args, shell("x   y"));
    }

    #[test]
    fn backtick_escape_makes_backslash_literal() {
        let file =
            parse("# escape=`\nFROM windows\nCOPY testfile.txt c:\\\nRUN dir c:\\ `\n  /s\n")
                .unwrap();
        assert_eq!(file.escape, '`');
        assert_eq!(file.instructions[1].args, shell("testfile.txt c:\\"));
        assert_eq!(file.instructions[2].args, shell("dir c:\\   /s"));
    }

    #[test]
    fn directives_are_read_only_at_the_top() {
        let file = parse("# syntax=docker/dockerfile:1\n# escape=`\nFROM a\n").unwrap();
        assert_eq!(file.syntax.as_deref(), Some("docker/dockerfile:1"));
        assert_eq!(file.escape, '`');
        // After an ordinary comment, a blank line or an instruction it is just a comment.
        for text in [
            "# a comment\n# escape=`\nFROM a\n",
            "\n# escape=`\nFROM a\n",
            "FROM a\n# escape=`\n",
            "# unknown=x\n# escape=`\nFROM a\n",
        ] {
            assert_eq!(parse(text).unwrap().escape, '\\', "{text:?}");
        }
    }

    #[test]
    fn directive_spelling_is_lenient() {
        let file = parse("#ESCAPE = `\n  #  Syntax=x   \nFROM a\n").unwrap();
        assert_eq!(file.escape, '`');
        assert_eq!(file.syntax.as_deref(), Some("x"));
        assert_eq!(
            parse("# check=skip=all\n# escape=`\nFROM a\n")
                .unwrap()
                .escape,
            '`'
        );
    }

    #[test]
    fn bad_directives_are_errors() {
        let e = error("# escape=`\n# escape=\\\nFROM a\n");
        assert_eq!(e.message, "only one escape parser directive can be used");
        assert_eq!(e.line, 2);
        assert_eq!(
            error("# escape=x\nFROM a\n").message,
            "invalid escape token 'x' does not match ` or \\"
        );
        assert_eq!(
            error("# syntax=a\n# syntax=b\nFROM a\n").message,
            "only one syntax parser directive can be used"
        );
    }

    #[test]
    fn flags_are_split_from_arguments() {
        let i = one("COPY --from=build --chown=1:2 --link src /dst");
        assert_eq!(
            i.flags,
            vec![
                ("from".to_owned(), "build".to_owned()),
                ("chown".to_owned(), "1:2".to_owned()),
                ("link".to_owned(), String::new()),
            ]
        );
        assert_eq!(i.args, shell("src /dst"));
        assert_eq!(i.flag("from"), Some("build"));
        assert_eq!(i.flag("link"), Some(""));
        assert_eq!(i.flag("chmod"), None);
        assert_eq!(i.original, "COPY --from=build --chown=1:2 --link src /dst");
    }

    #[test]
    fn only_leading_words_are_flags() {
        let i = one("COPY a --from=x /dst");
        assert!(i.flags.is_empty());
        assert_eq!(i.args, shell("a --from=x /dst"));
        let i = one("COPY -x --from=y a b");
        assert!(i.flags.is_empty());
        assert_eq!(i.args, shell("-x --from=y a b"));
    }

    #[test]
    fn double_dash_ends_the_flags() {
        let i = one("COPY --chown=1 -- --weird /dst");
        assert_eq!(i.flags, vec![("chown".to_owned(), "1".to_owned())]);
        assert_eq!(i.args, shell("--weird /dst"));
    }

    #[test]
    fn flag_values_lose_quotes_and_escapes_but_are_not_expanded() {
        let i = one(r#"COPY --chown="$USER:1 0" --chmod='7\55' a b"#);
        assert_eq!(
            i.flags,
            vec![
                ("chown".to_owned(), "$USER:1 0".to_owned()),
                ("chmod".to_owned(), "755".to_owned()),
            ]
        );
    }

    #[test]
    fn run_takes_mount_network_and_security_flags() {
        let i = one(
            "RUN --mount=type=cache,target=/a --mount=type=tmpfs,target=/b --network=none make",
        );
        assert_eq!(i.flags.len(), 3);
        assert_eq!(i.flag("mount"), Some("type=tmpfs,target=/b"));
        assert_eq!(i.flag("network"), Some("none"));
        assert_eq!(i.args, shell("make"));
        assert_eq!(one("RUN --network=host [\"a\"]").args, exec(&["a"]));
    }

    #[test]
    fn from_takes_a_platform_flag() {
        let i = one("FROM --platform=$BUILDPLATFORM golang:1 AS build");
        assert_eq!(
            i.flags,
            vec![("platform".to_owned(), "$BUILDPLATFORM".to_owned())]
        );
        assert_eq!(i.args, shell("golang:1 AS build"));
    }

    #[test]
    fn bad_flags_are_errors_like_docker() {
        let cases = [
            ("COPY --foo=bar a b", "unknown flag: --foo"),
            ("ADD --from=x a b", "unknown flag: --from"),
            ("CMD --help", "unknown flag: --help"),
            ("ENV --x=1 A=b", "unknown flag: --x"),
            ("COPY --from a b", "missing a value on flag: --from"),
            ("COPY --link= a b", "missing a value on flag: --link"),
            (
                "COPY --link=maybe a b",
                "expecting boolean value for flag --link, not: maybe",
            ),
            (
                "COPY --from=a --from=b x y",
                "duplicate flag specified: --from",
            ),
            ("FROM --platform a", "missing a value on flag: --platform"),
        ];
        for (text, message) in cases {
            assert_eq!(error(text).message, message, "{text}");
        }
        assert_eq!(one("COPY --link=FALSE a b").flag("link"), Some("FALSE"));
    }

    #[test]
    fn exec_form_is_recognised_for_the_keywords_that_have_it() {
        assert_eq!(one("RUN [\"a\", \"b c\"]").args, exec(&["a", "b c"]));
        assert_eq!(one("ENTRYPOINT [\"/bin/x\"]").args, exec(&["/bin/x"]));
        assert_eq!(
            one("SHELL [\"/bin/bash\", \"-c\"]").args,
            exec(&["/bin/bash", "-c"])
        );
        assert_eq!(
            one("COPY [\"a b\", \"/c d/\"]").args,
            exec(&["a b", "/c d/"])
        );
        assert_eq!(one("ADD [\"a\", \"/b\"]").args, exec(&["a", "/b"]));
        assert_eq!(
            one("VOLUME [\"/data\", \"/logs\"]").args,
            exec(&["/data", "/logs"])
        );
        assert_eq!(one("CMD []").args, exec(&[]));
        assert_eq!(one("CMD [\"\\u0041\\n\"]").args, exec(&["A\n"]));
        // Other keywords keep the text.
        assert_eq!(one("WORKDIR [\"x\"]").args, shell("[\"x\"]"));
        assert_eq!(one("LABEL x=[\"a\"]").args, shell("x=[\"a\"]"));
    }

    #[test]
    fn text_after_the_json_array_is_ignored_as_in_docker() {
        assert_eq!(one("CMD [\"a\"] trailing").args, exec(&["a"]));
    }

    #[test]
    fn invalid_json_falls_back_to_the_shell_form() {
        assert_eq!(one("CMD [a, b]").args, shell("[a, b]"));
        assert_eq!(one("RUN [ \"a\", ]").args, shell("[ \"a\", ]"));
        assert_eq!(one("RUN [\"unterminated").args, shell("[\"unterminated"));
        assert_eq!(one("CMD echo [x]").args, shell("echo [x]"));
    }

    #[test]
    fn json_with_non_strings_is_an_error() {
        for text in [
            "CMD [\"a\", 1]",
            "RUN [null]",
            "COPY [\"a\", true]",
            "VOLUME [[\"/a\"]]",
        ] {
            assert_eq!(
                error(text).message,
                "when using JSON array syntax, arrays must be comprised of strings only",
                "{text}"
            );
        }
    }

    #[test]
    fn run_cmd_and_entrypoint_may_be_empty() {
        assert_eq!(one("RUN").args, shell(""));
        assert_eq!(one("CMD").args, shell(""));
        assert_eq!(one("ENTRYPOINT []").args, exec(&[]));
    }

    #[test]
    fn env_label_and_arg_stay_raw_and_are_checked() {
        assert_eq!(one("ENV A=\"x y\" B=$A").args, shell("A=\"x y\" B=$A"));
        assert_eq!(one("ENV A some value").args, shell("A some value"));
        assert_eq!(one("LABEL a.b=c \"d\"=e").args, shell("a.b=c \"d\"=e"));
        assert_eq!(one("ARG A B=1").args, shell("A B=1"));
        let cases = [
            ("ENV", "ENV requires at least one argument"),
            ("ENV A", "ENV must have two arguments"),
            ("ENV =x", "ENV names can not be blank"),
            (
                "ENV A=1 B",
                "Syntax error - can't find = in \"B\". Must be of the form: name=value",
            ),
            ("LABEL", "LABEL requires at least one argument"),
            ("LABEL =x", "LABEL names can not be blank"),
            ("LABEL single", "LABEL must have two arguments"),
            ("ARG", "ARG requires at least one argument"),
            ("ARG =x", "ARG names can not be blank"),
        ];
        for (text, message) in cases {
            assert_eq!(error(text).message, message, "{text}");
        }
    }

    #[test]
    fn env_arguments_starting_with_dashes_are_flags_in_docker() {
        // `ENV --x` is Docker's "unknown flag", not a variable named --x.
        assert_eq!(error("ENV --x y").message, "unknown flag: --x");
    }

    #[test]
    fn from_takes_one_or_three_arguments() {
        assert_eq!(one("FROM scratch").args, shell("scratch"));
        assert_eq!(
            one("FROM alpine AS Build-1.x_y").args,
            shell("alpine AS Build-1.x_y")
        );
        assert_eq!(one("FROM alpine as b").args, shell("alpine as b"));
        for text in [
            "FROM",
            "FROM a b",
            "FROM a AS",
            "FROM a to b",
            "FROM a AS b c",
        ] {
            assert_eq!(
                error(text).message,
                "FROM requires either one or three arguments",
                "{text}"
            );
        }
        assert_eq!(
            error("FROM a AS 1st").message,
            "invalid name for build stage: \"1st\", name can't start with a number or contain \
             symbols"
        );
        assert!(
            error("FROM a AS b$c")
                .message
                .starts_with("invalid name for build stage")
        );
    }

    #[test]
    fn copy_and_add_need_a_destination() {
        for keyword in ["COPY", "ADD"] {
            let message = format!(
                "{keyword} requires at least two arguments, but only one was provided. \
                 Destination could not be determined"
            );
            assert_eq!(error(&format!("{keyword} a")).message, message);
            assert_eq!(error(&format!("{keyword} [\"a\"]")).message, message);
            assert_eq!(error(&format!("{keyword} --chown=1 a")).message, message);
            assert_eq!(error(keyword).message, message);
        }
        assert_eq!(one("COPY a b c/").args, shell("a b c/"));
    }

    #[test]
    fn single_argument_instructions_need_their_argument() {
        for keyword in ["WORKDIR", "USER", "STOPSIGNAL", "MAINTAINER"] {
            assert_eq!(
                error(keyword).message,
                format!("{keyword} requires exactly one argument")
            );
        }
        assert_eq!(one("USER app:app").args, shell("app:app"));
        assert_eq!(one("WORKDIR /a b").args, shell("/a b"));
        assert_eq!(one("STOPSIGNAL SIGTERM").args, shell("SIGTERM"));
        assert_eq!(one("MAINTAINER Jane <j@x>").args, shell("Jane <j@x>"));
    }

    #[test]
    fn expose_and_volume_need_arguments() {
        assert_eq!(
            error("EXPOSE").message,
            "EXPOSE requires at least one argument"
        );
        assert_eq!(one("EXPOSE 80/tcp 443").args, shell("80/tcp 443"));
        assert_eq!(
            error("VOLUME").message,
            "VOLUME requires at least one argument"
        );
        assert_eq!(
            error("VOLUME []").message,
            "VOLUME requires at least one argument"
        );
        assert_eq!(
            error("VOLUME [\"/a\", \" \"]").message,
            "VOLUME specified can not be an empty string"
        );
        assert_eq!(one("VOLUME /a /b").args, shell("/a /b"));
    }

    #[test]
    fn shell_requires_a_json_array() {
        assert_eq!(
            error("SHELL /bin/sh -c").message,
            "SHELL requires the arguments to be in JSON form"
        );
        assert_eq!(
            error("SHELL []").message,
            "SHELL requires at least one argument"
        );
        assert_eq!(
            error("SHELL").message,
            "SHELL requires at least one argument"
        );
    }

    #[test]
    fn healthcheck_keeps_its_arguments_raw() {
        let i = one(
            "HEALTHCHECK --interval=5s --timeout=3s --retries=3 CMD curl -f http://x/ || exit 1",
        );
        assert_eq!(i.args, shell("CMD curl -f http://x/ || exit 1"));
        assert_eq!(i.flag("interval"), Some("5s"));
        assert_eq!(
            healthcheck_test(&i.args).unwrap(),
            ["CMD-SHELL", "curl -f http://x/ || exit 1"]
        );
        let i = one("HEALTHCHECK CMD [\"/bin/check\", \"-q\"]");
        assert_eq!(i.args, shell("CMD [\"/bin/check\", \"-q\"]"));
        assert_eq!(
            healthcheck_test(&i.args).unwrap(),
            ["CMD", "/bin/check", "-q"]
        );
        let i = one("HEALTHCHECK none");
        assert_eq!(healthcheck_test(&i.args).unwrap(), ["NONE"]);
        assert_eq!(
            healthcheck_test(&shell("cmd  true")).unwrap(),
            ["CMD-SHELL", "true"]
        );
    }

    #[test]
    fn healthcheck_errors_are_dockers() {
        let cases = [
            ("HEALTHCHECK", "HEALTHCHECK requires at least one argument"),
            ("HEALTHCHECK NONE x", "HEALTHCHECK NONE takes no arguments"),
            ("HEALTHCHECK CMD", "Missing command after HEALTHCHECK CMD"),
            (
                "HEALTHCHECK CMD []",
                "Missing command after HEALTHCHECK CMD",
            ),
            (
                "HEALTHCHECK RUN x",
                "Unknown type \"RUN\" in HEALTHCHECK (try CMD)",
            ),
            (
                "HEALTHCHECK CMD [1]",
                "when using JSON array syntax, arrays must be comprised of strings only",
            ),
            (
                "HEALTHCHECK --interval=1us CMD x",
                "Interval \"interval\" cannot be less than 1ms",
            ),
            (
                "HEALTHCHECK --timeout=abc CMD x",
                "time: invalid duration \"abc\"",
            ),
            (
                "HEALTHCHECK --retries=0 CMD x",
                "--retries must be at least 1 (not 0)",
            ),
            (
                "HEALTHCHECK --retries=x CMD x",
                "strconv.ParseInt: parsing \"x\": invalid syntax",
            ),
            ("HEALTHCHECK --foo=1 CMD x", "unknown flag: --foo"),
        ];
        for (text, message) in cases {
            assert_eq!(error(text).message, message, "{text}");
        }
        // Docker does not look at the flags of HEALTHCHECK NONE.
        assert_eq!(
            one("HEALTHCHECK --foo NONE").flags,
            vec![("foo".to_owned(), String::new())]
        );
        assert!(healthcheck_test(&exec(&["CMD"])).is_err());
    }

    #[test]
    fn healthcheck_accepts_zero_and_start_interval() {
        let i = one("HEALTHCHECK --interval=0s --start-period=1m30s --start-interval=2s CMD x");
        assert_eq!(i.flag("start-period"), Some("1m30s"));
    }

    #[test]
    fn go_durations_parse_like_go() {
        let ok = [
            ("0", 0),
            ("5s", 5_000_000_000),
            ("1m30s", 90_000_000_000),
            ("1.5h", 5_400_000_000_000),
            ("300ms", 300_000_000),
            ("1us", 1_000),
            ("1\u{b5}s", 1_000),
            ("2ns", 2),
            (".5s", 500_000_000),
            ("1.s", 1_000_000_000),
            ("-1s", -1_000_000_000),
            ("+2m", 120_000_000_000),
        ];
        for (text, nanos) in ok {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
        assert_eq!(
            parse_go_duration("").unwrap_err(),
            "time: invalid duration \"\""
        );
        assert_eq!(
            parse_go_duration("x").unwrap_err(),
            "time: invalid duration \"x\""
        );
        assert_eq!(
            parse_go_duration(".s").unwrap_err(),
            "time: invalid duration \".s\""
        );
        assert_eq!(
            parse_go_duration("5").unwrap_err(),
            "time: missing unit in duration \"5\""
        );
        assert_eq!(
            parse_go_duration("5d").unwrap_err(),
            "time: unknown unit \"d\" in duration \"5d\""
        );
        assert!(parse_go_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn onbuild_keeps_its_trigger_raw_and_checks_it() {
        let i = one("ONBUILD RUN echo $HOME");
        assert_eq!(i.args, shell("RUN echo $HOME"));
        assert!(i.flags.is_empty());
        assert_eq!(i.onbuild_expression().as_deref(), Some("RUN echo $HOME"));
        let cases = [
            ("ONBUILD", "ONBUILD requires at least one argument"),
            (
                "ONBUILD ONBUILD RUN x",
                "Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed",
            ),
            ("ONBUILD from a", "FROM isn't allowed as an ONBUILD trigger"),
            (
                "ONBUILD MAINTAINER me",
                "MAINTAINER isn't allowed as an ONBUILD trigger",
            ),
            ("ONBUILD FOO x", "unknown instruction: FOO"),
            (
                "ONBUILD COPY a",
                "COPY requires at least two arguments, but only one was \
              provided. Destination could not be determined",
            ),
            ("ONBUILD --x RUN a", "unknown flag: --x"),
        ];
        for (text, message) in cases {
            assert_eq!(error(text).message, message, "{text}");
        }
        assert_eq!(one("FROM a").onbuild_expression(), None);
    }

    #[test]
    fn parse_line_reads_a_stored_trigger() {
        let i = parse_line("COPY --chown=1 a /b", '\\').unwrap();
        assert_eq!(i.keyword, "COPY");
        assert_eq!(i.line, 1);
        assert_eq!(i.flag("chown"), Some("1"));
        let i = parse_line("RUN dir c:\\", '`').unwrap();
        assert_eq!(i.args, shell("dir c:\\"));
        // No directives in a trigger: this is just a comment.
        assert_eq!(
            parse_line("# escape=`", '\\').unwrap_err().message,
            "file with no instructions"
        );
        assert!(parse_line("RUN a\nRUN b", '\\').is_err());
        assert_eq!(
            parse_line("BOGUS x", '\\').unwrap_err().message,
            "unknown instruction: BOGUS"
        );
    }

    #[test]
    fn onbuild_heredoc_round_trips_through_the_image_config() {
        let file = parse("FROM a\nONBUILD RUN <<EOF\necho hi\nEOF\nRUN b\n").unwrap();
        let onbuild = &file.instructions[1];
        assert_eq!(
            onbuild.heredocs,
            vec![heredoc("EOF", "echo hi\n", true, false)]
        );
        assert_eq!(file.instructions[2].line, 5);
        let expression = onbuild.onbuild_expression().unwrap();
        assert_eq!(expression, "RUN <<EOF\necho hi\nEOF");
        let trigger = parse_line(&expression, '\\').unwrap();
        assert_eq!(trigger.keyword, "RUN");
        assert_eq!(trigger.args, shell("<<EOF"));
        assert_eq!(
            trigger.heredocs,
            vec![heredoc("EOF", "echo hi\n", true, false)]
        );
    }

    #[test]
    fn run_heredoc_is_read_up_to_its_terminator() {
        let file = parse("FROM a\nRUN <<EOF\n# not a comment\necho $X\nEOF\nRUN after\n").unwrap();
        let run = &file.instructions[1];
        assert_eq!(run.args, shell("<<EOF"));
        assert_eq!(run.original, "RUN <<EOF");
        assert_eq!(
            run.heredocs,
            vec![heredoc("EOF", "# not a comment\necho $X\n", true, false)]
        );
        assert_eq!(file.instructions[2].line, 6);
        assert_eq!(file.instructions[2].original, "RUN after");
    }

    /// BuildKit's `TestParseExtractsHeredoc` cases.
    #[test]
    fn heredocs_match_buildkit() {
        // (Dockerfile after `FROM a`, [(name, content, expand, strip_tabs)])
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str, bool, bool)]);
        let cases: &[Case] = &[
            ("USER <<INVALID\n", &[]),
            ("RUN <<EMPTY\nEMPTY\n", &[("EMPTY", "", true, false)]),
            ("RUN 3<<EMPTY2\nEMPTY2\n", &[("EMPTY2", "", true, false)]),
            ("RUN \"<<NOHEREDOC\"\n", &[]),
            (
                "RUN <<INDENT\n\tfoo\n\tbar\nINDENT\n",
                &[("INDENT", "\tfoo\n\tbar\n", true, false)],
            ),
            (
                "RUN <<-UNINDENT\n\tbaz\n\tquux\nUNINDENT\n",
                &[("UNINDENT", "\tbaz\n\tquux\n", true, true)],
            ),
            (
                "RUN <<-UNINDENT2\n\tbaz\n\tquux\n\tUNINDENT2\n",
                &[("UNINDENT2", "\tbaz\n\tquux\n", true, true)],
            ),
            (
                "RUN <<-'NOEXPAND'\n\tdon't expand $NAME\nNOEXPAND\n",
                &[("NOEXPAND", "\tdon't expand $NAME\n", false, true)],
            ),
            (
                "RUN --mount=type=cache,target=/foo <<MOUNT\necho hello\nMOUNT\n",
                &[("MOUNT", "echo hello\n", true, false)],
            ),
            (
                "COPY <<FILE1 <<FILE2 /dest\ncontent 1\nFILE1\ncontent 2\nFILE2\n",
                &[
                    ("FILE1", "content 1\n", true, false),
                    ("FILE2", "content 2\n", true, false),
                ],
            ),
            (
                "COPY <<EOF /quotes\n\"foo\"\n'bar'\nEOF\n",
                &[("EOF", "\"foo\"\n'bar'\n", true, false)],
            ),
            (
                "COPY <<X <<Y /dest\nY\nX\nX\nY\n",
                &[("X", "Y\n", true, false), ("Y", "X\n", true, false)],
            ),
            (
                "RUN <<COMPLEX python3\nprint('hello world')\nCOMPLEX\n",
                &[("COMPLEX", "print('hello world')\n", true, false)],
            ),
            (
                "COPY <<file.txt /dest\nhello world\nfile.txt\n",
                &[("file.txt", "hello world\n", true, false)],
            ),
            (
                "RUN <<eo'f'\necho foo\neof\n",
                &[("eof", "echo foo\n", false, false)],
            ),
            (
                "RUN <<eo\\'f\necho foo\neo'f\n",
                &[("eo'f", "echo foo\n", true, false)],
            ),
            (
                "RUN <<'e'o\\'f\necho foo\neo'f\n",
                &[("eo'f", "echo foo\n", false, false)],
            ),
            (
                "RUN <<'one two'\necho bar\none two\n",
                &[("one two", "echo bar\n", false, false)],
            ),
            ("RUN <<$EOF\n$EOF\n", &[("$EOF", "", true, false)]),
            ("RUN <<  EOF\nEOF\n", &[("EOF", "", true, false)]),
            ("RUN <<  EOF  > foo\nEOF\n", &[("EOF", "", true, false)]),
            ("RUN << -EOF\n-EOF\n", &[("-EOF", "", true, false)]),
            (
                "ADD <<\"EOF\" /x\nbody\nEOF\n",
                &[("EOF", "body\n", false, false)],
            ),
        ];
        for (text, expected) in cases {
            let text = format!("FROM a\n{text}");
            let file = parse(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let expected: Vec<Heredoc> = expected
                .iter()
                .map(|(n, c, e, s)| heredoc(n, c, *e, *s))
                .collect();
            assert_eq!(file.instructions[1].heredocs, expected, "{text:?}");
        }
    }

    #[test]
    fn json_form_has_no_heredocs() {
        let file = parse("FROM a\nRUN [\"<<EOF\"]\nRUN [\"<<'EOF'\"]\nRUN x\n").unwrap();
        assert_eq!(file.instructions.len(), 4);
        assert!(file.instructions.iter().all(|i| i.heredocs.is_empty()));
    }

    #[test]
    fn strip_tabs_applies_to_the_body() {
        let h = heredoc("E", "\tbaz\n\t\tquux\n  x\t\n", true, true);
        assert_eq!(h.body(), "baz\nquux\n  x\t\n");
        let h = heredoc("E", "\tkeep\n", true, false);
        assert_eq!(h.body(), "\tkeep\n");
    }

    #[test]
    fn heredoc_content_keeps_crlf_and_the_terminator_may_have_one() {
        let file = parse("FROM a\r\nRUN <<EOF\r\necho hi\r\nEOF\r\nRUN b\r\n").unwrap();
        assert_eq!(file.instructions[1].heredocs[0].content, "echo hi\r\n");
        assert_eq!(file.instructions.len(), 3);
    }

    #[test]
    fn heredoc_without_final_newline_at_end_of_file() {
        let file = parse("FROM a\nRUN <<EOF\nlast line\nEOF").unwrap();
        assert_eq!(file.instructions[1].heredocs[0].content, "last line\n");
    }

    #[test]
    fn unterminated_heredoc_is_an_error_at_its_instruction() {
        let e = error("FROM a\nRUN <<EOF\necho hi\n");
        assert_eq!(e.line, 2);
        assert_eq!(e.message, "unterminated heredoc");
    }

    #[test]
    fn heredoc_marker_after_continuation_reads_body_after_the_last_line() {
        let file = parse("FROM a\nRUN cat \\\n  <<EOF\nbody\nEOF\n").unwrap();
        let run = &file.instructions[1];
        assert_eq!(run.args, shell("cat   <<EOF"));
        assert_eq!(run.heredocs, vec![heredoc("EOF", "body\n", true, false)]);
    }

    #[test]
    fn heredoc_destination_is_refused() {
        assert_eq!(
            error("COPY a <<EOF\nx\nEOF\n").message,
            "COPY cannot accept a heredoc as a destination"
        );
    }

    #[test]
    fn heredoc_names_are_recognised_like_buildkit() {
        for word in [
            "<<EOF",
            "<<'EOF'",
            "<<\"EOF\"",
            "<<-EOF",
            "<<-'EOF'",
            "<<-\"EOF\"",
            "<<EO\"F\"",
            "<< EOF",
            "<<- EOF",
            "2<<EOF",
        ] {
            assert_eq!(heredoc_name(word).as_deref(), Some("EOF"), "{word}");
        }
        for word in [
            "", "EOF", "<<", "<<-", "<EOF", "<<<EOF", "<<EOF sh", "a<<EOF",
        ] {
            assert_eq!(heredoc_name(word), None, "{word}");
        }
        for word in ["<<'EOF", "<<\"EOF", "<<EOF'", "<<EOF\""] {
            assert!(heredoc_marker(word).is_err(), "{word}");
            assert_eq!(heredoc_name(word), None, "{word}");
        }
    }

    #[test]
    fn line_numbers_count_every_physical_line() {
        let text = "# comment\n\nFROM a\n\n# c\nRUN a \\\n  b \\\n# inside\n  c\n\nCOPY <<X /x\n1\n2\nX\nCMD z\n";
        let file = parse(text).unwrap();
        let lines: Vec<_> = file.instructions.iter().map(|i| i.line).collect();
        assert_eq!(lines, [3, 6, 11, 15]);
        assert_eq!(file.instructions[1].original, "RUN a   b   c");
    }

    #[test]
    fn only_the_first_whitespace_run_separates_the_keyword() {
        assert_eq!(one("RUN\techo  a").args, shell("echo  a"));
        assert_eq!(one("RUN \t echo").original, "RUN \t echo");
    }
}
