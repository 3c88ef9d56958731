//! `reload [INTERVAL] [JITTER]`: re-reads the Corefile and swaps in the new configuration when
//! it changes (plugin/reload). The checking loop is in `main`; the swap is
//! [`crate::server::Running::reload`].

use std::time::Duration;

use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};

/// Directive name.
pub const NAME: &str = "reload";

/// A parsed `reload`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReloadConfig {
    /// Check interval (default 30 s, at least 2 s).
    pub interval: Duration,
    /// Random spread around the interval (default 15 s; at most half the interval).
    pub jitter: Duration,
}

impl ReloadConfig {
    /// The period to wait: interval ± jitter/2, drawn anew for each check.
    pub fn period(&self) -> Duration {
        if self.jitter.is_zero() {
            return self.interval;
        }
        let j = self.jitter.as_millis() as i64;
        let delta = rand::random_range(-j / 2..j / 2 + 1);
        let ms = self.interval.as_millis() as i64 + delta;
        Duration::from_millis(ms.max(1) as u64)
    }
}

/// Parses `reload [INTERVAL] [JITTER]`.
pub fn parse(d: &mut Dispenser<'_>) -> Result<ReloadConfig, Error> {
    d.next();
    let args = d.remaining_args();
    if args.len() > 2 {
        return Err(d.arg_err());
    }
    let dur =
        |s: &str| parse_duration(s).ok_or_else(|| d.err(format!("time: invalid duration \"{s}\"")));
    let mut c = ReloadConfig {
        interval: Duration::from_secs(30),
        jitter: Duration::from_secs(15),
    };
    if let Some(i) = args.first() {
        c.interval = dur(i)?;
        if c.interval < Duration::from_secs(2) {
            return Err(d.err("interval value must be greater or equal to 2s"));
        }
    }
    if let Some(j) = args.get(1) {
        c.jitter = dur(j)?;
        if !c.jitter.is_zero() && c.jitter < Duration::from_secs(1) {
            return Err(d.err("jitter value must be greater or equal to 1s"));
        }
    }
    if c.jitter > c.interval / 2 {
        c.jitter = c.interval / 2;
    }
    d.expect_no_block()?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(s: &str) -> Result<ReloadConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), s);
        parse(&mut Dispenser::new(&toks))
    }

    #[test]
    fn table() {
        let c = run("reload").unwrap();
        assert_eq!(
            (c.interval, c.jitter),
            (Duration::from_secs(30), Duration::from_secs(15))
        );
        let c = run("reload 10s").unwrap();
        assert_eq!(
            c.jitter,
            Duration::from_secs(5),
            "jitter capped at interval/2"
        );
        let c = run("reload 2s 0s").unwrap();
        assert_eq!(c.period(), Duration::from_secs(2));
        for _ in 0..50 {
            let p = run("reload 10s 4s").unwrap().period();
            assert!(
                p >= Duration::from_secs(8) && p <= Duration::from_secs(12),
                "{p:?}"
            );
        }
        for (bad, want) in [
            ("reload 1s", "interval value must be greater or equal to 2s"),
            (
                "reload 10s 500ms",
                "jitter value must be greater or equal to 1s",
            ),
            ("reload 10s 1s 1s", "Wrong argument count"),
            ("reload soon", "invalid duration"),
        ] {
            let e = run(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad}: {e}");
        }
    }
}
