//! `whoami` takes no arguments and no block.

use crate::corefile::{Dispenser, Error};

/// Parses `whoami`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<(), Error> {
    while d.next() {
        if d.next_arg() {
            return Err(d.arg_err());
        }
        d.expect_no_block()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    // plugin/whoami/setup_test.go: TestSetup (`whoami` ok, `whoami example.org` refused), and
    // a block.
    #[test]
    fn table() {
        let cases: &[(&str, Option<&str>)] = &[
            ("whoami", None),
            ("whoami example.org", Some("Wrong argument count")),
            (
                "whoami extra",
                Some("Wrong argument count or unexpected line ending after 'extra'"),
            ),
            (
                "whoami {\n x\n}",
                Some("Unexpected token '{', expecting argument"),
            ),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            let toks = lex(&Arc::from("Corefile"), input);
            let got = parse(&mut Dispenser::new(&toks));
            match want {
                None => assert!(got.is_ok(), "case {i}: {got:?}"),
                Some(w) => assert!(got.unwrap_err().to_string().contains(w), "case {i}"),
            }
        }
    }
}
