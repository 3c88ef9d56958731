//! CoreDNS's plugin/file test tables (lookup_test.go, delegation_test.go, ent_test.go,
//! wildcard_test.go, the additional-section table) over the same zones (`testdata/`), adjusted
//! only where the README's Compatibility section says we differ: positive answers carry no NS
//! records in the authority section, and a chain that ends in a missing type is NODATA with the
//! SOA. RRSIGs are compared by owner, TTL and covered type (CoreDNS's tables cut signatures).

use std::path::{Path, PathBuf};

use hickory_proto::rr::{Name, RData, Record, RecordType};

use super::zone::{Found, Lookup, Outcome, Zone};

fn testdata(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/plugins/file/testdata")
        .join(file)
}

fn zone(file: &str, origin: &str) -> Zone {
    Zone::load(&testdata(file), &Name::from_ascii(origin).unwrap()).unwrap()
}

/// Records in zone-file syntax, one per line; an RRSIG as `OWNER TTL RRSIG COVERED`.
fn key(r: &Record) -> String {
    if r.record_type() == RecordType::RRSIG {
        let RData::Unknown { rdata, .. } = &r.data else {
            panic!()
        };
        let covered = RecordType::from(u16::from_be_bytes([rdata.anything[0], rdata.anything[1]]));
        return format!("{} {} RRSIG {covered}", r.name.to_lowercase(), r.ttl);
    }
    let mut r = r.clone();
    r.name = r.name.to_lowercase();
    r.to_string()
}

fn expected(lines: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = lines
        .iter()
        .map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            if w.get(2) == Some(&"RRSIG") && w.len() == 4 {
                return format!("{} {} RRSIG {}", w[0], w[1], w[3]);
            }
            let e = crate::zonefile::parse_str(l, Path::new("case"), &Name::root()).unwrap();
            key(&e[0].record)
        })
        .collect();
    out.sort();
    out
}

fn keys(rrs: &[Record]) -> Vec<String> {
    let mut out: Vec<String> = rrs.iter().map(key).collect();
    out.sort();
    out
}

struct Case {
    q: &'static str,
    t: RecordType,
    dnssec: bool,
    outcome: Outcome,
    answer: &'static [&'static str],
    ns: &'static [&'static str],
    extra: &'static [&'static str],
}

const fn case(q: &'static str, t: RecordType) -> Case {
    Case {
        q,
        t,
        dnssec: false,
        outcome: Outcome::Success,
        answer: &[],
        ns: &[],
        extra: &[],
    }
}

/// Looks up without a server behind: a chain leaving the zone gets SERVFAIL (CoreDNS's
/// tables run without an upstream too).
fn run(z: &Zone, q: &str, t: RecordType, dnssec: bool) -> Lookup {
    match z.lookup(&Name::from_ascii(q).unwrap(), t, dnssec) {
        Found::Done(l) => l,
        Found::Chase { chain, .. } => z.finish_chase(chain, t, None, dnssec),
    }
}

fn check(z: &Zone, cases: &[Case]) {
    for c in cases {
        let l = run(z, c.q, c.t, c.dnssec);
        let what = format!("{} {} do={}", c.q, c.t, c.dnssec);
        assert_eq!(l.outcome, c.outcome, "{what}");
        assert_eq!(keys(&l.answer), expected(c.answer), "{what}: answer");
        assert_eq!(keys(&l.ns), expected(c.ns), "{what}: authority");
        assert_eq!(keys(&l.extra), expected(c.extra), "{what}: additional");
    }
}

const MIEK_SOA: &str =
    "miek.nl. 1800 IN SOA linode.atoom.net. miek.miek.nl. 1282630057 14400 3600 604800 14400";

#[test]
fn lookup_table() {
    use RecordType::*;
    let z = zone("db.miek.nl", "miek.nl.");
    check(
        &z,
        &[
            Case {
                answer: &[
                    "a.miek.nl. 1800 IN A 139.162.196.78",
                    "www.miek.nl. 1800 IN CNAME a.miek.nl.",
                ],
                ..case("www.miek.nl.", A)
            },
            Case {
                answer: &[
                    "a.miek.nl. 1800 IN AAAA 2a01:7e00::f03c:91ff:fef1:6735",
                    "www.miek.nl. 1800 IN CNAME a.miek.nl.",
                ],
                ..case("www.miek.nl.", AAAA)
            },
            Case {
                answer: &[MIEK_SOA],
                ..case("miek.nl.", SOA)
            },
            Case {
                answer: &["miek.nl. 1800 IN AAAA 2a01:7e00::f03c:91ff:fef1:6735"],
                ..case("miek.nl.", AAAA)
            },
            Case {
                answer: &["miek.nl. 1800 IN AAAA 2a01:7e00::f03c:91ff:fef1:6735"],
                ..case("mIeK.NL.", AAAA)
            },
            Case {
                answer: &[
                    "miek.nl. 1800 IN MX 1 aspmx.l.google.com.",
                    "miek.nl. 1800 IN MX 10 aspmx2.googlemail.com.",
                    "miek.nl. 1800 IN MX 10 aspmx3.googlemail.com.",
                    "miek.nl. 1800 IN MX 5 alt1.aspmx.l.google.com.",
                    "miek.nl. 1800 IN MX 5 alt2.aspmx.l.google.com.",
                ],
                ..case("miek.nl.", MX)
            },
            Case {
                outcome: Outcome::NoData,
                ns: &[MIEK_SOA],
                ..case("a.miek.nl.", SRV)
            },
            Case {
                outcome: Outcome::NameError,
                ns: &[MIEK_SOA],
                ..case("b.miek.nl.", A)
            },
            Case {
                answer: &["srv.miek.nl. 1800 IN SRV 10 10 8080 a.miek.nl."],
                extra: &[
                    "a.miek.nl. 1800 IN A 139.162.196.78",
                    "a.miek.nl. 1800 IN AAAA 2a01:7e00::f03c:91ff:fef1:6735",
                ],
                ..case("srv.miek.nl.", SRV)
            },
            Case {
                answer: &["mx.miek.nl. 1800 IN MX 10 a.miek.nl."],
                extra: &[
                    "a.miek.nl. 1800 IN A 139.162.196.78",
                    "a.miek.nl. 1800 IN AAAA 2a01:7e00::f03c:91ff:fef1:6735",
                ],
                ..case("mx.miek.nl.", MX)
            },
            Case {
                answer: &["asterisk.x.miek.nl. 1800 IN CNAME www.miek.nl."],
                ..case("asterisk.x.miek.nl.", CNAME)
            },
            Case {
                outcome: Outcome::NameError,
                ns: &[MIEK_SOA],
                ..case("a.b.x.miek.nl.", CNAME)
            },
            Case {
                answer: &["asterisk.y.miek.nl. 1800 IN A 139.162.196.78"],
                ..case("asterisk.y.miek.nl.", A)
            },
            Case {
                answer: &[
                    "dname.miek.nl. 1800 IN DNAME x.miek.nl.",
                    "foo.dname.miek.nl. 1800 IN CNAME foo.x.miek.nl.",
                ],
                ..case("foo.dname.miek.nl.", CNAME)
            },
            Case {
                outcome: Outcome::ServerFailure,
                answer: &["ext-cname.miek.nl. 1800 IN CNAME example.com."],
                ..case("ext-cname.miek.nl.", A)
            },
            Case {
                answer: &[r#"txt.miek.nl. 1800 IN TXT "v=spf1 a mx ~all""#],
                ..case("txt.miek.nl.", TXT)
            },
            Case {
                answer: &["caa.miek.nl. 1800 IN CAA 0 issue letsencrypt.org"],
                ..case("caa.miek.nl.", CAA)
            },
            // TestLookUpNoDataResult.
            Case {
                outcome: Outcome::NoData,
                ns: &[MIEK_SOA],
                ..case("a.miek.nl.", MX)
            },
            Case {
                outcome: Outcome::NoData,
                ns: &[MIEK_SOA],
                ..case("wildcard.nodata.miek.nl.", MX)
            },
        ],
    );
}

#[test]
fn delegation_table() {
    use RecordType::*;
    let z = zone("db.miek.nl.delegation", "miek.nl.");
    const DELEG: &[&str] = &[
        "delegated.miek.nl. 1800 IN NS a.delegated.miek.nl.",
        "delegated.miek.nl. 1800 IN NS ns-ext.nlnetlabs.nl.",
    ];
    const GLUE: &[&str] = &[
        "a.delegated.miek.nl. 1800 IN A 139.162.196.78",
        "a.delegated.miek.nl. 1800 IN AAAA 2a01:7e00::f03c:91ff:fef1:6735",
    ];
    let referral = |q: &'static str, t| Case {
        outcome: Outcome::Delegation,
        ns: DELEG,
        extra: GLUE,
        ..case(q, t)
    };
    check(
        &z,
        &[
            referral("a.delegated.miek.nl.", TXT),
            referral("delegated.miek.nl.", NS),
            referral("foo.delegated.miek.nl.", A),
            referral("foo.delegated.miek.nl.", TXT),
            referral("foo.delegated.miek.nl.", SOA),
            Case {
                answer: &[MIEK_SOA],
                ..case("miek.nl.", SOA)
            },
            Case {
                outcome: Outcome::NoData,
                ns: &[MIEK_SOA],
                ..case("miek.nl.", AAAA)
            },
        ],
    );
}

#[test]
fn empty_non_terminal_table() {
    let z = zone("db.miek.nl.ent", "miek.nl.");
    check(
        &z,
        &[
            Case {
                outcome: Outcome::NoData,
                ns: &[MIEK_SOA],
                ..case("b.c.miek.nl.", RecordType::A)
            },
            Case {
                dnssec: true,
                outcome: Outcome::NoData,
                ns: &[
                    "a.miek.nl. 14400 IN NSEC a.b.c.miek.nl. A RRSIG NSEC",
                    "a.miek.nl. 14400 RRSIG NSEC",
                    "miek.nl. 1800 RRSIG SOA",
                    MIEK_SOA,
                ],
                ..case("b.c.miek.nl.", RecordType::A)
            },
        ],
    );
}

#[test]
fn wildcard_tables() {
    use RecordType::*;
    let dnssex = zone("db.dnssex.nl.signed", "dnssex.nl.");
    const SOA: &str =
        "dnssex.nl. 1800 IN SOA linode.atoom.net. miek.miek.nl. 1459281744 14400 3600 604800 14400";
    check(
        &dnssex,
        &[
            Case {
                answer: &[r#"wild.dnssex.nl. 1800 IN TXT "Doing It Safe Is Better""#],
                ..case("wild.dnssex.nl.", TXT)
            },
            Case {
                answer: &[r#"a.wild.dnssex.nl. 1800 IN TXT "Doing It Safe Is Better""#],
                ..case("a.wild.dnssex.nl.", TXT)
            },
            Case {
                dnssec: true,
                answer: &[
                    "wild.dnssex.nl. 1800 RRSIG TXT",
                    r#"wild.dnssex.nl. 1800 IN TXT "Doing It Safe Is Better""#,
                ],
                ns: &[
                    "a.dnssex.nl. 14400 IN NSEC www.dnssex.nl. A AAAA RRSIG NSEC",
                    "a.dnssex.nl. 14400 RRSIG NSEC",
                ],
                ..case("wild.dnssex.nl.", TXT)
            },
            Case {
                dnssec: true,
                answer: &[
                    "a.wild.dnssex.nl. 1800 RRSIG TXT",
                    r#"a.wild.dnssex.nl. 1800 IN TXT "Doing It Safe Is Better""#,
                ],
                ns: &[
                    "a.dnssex.nl. 14400 IN NSEC www.dnssex.nl. A AAAA RRSIG NSEC",
                    "a.dnssex.nl. 14400 RRSIG NSEC",
                ],
                ..case("a.wild.dnssex.nl.", TXT)
            },
            Case {
                outcome: Outcome::NoData,
                ns: &[SOA],
                ..case("wild.dnssex.nl.", SRV)
            },
            Case {
                dnssec: true,
                outcome: Outcome::NoData,
                ns: &[
                    "*.dnssex.nl. 14400 IN NSEC a.dnssex.nl. TXT RRSIG NSEC",
                    "*.dnssex.nl. 14400 RRSIG NSEC",
                    "dnssex.nl. 1800 RRSIG SOA",
                    SOA,
                ],
                ..case("wild.dnssex.nl.", SRV)
            },
        ],
    );

    let double = zone("db.example.org.wildcards", "example.org.");
    check(
        &double,
        &[
            Case {
                answer: &[r#"wild.w.example.org. 3600 IN TXT "Wildcard""#],
                ..case("wild.w.example.org.", TXT)
            },
            Case {
                answer: &[r#"wild.c.example.org. 3600 IN TXT "c Wildcard""#],
                ..case("wild.c.example.org.", TXT)
            },
            Case {
                answer: &[
                    r#"alias.example.org. 3600 IN TXT "Wildcard CNAME expansion""#,
                    "wild.d.example.org. 3600 IN CNAME alias.example.org.",
                ],
                ..case("wild.d.example.org.", TXT)
            },
            Case {
                answer: &[r#"alias.example.org. 3600 IN TXT "Wildcard CNAME expansion""#],
                ..case("alias.example.org.", TXT)
            },
        ],
    );

    let apex = zone("db.example.org.apexwildcard", "example.org.");
    check(
        &apex,
        &[
            Case {
                answer: &["foo.example.org. 3600 IN A 127.0.0.54"],
                ..case("foo.example.org.", A)
            },
            Case {
                answer: &["bar.example.org. 3600 IN A 127.0.0.53"],
                ..case("bar.example.org.", A)
            },
        ],
    );

    let multi = zone("db.example.org.doublewildcard", "example.org.");
    check(
        &multi,
        &[
            Case {
                answer: &["foo.example.org. 3600 IN A 127.0.0.54"],
                ..case("foo.example.org.", A)
            },
            Case {
                answer: &["bar.example.org. 3600 IN A 127.0.0.53"],
                ..case("bar.example.org.", A)
            },
            Case {
                answer: &["bar.intern.example.org. 3600 IN A 127.0.1.52"],
                ..case("bar.intern.example.org.", A)
            },
        ],
    );
}

#[test]
fn additional_section_table() {
    use RecordType::*;
    let z = zone("db.example.org.additional", "example.org.");
    const HOST: &[&str] = &[
        "host.example.org. 1800 IN A 192.0.2.10",
        "host.example.org. 1800 IN AAAA 2001:db8::10",
    ];
    const SRV_ANSWER: &[&str] = &[
        "srv.example.org. 1800 IN SRV 10 50 8080 host.example.org.",
        "srv.example.org. 1800 IN SRV 20 50 8080 host.example.org.",
    ];
    check(
        &z,
        &[
            Case {
                answer: &[
                    "mx.example.org. 1800 IN MX 10 host.example.org.",
                    "mx.example.org. 1800 IN MX 20 host.example.org.",
                ],
                extra: HOST,
                ..case("mx.example.org.", MX)
            },
            Case {
                answer: SRV_ANSWER,
                extra: HOST,
                ..case("srv.example.org.", SRV)
            },
            Case {
                answer: &[
                    "two.example.org. 1800 IN MX 10 host.example.org.",
                    "two.example.org. 1800 IN MX 20 other.example.org.",
                ],
                extra: &[
                    "host.example.org. 1800 IN A 192.0.2.10",
                    "host.example.org. 1800 IN AAAA 2001:db8::10",
                    "other.example.org. 1800 IN A 192.0.2.20",
                    "other.example.org. 1800 IN AAAA 2001:db8::20",
                ],
                ..case("two.example.org.", MX)
            },
            Case {
                answer: &[
                    "cname-srv.example.org. 1800 IN CNAME srv.example.org.",
                    "srv.example.org. 1800 IN SRV 10 50 8080 host.example.org.",
                    "srv.example.org. 1800 IN SRV 20 50 8080 host.example.org.",
                ],
                extra: HOST,
                ..case("cname-srv.example.org.", SRV)
            },
            Case {
                answer: &[
                    "foo.wild.example.org. 1800 IN CNAME srv.example.org.",
                    "srv.example.org. 1800 IN SRV 10 50 8080 host.example.org.",
                    "srv.example.org. 1800 IN SRV 20 50 8080 host.example.org.",
                ],
                extra: HOST,
                ..case("foo.wild.example.org.", SRV)
            },
            Case {
                answer: &[
                    "dname.example.org. 1800 IN DNAME dsub.example.org.",
                    "srv.dname.example.org. 1800 IN CNAME srv.dsub.example.org.",
                    "srv.dsub.example.org. 1800 IN SRV 10 50 8080 host.example.org.",
                ],
                extra: HOST,
                ..case("srv.dname.example.org.", SRV)
            },
        ],
    );
    // One target spelled two ways: its addresses once.
    let l = run(&z, "mixed.example.org.", SRV, false);
    assert_eq!((l.answer.len(), l.extra.len()), (2, 2));
}

#[test]
fn chains_stop_at_loops_and_end_in_nodata_with_the_soa() {
    let text = "$ORIGIN example.org.\n@ 300 IN SOA ns hm 1 2 3 4 60\nloop1 IN CNAME loop2\nloop2 IN CNAME loop1\nc IN CNAME t\nt IN TXT x\n";
    let e = crate::zonefile::parse_str(
        text,
        Path::new("t"),
        &Name::from_ascii("example.org.").unwrap(),
    )
    .unwrap();
    let z = Zone::from_entries(
        Path::new("t"),
        &Name::from_ascii("example.org.").unwrap(),
        e,
    )
    .unwrap();
    let l = run(&z, "loop1.example.org.", RecordType::A, false);
    assert_eq!(l.outcome, Outcome::Success);
    assert_eq!(l.answer.len(), 2, "{:?}", l.answer);
    let l = run(&z, "c.example.org.", RecordType::A, false);
    assert_eq!(l.outcome, Outcome::NoData);
    assert_eq!(
        keys(&l.ns),
        expected(&["example.org. 60 IN SOA ns.example.org. hm.example.org. 1 2 3 4 60"])
    );
}

#[test]
fn zones_that_are_not_zones_are_errors_with_file_and_line() {
    let origin = Name::from_ascii("example.org.").unwrap();
    for (text, want) in [
        (
            "www IN A 192.0.2.1\n",
            "has no SOA record for origin example.org.",
        ),
        (
            "@ IN SOA ns hm 1 2 3 4 5\n@ IN SOA ns hm 2 2 3 4 5\n",
            "t:2: more than one SOA",
        ),
        (
            "sub IN SOA ns hm 1 2 3 4 5\n",
            "t:1: SOA owner sub.example.org. is not the zone origin",
        ),
        (
            "@ IN SOA ns hm 1 2 3 4 5\n@ IN NSEC3PARAM 1 0 10 aabb\n",
            "t:2: NSEC3 zone is not supported",
        ),
    ] {
        let e = crate::zonefile::parse_str(text, Path::new("t"), &origin).unwrap();
        let err = Zone::from_entries(Path::new("t"), &origin, e).unwrap_err();
        assert!(err.to_string().contains(want), "{text}: {err}");
    }
    // Records outside the zone are dropped.
    let e = crate::zonefile::parse_str(
        "@ IN SOA ns hm 1 2 3 4 5\nwww.example.net. IN A 192.0.2.1\n",
        Path::new("t"),
        &origin,
    )
    .unwrap();
    assert_eq!(
        Zone::from_entries(Path::new("t"), &origin, e)
            .unwrap()
            .len(),
        1
    );
}
