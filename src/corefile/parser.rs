//! Server blocks, keys and directives, with `import` and snippets (caddyfile/parse.go).
//!
//! The parser knows nothing about plugins: it is handed a predicate that says which directive
//! names exist. Tokens of one directive that appears several times in a block are concatenated,
//! in order, so its setup sees every occurrence.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{Error, Loc};
use super::lexer::{Token, lex, substitute_env};

/// Most snippet expansions in one parse (caddy's limit).
const MAX_SNIPPET_IMPORTS: usize = 10_000;
/// Most file imports in one parse (caddy's limit).
const MAX_FILE_IMPORTS: usize = 100_000;

/// One server block: its keys and its directives in order of first appearance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerBlock {
    /// The key tokens (commas stripped, empty keys dropped).
    pub keys: Vec<Token>,
    /// The directives of the block.
    pub directives: Vec<Directive>,
}

/// All tokens of one directive in one block; `tokens[0]` is the name of its first occurrence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Directive name.
    pub name: String,
    /// Every token of every occurrence, each occurrence starting with the name token.
    pub tokens: Vec<Token>,
}

/// The parsed file plus the warnings the parse produced (e.g. an import glob with no match).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    /// Server blocks in file order (snippets are not included).
    pub blocks: Vec<ServerBlock>,
    /// Non-fatal problems, already formatted.
    pub warnings: Vec<String>,
}

struct Parser<'a> {
    tokens: Vec<Token>,
    cursor: isize,
    valid: &'a dyn Fn(&str) -> bool,
    snippets: HashMap<String, Vec<Token>>,
    imports: HashMap<String, HashSet<String>>,
    snippet_imports: usize,
    file_imports: usize,
    warnings: Vec<String>,
}

/// Parses the text of `file` into server blocks.
pub fn parse(file: &str, input: &str, valid: &dyn Fn(&str) -> bool) -> Result<Parsed, Error> {
    let file: Arc<str> = Arc::from(file);
    let mut tokens = lex(&file, input);
    for t in &mut tokens {
        t.text = substitute_env(&t.text);
    }
    let mut p = Parser {
        tokens,
        cursor: -1,
        valid,
        snippets: HashMap::new(),
        imports: HashMap::new(),
        snippet_imports: 0,
        file_imports: 0,
        warnings: Vec::new(),
    };
    let mut blocks = Vec::new();
    while p.next() {
        if let Some(block) = p.parse_one()? {
            blocks.push(block);
        }
    }
    Ok(Parsed {
        blocks,
        warnings: p.warnings,
    })
}

impl Parser<'_> {
    fn next(&mut self) -> bool {
        if self.cursor < self.tokens.len() as isize - 1 {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    fn at_end(&self) -> bool {
        self.cursor < 0 || self.cursor as usize >= self.tokens.len()
    }

    fn tok(&self) -> Option<&Token> {
        if self.at_end() {
            None
        } else {
            Some(&self.tokens[self.cursor as usize])
        }
    }

    fn val(&self) -> &str {
        self.tok().map_or("", |t| t.text.as_str())
    }

    fn is_open(&self) -> bool {
        self.tok().is_some_and(Token::is_open)
    }

    fn is_close(&self) -> bool {
        self.tok().is_some_and(Token::is_close)
    }

    fn loc(&self) -> Option<Loc> {
        self.tok()
            .or_else(|| self.tokens.last())
            .map(|t| t.loc.clone())
    }

    /// Whether the current token starts a new line (or a new file) relative to the previous one.
    fn is_newline(&self) -> bool {
        if self.cursor <= 0 || self.at_end() {
            return true;
        }
        let prev = &self.tokens[self.cursor as usize - 1];
        let cur = &self.tokens[self.cursor as usize];
        prev.loc.file != cur.loc.file || ends_on(prev) < cur.loc.line
    }

    fn err(&self, msg: impl Into<String>) -> Error {
        Error::parse(self.loc(), msg)
    }

    fn syntax_err(&self, want: &str) -> Error {
        let got = self
            .tok()
            .or_else(|| self.tokens.last())
            .map_or("", |t| t.text.as_str());
        Error::syntax(self.loc(), got, want)
    }

    fn parse_one(&mut self) -> Result<Option<ServerBlock>, Error> {
        let mut keys = Vec::new();
        let eof = self.addresses(&mut keys)?;
        if let Some(name) = snippet_name(&keys) {
            if self.snippets.contains_key(&name) {
                return Err(Error::parse(
                    Some(keys[0].loc.clone()),
                    format!("redeclaration of previously declared snippet {name}"),
                ));
            }
            let tokens = self.snippet_tokens()?;
            self.snippets.insert(name, tokens);
            return Ok(None);
        }
        if keys.is_empty() && eof {
            return Ok(None);
        }
        let mut directives: Vec<Directive> = Vec::new();
        let opened = !eof && self.is_open();
        if !opened && !eof {
            self.cursor -= 1;
        }
        let closed = !eof && self.directives(&mut directives)?;
        if opened && !closed {
            if self.is_close() {
                return Err(self.err("Unexpected EOF"));
            }
            return Err(self.syntax_err("}"));
        }
        if keys.is_empty() {
            return Ok(None);
        }
        Ok(Some(ServerBlock { keys, directives }))
    }

    /// Reads the block's keys; returns true when the file ended while reading them.
    fn addresses(&mut self, keys: &mut Vec<Token>) -> Result<bool, Error> {
        let mut expecting_another = false;
        loop {
            if self.at_end() {
                return Ok(true);
            }
            if self.val() == "import" && self.is_newline() && !self.tok().is_some_and(|t| t.quoted)
            {
                self.do_import()?;
                continue;
            }
            if self.is_open() {
                if expecting_another {
                    return Err(self.err(format!(
                        "Expected another address but had '{}' - check for extra comma",
                        self.val()
                    )));
                }
                return Ok(false);
            }
            if self.is_close() {
                return Err(self.err("Unexpected '}' because no matching opening brace"));
            }
            let tok = self.tokens[self.cursor as usize].clone();
            if !tok.text.is_empty() {
                let mut tok = tok;
                if let Some(stripped) = tok.text.strip_suffix(',') {
                    tok.text = stripped.to_string();
                    expecting_another = true;
                } else {
                    expecting_another = false;
                }
                if !tok.text.is_empty() {
                    keys.push(tok);
                }
            }
            if !self.next() {
                if expecting_another {
                    return Err(self.err("Unexpected EOF"));
                }
                return Ok(true);
            }
            if !expecting_another && self.is_newline() {
                return Ok(false);
            }
        }
    }

    fn snippet_tokens(&mut self) -> Result<Vec<Token>, Error> {
        if !self.is_open() {
            return Err(self.syntax_err("{"));
        }
        let mut count = 1usize;
        let mut tokens = Vec::new();
        while self.next() {
            if self.is_close() {
                count -= 1;
                if count == 0 {
                    break;
                }
            }
            if self.is_open() {
                count += 1;
            }
            tokens.push(self.tokens[self.cursor as usize].clone());
        }
        if count != 0 {
            return Err(self.syntax_err("}"));
        }
        Ok(tokens)
    }

    /// Reads directives up to a closing brace (true) or the end of the file (false).
    fn directives(&mut self, out: &mut Vec<Directive>) -> Result<bool, Error> {
        while self.next() {
            if self.is_close() {
                return Ok(true);
            }
            if self.val() == "import" && !self.tok().is_some_and(|t| t.quoted) {
                self.do_import()?;
                self.cursor -= 1;
                continue;
            }
            self.directive(out)?;
        }
        Ok(false)
    }

    fn directive(&mut self, out: &mut Vec<Directive>) -> Result<(), Error> {
        let name = self.val().to_string();
        if !(self.valid)(&name) {
            return Err(self.err(format!("Unknown directive '{name}'")));
        }
        let mut tokens = vec![self.tokens[self.cursor as usize].clone()];
        let mut nesting = 0usize;
        while self.next() {
            if self.is_open() {
                nesting += 1;
            } else if self.is_newline() && nesting == 0 {
                self.cursor -= 1;
                break;
            } else if self.is_close() && nesting > 0 {
                nesting -= 1;
            } else if self.is_close() {
                return Err(self.err("Unexpected '}' because no matching opening brace"));
            } else if self.val() == "import" && self.is_newline() {
                self.do_import()?;
                self.cursor -= 1;
                continue;
            }
            tokens.push(self.tokens[self.cursor as usize].clone());
        }
        if nesting > 0 {
            return Err(self.err("Unexpected EOF"));
        }
        match out.iter_mut().find(|d| d.name == name) {
            Some(d) => d.tokens.extend(tokens),
            None => out.push(Directive { name, tokens }),
        }
        Ok(())
    }

    /// Replaces `import ARG` (cursor on `import`) with the tokens it names; afterwards the
    /// cursor is on the first imported token (or whatever followed the import).
    fn do_import(&mut self) -> Result<(), Error> {
        let at = self.cursor as usize;
        let import_tok = self.tokens[at].clone();
        if !self.next_arg() {
            return Err(Error::parse(
                Some(import_tok.loc.clone()),
                "Wrong argument count or unexpected line ending after 'import'",
            ));
        }
        let pattern = self.val().to_string();
        if pattern.is_empty() {
            return Err(self.err("Import requires a non-empty filepath"));
        }
        if self.next_arg() {
            return Err(self.err("Import takes only one argument (glob pattern or file)"));
        }
        let imported = if let Some(snippet) = self.snippets.get(&pattern) {
            self.snippet_imports += 1;
            if self.snippet_imports > MAX_SNIPPET_IMPORTS {
                return Err(Error::parse(
                    Some(import_tok.loc.clone()),
                    format!("maximum snippet import depth ({MAX_SNIPPET_IMPORTS}) exceeded"),
                ));
            }
            snippet.clone()
        } else {
            self.import_files(&import_tok, &pattern)?
        };
        let after = self.tokens.split_off(at + 2);
        self.tokens.truncate(at);
        self.tokens.extend(imported);
        self.tokens.extend(after);
        self.cursor = at as isize;
        Ok(())
    }

    fn next_arg(&mut self) -> bool {
        if self.cursor < 0 || self.cursor as usize + 1 >= self.tokens.len() {
            return false;
        }
        let cur = &self.tokens[self.cursor as usize];
        let nxt = &self.tokens[self.cursor as usize + 1];
        if cur.loc.file == nxt.loc.file && ends_on(cur) == nxt.loc.line {
            self.cursor += 1;
            true
        } else {
            false
        }
    }

    fn import_files(&mut self, import_tok: &Token, pattern: &str) -> Result<Vec<Token>, Error> {
        let loc = Some(import_tok.loc.clone());
        let path = resolve(&import_tok.loc.file, pattern);
        let shown = path.display().to_string();
        let stars = pattern.matches('*').count();
        let quests = pattern.matches('?').count();
        if stars > 1 || quests > 1 || pattern.contains('[') || (stars + quests) > 1 {
            return Err(Error::parse(
                loc,
                format!("Glob pattern may only contain one wildcard (*), but has others: {shown}"),
            ));
        }
        let is_glob = stars + quests > 0;
        let matches: Vec<PathBuf> = if is_glob {
            let mut m: Vec<PathBuf> = glob::glob(&shown)
                .map_err(|e| {
                    Error::parse(
                        loc.clone(),
                        format!("Failed to use import pattern {shown}: {e}"),
                    )
                })?
                .filter_map(Result::ok)
                .collect();
            m.sort();
            if m.is_empty() {
                self.warnings
                    .push(format!("No files matching import glob pattern: {shown}"));
            }
            m
        } else if path.exists() {
            vec![path.clone()]
        } else {
            return Err(Error::parse(
                loc,
                format!("File to import not found: {shown}"),
            ));
        };
        let mut out = Vec::new();
        for file in matches {
            let name = file.display().to_string();
            if file.is_dir() {
                return Err(Error::parse(
                    loc,
                    format!("Could not import {name}: is a directory"),
                ));
            }
            self.file_imports += 1;
            if self.file_imports > MAX_FILE_IMPORTS {
                return Err(Error::parse(
                    loc,
                    format!("maximum file imports ({MAX_FILE_IMPORTS}) exceeded"),
                ));
            }
            let from = import_tok.loc.file.to_string();
            if self.would_cycle(&from, &name) {
                return Err(Error::parse(
                    loc,
                    format!("a cycle of imports exists between {from} and {name}"),
                ));
            }
            self.imports.entry(from).or_default().insert(name.clone());
            let text = std::fs::read_to_string(&file).map_err(|e| {
                Error::parse(
                    loc.clone(),
                    format!("Could not read imported file {name}: {e}"),
                )
            })?;
            let mut tokens = lex(&Arc::from(name.as_str()), &text);
            if tokens.is_empty() {
                self.warnings.push(format!("Import file is empty: {name}"));
            }
            for t in &mut tokens {
                t.text = substitute_env(&t.text);
            }
            out.extend(tokens);
        }
        Ok(out)
    }

    /// Whether adding the edge `from → to` closes a cycle in the import graph.
    fn would_cycle(&self, from: &str, to: &str) -> bool {
        if from == to {
            return true;
        }
        let mut stack = vec![to.to_string()];
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if n == from {
                return true;
            }
            if seen.insert(n.clone())
                && let Some(next) = self.imports.get(&n)
            {
                stack.extend(next.iter().cloned());
            }
        }
        false
    }
}

/// The line on which a token ends (quoted tokens may span lines).
fn ends_on(t: &Token) -> usize {
    t.loc.line + t.text.matches('\n').count()
}

fn snippet_name(keys: &[Token]) -> Option<String> {
    match keys {
        [k] if k.text.len() > 2 && k.text.starts_with('(') && k.text.ends_with(')') => {
            Some(k.text[1..k.text.len() - 1].to_string())
        }
        _ => None,
    }
}

/// Resolves an import pattern relative to the directory of the file holding the `import`.
fn resolve(file: &str, pattern: &str) -> PathBuf {
    let p = Path::new(pattern);
    if p.is_absolute() {
        return p.to_path_buf();
    }
    match Path::new(file).parent() {
        Some(dir) if file != "stdin" && !dir.as_os_str().is_empty() => dir.join(p),
        _ => p.to_path_buf(),
    }
}
