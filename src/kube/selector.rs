//! Label selectors in the API's text form (`app=web,tier in (a,b),!legacy`): parsed once at
//! setup so a bad one is a Corefile error, sent to the API as text, and matched locally for the
//! snapshot source.

use std::collections::{BTreeMap, BTreeSet};

use kube::core::{Expression, Selector, SelectorExt};

/// A parsed label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelSelector {
    text: String,
    selector: Selector,
}

impl LabelSelector {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut exprs = Vec::new();
        for part in split_top(text)? {
            let part = part.trim();
            if part.is_empty() {
                return Err("empty requirement".into());
            }
            exprs.push(requirement(part)?);
        }
        Ok(Self {
            text: text.to_string(),
            selector: exprs.into_iter().collect(),
        })
    }

    /// Whether `labels` match.
    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        static EMPTY: BTreeMap<String, String> = BTreeMap::new();
        self.selector.matches(labels.unwrap_or(&EMPTY))
    }

    /// The selector as given.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Splits on commas outside parentheses.
fn split_top(text: &str) -> Result<Vec<&str>, String> {
    let (mut depth, mut start, mut out) = (0i32, 0usize, Vec::new());
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth < 0 {
                    return Err("unbalanced ')'".into());
                }
            }
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("unbalanced '('".into());
    }
    out.push(&text[start..]);
    Ok(out)
}

fn key(k: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 253
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key \"{k}\""))
    }
}

fn value(v: &str) -> Result<String, String> {
    let v = v.trim();
    let ok = v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(v.to_string())
    } else {
        Err(format!("invalid label value: \"{v}\""))
    }
}

fn set(rest: &str) -> Result<BTreeSet<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a (value,...) set, found \"{rest}\""))?;
    inner.split(',').map(value).collect()
}

fn requirement(part: &str) -> Result<Expression, String> {
    if let Some(k) = part.strip_prefix('!') {
        return Ok(Expression::DoesNotExist(key(k)?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Expression::NotEqual(key(k)?, value(v)?));
    }
    if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Expression::Equal(key(k)?, value(v)?));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let k = words.next().unwrap_or_default();
    match words.next().map(str::trim_start) {
        None => Ok(Expression::Exists(key(k)?)),
        Some(rest) => {
            if let Some(r) = rest.strip_prefix("notin") {
                Ok(Expression::NotIn(key(k)?, set(r)?))
            } else if let Some(r) = rest.strip_prefix("in") {
                Ok(Expression::In(key(k)?, set(r)?))
            } else {
                Err(format!("unexpected \"{rest}\" after \"{k}\""))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], bool);
        let cases: &[Case] = &[
            ("app=web", &[("app", "web")], true),
            ("app==web", &[("app", "db")], false),
            ("app!=web", &[("app", "db")], true),
            ("app!=web", &[], true),
            ("tier in (a, b)", &[("tier", "b")], true),
            ("tier notin (a,b)", &[("tier", "b")], false),
            ("app", &[("app", "")], true),
            ("!app", &[("app", "x")], false),
            (
                "app=web,env in (prod),!legacy",
                &[("app", "web"), ("env", "prod")],
                true,
            ),
            (
                "application.kubernetes.io/name=x",
                &[("application.kubernetes.io/name", "x")],
                true,
            ),
        ];
        for (text, l, want) in cases {
            let s = LabelSelector::parse(text).unwrap();
            assert_eq!(s.matches(Some(&labels(l))), *want, "{text}");
        }
    }

    #[test]
    fn rejects_bad_selectors() {
        for bad in [
            "",
            "app=",
            "a b c",
            "tier in a,b",
            "x in (a",
            "app=we b",
            "=x",
            "a,,b",
        ] {
            let got = LabelSelector::parse(bad);
            if bad == "app=" {
                // An empty value is valid: `app=` selects app="".
                assert!(got.is_ok(), "{bad}");
            } else {
                assert!(got.is_err(), "{bad}: {got:?}");
            }
        }
    }
}
