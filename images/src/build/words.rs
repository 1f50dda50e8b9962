//! Docker's word expansion: what the builder does to an instruction's words before using them
//! (`COPY $SRC /dst`, `ENV PATH=$PATH:/x`, `FROM ${BASE:-alpine}`). It follows BuildKit's
//! `frontend/dockerfile/shell` lexer (`ProcessWord` / `ProcessWords`), which both Docker builders
//! use, so that a Dockerfile expands here exactly as it does under `docker build`:
//!
//! - `$NAME`, `${NAME}`, and the modifiers `${NAME:-word}` `${NAME-word}` `${NAME:+word}`
//!   `${NAME+word}` `${NAME:?message}` `${NAME?message}` `${NAME#pattern}` `${NAME##pattern}`
//!   `${NAME%pattern}` `${NAME%%pattern}` `${NAME/pattern/replacement}`
//!   `${NAME//pattern/replacement}` (patterns: `*`, `?`, `\` before `*` `?` `\` `}` `/`);
//! - single quotes are literal, double quotes expand `$` and let the escape character escape
//!   `"`, `$` and itself, anything else is escaped by the escape character;
//! - an unset variable expands to nothing; `$` before a character that cannot start a name stays.
//!
//! It also holds the `NAME=value` syntax of ENV, LABEL and ARG ([`key_values`]) and the
//! whitespace split the parser applies to FROM, COPY, ADD, VOLUME and EXPOSE ([`fields`]).

/// How the lexer treats quotes, escapes and unset variables. Expansion uses the default (all
/// off); the Dockerfile parser turns them on to find heredoc markers without changing them.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LexOptions {
    /// Keep quote characters in the result (they still group words).
    pub raw_quotes: bool,
    /// Keep escape characters in the result (they still escape).
    pub raw_escapes: bool,
    /// Leave references to unset variables as written instead of expanding them to nothing.
    pub skip_unset: bool,
}

/// Docker's `ProcessWord`: expands the variables in `word` and removes its quotes and escapes,
/// keeping the spaces in it (it is one word: a WORKDIR, an ENV value, a `--chown` value).
/// `lookup` answers a variable's value (`None`: unset). `escape` is the Dockerfile's escape
/// character (`\` or `` ` ``). Errors are Docker's: an unterminated quote or `${`, a bad
/// substitution, a `${NAME:?message}` whose variable is unset or empty.
pub fn expand(
    word: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, String> {
    process(word, lookup, escape, LexOptions::default()).map(|(result, _)| result)
}

/// Docker's `ProcessWords`: expands `text` like [`expand`] and splits it into words on
/// whitespace outside quotes. As in BuildKit, the value of an unquoted variable is split too
/// (`$LIST` with `LIST="a b"` gives two words) while a quoted one is not (`"$LIST"` gives one),
/// and empty words (`""`, an empty variable) are dropped. Docker uses this for EXPOSE (on each
/// of the parser's [`fields`]); for FROM, COPY, ADD and VOLUME Docker splits with [`fields`]
/// and then [`expand`]s each field — see [`expand_fields`].
pub fn split_and_expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, String> {
    process(text, lookup, escape, LexOptions::default()).map(|(_, words)| words)
}

/// The whitespace split Docker's parser applies to the arguments of FROM, EXPOSE and the shell
/// forms of COPY, ADD and VOLUME: on runs of space, tab, `\v`, `\f` and `\r`, ignoring quotes
/// (so `COPY "a b" /d` is the fields `"a` and `b"` in Docker too). Nothing is expanded.
pub fn fields(text: &str) -> Vec<String> {
    text.split([' ', '\t', '\u{b}', '\u{c}', '\r'])
        .filter(|field| !field.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What Docker does to the shell-form arguments of FROM, COPY, ADD and VOLUME: [`fields`], then
/// [`expand`] on each field, so a variable holding `a b` stays one path. Kept beside
/// [`split_and_expand`] because the two differ exactly there.
pub fn expand_fields(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<Vec<String>, String> {
    fields(text)
        .iter()
        .map(|field| expand(field, lookup, escape))
        .collect()
}

/// The `NAME=value` arguments of ENV, LABEL (`legacy_allowed`) and ARG, split as Docker's parser
/// does, raw: quotes and escapes are kept and nothing is expanded (the builder [`expand`]s each
/// value when the instruction runs, with the variables of that moment).
///
/// - `K=V K2="v 2"` → `[("K", Some("V")), ("K2", Some("\"v 2\""))]`;
/// - with `legacy_allowed`, a first word without `=` selects the old form `ENV K some value`
///   → `[("K", Some("some value"))]` (the rest of the line, as written);
/// - without it (ARG) each word is `NAME` (value `None`) or `NAME=default`.
///
/// Errors carry Docker's messages naming ENV (or ARG without `legacy_allowed`);
/// [`key_values_for`] names the instruction.
pub fn key_values(
    text: &str,
    escape: char,
    legacy_allowed: bool,
) -> Result<Vec<(String, Option<String>)>, String> {
    key_values_for(if legacy_allowed { "ENV" } else { "ARG" }, text, escape)
}

/// [`key_values`] for the instruction `keyword` (`ENV`, `LABEL` or `ARG`; ARG is the one without
/// the legacy form), so that errors name it as Docker does: "LABEL names can not be blank".
pub fn key_values_for(
    keyword: &str,
    text: &str,
    escape: char,
) -> Result<Vec<(String, Option<String>)>, String> {
    let text = text.trim();
    let words = parse_words(text, escape);
    if words.is_empty() {
        return Err(format!("{keyword} requires at least one argument"));
    }
    let blank = || format!("{keyword} names can not be blank");
    if keyword.eq_ignore_ascii_case("ARG") {
        return words
            .into_iter()
            .map(|word| match word.split_once('=') {
                Some(("", _)) => Err(blank()),
                Some((name, value)) => Ok((name.to_owned(), Some(value.to_owned()))),
                None => Ok((word, None)),
            })
            .collect();
    }
    if !words[0].contains('=') {
        // The old form, `ENV NAME value...`: the name, then the rest of the line as written.
        let (name, rest) = match text.find(is_field_separator) {
            Some(at) => (
                &text[..at],
                text[at..].trim_start_matches(is_field_separator),
            ),
            None => (text, ""),
        };
        if rest.is_empty() {
            return Err(format!("{keyword} must have two arguments"));
        }
        return Ok(vec![(name.to_owned(), Some(rest.to_owned()))]);
    }
    words
        .into_iter()
        .map(|word| match word.split_once('=') {
            Some(("", _)) => Err(blank()),
            Some((name, value)) => Ok((name.to_owned(), Some(value.to_owned()))),
            None => Err(format!(
                "Syntax error - can't find = in {}. Must be of the form: name=value",
                go_quote(&word)
            )),
        })
        .collect()
}

/// The characters Docker's parser splits fields on (its `[\t\v\f\r ]+`).
fn is_field_separator(ch: char) -> bool {
    matches!(ch, ' ' | '\t' | '\u{b}' | '\u{c}' | '\r')
}

/// Docker's `parseWords`: splits on whitespace outside quotes, keeping quotes and escapes in the
/// words (the split of ENV, LABEL and ARG arguments).
fn parse_words(text: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let mut words = Vec::new();
    let mut word = String::new();
    let mut phase = Phase::Spaces;
    let mut chars = text.chars().peekable();
    while let Some(ch) = chars.next() {
        match phase {
            Phase::Spaces if ch.is_whitespace() => continue,
            Phase::Spaces | Phase::Word => {
                if ch.is_whitespace() {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                    phase = Phase::Spaces;
                    continue;
                }
                phase = Phase::Word;
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                }
                if ch == escape {
                    match chars.next() {
                        // An escape at the very end is dropped.
                        None => continue,
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
            Phase::Quote(quote) => {
                if ch == quote {
                    phase = Phase::Word;
                }
                // Inside single quotes the escape character is an ordinary one.
                if ch == escape && quote != '\'' {
                    match chars.next() {
                        None => {
                            phase = Phase::Word;
                            continue;
                        }
                        Some(next) => {
                            word.push(ch);
                            word.push(next);
                            continue;
                        }
                    }
                }
                word.push(ch);
            }
        }
    }
    if phase != Phase::Spaces && !word.is_empty() {
        words.push(word);
    }
    words
}

/// Go's `%q` of a string, for the messages Docker formats with it.
pub(crate) fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for ch in text.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            ch if ch.is_control() => {
                let code = u32::from(ch);
                if code < 0x80 {
                    out.push_str(&format!("\\x{code:02x}"));
                } else {
                    out.push_str(&format!("\\u{code:04x}"));
                }
            }
            ch => out.push(ch),
        }
    }
    out.push('"');
    out
}

/// Runs the lexer over `text`: the expanded text and its words. Errors are wrapped as Docker
/// wraps them (`failed to process "…": …`).
pub(crate) fn process(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
    options: LexOptions,
) -> Result<(String, Vec<String>), String> {
    let mut lexer = Lexer {
        chars: text.chars().collect(),
        pos: 0,
        escape,
        options,
        raw_escapes: options.raw_escapes,
        lookup,
    };
    lexer
        .process_stop_on(None, options.raw_escapes)
        .map_err(|e| format!("failed to process {}: {e}", go_quote(text)))
}

/// A heredoc's content with its variables expanded, quotes and escapes kept as written (a
/// `COPY <<EOF` file is text, not a word): BuildKit's expansion of an unquoted heredoc.
pub fn expand_heredoc(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: char,
) -> Result<String, String> {
    let options = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: false,
    };
    process(text, lookup, escape, options).map(|(result, _)| result)
}

/// The words of a line as BuildKit sees them when it looks for heredoc markers: quotes, escapes
/// (always `\` there) and unset variables kept. An unparsable line has none.
pub(crate) fn heredoc_words(line: &str) -> Vec<String> {
    let options = LexOptions {
        raw_quotes: true,
        raw_escapes: true,
        skip_unset: true,
    };
    process(line, &|_| None, '\\', options)
        .map(|(_, words)| words)
        .unwrap_or_default()
}

/// The words being built by `ProcessWords`.
#[derive(Default)]
struct Words {
    words: Vec<String>,
    word: String,
    in_word: bool,
}

impl Words {
    /// An unquoted character: whitespace ends the word.
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.word.is_empty() {
                self.words.push(std::mem::take(&mut self.word));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    /// A quoted or escaped character: always part of the word.
    fn add_raw_char(&mut self, ch: char) {
        self.word.push(ch);
        self.in_word = true;
    }

    /// An expanded variable: split like unquoted text.
    fn add_string(&mut self, text: &str) {
        for ch in text.chars() {
            self.add_char(ch);
        }
    }

    /// A quoted string: one piece of the current word.
    fn add_raw_string(&mut self, text: &str) {
        self.word.push_str(text);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.word.is_empty() {
            self.words.push(self.word);
        }
        self.words
    }
}

/// BuildKit's `shellWord`: a cursor over the text being expanded.
struct Lexer<'a> {
    chars: Vec<char>,
    pos: usize,
    escape: char,
    options: LexOptions,
    /// Whether escapes are kept right now: patterns (`${X#…}`) keep them for the pattern parser.
    raw_escapes: bool,
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Lexer<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    /// Processes up to `stop` (consumed) or the end of the text (`stop` = `None`).
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), String> {
        let saved = std::mem::replace(&mut self.raw_escapes, raw_escapes);
        let outcome = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        outcome
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), String> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' => {
                    let marker = self.process_possible_heredoc();
                    result.push_str(&marker);
                    words.add_raw_string(&marker);
                }
                '\'' => {
                    let quoted = self.process_single_quote()?;
                    result.push_str(&quoted);
                    words.add_raw_string(&quoted);
                }
                '"' => {
                    let quoted = self.process_double_quote()?;
                    result.push_str(&quoted);
                    words.add_raw_string(&quoted);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape escapes the next character; at the very end it is dropped.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(format!(
                "unexpected end of statement while looking for matching {stop}"
            ));
        }
        Ok((result, words.finish()))
    }

    /// `<<` keeps the blanks after it in its word, so that `<< EOF` is one heredoc marker.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".to_owned();
        }
        self.next();
        let mut marker = "<<".to_owned();
        while let Some(ch @ (' ' | '\t' | '\r')) = self.peek() {
            marker.push(ch);
            self.next();
        }
        marker
    }

    fn process_single_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.options.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching single-quote"
                            .to_owned(),
                    );
                }
                Some('\'') => {
                    if self.options.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, String> {
        let mut result = String::new();
        let open = self.next();
        if self.options.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(
                        "unexpected end of statement while looking for matching double-quote"
                            .to_owned(),
                    );
                }
                Some('"') => {
                    self.next();
                    if self.options.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    let Some(mut ch) = self.next() else { continue };
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the end: the missing quote is reported next round.
                            None => continue,
                            Some(next) if next == '"' || next == '$' || next == self.escape => {
                                self.next();
                                ch = next;
                            }
                            // Before anything else the escape character is literal.
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, String> {
        self.next();
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".to_owned());
            }
            return Ok(match (self.lookup)(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${name}"),
                None => String::new(),
            });
        }
        self.next();
        match self.peek() {
            None => return Err(MISSING_BRACE.to_owned()),
            Some('{' | '}' | ':') => return Err("syntax error: bad substitution".to_owned()),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(MISSING_BRACE.to_owned());
        };
        match ch {
            '}' => Ok(match (self.lookup)(&name) {
                Some(value) => value,
                None if self.options.skip_unset => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => {
                let null_is_unset = ch == ':';
                let mut modifier_text = ch.to_string();
                let modifier = if null_is_unset {
                    let Some(second) = self.next() else {
                        return Err(MISSING_BRACE.to_owned());
                    };
                    modifier_text.push(second);
                    second
                } else {
                    ch
                };
                let raw = modifier == '#' || modifier == '%';
                let (word, _) = self.process_stop_on(Some('}'), raw).map_err(|e| {
                    if self.peek().is_none() {
                        MISSING_BRACE.to_owned()
                    } else {
                        e
                    }
                })?;
                let value = (self.lookup)(&name);
                if self.options.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}{modifier_text}{word}}}"));
                }
                let empty = value
                    .as_deref()
                    .is_none_or(|v| null_is_unset && v.is_empty());
                match modifier {
                    '-' => Ok(if empty {
                        word
                    } else {
                        value.unwrap_or_default()
                    }),
                    '+' => Ok(if empty { String::new() } else { word }),
                    '?' => match value {
                        None => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be unset"
                            } else {
                                word.as_str()
                            }
                        )),
                        Some(v) if null_is_unset && v.is_empty() => Err(format!(
                            "{name}: {}",
                            if word.is_empty() {
                                "is not allowed to be empty"
                            } else {
                                word.as_str()
                            }
                        )),
                        Some(v) => Ok(v),
                    },
                    '#' | '%' => {
                        // One `#`/`%` removes the shortest match, two the longest.
                        let (greedy, pattern) = match word.strip_prefix(modifier) {
                            Some(rest) => (true, rest),
                            None => (false, word.as_str()),
                        };
                        let tokens = compile_pattern(pattern)?;
                        let value = value.unwrap_or_default();
                        Ok(if modifier == '#' {
                            trim_prefix(&tokens, &value, greedy)
                        } else {
                            trim_suffix(&tokens, &value, greedy)
                        })
                    }
                    _ => Err(format!(
                        "unsupported modifier ({modifier_text}) in substitution"
                    )),
                }
            }
            '/' => {
                let all = self.peek() == Some('/');
                if all {
                    self.next();
                }
                let (pattern, _) = self.process_stop_on(Some('/'), true).map_err(|e| {
                    if self.peek().is_none() {
                        "syntax error: missing '/' in ${}".to_owned()
                    } else {
                        e
                    }
                })?;
                let (replacement, _) = self.process_stop_on(Some('}'), true).map_err(|e| {
                    if self.peek().is_none() {
                        MISSING_BRACE.to_owned()
                    } else {
                        e
                    }
                })?;
                let value = (self.lookup)(&name);
                if self.options.skip_unset && value.is_none() {
                    return Ok(format!("${{{name}/{pattern}/{replacement}}}"));
                }
                let tokens = compile_pattern(&pattern)?;
                let value = value.unwrap_or_default();
                Ok(if all {
                    replace_all(&tokens, &value, &replacement)
                } else {
                    replace_first(&tokens, &value, &replacement)
                })
            }
            other => Err(format!("unsupported modifier ({other}) in substitution")),
        }
    }

    /// A variable name: letters, digits and `_`; or a run of digits (positional parameters);
    /// or one of the shell's special parameters. Empty if none starts here.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && is_digit(ch) {
                while let Some(digit) = self.peek().filter(|&c| is_digit(c)) {
                    name.push(digit);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !(ch.is_alphabetic() || is_digit(ch) || ch == '_') {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

const MISSING_BRACE: &str = "syntax error: missing '}'";

/// Go's `unicode.IsDigit` (decimal digits of any script).
fn is_digit(ch: char) -> bool {
    ch.is_ascii_digit() || (!ch.is_ascii() && ch.is_numeric())
}

/// One element of a `${X#pattern}` pattern.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PatternToken {
    Literal(char),
    /// `?`
    AnyChar,
    /// `*`
    AnyRun,
}

/// Parses a substitution pattern as BuildKit does: `*` and `?` are wildcards, `\` makes `*`,
/// `?` or `\` literal and is dropped before `}` and `/` (which it escapes from the `${}`
/// syntax); any other escape is an error.
fn compile_pattern(pattern: &str) -> Result<Vec<PatternToken>, String> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars().peekable();
    while let Some(ch) = chars.next() {
        tokens.push(match ch {
            '*' => PatternToken::AnyRun,
            '?' => PatternToken::AnyChar,
            '\\' => {
                if matches!(chars.peek(), Some('}' | '/')) {
                    continue;
                }
                match chars.next() {
                    Some(escaped @ ('*' | '?' | '\\')) => PatternToken::Literal(escaped),
                    other => {
                        let shown = other.map(String::from).unwrap_or_default();
                        return Err(format!(
                            "invalid pattern ({pattern}) in substitution: invalid escape '\\{shown}'"
                        ));
                    }
                }
            }
            ch => PatternToken::Literal(ch),
        });
    }
    Ok(tokens)
}

/// The positions where a match of `tokens` starting at `start` can end.
fn match_ends(tokens: &[PatternToken], text: &[char], start: usize) -> Vec<bool> {
    let mut reach = vec![false; text.len() + 1];
    reach[start] = true;
    for token in tokens {
        let mut next = vec![false; text.len() + 1];
        match token {
            PatternToken::AnyRun => {
                if let Some(first) = reach.iter().position(|&r| r) {
                    next[first..].fill(true);
                }
            }
            PatternToken::AnyChar | PatternToken::Literal(_) => {
                for pos in 0..text.len() {
                    let fits = match token {
                        PatternToken::Literal(ch) => text[pos] == *ch,
                        _ => true,
                    };
                    if reach[pos] && fits {
                        next[pos + 1] = true;
                    }
                }
            }
        }
        reach = next;
    }
    reach
}

/// The shortest (or, `greedy`, longest) match anchored at `start`, as its end.
fn anchored_match(
    tokens: &[PatternToken],
    text: &[char],
    start: usize,
    greedy: bool,
) -> Option<usize> {
    let ends = match_ends(tokens, text, start);
    if greedy {
        ends.iter().rposition(|&e| e)
    } else {
        ends.iter().position(|&e| e)
    }
}

/// `${X#pattern}` / `${X##pattern}`.
fn trim_prefix(tokens: &[PatternToken], value: &str, greedy: bool) -> String {
    let text: Vec<char> = value.chars().collect();
    match anchored_match(tokens, &text, 0, greedy) {
        Some(end) => text[end..].iter().collect(),
        None => value.to_owned(),
    }
}

/// `${X%pattern}` / `${X%%pattern}`: a prefix match of the reversed pattern on the reversed
/// value, as BuildKit does it.
fn trim_suffix(tokens: &[PatternToken], value: &str, greedy: bool) -> String {
    let reversed_tokens: Vec<PatternToken> = tokens.iter().rev().copied().collect();
    let reversed: String = value.chars().rev().collect();
    trim_prefix(&reversed_tokens, &reversed, greedy)
        .chars()
        .rev()
        .collect()
}

/// The leftmost match at or after `from`, longest at its start (the `/` substitutions are
/// greedy), as `(start, end)`.
fn find_match(tokens: &[PatternToken], text: &[char], from: usize) -> Option<(usize, usize)> {
    (from..=text.len())
        .find_map(|start| anchored_match(tokens, text, start, true).map(|end| (start, end)))
}

/// `${X/pattern/replacement}`: the first match replaced, literally.
fn replace_first(tokens: &[PatternToken], value: &str, replacement: &str) -> String {
    let text: Vec<char> = value.chars().collect();
    match find_match(tokens, &text, 0) {
        Some((start, end)) => {
            let mut out: String = text[..start].iter().collect();
            out.push_str(replacement);
            out.extend(&text[end..]);
            out
        }
        None => value.to_owned(),
    }
}

/// `${X//pattern/replacement}`: every match replaced, walking as Go's `ReplaceAllString`
/// (which BuildKit uses, so `$0` in the replacement is the match and `$$` a `$`).
fn replace_all(tokens: &[PatternToken], value: &str, replacement: &str) -> String {
    let text: Vec<char> = value.chars().collect();
    let mut out = String::new();
    let mut last_end = 0;
    let mut search = 0;
    while search <= text.len() {
        let Some((start, end)) = find_match(tokens, &text, search) else {
            break;
        };
        out.extend(&text[last_end..start]);
        // No replacement for an empty match right after the previous match.
        if end > last_end || start == 0 {
            let matched: String = text[start..end].iter().collect();
            out.push_str(&expand_go_template(replacement, &matched));
        }
        last_end = end;
        search = if search + 1 > end { search + 1 } else { end };
    }
    out.extend(&text[last_end.min(text.len())..]);
    out
}

/// Go's `Regexp.Expand` of a replacement for a pattern without groups: `$0` / `${0}` is the
/// match, `$$` a `$`, any other `$name` / `${name}` nothing, and a malformed `$` stays.
fn expand_go_template(template: &str, matched: &str) -> String {
    let mut out = String::new();
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let (braced, body) = match rest.strip_prefix('{') {
            Some(body) => (true, body),
            None => (false, rest),
        };
        let name_len: usize = body
            .chars()
            .take_while(|&c| c.is_alphabetic() || is_digit(c) || c == '_')
            .map(char::len_utf8)
            .sum();
        if name_len == 0 || (braced && !body[name_len..].starts_with('}')) {
            out.push('$');
            continue;
        }
        let name = &body[..name_len];
        rest = &body[name_len + usize::from(braced)..];
        if name == "0" {
            out.push_str(matched);
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn expand_with(word: &str, vars: &HashMap<String, String>) -> Result<String, String> {
        expand(word, &|name| vars.get(name).cloned(), '\\')
    }

    fn words_with(text: &str, vars: &HashMap<String, String>) -> Result<Vec<String>, String> {
        split_and_expand(text, &|name| vars.get(name).cloned(), '\\')
    }

    /// BuildKit's `envVarTest` table (the Unix and all-platform rows), with its environment.
    const ENV_VAR_TEST: &str = r#"
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he\$PWD                  |     he$PWD
"he\$PWD"                |     he$PWD
'he\$PWD'                |     he\$PWD
he${PWD                  |     error
he${PWD:=000}xx          |     error
he${PWD:+${PWD}:}xx      |     he/home:xx
he${XXX:-\$PWD:}xx       |     he$PWD:xx
he${XXX:-\${PWD}z}xx     |     he${PWDz}xx
안녕하세요                 |     안녕하세요
안'녕'하세요               |     안녕하세요
안'녕하세요                |     error
안녕\'하세요               |     안녕'하세요
안\\'녕하세요              |     error
안녕\t하세요               |     안녕t하세요
"안녕\t하세요"             |     안녕\t하세요
'안녕\t하세요              |     error
안녕하세요\                |     안녕하세요
안녕하세요\\               |     안녕하세요\
"안녕하세요                |     error
"안녕하세요\"              |     error
"안녕'하세요"              |     안녕'하세요
'안녕하세요                |     error
'안녕하세요\'              |     안녕하세요\
안녕$1x                    |     안녕x
안녕$.x                    |     안녕$.x
안녕$pwd.                  |     안녕.
안녕$PWD                   |     안녕/home
안녕\$PWD                  |     안녕$PWD
안녕\\$PWD                 |     안녕\/home
안녕\${}                   |     안녕${}
안녕\${}xx                 |     안녕${}xx
안녕${}                    |     error
안녕${}xx                  |     error
안녕${hi}                  |     안녕
안녕${hi}xx                |     안녕xx
안녕${PWD}                 |     안녕/home
안녕${.}                   |     error
안녕${XXX:-000}xx          |     안녕000xx
안녕${PWD:-000}xx          |     안녕/homexx
안녕${XXX:-$PWD}xx         |     안녕/homexx
안녕${XXX:-${PWD:-yyy}}xx  |     안녕/homexx
안녕${XXX:-${YYY:-yyy}}xx  |     안녕yyyxx
안녕${XXX:YYY}             |     error
안녕${XXX:+${PWD}}xx       |     안녕xx
안녕${PWD:+${XXX}}xx       |     안녕xx
안녕${PWD:+${SHELL}}xx     |     안녕bashxx
안녕${XXX:+000}xx          |     안녕xx
안녕${PWD:+000}xx          |     안녕000xx
'안녕${XX}'                |     안녕${XX}
"안녕${PWD}"               |     안녕/home
"안녕'$PWD'"               |     안녕'/home'
'"안녕"'                   |     "안녕"
안녕\$PWD                  |     안녕$PWD
"안녕\$PWD"                |     안녕$PWD
'안녕\$PWD'                |     안녕\$PWD
안녕${PWD                  |     error
안녕${PWD:=000}xx          |     error
안녕${PWD:+${PWD}:}xx      |     안녕/home:xx
안녕${XXX:-\$PWD:}xx       |     안녕$PWD:xx
안녕${XXX:-\${PWD}z}xx     |     안녕${PWDz}xx
$KOREAN                    |     한국어
안녕$KOREAN                |     안녕한국어
${{aaa}                   |     error
${aaa}}                   |     }
${aaa                     |     error
${{aaa:-bbb}              |     error
${aaa:-bbb}}              |     bbb}
${aaa:-bbb                |     error
${aaa:-bbb}               |     bbb
${aaa:-${bbb:-ccc}}       |     ccc
${aaa:-bbb ${foo}         |     error
${aaa:-bbb {foo}          |     bbb {foo
${:}                      |     error
${:-bbb}                  |     error
${:+bbb}                  |     error
$1                        |
${1}                      |
${1:+bbb}                 |
${1:-bbb}                 |     bbb
$999                      |
${999:-bbb}aaa            |     bbbaaa
$999aaa                   |     aaa
$001aaa                   |     aaa
${001:+bbb}aaa            |     aaa
$@                        |
${@}                      |
${@:+bbb}                 |
${@:-bbb}                 |     bbb
$@@@                      |     @@
$@aaa                     |     aaa
${@}aaa                   |     aaa
$*                        |
${*:-bbb}                 |     bbb
$#                        |
${#}                      |
${#:-bbb}                 |     bbb
$?                        |
${?:-bbb}                 |     bbb
$-                        |
${-:-bbb}                 |     bbb
$$                        |
${$:-bbb}                 |     bbb
$!                        |
${!:-bbb}                 |     bbb
$0                        |
${0:+bbb}                 |
${0:-bbb}                 |     bbb
${NULL:-bbb}              |     bbb
${NULL-bbb}               |
${NULL:+bbb}              |
${NULL+bbb}               |     bbb
"#;

    #[test]
    fn buildkit_env_var_table_expands_as_docker() {
        let vars = env(&[
            ("PWD", "/home"),
            ("SHELL", "bash"),
            ("KOREAN", "한국어"),
            ("NULL", ""),
        ]);
        let mut checked = 0;
        for row in ENV_VAR_TEST.lines().filter(|l| !l.trim().is_empty()) {
            let (source, expected) = row.split_once('|').expect("a | in every row");
            let (source, expected) = (source.trim(), expected.trim());
            let got = expand_with(source, &vars);
            if expected == "error" {
                assert!(got.is_err(), "{source:?} should fail, got {got:?}");
            } else {
                assert_eq!(got.as_deref(), Ok(expected), "expanding {source:?}");
            }
            checked += 1;
        }
        assert!(checked > 150);
    }

    #[test]
    fn unset_variable_is_empty_and_unknown_dollar_stays() {
        let vars = env(&[]);
        assert_eq!(expand_with("a${X}b$Y", &vars).unwrap(), "ab");
        assert_eq!(expand_with("cost: $ 5 $%", &vars).unwrap(), "cost: $ 5 $%");
        assert_eq!(expand_with("a$", &vars).unwrap(), "a$");
    }

    #[test]
    fn mandatory_variables_fail_with_the_message() {
        let set = env(&[("VAR", "plain"), ("ARG", "x")]);
        let empty = env(&[("VAR", ""), ("ARG", "x")]);
        let unset = env(&[("ARG", "x")]);
        let no_empty = "${VAR:?message here$ARG}";
        let no_unset = "${VAR?message here$ARG}";
        assert_eq!(expand_with(no_empty, &set).unwrap(), "plain");
        assert!(
            expand_with(no_empty, &empty)
                .unwrap_err()
                .contains("message herex")
        );
        assert!(
            expand_with(no_empty, &unset)
                .unwrap_err()
                .contains("message herex")
        );
        assert_eq!(expand_with(no_unset, &set).unwrap(), "plain");
        assert_eq!(expand_with(no_unset, &empty).unwrap(), "");
        assert!(
            expand_with(no_unset, &unset)
                .unwrap_err()
                .contains("message herex")
        );
    }

    #[test]
    fn mandatory_variable_default_messages_match_docker() {
        let vars = env(&[("E", "")]);
        assert_eq!(
            expand_with("${U?}", &vars).unwrap_err(),
            "failed to process \"${U?}\": U: is not allowed to be unset"
        );
        assert_eq!(
            expand_with("${E:?}", &vars).unwrap_err(),
            "failed to process \"${E:?}\": E: is not allowed to be empty"
        );
    }

    #[test]
    fn errors_are_wrapped_like_docker() {
        assert_eq!(
            expand_with("he'llo", &env(&[])).unwrap_err(),
            "failed to process \"he'llo\": unexpected end of statement while looking for \
             matching single-quote"
        );
        assert_eq!(
            expand_with("${}", &env(&[])).unwrap_err(),
            "failed to process \"${}\": syntax error: bad substitution"
        );
        assert_eq!(
            expand_with("${X", &env(&[])).unwrap_err(),
            "failed to process \"${X\": syntax error: missing '}'"
        );
        assert_eq!(
            expand_with("${X=1}", &env(&[])).unwrap_err(),
            "failed to process \"${X=1}\": unsupported modifier (=) in substitution"
        );
        assert_eq!(
            expand_with("${X:=1}", &env(&[])).unwrap_err(),
            "failed to process \"${X:=1}\": unsupported modifier (:=) in substitution"
        );
    }

    #[test]
    fn default_and_alternative_values_distinguish_empty_from_unset() {
        let vars = env(&[("FOO", "xxx"), ("BAR", "")]);
        assert_eq!(
            expand_with("${FOO-aaa} ${BAR-bbb} ${BAZ-ccc}", &vars).unwrap(),
            "xxx  ccc"
        );
        assert_eq!(
            expand_with("${FOO:-aaa} ${BAR:-bbb} ${BAZ:-ccc}", &vars).unwrap(),
            "xxx bbb ccc"
        );
        assert_eq!(
            expand_with("${FOO+aaa} ${BAR+bbb} ${BAZ+ccc}", &vars).unwrap(),
            "aaa bbb "
        );
        assert_eq!(
            expand_with("${FOO:+aaa} ${BAR:+bbb} ${BAZ:+ccc}", &vars).unwrap(),
            "aaa  "
        );
        assert_eq!(expand_with("${FOO:-}", &vars).unwrap(), "xxx");
        assert_eq!(expand_with("${BAR?bbb}", &vars).unwrap(), "");
        assert!(expand_with("${BAZ?ccc}", &vars).is_err());
        assert!(expand_with("${BAR:?bbb}", &vars).is_err());
        assert!(expand_with("${BAZ:?}", &vars).is_err());
    }

    /// (word, variables, expansion)
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

    #[test]
    fn prefix_and_suffix_removal_follow_buildkit() {
        let cases: &[Case] = &[
            (
                r"${FOO#()[]{\}^$.\*\?|\\}",
                &[("FOO", r"()[]{}^$.*?|\x")],
                "x",
            ),
            (r"${FOO%%\**}", &[("FOO", "xx**")], "xx"),
            ("${FOO#*x*y}", &[("FOO", "xxyy")], "y"),
            ("${FOO#*}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "x")], "xyy"),
            ("${FOO#$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO#}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO##*x}", &[("FOO", "xxyy")], "yy"),
            ("${FOO##}", &[("FOO", "xxyy")], "xxyy"),
            (r"${FOO#?\?}", &[("FOO", "???y")], "?y"),
            ("${ABC:-.}${FOO%x}${ABC:-.}", &[("FOO", "xxyy")], ".xxyy."),
            (r"${FOO%%\**\*}", &[("FOO", "a***yy*")], "a"),
            ("${FOO%}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO%%$BAR}", &[("FOO", "xxyy"), ("BAR", "")], "xxyy"),
            ("${FOO%.*}", &[("FOO", "archive.tar.gz")], "archive.tar"),
            ("${FOO%%.*}", &[("FOO", "archive.tar.gz")], "archive"),
            ("${FOO#*/}", &[("FOO", "a/b/c")], "b/c"),
            ("${FOO##*/}", &[("FOO", "a/b/c")], "c"),
            ("${FOO%/*}", &[("FOO", "a/b/c")], "a/b"),
            ("${FOO#v}", &[("FOO", "v1.2.3")], "1.2.3"),
            ("${UNSET#x}", &[], ""),
        ];
        for (input, vars, expected) in cases {
            assert_eq!(
                expand_with(input, &env(vars)).as_deref(),
                Ok(*expected),
                "{input}"
            );
        }
    }

    #[test]
    fn replacement_follows_buildkit() {
        let cases: &[Case] = &[
            (
                "${FOO/$NEEDLE/.} - ${FOO//$NEEDLE/.}",
                &[("FOO", "/foo*/*/*.txt"), ("NEEDLE", r"\*/")],
                "/foo.*/*.txt - /foo..*.txt",
            ),
            (
                "${FOO/$NEEDLE/} - ${FOO//$NEEDLE/}",
                &[("FOO", "/tmp/tmp/bar.txt"), ("NEEDLE", "/tmp")],
                "/tmp/bar.txt - /bar.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT} - ${FOO//$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "/a/foo/b/c.txt"),
                    ("NEEDLE", "/?/"),
                    ("REPLACEMENT", "/"),
                ],
                "/foo/b/c.txt - /foo/c.txt",
            ),
            (
                "${FOO/$NEEDLE/$REPLACEMENT}",
                &[
                    ("FOO", "http://google.de"),
                    ("NEEDLE", "http://"),
                    ("REPLACEMENT", "https://"),
                ],
                "https://google.de",
            ),
            (
                r"${FOO//\//\/}",
                &[("FOO", "/tmp/foo.txt")],
                r"\/tmp\/foo.txt",
            ),
            ("${FOO/$BAR/ww}", &[("FOO", "xxyy"), ("BAR", "")], "wwxxyy"),
            ("${FOO///}", &[("FOO", "xxyy")], "xxyy"),
            ("${FOO///}", &[], ""),
            ("${FOO//x/-}", &[("FOO", "axbxc")], "a-b-c"),
            ("${FOO//?/-}", &[("FOO", "abc")], "---"),
        ];
        for (input, vars, expected) in cases {
            assert_eq!(
                expand_with(input, &env(vars)).as_deref(),
                Ok(*expected),
                "{input}"
            );
        }
        assert!(expand_with("${FOO//ww}", &env(&[("FOO", "xxyy")])).is_err());
        assert!(expand_with("${FOO//}", &env(&[("FOO", "xxyy")])).is_err());
    }

    #[test]
    fn replace_all_of_an_empty_match_inserts_between_characters() {
        // Go's ReplaceAllString("ab", "x") for an empty pattern gives "xaxbx".
        assert_eq!(replace_all(&[], "ab", "x"), "xaxbx");
        assert_eq!(replace_all(&[PatternToken::AnyRun], "ab", "x"), "x");
        assert_eq!(
            replace_all(&[PatternToken::Literal('a')], "aba", "$0$0"),
            "aabaa"
        );
        assert_eq!(replace_all(&[PatternToken::Literal('a')], "a", "$$"), "$");
        assert_eq!(replace_all(&[PatternToken::Literal('a')], "a", "$1"), "");
        assert_eq!(replace_all(&[PatternToken::Literal('a')], "a", "$."), "$.");
    }

    #[test]
    fn invalid_pattern_escape_is_an_error() {
        let vars = env(&[("FOO", "abc")]);
        // The pattern keeps its escapes: `\x` is not a valid one, `\\` is a literal `\`.
        let err = expand_with(r"${FOO#\x}", &vars);
        assert!(err.unwrap_err().contains("invalid escape"));
        assert_eq!(
            expand_with(r"${FOO#\\}", &env(&[("FOO", r"\a")])).unwrap(),
            "a"
        );
        assert!(compile_pattern(r"\").is_err());
        assert!(compile_pattern(r"\x").is_err());
        assert!(compile_pattern(r"\\\").is_err());
        assert_eq!(
            compile_pattern(r"\*").unwrap(),
            vec![PatternToken::Literal('*')]
        );
    }

    #[test]
    fn platform_style_template_expands() {
        let vars = env(&[
            ("VERSION", "v1.2.3"),
            ("TARGETOS", "linux"),
            ("TARGETARCH", "arm"),
            ("TARGETVARIANT", "v7"),
        ]);
        let template = "something-${VERSION}.${TARGETOS}-${TARGETARCH}${TARGETVARIANT:+-${TARGETVARIANT}}.tar.gz";
        assert_eq!(
            expand_with(template, &vars).unwrap(),
            "something-v1.2.3.linux-arm-v7.tar.gz"
        );
        let mut vars = vars;
        vars.remove("TARGETVARIANT");
        assert_eq!(
            expand_with(template, &vars).unwrap(),
            "something-v1.2.3.linux-arm.tar.gz"
        );
    }

    #[test]
    fn backtick_escape_escapes_and_backslash_is_literal() {
        let vars = env(&[("PWD", "/home")]);
        let lookup = |name: &str| vars.get(name).cloned();
        assert_eq!(expand(r"c:\windows", &lookup, '`').unwrap(), r"c:\windows");
        assert_eq!(expand("he`$PWD", &lookup, '`').unwrap(), "he$PWD");
        assert_eq!(expand("\"a`\"b\"", &lookup, '`').unwrap(), "a\"b");
        assert!(
            expand(r#""a\"b""#, &lookup, '`')
                .unwrap_err()
                .contains("double-quote")
        );
        assert_eq!(expand("a` b", &lookup, '`').unwrap(), "a b");
        assert_eq!(
            split_and_expand("a` b c", &lookup, '`').unwrap(),
            ["a b", "c"]
        );
    }

    /// Cases in the spirit of BuildKit's `wordsTest`.
    #[test]
    fn words_split_on_unquoted_whitespace_including_variable_values() {
        let vars = env(&[
            ("hi", "hi"),
            ("space", "abc  def"),
            ("leading", "  ab c  "),
            ("empty", ""),
        ]);
        let cases: &[(&str, &[&str])] = &[
            ("hello", &["hello"]),
            ("hello${hi}bye", &["hellohibye"]),
            ("hello${space}bye", &["helloabc", "defbye"]),
            ("hello\"${space}\"bye", &["helloabc  defbye"]),
            ("hello \"${space}\"bye", &["hello", "abc  defbye"]),
            (
                "hello${space}${leading}bye",
                &["helloabc", "def", "ab", "c", "bye"],
            ),
            (
                "hello\"${space}\"${leading}bye",
                &["helloabc  def", "ab", "c", "bye"],
            ),
            (
                "hello\"${space}${leading}\"bye",
                &["helloabc  def  ab c  bye"],
            ),
            ("hello\"\\${space}\"bye", &["hello${space}bye"]),
            ("hello\"\\\"${space}\"bye", &["hello\"abc  defbye"]),
            ("  a   b  ", &["a", "b"]),
            ("a\\ b c", &["a b", "c"]),
            ("'a b' \"c d\"", &["a b", "c d"]),
            ("a \"\" b", &["a", "b"]),
            ("$empty", &[]),
            ("x$empty y", &["x", "y"]),
            ("", &[]),
        ];
        for (input, expected) in cases {
            assert_eq!(words_with(input, &vars).unwrap(), *expected, "{input}");
        }
        assert!(words_with("'unterminated", &vars).is_err());
    }

    #[test]
    fn heredoc_marker_keeps_following_blanks_in_its_word() {
        let vars = env(&[]);
        assert_eq!(
            words_with("cat <<  EOF > x", &vars).unwrap(),
            ["cat", "<<  EOF", ">", "x"]
        );
        assert_eq!(words_with("a < b", &vars).unwrap(), ["a", "<", "b"]);
        assert_eq!(expand_with("a <<  b", &vars).unwrap(), "a <<  b");
    }

    #[test]
    fn heredoc_words_keep_quotes_escapes_and_unset_variables() {
        assert_eq!(
            heredoc_words(r#"RUN <<'EOF' "<<X" \a $V ${W:-z}"#),
            ["RUN", "<<'EOF'", "\"<<X\"", r"\a", "$V", "${W:-z}"]
        );
        assert!(heredoc_words("RUN 'unterminated").is_empty());
    }

    #[test]
    fn fields_split_on_blanks_ignoring_quotes() {
        assert_eq!(fields("a  b\tc"), ["a", "b", "c"]);
        assert_eq!(fields("\"a b\" /d"), ["\"a", "b\"", "/d"]);
        assert!(fields("").is_empty());
    }

    #[test]
    fn expand_fields_keeps_a_variable_with_spaces_as_one_field() {
        let vars = env(&[("SRC", "a b")]);
        let lookup = |name: &str| vars.get(name).cloned();
        assert_eq!(
            expand_fields("$SRC /dst", &lookup, '\\').unwrap(),
            ["a b", "/dst"]
        );
        assert_eq!(
            split_and_expand("$SRC /dst", &lookup, '\\').unwrap(),
            ["a", "b", "/dst"]
        );
    }

    #[test]
    fn key_values_new_form_keeps_quotes_raw() {
        assert_eq!(
            key_values(r#"K=V K2="v 2" K3='x y' K4=a\ b"#, '\\', true).unwrap(),
            vec![
                ("K".to_owned(), Some("V".to_owned())),
                ("K2".to_owned(), Some("\"v 2\"".to_owned())),
                ("K3".to_owned(), Some("'x y'".to_owned())),
                ("K4".to_owned(), Some(r"a\ b".to_owned())),
            ]
        );
        assert_eq!(
            key_values("EMPTY= X=\"\"", '\\', true).unwrap(),
            vec![
                ("EMPTY".to_owned(), Some(String::new())),
                ("X".to_owned(), Some("\"\"".to_owned())),
            ]
        );
        assert_eq!(
            key_values("URL=http://x?a=b", '\\', true).unwrap(),
            vec![("URL".to_owned(), Some("http://x?a=b".to_owned()))]
        );
    }

    #[test]
    fn key_values_legacy_form_takes_the_rest_of_the_line() {
        assert_eq!(
            key_values("K some  value \"q\"", '\\', true).unwrap(),
            vec![("K".to_owned(), Some("some  value \"q\"".to_owned()))]
        );
        assert_eq!(
            key_values("K\tv", '\\', true).unwrap(),
            vec![("K".to_owned(), Some("v".to_owned()))]
        );
        assert_eq!(
            key_values("K", '\\', true).unwrap_err(),
            "ENV must have two arguments"
        );
        assert_eq!(
            key_values_for("LABEL", "K", '\\').unwrap_err(),
            "LABEL must have two arguments"
        );
    }

    #[test]
    fn key_values_errors_use_docker_messages() {
        assert_eq!(
            key_values("=x", '\\', true).unwrap_err(),
            "ENV names can not be blank"
        );
        assert_eq!(
            key_values("A=1 B", '\\', true).unwrap_err(),
            "Syntax error - can't find = in \"B\". Must be of the form: name=value"
        );
        assert_eq!(
            key_values("", '\\', true).unwrap_err(),
            "ENV requires at least one argument"
        );
        assert_eq!(
            key_values("  ", '\\', false).unwrap_err(),
            "ARG requires at least one argument"
        );
        assert_eq!(
            key_values("=x", '\\', false).unwrap_err(),
            "ARG names can not be blank"
        );
        assert_eq!(
            key_values_for("LABEL", "=x", '\\').unwrap_err(),
            "LABEL names can not be blank"
        );
    }

    #[test]
    fn arg_names_may_come_without_values() {
        assert_eq!(
            key_values("A B=2 C=\"x y\" D=", '\\', false).unwrap(),
            vec![
                ("A".to_owned(), None),
                ("B".to_owned(), Some("2".to_owned())),
                ("C".to_owned(), Some("\"x y\"".to_owned())),
                ("D".to_owned(), Some(String::new())),
            ]
        );
    }

    #[test]
    fn parse_words_matches_docker() {
        let cases: &[(&str, &[&str])] = &[
            ("foo", &["foo"]),
            ("foo bar", &["foo", "bar"]),
            ("foo\\ bar", &["foo\\ bar"]),
            ("foo=bar", &["foo=bar"]),
            ("foo bar 'abc xyz'", &["foo", "bar", "'abc xyz'"]),
            ("foo bar \"abc xyz\"", &["foo", "bar", "\"abc xyz\""]),
            ("àöû", &["àöû"]),
            ("föo bàr \"âbc xÿz\"", &["föo", "bàr", "\"âbc xÿz\""]),
            ("a=\"x \\\" y\" b", &["a=\"x \\\" y\"", "b"]),
            ("a='x \\' b", &["a='x \\'", "b"]),
            ("trailing\\", &["trailing"]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_words(input, '\\'), *expected, "{input}");
        }
    }

    #[test]
    fn key_values_use_the_dockerfile_escape() {
        assert_eq!(
            key_values("A=x` y B=c:\\d", '`', true).unwrap(),
            vec![
                ("A".to_owned(), Some("x` y".to_owned())),
                ("B".to_owned(), Some("c:\\d".to_owned())),
            ]
        );
    }

    #[test]
    fn escape_in_double_quotes_only_escapes_quote_dollar_and_itself() {
        let vars = env(&[("X", "1")]);
        assert_eq!(expand_with(r#""a\b\$X\"\\""#, &vars).unwrap(), r#"a\b$X"\"#);
        assert_eq!(expand_with(r#""$X$""#, &vars).unwrap(), "1$");
    }

    #[test]
    fn split_and_expand_reports_errors() {
        let vars = env(&[]);
        assert_eq!(
            words_with("a ${b", &vars).unwrap_err(),
            "failed to process \"a ${b\": syntax error: missing '}'"
        );
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(go_quote("\u{1}"), r#""\x01""#);
        assert_eq!(go_quote("ü"), "\"ü\"");
    }
}
