//! `view NAME { expr EXPRESSION }`: the block takes a query only when every expression is true
//! for it (plugin/view). Several blocks may then serve the same zone and port: the server tries
//! them in Corefile order and the first whose views pass answers (split DNS).

mod expr;

use std::sync::Arc;

pub use expr::Expr;

use crate::corefile::{Dispenser, Error};
use crate::plugins::metadata::Meta;
use crate::plugins::{Handler, HandlerError, Next, Request, Response};

/// Directive name.
pub const NAME: &str = "view";

/// A parsed `view`: its name and expressions (all must hold).
#[derive(Debug, Clone, PartialEq)]
pub struct ViewConfig {
    /// The view's name (metrics' `view` label, metadata `view/name`).
    pub name: String,
    /// The expressions.
    pub exprs: Vec<Expr>,
}

/// Parses `view NAME { expr EXPRESSION... }` (once per block).
pub fn parse(d: &mut Dispenser<'_>) -> Result<ViewConfig, Error> {
    d.next();
    let args = d.remaining_args();
    let [name]: [String; 1] = args.try_into().map_err(|_| d.arg_err())?;
    let mut exprs = Vec::new();
    while d.next_block() {
        match d.val() {
            "expr" => {
                let text = d.remaining_args().join(" ");
                exprs.push(
                    Expr::parse(&text)
                        .map_err(|e| d.err(format!("invalid expression \"{text}\": {e}")))?,
                );
            }
            other => return Err(d.err(format!("unknown property '{other}'"))),
        }
    }
    Ok(ViewConfig { name, exprs })
}

/// What the server asks of a block with a view: does this query belong to it?
#[derive(Debug)]
pub struct ViewFilter {
    name: Arc<str>,
    exprs: Vec<Expr>,
}

impl ViewFilter {
    /// The filter of `cfg`.
    pub fn new(cfg: &ViewConfig) -> Self {
        Self {
            name: Arc::from(cfg.name.as_str()),
            exprs: cfg.exprs.clone(),
        }
    }

    /// The view's name.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Whether every expression holds for `req` (no expression: every query).
    pub fn matches(&self, req: &Request) -> bool {
        self.exprs.iter().all(|e| e.eval(req))
    }
}

/// The handler: passes queries on and provides the metadata label `view/name`.
pub struct View {
    name: String,
}

impl View {
    /// The handler of `cfg`.
    pub fn new(cfg: &ViewConfig) -> Self {
        Self {
            name: cfg.name.clone(),
        }
    }
}

#[async_trait::async_trait]
impl Handler for View {
    fn name(&self) -> &'static str {
        NAME
    }

    fn metadata(&self, _: &Request, meta: &mut Meta) {
        meta.set("view/name", self.name.clone());
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        next.run(req).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::rr::{Name, RecordType};

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::plugins::Proto;

    fn run(s: &str) -> Result<ViewConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn coredns_setup_table() {
        // CoreDNS's TestSetup (plugin/view/setup_test.go): (input, fails, expressions). The
        // last case, two `view` lines, is refused by the once-per-block check.
        for (input, fails, n) in [
            (
                "view example {\n expr name() == 'example.com.'\n}",
                false,
                1,
            ),
            (
                "view example {\n expr incidr(client_ip(), '10.0.0.0/24')\n}",
                false,
                1,
            ),
            (
                "view example {\n expr name() == 'example.com.'\n expr name() == 'example2.com.'\n}",
                false,
                2,
            ),
            ("view", true, 0),
            ("view example {\n expr invalid expression\n}", true, 0),
            ("view x {\n foo bar\n}\n", true, 0),
            ("view a b {\n}", true, 0),
            ("view empty", false, 0),
        ] {
            match run(input) {
                Ok(c) => {
                    assert!(!fails, "{input}");
                    assert_eq!(c.exprs.len(), n, "{input}");
                }
                Err(e) => assert!(fails, "{input}: {e}"),
            }
        }
        let e = run("view x {\n expr upper(name()) == 'A'\n}")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e.split(" - ")
                .nth(1)
                .unwrap_or(&e)
                .split(" (supported")
                .next()
                .unwrap(),
            "Error during parsing: invalid expression \"upper(name()) == 'A'\": unsupported function 'upper'"
        );
    }

    #[test]
    fn filter_and_metadata() {
        let c = run("view v1 {\n expr type() == 'A'\n expr name() endsWith '.test.'\n}").unwrap();
        let f = ViewFilter::new(&c);
        assert_eq!(&**f.name(), "v1");
        let ask = |n: &str, t| {
            Request::new(
                Name::from_ascii(n).unwrap(),
                t,
                "127.0.0.1:1".parse().unwrap(),
                Proto::Udp,
            )
        };
        assert!(f.matches(&ask("a.test.", RecordType::A)));
        assert!(
            !f.matches(&ask("a.test.", RecordType::AAAA)),
            "every expression must hold"
        );
        assert!(!f.matches(&ask("a.example.", RecordType::A)));
        // CoreDNS's TestFilter_NoPrograms.
        assert!(ViewFilter::new(&run("view empty").unwrap()).matches(&ask("x.", RecordType::A)));
        // CoreDNS's TestMetadata_PublishesViewName.
        let mut meta = Meta::default();
        View::new(&c).metadata(&ask("x.", RecordType::A), &mut meta);
        assert_eq!(meta.get("view/name"), Some("v1"));
    }
}
