//! `hosts`: answers from an /etc/hosts-style file and inline entries (plugin/hosts).

mod setup;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use prometheus::{Gauge, IntGaugeVec, Opts, Registry};

pub use setup::{HostsConfig, parse};

use crate::plugins::kubernetes::address_from_reverse;
use crate::plugins::{BuildCtx, Handler, HandlerError, Next, Request, Response, is_subdomain};

/// Directive name.
pub const NAME: &str = "hosts";

/// `coredns_hosts_*`, registered once per process.
pub struct HostsMetrics {
    entries: IntGaugeVec,
    reload: Gauge,
}

impl HostsMetrics {
    /// Creates and registers the metrics.
    pub fn new(r: &Registry) -> Result<Self, prometheus::Error> {
        let entries = IntGaugeVec::new(
            Opts::new(
                "coredns_hosts_entries",
                "The combined number of entries in hosts and Corefile.",
            ),
            &["hostsfile"],
        )?;
        let reload = Gauge::new(
            "coredns_hosts_reload_timestamp_seconds",
            "The timestamp of the last reload of hosts file.",
        )?;
        r.register(Box::new(entries.clone()))?;
        r.register(Box::new(reload.clone()))?;
        Ok(Self { entries, reload })
    }
}

/// Names and addresses of one source (the file, or the inline lines), as CoreDNS's `Map`: per
/// family, exact names and one-label wildcards (`*.example.org`), and the reverse map.
#[derive(Debug, Default, Clone)]
pub struct Table {
    name4: HashMap<String, Vec<IpAddr>>,
    name6: HashMap<String, Vec<IpAddr>>,
    wild4: HashMap<String, Vec<IpAddr>>,
    wild6: HashMap<String, Vec<IpAddr>>,
    by_addr: HashMap<IpAddr, Vec<String>>,
}

impl Table {
    /// Parses hosts-file text: `IP NAME...` per line, `#` comments. Names outside `origins` are
    /// skipped; an IPv4-mapped IPv6 address (`::ffff:10.0.0.2`) is IPv4, as Go's `To4()`; with
    /// `reverse`, the names are kept for PTR lookups too.
    pub fn parse(text: &str, origins: &[String], reverse: bool) -> Self {
        let mut t = Table::default();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or_default();
            let mut words = line.split_whitespace();
            let Some(ip) = words
                .next()
                .and_then(|w| w.split('%').next()?.parse::<IpAddr>().ok())
            else {
                continue;
            };
            let ip = ip.to_canonical();
            for name in words {
                let name = crate::corefile::address::fqdn(&name.to_ascii_lowercase());
                if !origins.iter().any(|z| is_subdomain(z, &name)) {
                    continue;
                }
                let wild = name.starts_with("*.");
                let map = match (ip.is_ipv4(), wild) {
                    (true, false) => &mut t.name4,
                    (false, false) => &mut t.name6,
                    (true, true) => &mut t.wild4,
                    (false, true) => &mut t.wild6,
                };
                map.entry(name.clone()).or_default().push(ip);
                if !wild && reverse {
                    t.by_addr.entry(ip).or_default().push(name);
                }
            }
        }
        t
    }

    /// The addresses of `host` (lower-case FQDN) of one family: its own, else those of the
    /// wildcard that replaces its first label.
    fn lookup(&self, host: &str, v4: bool) -> &[IpAddr] {
        let (names, wild) = if v4 {
            (&self.name4, &self.wild4)
        } else {
            (&self.name6, &self.wild6)
        };
        if let Some(ips) = names.get(host) {
            return ips;
        }
        match host.split_once('.') {
            Some((_, parent)) if !parent.is_empty() => {
                wild.get(&format!("*.{parent}")).map_or(&[], Vec::as_slice)
            }
            _ => &[],
        }
    }

    fn len(&self) -> usize {
        self.name4.len() + self.name6.len() + self.wild4.len() + self.wild6.len()
    }
}

/// The plugin.
pub struct Hosts {
    cfg: HostsConfig,
    inline: Table,
    file: Arc<ArcSwap<Table>>,
}

impl Hosts {
    /// The file's addresses of `host`, then the inline ones (CoreDNS's `LookupStaticHostV4/6`).
    fn addresses(&self, host: &str, v4: bool) -> Vec<IpAddr> {
        let mut out = self.file.load().lookup(host, v4).to_vec();
        out.extend_from_slice(self.inline.lookup(host, v4));
        out
    }

    /// The file's names of `ip`, then the inline ones (CoreDNS's `LookupStaticAddr`).
    fn names(&self, ip: IpAddr) -> Vec<String> {
        let ip = ip.to_canonical();
        let mut out = self
            .file
            .load()
            .by_addr
            .get(&ip)
            .cloned()
            .unwrap_or_default();
        out.extend(self.inline.by_addr.get(&ip).into_iter().flatten().cloned());
        out
    }
}

fn read(path: &Path, cfg: &HostsConfig) -> Option<Table> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(Table::parse(&text, &cfg.zones, !cfg.no_reverse))
}

/// Builds the handler; with `reload`, a starter re-reads the file when it changes.
pub fn build(cfg: &HostsConfig, ctx: &mut BuildCtx<'_>) -> Arc<dyn Handler> {
    let seen = crate::fswatch::mtimes(std::slice::from_ref(&cfg.file));
    let table = read(&cfg.file, cfg).unwrap_or_else(|| {
        tracing::warn!(target: "plugin/hosts", "File does not exist: {}", cfg.file.display());
        Table::default()
    });
    let inline = Table::parse(&cfg.inline.join("\n"), &cfg.zones, !cfg.no_reverse);
    let metrics = ctx.metrics.hosts.clone();
    let label = cfg.file.display().to_string();
    metrics
        .entries
        .with_label_values(&[&label])
        .set((table.len() + inline.len()) as i64);
    let file = Arc::new(ArcSwap::from_pointee(table));
    if !cfg.reload.is_zero() {
        let (file, path, every, inline_len, cfg) = (
            file.clone(),
            cfg.file.clone(),
            cfg.reload,
            inline.len(),
            cfg.clone(),
        );
        ctx.services.starters.0.push(Box::new(move |start| {
            Box::pin(async move {
                let mut watch = crate::fswatch::FileWatch::new(vec![path.clone()], seen, every);
                tokio::spawn(async move {
                    while watch.changed(&start.stop).await {
                        let table = read(&path, &cfg).unwrap_or_default();
                        metrics
                            .entries
                            .with_label_values(&[&label])
                            .set((table.len() + inline_len) as i64);
                        metrics.reload.set(
                            SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .unwrap_or(Duration::ZERO)
                                .as_secs_f64(),
                        );
                        file.store(Arc::new(table));
                    }
                });
                Ok(())
            })
        }));
    }
    Arc::new(Hosts {
        cfg: cfg.clone(),
        inline,
        file,
    })
}

#[async_trait::async_trait]
impl Handler for Hosts {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn serve(&self, req: &Request, next: Next<'_>) -> Result<Response, HandlerError> {
        let name = req.qname_lower();
        let qtype = req.qtype();
        if qtype == RecordType::PTR {
            if self.cfg.no_reverse {
                return next.run(req).await;
            }
            let names = address_from_reverse(name)
                .map(|ip| self.names(ip))
                .unwrap_or_default();
            if names.is_empty() {
                return next.run(req).await;
            }
            let mut msg = req.reply();
            msg.metadata.authoritative = true;
            for n in names {
                let target =
                    Name::from_ascii(&n).map_err(|e| HandlerError::Internal(e.to_string()))?;
                msg.add_answer(Record::from_rdata(
                    req.qname().clone(),
                    self.cfg.ttl,
                    RData::PTR(PTR(target)),
                ));
            }
            return Ok(Response::new(msg, NAME));
        }
        if !self.cfg.zones.iter().any(|z| is_subdomain(z, name)) {
            return next.run(req).await;
        }
        let fall = self.cfg.fall.through(name);
        let answers = match qtype {
            RecordType::A => self.addresses(name, true),
            RecordType::AAAA => self.addresses(name, false),
            _ => {
                if self.cfg.fallthrough_unsupported && fall {
                    return next.run(req).await;
                }
                Vec::new()
            }
        };
        // Only a name with no address at all falls through (CoreDNS: "only on NXDOMAIN").
        if answers.is_empty()
            && self.addresses(name, true).is_empty()
            && self.addresses(name, false).is_empty()
        {
            if fall {
                return next.run(req).await;
            }
            // No SOA to make an NXDOMAIN with: SERVFAIL, as CoreDNS.
            return Err(HandlerError::Internal(format!(
                "plugin/hosts: no entry for {name}"
            )));
        }
        let mut msg = req.reply();
        msg.metadata.authoritative = true;
        for ip in answers {
            let data = match ip {
                IpAddr::V4(v4) => RData::A(v4.into()),
                IpAddr::V6(v6) => RData::AAAA(v6.into()),
            };
            msg.add_answer(Record::from_rdata(req.qname().clone(), self.cfg.ttl, data));
        }
        Ok(Response::new(msg, NAME))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use hickory_proto::op::ResponseCode;

    use super::*;
    use crate::corefile::lexer::lex;
    use crate::corefile::{Dispenser, Error};
    use crate::plugins::{Chain, Proto};

    /// plugin/hosts/hosts_test.go: hostsExample.
    const HOSTS_EXAMPLE: &str = "
127.0.0.1 localhost localhost.domain
::1 localhost localhost.domain
10.0.0.1 example.org
::FFFF:10.0.0.2 example.com
10.0.0.3 fallthrough-example.org
1.2.3.4 aa.example.com
5.6.7.8 *.apps.example.com
reload 5s
timeout 3600
";

    fn config(corefile: &str) -> Result<HostsConfig, Error> {
        let toks = lex(&Arc::from("Corefile"), corefile);
        parse(&mut Dispenser::new(&toks), &[".".to_string()])
    }

    fn handler(cfg: HostsConfig, file: &str) -> Hosts {
        let table = Table::parse(file, &cfg.zones, !cfg.no_reverse);
        let inline = Table::parse(&cfg.inline.join("\n"), &cfg.zones, !cfg.no_reverse);
        Hosts {
            cfg,
            inline,
            file: Arc::new(ArcSwap::from_pointee(table)),
        }
    }

    /// The next plugin: answers with `rcode`, as CoreDNS's `test.NextHandler`.
    struct NextRcode(ResponseCode);

    #[async_trait::async_trait]
    impl Handler for NextRcode {
        fn name(&self) -> &'static str {
            "next"
        }
        async fn serve(
            &self,
            req: &Request,
            _: crate::plugins::Next<'_>,
        ) -> Result<Response, HandlerError> {
            Ok(Response::new(req.error_reply(self.0), "next"))
        }
    }

    async fn ask(
        h: Hosts,
        next: ResponseCode,
        name: &str,
        t: RecordType,
    ) -> (ResponseCode, Response) {
        let chain = Chain::new(vec![Arc::new(h), Arc::new(NextRcode(next))]);
        let req = Request::new(
            Name::from_ascii(name).unwrap(),
            t,
            "10.240.0.1:40212".parse().unwrap(),
            Proto::Udp,
        );
        match chain.run(&req).await {
            Ok(r) => (r.rcode(), r),
            Err(e) => (e.rcode(), Response::new(req.error_reply(e.rcode()), "")),
        }
    }

    fn texts(r: &Response) -> Vec<String> {
        let mut v: Vec<String> = r.msg.answers.iter().map(|r| r.to_string()).collect();
        v.sort();
        v
    }

    // plugin/hosts/hosts_test.go: TestLookupA (11 cases), with hostsTestCases. Two cases are
    // not checked by the Go test (it checks only a written reply, and hosts writes none when it
    // returns SERVFAIL): `apps.example.com.` (the wildcard `*.apps.example.com` matches one
    // label below it, not the name itself: SERVFAIL from hosts.go) — expected values here are
    // hosts.go's.
    #[tokio::test]
    async fn test_lookup_a() {
        let cases: &[(&str, RecordType, ResponseCode, &[&str])] = &[
            (
                "example.org.",
                RecordType::A,
                ResponseCode::NoError,
                &["example.org. 3600 IN A 10.0.0.1"],
            ),
            (
                "example.com.",
                RecordType::A,
                ResponseCode::NoError,
                &["example.com. 3600 IN A 10.0.0.2"],
            ),
            (
                "localhost.",
                RecordType::AAAA,
                ResponseCode::NoError,
                &["localhost. 3600 IN AAAA ::1"],
            ),
            (
                "1.0.0.10.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NoError,
                &["1.0.0.10.in-addr.arpa. 3600 IN PTR example.org."],
            ),
            (
                "2.0.0.10.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NoError,
                &["2.0.0.10.in-addr.arpa. 3600 IN PTR example.com."],
            ),
            (
                "1.0.0.127.in-addr.arpa.",
                RecordType::PTR,
                ResponseCode::NoError,
                &[
                    "1.0.0.127.in-addr.arpa. 3600 IN PTR localhost.",
                    "1.0.0.127.in-addr.arpa. 3600 IN PTR localhost.domain.",
                ],
            ),
            ("example.org.", RecordType::AAAA, ResponseCode::NoError, &[]),
            ("example.org.", RecordType::MX, ResponseCode::NoError, &[]),
            (
                "fallthrough-example.org.",
                RecordType::AAAA,
                ResponseCode::NoError,
                &[],
            ),
            (
                "apps.example.com.",
                RecordType::A,
                ResponseCode::ServFail,
                &[],
            ),
            (
                "aa.example.com.",
                RecordType::A,
                ResponseCode::NoError,
                &["aa.example.com. 3600 IN A 1.2.3.4"],
            ),
        ];
        for (name, t, rcode, want) in cases {
            let corefile = if *name == "fallthrough-example.org." {
                "hosts {\n fallthrough\n}"
            } else {
                "hosts"
            };
            let h = handler(config(corefile).unwrap(), HOSTS_EXAMPLE);
            let (got, r) = ask(h, ResponseCode::NXDomain, name, *t).await;
            assert_eq!(got, *rcode, "{name} {t}");
            if got == ResponseCode::NoError {
                assert_eq!(r.plugin, NAME, "{name} {t}");
                assert!(r.msg.metadata.authoritative, "{name} {t}");
                let mut want: Vec<String> = want
                    .iter()
                    .map(|w| w.split_whitespace().collect::<Vec<_>>().join("\t"))
                    .collect();
                want.sort();
                let got: Vec<String> = texts(&r)
                    .iter()
                    .map(|w| w.split_whitespace().collect::<Vec<_>>().join("\t"))
                    .collect();
                assert_eq!(got, want, "{name} {t}");
            }
        }
    }

    // plugin/hosts/hosts_test.go: TestFallthroughUnsupportedType (4 cases); the next plugin
    // answers REFUSED.
    #[tokio::test]
    async fn test_fallthrough_unsupported_type() {
        for (corefile, name, through) in [
            ("hosts {\n fallthrough\n}", "example.org.", false),
            (
                "hosts {\n fallthrough\n fallthrough_unsupported\n}",
                "example.org.",
                true,
            ),
            (
                "hosts {\n fallthrough example.net\n fallthrough_unsupported\n}",
                "example.org.",
                false,
            ),
            ("hosts {\n fallthrough\n}", "missing.example.org.", true),
        ] {
            let h = handler(config(corefile).unwrap(), HOSTS_EXAMPLE);
            let (rcode, r) = ask(h, ResponseCode::Refused, name, RecordType::TXT).await;
            if through {
                assert_eq!(
                    (rcode, r.plugin),
                    (ResponseCode::Refused, "next"),
                    "{corefile}"
                );
            } else {
                assert_eq!(
                    (rcode, r.plugin),
                    (ResponseCode::NoError, NAME),
                    "{corefile}"
                );
                assert!(r.msg.metadata.authoritative && r.msg.answers.is_empty());
            }
        }
    }

    const HOSTS: &str = "255.255.255.255	broadcasthost
	127.0.0.2	odin
	127.0.0.3	odin  # inline comment
	::2             odin
	127.1.1.1	thor
	# aliases
	127.1.1.2	ullr ullrhost
	fe80::1%lo0	localhost
	# Bogus entries that must be ignored.
	123.123.123	loki
	321.321.321.321";
    const SINGLE_LINE_HOSTS: &str = "127.0.0.2  odin";
    const IPV4_HOSTS: &str = "# See https://tools.ietf.org/html/rfc1123.
	#

	# internet address and host name
	127.0.0.1	localhost	# inline comment separated by tab
	127.0.0.2	localhost       # inline comment separated by space

	# internet address, host name and aliases
	127.0.0.3	localhost	localhost.localdomain";
    const IPV6_HOSTS: &str =
        "# See https://tools.ietf.org/html/rfc5952, https://tools.ietf.org/html/rfc4007.

	# internet address and host name
	::1						localhost	# inline comment separated by tab
	fe80:0000:0000:0000:0000:0000:0000:0001		localhost       # inline comment separated by space

	# internet address with zone identifier and host name
	fe80:0000:0000:0000:0000:0000:0000:0002%lo0	localhost

	# internet address, host name and aliases
	fe80::3%lo0					localhost	localhost.localdomain";
    const CASE_HOSTS: &str = "127.0.0.1	PreserveMe	PreserveMe.local
		::1		PreserveMe	PreserveMe.local";

    fn test_hosts(text: &str) -> Hosts {
        handler(config("hosts").unwrap(), text)
    }

    /// `testStaticHost`: the name as given, normalized, lower- and upper-case (the handler
    /// looks names up lower-cased, as Hostsfile.lookupStaticHostFamily does).
    fn static_host(h: &Hosts, name: &str, v4: &[&str], v6: &[&str]) {
        let normalized = crate::corefile::address::fqdn(&name.to_ascii_lowercase());
        for input in [
            name.to_string(),
            normalized,
            name.to_ascii_lowercase(),
            name.to_ascii_uppercase(),
        ] {
            let host = input.to_ascii_lowercase();
            let got4: Vec<String> = h
                .addresses(&host, true)
                .iter()
                .map(|a| a.to_string())
                .collect();
            assert_eq!(got4, v4, "v4 {input}");
            let got6: Vec<String> = h
                .addresses(&host, false)
                .iter()
                .map(|a| a.to_string())
                .collect();
            assert_eq!(got6, v6, "v6 {input}");
        }
    }

    // plugin/hosts/hostsfile_test.go: TestLookupStaticHost (lookupStaticHostTests, 12 entries,
    // each asked 4 ways) and TestHostCacheModification's lookups.
    #[test]
    fn test_lookup_static_host() {
        type Ents<'a> = &'a [(&'a str, &'a [&'a str], &'a [&'a str])];
        let cases: &[(&str, Ents<'_>)] = &[
            (
                HOSTS,
                &[
                    ("odin.", &["127.0.0.2", "127.0.0.3"], &["::2"]),
                    ("thor.", &["127.1.1.1"], &[]),
                    ("ullr.", &["127.1.1.2"], &[]),
                    ("ullrhost.", &["127.1.1.2"], &[]),
                    ("localhost.", &[], &["fe80::1"]),
                ],
            ),
            (SINGLE_LINE_HOSTS, &[("odin.", &["127.0.0.2"], &[])]),
            (
                IPV4_HOSTS,
                &[
                    ("localhost.", &["127.0.0.1", "127.0.0.2", "127.0.0.3"], &[]),
                    ("localhost.localdomain.", &["127.0.0.3"], &[]),
                ],
            ),
            (
                IPV6_HOSTS,
                &[
                    ("localhost.", &[], &["::1", "fe80::1", "fe80::2", "fe80::3"]),
                    ("localhost.localdomain.", &[], &["fe80::3"]),
                ],
            ),
            (
                CASE_HOSTS,
                &[
                    ("PreserveMe.", &["127.0.0.1"], &["::1"]),
                    ("PreserveMe.local.", &["127.0.0.1"], &["::1"]),
                ],
            ),
        ];
        for (file, ents) in cases {
            let h = test_hosts(file);
            for (name, v4, v6) in *ents {
                static_host(&h, name, v4, v6);
                // TestHostCacheModification: a second lookup sees the same.
                static_host(&h, name, v4, v6);
            }
        }
    }

    // plugin/hosts/hostsfile_test.go: TestLookupStaticAddr (lookupStaticAddrTests, 17 entries;
    // the Go test compares normalized, i.e. lower-case, names).
    #[test]
    fn test_lookup_static_addr() {
        type Ents<'a> = &'a [(&'a str, &'a [&'a str])];
        let cases: &[(&str, Ents<'_>)] = &[
            (
                HOSTS,
                &[
                    ("255.255.255.255", &["broadcasthost."]),
                    ("127.0.0.2", &["odin."]),
                    ("127.0.0.3", &["odin."]),
                    ("::2", &["odin."]),
                    ("127.1.1.1", &["thor."]),
                    ("127.1.1.2", &["ullr.", "ullrhost."]),
                    ("fe80::1", &["localhost."]),
                ],
            ),
            (SINGLE_LINE_HOSTS, &[("127.0.0.2", &["odin."])]),
            (
                IPV4_HOSTS,
                &[
                    ("127.0.0.1", &["localhost."]),
                    ("127.0.0.2", &["localhost."]),
                    ("127.0.0.3", &["localhost.", "localhost.localdomain."]),
                ],
            ),
            (
                IPV6_HOSTS,
                &[
                    ("::1", &["localhost."]),
                    ("fe80::1", &["localhost."]),
                    ("fe80::2", &["localhost."]),
                    ("fe80::3", &["localhost.", "localhost.localdomain."]),
                ],
            ),
            (
                CASE_HOSTS,
                &[
                    ("127.0.0.1", &["preserveme.", "preserveme.local."]),
                    ("::1", &["preserveme.", "preserveme.local."]),
                ],
            ),
        ];
        for (file, ents) in cases {
            let h = test_hosts(file);
            for (addr, want) in *ents {
                assert_eq!(h.names(addr.parse().unwrap()), *want, "{addr}");
            }
        }
    }

    // plugin/hosts/wildcard_test.go: TestLookupWildcardHost (8 entries) and the patterns of
    // TestReplaceWithAsteriskLabel/TestReplaceWithAsteriskLabelApex (an apex name is not under
    // its own zone's wildcard).
    #[test]
    fn test_lookup_wildcard_host() {
        let h = test_hosts(
            "
127.0.0.53 *.example.org
127.0.1.52 *.intern.example.org
127.0.0.54 foo.example.org
192.168.33.10 *.example.com
192.168.33.11 a.example.com
192.168.33.12 b.example.com
",
        );
        for (name, v4) in [
            ("foo.example.org.", &["127.0.0.54"][..]),
            ("bar.example.org.", &["127.0.0.53"]),
            ("bar.intern.example.org.", &["127.0.1.52"]),
            ("a.example.com.", &["192.168.33.11"]),
            ("b.example.com.", &["192.168.33.12"]),
            ("c.example.com.", &["192.168.33.10"]),
            ("example.com.", &[]),
            ("deep.foo.example.org.", &[]),
        ] {
            static_host(&h, name, v4, &[]);
        }
        let root = test_hosts("192.0.2.1 *.com\n");
        static_host(&root, "example.com.", &["192.0.2.1"], &[]);
        static_host(&root, ".", &[], &[]);
    }

    // An IPv4-mapped IPv6 entry is IPv4 (hostsfile.go: addr.To4() != nil), also inline.
    #[tokio::test]
    async fn v4_mapped_entries_are_ipv4() {
        let cfg = config("hosts /nonexistent {\n ::ffff:192.0.2.7 mapped.example\n}").unwrap();
        let h = handler(cfg.clone(), "");
        let (rcode, r) = ask(h, ResponseCode::NXDomain, "mapped.example.", RecordType::A).await;
        assert_eq!(rcode, ResponseCode::NoError);
        assert_eq!(texts(&r), ["mapped.example. 3600 IN A 192.0.2.7"]);
        let h = handler(cfg.clone(), "");
        let (_, r) = ask(
            h,
            ResponseCode::NXDomain,
            "mapped.example.",
            RecordType::AAAA,
        )
        .await;
        assert!(r.msg.answers.is_empty() && r.plugin == NAME);
        let h = handler(cfg, "");
        let (_, r) = ask(
            h,
            ResponseCode::NXDomain,
            "7.2.0.192.in-addr.arpa.",
            RecordType::PTR,
        )
        .await;
        assert_eq!(
            texts(&r),
            ["7.2.0.192.in-addr.arpa. 3600 IN PTR mapped.example."]
        );
    }

    // hostsfile.go parse: names outside the plugin's zones are not loaded (nor their PTRs).
    #[tokio::test]
    async fn names_outside_the_zones_are_skipped() {
        let cfg = config("hosts /nonexistent example.org").unwrap();
        let h = handler(cfg.clone(), "192.0.2.1 a.example.org b.example.net\n");
        assert_eq!(h.names("192.0.2.1".parse().unwrap()), ["a.example.org."]);
        assert!(h.addresses("b.example.net.", true).is_empty());
    }
}
