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

    /// The location this error prints in front of its own message (CoreDNS prints one for
    /// parse, syntax and plain errors, none for key, plugin and I/O errors).
    fn own_loc(&self) -> Option<&Loc> {
        match self.kind {
            ErrorKind::Parse(_) | ErrorKind::Syntax { .. } | ErrorKind::Plain(_) => {
                self.loc.as_ref()
            }
            ErrorKind::Key(_) | ErrorKind::Plugin { .. } | ErrorKind::Io(_) => None,
        }
    }

    /// Whether the displayed text already carries `FILE:LINE`.
    fn shows_loc(&self) -> bool {
        match &self.kind {
            ErrorKind::Plugin { inner, .. } => inner.shows_loc(),
            _ => self.own_loc().is_some(),
        }
    }

    /// The text printed when the server refuses a Corefile: CoreDNS's text, prefixed with
    /// `FILE:LINE - ` when that text carries no location of its own.
    pub fn located(&self) -> String {
        match (&self.loc, self.shows_loc()) {
            (Some(loc), false) => format!("{loc} - {self}"),
            _ => self.to_string(),
        }
    }

    /// The text `-validate` prints: always `FILE:LINE - MESSAGE` when a location is known, with
    /// inner locations dropped (`Corefile:3 - plugin/health: Error during parsing: …`).
    pub fn with_location(&self) -> String {
        match &self.loc {
            Some(loc) => format!("{loc} - {}", Bare(self)),
            None => self.to_string(),
        }
    }

    fn fmt_kind(&self, f: &mut fmt::Formatter<'_>, show_loc: bool) -> fmt::Result {
        if show_loc && let Some(loc) = self.own_loc() {
            write!(f, "{loc} - ")?;
        }
        match &self.kind {
            ErrorKind::Parse(msg) => write!(f, "Error during parsing: {msg}"),
            ErrorKind::Syntax { got, want } => {
                write!(
                    f,
                    "Syntax error: Unexpected token '{got}', expecting '{want}'"
                )
            }
            ErrorKind::Key(msg) => write!(f, "error inspecting server blocks: {msg}"),
            ErrorKind::Plugin { name, inner } => {
                write!(f, "plugin/{name}: ")?;
                inner.fmt_kind(f, show_loc)
            }
            ErrorKind::Plain(msg) | ErrorKind::Io(msg) => f.write_str(msg),
        }
    }
}

/// Displays an error without any location.
struct Bare<'a>(&'a Error);

impl fmt::Display for Bare<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt_kind(f, false)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_kind(f, true)
    }
}
