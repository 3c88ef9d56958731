//! A cursor over one directive's tokens for plugin setup code (caddyfile/dispenser.go).
//!
//! Every error it builds carries the file and line of the current token.

use std::time::Duration;

use super::error::{Error, Loc};
use super::lexer::Token;

/// Walks the tokens of one directive (all its occurrences in a block).
#[derive(Debug, Clone)]
pub struct Dispenser<'a> {
    tokens: &'a [Token],
    cursor: isize,
    nesting: usize,
}

impl<'a> Dispenser<'a> {
    /// A dispenser before the first token.
    pub fn new(tokens: &'a [Token]) -> Self {
        Self {
            tokens,
            cursor: -1,
            nesting: 0,
        }
    }

    /// Moves to the next token, wherever it is. For directives this starts each occurrence.
    // Named after caddy's `Dispenser.Next`, which every plugin's setup is written against.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> bool {
        if self.cursor < self.tokens.len() as isize - 1 {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    /// Moves to the next token only if it is on the same line (it may be `{`).
    pub fn next_arg(&mut self) -> bool {
        if self.cursor < 0 {
            self.cursor += 1;
            return !self.tokens.is_empty();
        }
        let i = self.cursor as usize;
        if i + 1 >= self.tokens.len() {
            return false;
        }
        let (cur, nxt) = (&self.tokens[i], &self.tokens[i + 1]);
        if cur.loc.file == nxt.loc.file
            && cur.loc.line + cur.text.matches('\n').count() == nxt.loc.line
        {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    /// Enters a `{ … }` block opened on the current line, then yields one property line at a
    /// time (the cursor on its first token); false at the closing brace.
    pub fn next_block(&mut self) -> bool {
        if self.nesting > 0 {
            // Skip whatever is left of the previous property line.
            while self.next_arg() {}
            if !self.next() {
                return false;
            }
            if self.is_close() {
                self.nesting -= 1;
                return false;
            }
            return true;
        }
        if !self.next_arg() {
            return false;
        }
        if !self.is_open() {
            self.cursor -= 1;
            return false;
        }
        if !self.next() {
            return false;
        }
        if self.is_close() {
            return false;
        }
        self.nesting += 1;
        true
    }

    /// The current token's text (empty before the first token).
    pub fn val(&self) -> &'a str {
        self.tok().map_or("", |t| t.text.as_str())
    }

    fn tok(&self) -> Option<&'a Token> {
        if self.cursor < 0 {
            None
        } else {
            self.tokens.get(self.cursor as usize)
        }
    }

    fn is_open(&self) -> bool {
        self.tok().is_some_and(Token::is_open)
    }

    fn is_close(&self) -> bool {
        self.tok().is_some_and(Token::is_close)
    }

    /// Location of the current token (or of the first one).
    pub fn loc(&self) -> Option<Loc> {
        self.tok()
            .or_else(|| self.tokens.first())
            .map(|t| t.loc.clone())
    }

    /// The rest of the current line's arguments, stopping before a `{`.
    pub fn remaining_args(&mut self) -> Vec<String> {
        let mut args = Vec::new();
        while self.next_arg() {
            if self.is_open() {
                self.cursor -= 1;
                break;
            }
            args.push(self.val().to_string());
        }
        args
    }

    /// `Wrong argument count or unexpected line ending after 'X'` (or the `{` variant).
    pub fn arg_err(&self) -> Error {
        if self.is_open() {
            return self.err("Unexpected token '{', expecting argument");
        }
        self.err(format!(
            "Wrong argument count or unexpected line ending after '{}'",
            self.val()
        ))
    }

    /// `Error during parsing: MSG` at the current token.
    pub fn err(&self, msg: impl Into<String>) -> Error {
        Error::parse(self.loc(), msg)
    }

    /// `Syntax error: Unexpected token 'VAL', expecting 'WANT'` at the current token.
    pub fn syntax_err(&self, want: &str) -> Error {
        Error::syntax(self.loc(), self.val(), want)
    }

    /// The next argument on this line, or an argument-count error.
    pub fn expect_arg(&mut self) -> Result<&'a str, Error> {
        if self.next_arg() && !self.is_open() {
            Ok(self.val())
        } else {
            Err(self.arg_err())
        }
    }

    /// The rest of the line as exactly one argument (`Wrong argument count…` otherwise).
    pub fn single_arg(&mut self) -> Result<String, Error> {
        let args = self.remaining_args();
        match <[String; 1]>::try_from(args) {
            Ok([v]) => Ok(v),
            Err(_) => Err(self.arg_err()),
        }
    }

    /// Errors unless the line has no more arguments.
    pub fn expect_no_more_args(&mut self) -> Result<(), Error> {
        if self.next_arg() {
            if self.is_open() {
                self.cursor -= 1;
                return Ok(());
            }
            return Err(self.arg_err());
        }
        Ok(())
    }

    /// Errors if the occurrence opens a `{ … }` block.
    pub fn expect_no_block(&mut self) -> Result<(), Error> {
        if self.next_block() {
            return Err(self.err(format!("unknown property '{}'", self.val())));
        }
        Ok(())
    }
}

/// Parses a Go-style duration (`5s`, `1m30s`, `250ms`, `1h`), as CoreDNS's `time.ParseDuration`.
pub fn parse_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = s;
    let mut total = 0f64;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += n * scale;
    }
    // Go's time.ParseDuration keeps nanoseconds in an int64: anything past ~292 years is an
    // "invalid duration" there, and `from_secs_f64` would panic on it here (found by fuzzing).
    if !total.is_finite() || total > i64::MAX as f64 / 1e9 {
        return None;
    }
    Duration::try_from_secs_f64(total).ok()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    #[test]
    fn durations_past_go_s_int64_range_are_invalid_not_a_panic() {
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(
            parse_duration("2562047h"),
            Some(Duration::from_secs(2562047 * 3600))
        );
        // Go: time.ParseDuration("2562048h") = invalid duration (overflows int64 nanoseconds).
        assert_eq!(parse_duration("2562048h"), None);
        assert_eq!(parse_duration("5555555555555555555555m"), None);
        assert_eq!(parse_duration(&format!("{}s", "9".repeat(400))), None);
    }

    #[test]
    fn walks_occurrences_and_blocks() {
        let toks = lex(
            &Arc::from("Corefile"),
            "log a b {\n class denial\n x\n}\nlog c",
        );
        let mut d = Dispenser::new(&toks);
        assert!(d.next());
        assert_eq!(d.val(), "log");
        assert_eq!(d.remaining_args(), vec!["a", "b"]);
        assert!(d.next_block());
        assert_eq!(d.val(), "class");
        assert_eq!(d.remaining_args(), vec!["denial"]);
        assert!(d.next_block());
        assert_eq!(d.val(), "x");
        assert!(!d.next_block());
        assert!(d.next());
        assert_eq!(d.val(), "log");
        assert_eq!(d.remaining_args(), vec!["c"]);
        assert!(!d.next_block());
        assert!(!d.next());
    }

    #[test]
    fn arg_errors_carry_location() {
        let toks = lex(&Arc::from("Corefile"), "\nhealth {\n lameduck\n}");
        let mut d = Dispenser::new(&toks);
        d.next();
        assert!(d.next_block());
        assert_eq!(d.val(), "lameduck");
        let e = d.expect_arg().unwrap_err();
        assert_eq!(
            e.to_string(),
            "Corefile:3 - Error during parsing: Wrong argument count or unexpected line ending after 'lameduck'"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_duration("1m30s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_duration("1.5h"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("s"), None);
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        // Past Go's int64 nanoseconds (about 292 years): invalid, not a panic (found by the
        // corefile fuzz target: `consolidate 55555555555555555555m`).
        assert_eq!(parse_duration("55555555555555555555m"), None);
        assert_eq!(
            parse_duration("2562047h"),
            Some(Duration::from_secs(2562047 * 3600))
        );
        assert_eq!(parse_duration("2562048h"), None);
    }
}
