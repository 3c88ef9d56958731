//! `cache [TTL] [ZONES...] { … }` → [`CacheConfig`] (CoreDNS's plugin/cache/setup.go).

use std::time::Duration;

use crate::corefile::dispenser::parse_duration;
use crate::corefile::{Dispenser, Error};
use crate::plugins::origins;

/// CoreDNS's default capacity per cache.
pub const DEFAULT_CAPACITY: u64 = 10_000;

/// One of the two caches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    /// Maximum entries.
    pub capacity: u64,
    /// Maximum TTL.
    pub max_ttl: Duration,
    /// Minimum TTL.
    pub min_ttl: Duration,
    /// Names under these zones are not stored (`disable`).
    pub disabled: Vec<String>,
}

/// `prefetch AMOUNT [DURATION [PERCENTAGE%]]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefetch {
    /// Hits an entry needs before it is refreshed early.
    pub amount: u32,
    /// Hits older than this do not count (the popularity window).
    pub duration: Duration,
    /// Refresh when at most this percentage of the TTL is left.
    pub percentage: u32,
}

/// `serve_stale [DURATION] [immediate|verify]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeStale {
    /// How long past its TTL an entry may still be served.
    pub duration: Duration,
    /// `verify`: ask upstream first and serve the stale entry only if that fails.
    pub verify: bool,
}

/// A parsed `cache` directive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Zones whose names are cached.
    pub zones: Vec<String>,
    /// Positive answers.
    pub success: Bucket,
    /// NXDOMAIN, NODATA and (for `servfail`) server failures.
    pub denial: Bucket,
    /// How long SERVFAIL is cached (0 = never).
    pub servfail: Duration,
    /// Serve the original TTL instead of the remaining one.
    pub keepttl: bool,
    /// `prefetch`.
    pub prefetch: Option<Prefetch>,
    /// `serve_stale`.
    pub serve_stale: Option<ServeStale>,
    /// `serve_stale_policy prefer_positive`: with `serve_stale`, an answer that is fresh or
    /// within the stale window wins over cached denials, and survives later non-answers.
    pub prefer_positive: bool,
}

fn secs(n: i64) -> Duration {
    Duration::from_secs(u64::try_from(n).unwrap_or(0))
}

fn int(d: &Dispenser<'_>, v: &str) -> Result<i64, Error> {
    v.parse()
        .map_err(|_| d.err(format!("strconv.Atoi: parsing \"{v}\": invalid syntax")))
}

fn bucket(d: &mut Dispenser<'_>, b: &mut Bucket, args: &[String]) -> Result<(), Error> {
    match args {
        [] => return Err(d.arg_err()),
        [cap, rest @ ..] if rest.len() <= 2 => {
            let c = int(d, cap)?;
            if c <= 0 {
                return Err(d.err(format!("cache capacity can not be zero or negative: {c}")));
            }
            b.capacity = c as u64;
            if let Some(ttl) = rest.first() {
                let t = int(d, ttl)?;
                if t <= 0 {
                    return Err(d.err(format!("cache TTL can not be zero or negative: {t}")));
                }
                b.max_ttl = secs(t);
            }
            if let Some(min) = rest.get(1) {
                let m = int(d, min)?;
                if m < 0 {
                    return Err(d.err(format!("cache min TTL can not be negative: {m}")));
                }
                b.min_ttl = secs(m);
            }
        }
        _ => return Err(d.arg_err()),
    }
    Ok(())
}

/// Parses the directive (once per block).
pub fn parse(d: &mut Dispenser<'_>, block_zones: &[String]) -> Result<CacheConfig, Error> {
    d.next();
    let mut args = d.remaining_args();
    let mut c = CacheConfig {
        zones: Vec::new(),
        success: Bucket {
            capacity: DEFAULT_CAPACITY,
            max_ttl: Duration::from_secs(3600),
            min_ttl: Duration::from_secs(5),
            disabled: Vec::new(),
        },
        denial: Bucket {
            capacity: DEFAULT_CAPACITY,
            max_ttl: Duration::from_secs(1800),
            min_ttl: Duration::from_secs(5),
            disabled: Vec::new(),
        },
        servfail: Duration::from_secs(5),
        keepttl: false,
        prefetch: None,
        serve_stale: None,
        prefer_positive: false,
    };
    let mut policy_seen = false;
    if let Some(first) = args.first() {
        if let Ok(t) = first.parse::<i64>() {
            if t <= 0 {
                return Err(d.err(format!("cache TTL can not be zero or negative: {t}")));
            }
            c.success.max_ttl = secs(t);
            c.denial.max_ttl = secs(t);
            args.remove(0);
        }
    }
    c.zones = origins(&args, block_zones).map_err(|e| d.err(e))?;
    while d.next_block() {
        match d.val() {
            "success" => {
                let a = d.remaining_args();
                bucket(d, &mut c.success, &a)?;
            }
            "denial" => {
                let a = d.remaining_args();
                bucket(d, &mut c.denial, &a)?;
            }
            "servfail" => {
                let v = d.single_arg()?;
                let t = parse_duration(&v)
                    .ok_or_else(|| d.err(format!("time: invalid duration \"{v}\"")))?;
                if t > Duration::from_secs(300) {
                    return Err(d.err("caching SERVFAIL responses over 5 minutes is not permitted"));
                }
                c.servfail = t;
            }
            "disable" => {
                let a = d.remaining_args();
                let Some((which, zones)) = a.split_first() else {
                    return Err(d.arg_err());
                };
                let zones = origins(zones, &c.zones).map_err(|e| d.err(e))?;
                match which.as_str() {
                    "success" => c.success.disabled.extend(zones),
                    "denial" => c.denial.disabled.extend(zones),
                    other => {
                        return Err(d.err(format!(
                            "cache type for disable must be \"success\" or \"denial\": {other}"
                        )));
                    }
                }
            }
            "keepttl" => {
                d.expect_no_more_args()?;
                c.keepttl = true;
            }
            "prefetch" => {
                let a = d.remaining_args();
                let Some((amount, rest)) = a.split_first() else {
                    return Err(d.arg_err());
                };
                if rest.len() > 2 {
                    return Err(d.arg_err());
                }
                let n = int(d, amount)?;
                if n <= 0 {
                    return Err(d.err(format!("prefetch amount should be positive: {n}")));
                }
                let mut p = Prefetch {
                    amount: u32::try_from(n).unwrap_or(u32::MAX),
                    duration: Duration::from_secs(60),
                    percentage: 10,
                };
                for arg in rest {
                    if let Some(pct) = arg.strip_suffix('%') {
                        let v = int(d, pct)?;
                        if !(10..=90).contains(&v) {
                            return Err(
                                d.err(format!("percentage should fall in range [10, 90]: {v}"))
                            );
                        }
                        p.percentage = v as u32;
                    } else {
                        p.duration = parse_duration(arg)
                            .ok_or_else(|| d.err(format!("time: invalid duration \"{arg}\"")))?;
                    }
                }
                c.prefetch = Some(p);
            }
            "serve_stale" => {
                let a = d.remaining_args();
                if a.len() > 2 {
                    return Err(d.arg_err());
                }
                let mut st = ServeStale {
                    duration: Duration::from_secs(3600),
                    verify: false,
                };
                if let Some(v) = a.first() {
                    st.duration = parse_duration(v).ok_or_else(|| {
                        d.err(format!("invalid value for serve_stale duration: {v}"))
                    })?;
                }
                match a.get(1).map(|m| m.to_ascii_lowercase()).as_deref() {
                    None | Some("immediate") => {}
                    Some("verify") => st.verify = true,
                    Some(_) => {
                        let other = &a[1];
                        return Err(d.err(format!(
                            "invalid value for serve_stale refresh mode: {other}"
                        )));
                    }
                }
                c.serve_stale = Some(st);
            }
            "serve_stale_policy" => {
                if policy_seen {
                    return Err(d.err("serve_stale_policy can only be specified once"));
                }
                policy_seen = true;
                let v = d.single_arg()?;
                if !v.eq_ignore_ascii_case("prefer_positive") {
                    return Err(d.err(format!("invalid serve_stale_policy: {v}")));
                }
                c.prefer_positive = true;
            }
            _ => return Err(d.arg_err()),
        }
    }
    if c.prefer_positive && c.serve_stale.is_none() {
        return Err(d.err("serve_stale_policy requires serve_stale"));
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::corefile::lexer::lex;

    fn run(input: &str) -> Result<CacheConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), input);
        parse(&mut Dispenser::new(&toks), &[".".to_string()])
    }

    #[test]
    fn good() {
        let c = run("cache").unwrap();
        assert_eq!(c.zones, ["."]);
        assert_eq!(c.success.max_ttl, Duration::from_secs(3600));
        assert_eq!(c.denial.max_ttl, Duration::from_secs(1800));
        let c = run("cache 30 {\n disable success cluster.local\n disable denial cluster.local\n}")
            .unwrap();
        assert_eq!(c.success.max_ttl, Duration::from_secs(30));
        assert_eq!(c.denial.max_ttl, Duration::from_secs(30));
        assert_eq!(c.success.disabled, ["cluster.local."]);
        let c = run(
            "cache example.org {\n success 9984 30\n denial 9984 5 1\n servfail 0\n keepttl\n}",
        )
        .unwrap();
        assert_eq!(c.zones, ["example.org."]);
        assert_eq!(
            (c.success.capacity, c.success.max_ttl),
            (9984, Duration::from_secs(30))
        );
        assert_eq!(c.denial.min_ttl, Duration::from_secs(1));
        assert!(c.servfail.is_zero() && c.keepttl);
        let c = run("cache {\n prefetch 3 2m 20%\n serve_stale 10m verify\n}").unwrap();
        assert_eq!(
            c.prefetch,
            Some(Prefetch {
                amount: 3,
                duration: Duration::from_secs(120),
                percentage: 20
            })
        );
        assert_eq!(
            c.serve_stale,
            Some(ServeStale {
                duration: Duration::from_secs(600),
                verify: true
            })
        );
        let c = run("cache {\n serve_stale\n serve_stale_policy prefer_positive\n}").unwrap();
        assert!(c.prefer_positive);
        // CoreDNS's TestServeStalePolicy (the failing cases are in `bad`).
        assert!(
            run("cache {\n serve_stale_policy PREFER_POSITIVE\n serve_stale\n}")
                .unwrap()
                .prefer_positive
        );
        assert!(!run("cache {\n serve_stale\n}").unwrap().prefer_positive);
        let c = run("cache {\n prefetch 1\n serve_stale\n}").unwrap();
        assert_eq!(c.prefetch.unwrap().percentage, 10);
        assert!(!c.serve_stale.unwrap().verify);
    }

    #[test]
    fn bad() {
        for (input, want) in [
            ("cache 0", "cache TTL can not be zero or negative: 0"),
            ("cache {\n success\n}", "Wrong argument count"),
            ("cache {\n success 0\n}", "cache capacity can not be zero"),
            (
                "cache {\n denial 10 -1\n}",
                "cache TTL can not be zero or negative",
            ),
            ("cache {\n servfail 10m\n}", "over 5 minutes"),
            (
                "cache {\n disable both\n}",
                "must be \"success\" or \"denial\"",
            ),
            ("cache {\n bogus\n}", "Wrong argument count"),
            (
                "cache {\n prefetch 0\n}",
                "prefetch amount should be positive: 0",
            ),
            (
                "cache {\n prefetch 2 1m 95%\n}",
                "percentage should fall in range [10, 90]: 95",
            ),
            (
                "cache {\n serve_stale 1h later\n}",
                "invalid value for serve_stale refresh mode",
            ),
            // CoreDNS's setup_test.go cases for the policy.
            (
                "cache {\n serve_stale_policy prefer_positive\n}",
                "serve_stale_policy requires serve_stale",
            ),
            (
                "cache {\n serve_stale\n serve_stale_policy invalid\n}",
                "invalid serve_stale_policy: invalid",
            ),
            (
                "cache {\n serve_stale\n serve_stale_policy\n}",
                "Wrong argument count",
            ),
            (
                "cache {\n serve_stale\n serve_stale_policy prefer_positive extra\n}",
                "Wrong argument count",
            ),
            (
                "cache {\n serve_stale\n serve_stale_policy prefer_positive\n serve_stale_policy prefer_positive\n}",
                "serve_stale_policy can only be specified once",
            ),
        ] {
            let err = run(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input}: {err}");
        }
    }

    /// (success capacity, max TTL, min TTL, denial capacity, max TTL, min TTL, prefetch amount)
    type Want = (u64, u64, u64, u64, u64, u64, u32);

    fn summary(c: &CacheConfig) -> Want {
        (
            c.success.capacity,
            c.success.max_ttl.as_secs(),
            c.success.min_ttl.as_secs(),
            c.denial.capacity,
            c.denial.max_ttl.as_secs(),
            c.denial.min_ttl.as_secs(),
            c.prefetch.as_ref().map_or(0, |p| p.amount),
        )
    }

    // plugin/cache/setup_test.go: TestSetup (defaultCap 10000, maxTTL 3600, maxNTTL 1800,
    // minTTL = minNTTL = 5)
    #[test]
    fn coredns_test_setup() {
        let d = DEFAULT_CAPACITY;
        let good: &[(&str, Want)] = &[
            ("cache", (d, 3600, 5, d, 1800, 5, 0)),
            ("cache {}", (d, 3600, 5, d, 1800, 5, 0)),
            (
                "cache example.nl {\n\t\t\t\tsuccess 10\n\t\t\t}",
                (10, 3600, 5, d, 1800, 5, 0),
            ),
            (
                "cache example.nl {\n\t\t\t\tsuccess 10 1800 30\n\t\t\t}",
                (10, 1800, 30, d, 1800, 5, 0),
            ),
            (
                "cache example.nl {\n\t\t\t\tsuccess 10\n\t\t\t\tdenial 10 15\n\t\t\t}",
                (10, 3600, 5, 10, 15, 5, 0),
            ),
            (
                "cache example.nl {\n\t\t\t\tsuccess 10\n\t\t\t\tdenial 10 15 2\n\t\t\t}",
                (10, 3600, 5, 10, 15, 2, 0),
            ),
            (
                "cache 25 example.nl {\n\t\t\t\tsuccess 10\n\t\t\t\tdenial 10 15\n\t\t\t}",
                (10, 25, 5, 10, 15, 5, 0),
            ),
            (
                "cache 25 example.nl {\n\t\t\t\tsuccess 10\n\t\t\t\tdenial 10 15 5\n\t\t\t}",
                (10, 25, 5, 10, 15, 5, 0),
            ),
            ("cache aaa example.nl", (d, 3600, 5, d, 1800, 5, 0)),
            (
                "cache\t{\n\t\t\t\tprefetch 10\n\t\t\t}",
                (d, 3600, 5, d, 1800, 5, 10),
            ),
        ];
        for (input, want) in good {
            let c = run(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(summary(&c), *want, "{input}");
        }
        assert_eq!(
            run("cache aaa example.nl").unwrap().zones,
            ["aaa.", "example.nl."]
        );
        for input in [
            "cache example.nl {\n\t\t\t\tsuccess\n\t\t\t\tdenial 10 15\n\t\t\t}",
            "cache example.nl {\n\t\t\t\tsuccess 15\n\t\t\t\tdenial aaa\n\t\t\t}",
            "cache example.nl {\n\t\t\t\tpositive 15\n\t\t\t\tnegative aaa\n\t\t\t}",
            "cache 0 example.nl",
            "cache -1 example.nl",
            "cache 1 example.nl {\n\t\t\t\tpositive 0\n\t\t\t}",
            "cache 1 example.nl {\n\t\t\t\tpositive 0\n\t\t\t\tprefetch -1\n\t\t\t}",
            "cache 1 example.nl {\n\t\t\t\tprefetch 0 blurp\n\t\t\t}",
        ] {
            assert!(run(input).is_err(), "{input}");
        }
        // `cache` twice in one block: refused when the block is loaded.
        let e = crate::config::load("Corefile", ".:53 {\n cache\n\t\t  cache\n}\n", 53);
        assert!(e.is_err());
    }

    // plugin/cache/setup_test.go: TestServeStale, the rows of the two-argument grammar
    // `serve_stale [DURATION] [REFRESH_MODE]` (the rows with a verify timeout, a stale TTL or a
    // recheck interval — newer arguments — are not built; see README).
    #[test]
    fn coredns_test_serve_stale() {
        let good: &[(&str, u64, bool)] = &[
            ("serve_stale", 3600, false),
            ("serve_stale 20m", 1200, false),
            ("serve_stale 1h20m", 4800, false),
            ("serve_stale 0m", 0, false),
            ("serve_stale 0", 0, false),
            ("serve_stale 0 verify", 0, true),
            ("serve_stale 0 immediate", 0, false),
            ("serve_stale 0 VERIFY", 0, true),
        ];
        for (input, up_to, verify) in good {
            let c =
                run(&format!("cache {{\n{input}\n}}")).unwrap_or_else(|e| panic!("{input}: {e}"));
            let st = c.serve_stale.unwrap();
            assert_eq!(
                (st.duration.as_secs(), st.verify),
                (*up_to, *verify),
                "{input}"
            );
        }
        for input in [
            "serve_stale 20",
            "serve_stale -20m",
            "serve_stale aa",
            "serve_stale 1m nono",
            "serve_stale 0 after nono",
        ] {
            assert!(run(&format!("cache {{\n{input}\n}}")).is_err(), "{input}");
        }
    }

    // plugin/cache/setup_test.go: TestServeStalePolicy, TestServfail, TestDisable, TestKeepttl
    #[test]
    fn coredns_test_policy_servfail_disable_keepttl() {
        let c = |s: &str| run(&format!("cache {{\n{s}\n}}"));
        for (input, want) in [
            ("serve_stale\nserve_stale_policy prefer_positive", true),
            ("serve_stale_policy PREFER_POSITIVE\nserve_stale", true),
            ("serve_stale", false),
        ] {
            assert_eq!(c(input).unwrap().prefer_positive, want, "{input}");
        }
        for input in [
            "serve_stale_policy prefer_positive",
            "serve_stale\nserve_stale_policy",
            "serve_stale\nserve_stale_policy prefer_positive extra",
            "serve_stale\nserve_stale_policy invalid",
            "serve_stale\nserve_stale_policy prefer_positive\nserve_stale_policy prefer_positive",
        ] {
            assert!(c(input).is_err(), "{input}");
        }
        for (input, ms) in [
            ("servfail 1s", 1000),
            ("servfail 5m", 300_000),
            ("servfail 0s", 0),
            ("servfail 0", 0),
        ] {
            assert_eq!(
                c(input).unwrap().servfail,
                Duration::from_millis(ms),
                "{input}"
            );
        }
        for input in [
            "servfail",
            "servfail 6m",
            "servfail 20",
            "servfail -1s",
            "servfail aa",
            "servfail 1m invalid",
        ] {
            assert!(c(input).is_err(), "{input}");
        }
        let z = |v: &[&str]| -> Vec<String> { v.iter().map(|s| s.to_string()).collect() };
        let cases: &[(&str, &[&str], &[&str])] = &[
            (
                "disable denial example.com example.org",
                &["example.com.", "example.org."],
                &[],
            ),
            (
                "disable success example.com example.org",
                &[],
                &["example.com.", "example.org."],
            ),
            ("disable denial", &["."], &[]),
            ("disable success", &[], &["."]),
            (
                "disable denial example.com example.org\ndisable success example.com example.org",
                &["example.com.", "example.org."],
                &["example.com.", "example.org."],
            ),
        ];
        for (input, nexcept, pexcept) in cases {
            let cfg = c(input).unwrap();
            assert_eq!(
                (cfg.denial.disabled, cfg.success.disabled),
                (z(nexcept), z(pexcept)),
                "{input}"
            );
        }
        assert!(c("disable invalid example.com example.org").is_err());
        assert!(c("keepttl").unwrap().keepttl);
        assert!(c("keepttl arg1").is_err());
    }
}
