//! No Corefile that CoreDNS's whole-server tests (test/*_test.go at CoreDNS's main) start is
//! refused because of template, hosts, any, whoami, log or errors: every such Corefile (string
//! pieces joined, `%d` ports as 0, addresses filled in) goes through the loader and the build.
//! Those that need something clusterdns does not build are refused for that, by name.

use std::sync::Arc;

use clusterdns::plugins::prometheus::Metrics;
use clusterdns::{config, server};

const MINE: &[&str] = &[
    "plugin/template",
    "plugin/hosts",
    "plugin/any",
    "plugin/whoami",
    "plugin/log",
    "plugin/errors",
];

/// (Corefile, what refuses it when clusterdns lacks it).
const CASES: &[(&str, Option<&str>)] = &[
    // test/acl_autopath_test.go
    (
        r###".:0 {
		acl protected.example. {
			block
		}
		autopath /etc/resolv.conf
		hosts {
			192.0.2.123 secret.protected.example
		}
	}"###,
        None,
    ),
    // test/acl_test.go
    (
        r###".:0 {
	bind 127.0.0.1
	acl protected.example. {
		allow net 127.0.0.1/32
		block
	}
	template IN A protected.example. {
		match ^secret[.]protected[.]example[.]$
		answer "{{ .Name }} 30 IN A 192.0.2.124"
	}
}"###,
        None,
    ),
    // test/acme_test.go
    (
        r###"dns://.:0 {
	bind 127.0.0.1
	whoami
}

tls://.:0 {
	bind 127.0.0.1
	tls {
		acme %s
		ca %s%s
		ca_root %s
		storage %s
		resolver 127.0.0.1:0
	}
	whoami
}"###,
        Some("acme"),
    ),
    // test/bind_test.go
    (
        r###".:0 {
        bind 127.0.0.1 {
            except 127.0.0.1
        }
        trace
        loop
        whoami
    }"###,
        Some("trace"),
    ),
    // test/corefile_test.go
    (
        r###"EXAMPLE.ORG.:0 {
	whoami
}"###,
        None,
    ),
    // test/edns0_test.go
    (
        r###".:0 {
		whoami
	}"###,
        None,
    ),
    // test/file_upstream_test.go
    (
        r###".:0 {
	template ANY A nxdomain.example.net. {
		rcode NXDOMAIN
	}
	template ANY A srvfail.example.net. {
		rcode SERVFAIL
	}
	template ANY A nodata.example.net. {
	}
	file {ZONE} example.org
}"###,
        None,
    ),
    // test/grpc_test.go
    (
        r###"grpc://.:0 {
	whoami
}"###,
        Some("grpc"),
    ),
    // test/grpc_test.go
    (
        r###"grpc://.:0 {
	grpc_server {
		max_streams 2
	}
	whoami
}"###,
        Some("grpc"),
    ),
    // test/grpc_test.go
    (
        r###"grpc://.:0 {
	tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
	grpc_server {
		max_connections 2
	}
	whoami
}"###,
        Some("grpc"),
    ),
    // test/hosts_file_test.go
    (
        r###"example.org:0 {
		hosts highly_unlikely_to_exist_hosts_file example.org {
			10.0.0.1 example.org
			fallthrough
		}
	}"###,
        None,
    ),
    // test/https3_test.go
    (
        r###"https3://.:0 {
	tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
	whoami
}"###,
        Some("https3"),
    ),
    // test/https3_test.go
    (
        r###"https3://.:0 {
	tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
	https3 {
		max_streams 2
	}
	whoami
}"###,
        Some("https3"),
    ),
    // test/https_test.go
    (
        r###"https://.:0 {
	tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
	whoami
}"###,
        Some("tls"),
    ),
    // test/https_test.go
    (
        r###"https://.:0 {
	tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
	https {
		max_connections 2
	}
	whoami
}"###,
        Some("tls"),
    ),
    // test/metrics_test.go
    (
        r###"
	example.org:0 {
		chaos CoreDNS-001 miek@miek.nl
		prometheus localhost:0
	}
	example.com:0 {
		log
		prometheus localhost:0
	}"###,
        None,
    ),
    // test/metrics_test.go
    (
        r###"example.org:0 {
		whoami
		prometheus localhost:0
	}"###,
        None,
    ),
    // test/metrics_test.go
    (
        r###"
	example.org:0 {
		chaos CoreDNS-001 miek@miek.nl
		prometheus localhost:0
	}
	example.com:0 {
		whoami
		prometheus localhost:0
	}"###,
        None,
    ),
    // test/multisocket_test.go
    (
        r###".:5059 {
		multisocket
		whoami
	}"###,
        Some("multisocket"),
    ),
    // test/proxy_health_test.go
    (
        r###"example.org:0 {
		whoami
	}"###,
        None,
    ),
    // test/quic_test.go
    (
        r###"quic://.:0 {
		tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
		whoami
	}"###,
        Some("quic"),
    ),
    // test/quic_test.go
    (
        r###"quic://.:0 {
		tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
		whoami
		quic
	}"###,
        Some("quic"),
    ),
    // test/quic_test.go
    (
        r###"quic://.:0 {
		tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem ../plugin/tls/test_ca.pem
		quic {
			max_streams 5
			worker_pool_size 10
		}
		whoami
	}"###,
        Some("quic"),
    ),
    // test/reload_test.go
    (
        r###".:0 {
		whoami
	}"###,
        None,
    ),
    // test/reload_test.go
    (
        r###".:0 {
		whoami
	}"###,
        None,
    ),
    // test/reload_test.go
    (
        r###".:0 {
		reload 2s 1s
		whoami
	}"###,
        None,
    ),
    // test/reload_test.go
    (
        r###".:0 {
		reload 2s 1s
		whoami
		# change to trigger different config
	}"###,
        None,
    ),
    // test/reverse_test.go
    (
        r###"10.0.0.0/24:0 {
		whoami
	}"###,
        None,
    ),
    // test/server_reverse_test.go
    (
        r###"192.168.1.0/25:0 {
		whoami
	}"###,
        None,
    ),
    // test/server_reverse_test.go
    (
        r###"192.168.1.0/24:0 {
		whoami
	}"###,
        None,
    ),
    // test/server_reverse_test.go
    (
        r###"1.168.192.in-addr.arpa:0 {
		whoami
	}"###,
        None,
    ),
    // test/server_test.go
    (
        r###"10.0.0.0/15:5053 {
		whoami
	}"###,
        None,
    ),
    // test/shed_test.go
    (
        r###".:0 {
		shed
		prometheus localhost:0
		whoami
	}"###,
        Some("shed"),
    ),
    // test/template_upstream_test.go
    (
        r###".:0 {
		# CNAME
		template IN ANY cname.example.net. {
			match ".*"
			answer "cname.example.net. 60 IN CNAME target.example.net."
			upstream
		}

		# Target
		template IN A target.example.net. {
			match ".*"
			answer "target.example.net. 60 IN A 1.2.3.4"
		}
	}"###,
        None,
    ),
    // test/tls_test.go
    (
        r###"%s {
        tls ../plugin/tls/test_cert.pem ../plugin/tls/test_key.pem
        whoami
    }"###,
        Some("tls"),
    ),
];

#[test]
fn coredns_test_corefiles_start() {
    let dir = tempfile::tempdir().unwrap();
    let zone = dir.path().join("example.org");
    std::fs::write(
        &zone,
        "$ORIGIN example.org.\n@ 3600 IN SOA ns.example.org. h.example.org. 1 2 3 4 5\n@ 3600 IN NS ns\nns 3600 IN A 192.0.2.53\n",
    )
    .unwrap();
    let metrics = Arc::new(Metrics::new(prometheus::Registry::new()).unwrap());
    let mut ok = 0;
    for (i, (text, refused_for)) in CASES.iter().enumerate() {
        let text = text.replace("{ZONE}", zone.to_str().unwrap());
        let result = config::load("Corefile", &text, 53)
            .map_err(|e| {
                e.iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .and_then(|cfg| {
                server::build(&cfg, &metrics)
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            });
        match (result, refused_for) {
            (Ok(()), None) => ok += 1,
            (Err(e), Some(why)) => {
                assert!(e.contains(why), "case {i}: refused for {e}, not {why}");
                for m in MINE {
                    assert!(!e.contains(m), "case {i}: {e}");
                }
            }
            (r, _) => panic!("case {i}: {r:?}\n{text}"),
        }
    }
    assert_eq!(
        ok, 20,
        "the Corefiles that need only what clusterdns builds"
    );
}
