//! Corefile errors, displayed exactly as CoreDNS (caddy) prints them.

use std::fmt;
use std::sync::Arc;

/// Where a token came from: the file that held it and its line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loc {
    /// File name as given on the command line or in the `import` (e.g. `Corefile`).
    pub file: Arc<str>,
    /// 1-based line number.
    pub line: usize,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// What went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// `FILE:LINE - Error during parsing: MSG`
    Parse(String),
    /// `FILE:LINE - Syntax error: Unexpected token 'GOT', expecting 'WANT'`
    Syntax {
        /// The token that was found.
        got: String,
        /// What the parser wanted instead.
        want: String,
    },
    /// `error inspecting server blocks: MSG` (bad server block keys).
    Key(String),
    /// `plugin/NAME: INNER` (an error from a plugin's setup).
    Plugin {
        /// Plugin (directive) name.
        name: String,
        /// The wrapped error.
        inner: Box<Error>,
    },
    /// A message shown as it is (may carry a location).
    Plain(String),
    /// Could not read a file.
    Io(String),
}

/// A Corefile error: a kind and, usually, a location.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Error {
    /// Location of the offending token, if known.
    pub loc: Option<Loc>,
    /// What went wrong.
    pub kind: ErrorKind,
}

impl Error {
    /// `Error during parsing: MSG` at `loc`.
    pub fn parse(loc: Option<Loc>, msg: impl Into<String>) -> Self {
        Self {
            loc,
            kind: ErrorKind::Parse(msg.into()),
        }
    }

    /// `Syntax error: Unexpected token 'GOT', expecting 'WANT'` at `loc`.
    pub fn syntax(loc: Option<Loc>, got: impl Into<String>, want: impl Into<String>) -> Self {
        Self {
            loc,
            kind: ErrorKind::Syntax {
                got: got.into(),
                want: want.into(),
            },
        }
    }

    /// `error inspecting server blocks: MSG`.
    pub fn key(loc: Option<Loc>, msg: impl Into<String>) -> Self {
        Self {
            loc,
            kind: ErrorKind::Key(msg.into()),
        }
    }

    /// A message without CoreDNS's `Error during parsing:` wording.
    pub fn plain(loc: Option<Loc>, msg: impl Into<String>) -> Self {
        Self {
            loc,
            kind: ErrorKind::Plain(msg.into()),
        }
    }

    /// Wraps `inner` as `plugin/NAME: inner`; keeps the location of `inner` (or `loc`).
    pub fn plugin(name: &str, loc: Option<Loc>, inner: Self) -> Self {
        let loc = inner.loc.clone().or(loc);
        Self {
            loc,
            kind: ErrorKind::Plugin {
                name: name.to_string(),
                inner: Box::new(inner),
            },
        }
    }

    /// Whether the displayed text already starts with or carries `FILE:LINE`.
    fn shows_loc(&self) -> bool {
        match &self.kind {
            ErrorKind::Parse(_) | ErrorKind::Syntax { .. } => self.loc.is_some(),
            ErrorKind::Plugin { inner, .. } => inner.shows_loc(),
            ErrorKind::Plain(_) => self.loc.is_some(),
            ErrorKind::Key(_) | ErrorKind::Io(_) => false,
        }
    }

    /// The text `-validate` prints: always starts with `FILE:LINE - ` when a location is known.
    pub fn with_location(&self) -> String {
        match (&self.loc, self.shows_loc()) {
            (Some(loc), false) => format!("{loc} - {self}"),
            _ => self.to_string(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = |f: &mut fmt::Formatter<'_>| match &self.loc {
            Some(loc) => write!(f, "{loc} - "),
            None => Ok(()),
        };
        match &self.kind {
            ErrorKind::Parse(msg) => {
                prefix(f)?;
                write!(f, "Error during parsing: {msg}")
            }
            ErrorKind::Syntax { got, want } => {
                prefix(f)?;
                write!(
                    f,
                    "Syntax error: Unexpected token '{got}', expecting '{want}'"
                )
            }
            ErrorKind::Key(msg) => write!(f, "error inspecting server blocks: {msg}"),
            ErrorKind::Plugin { name, inner } => write!(f, "plugin/{name}: {inner}"),
            ErrorKind::Plain(msg) => {
                prefix(f)?;
                f.write_str(msg)
            }
            ErrorKind::Io(msg) => f.write_str(msg),
        }
    }
}
