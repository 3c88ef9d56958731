//! Every Corefile that CoreDNS's Go tests start with *rewrite*, *dns64* or *loadbalance*
//! (test/rewrite_test.go, test/metrics_test.go, test/plugin_dnssec_test.go; the plugins'
//! setup_test.go inputs run in their setup tables) and the rule lines of CoreDNS's rewrite
//! README must pass `-validate`, or be refused only for a plugin clusterdns has not built.
//! TestRewriteFailure (test/rewrite_test.go) also runs against a started server.

use std::process::Command;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

const BIN: &str = env!("CARGO_BIN_EXE_clusterdns");

const ZONE: &str = "$ORIGIN example.org.\n@ 3600 IN SOA sns.dns.icann.org. noc.dns.icann.org. 1 7200 3600 1209600 3600\n@ 3600 IN NS a.iana-servers.net.\n@ 3600 IN A 192.0.2.53\n";

/// (where it comes from, Corefile, plugins it needs besides the built ones).
const CASES: &[(&str, &str, &[&str])] = &[
    (
        "test/rewrite_test.go: TestRewriteFailure",
        ".:0 {\n        rewrite name regex (.*)\\.test\\.$ {1}. answer auto\n        # no next plugin to induce SERVFAIL\n    }\n",
        &[],
    ),
    (
        "test/rewrite_test.go: TestRewrite",
        ".:0 {\n\t\trewrite type MX a\n\t\trewrite edns0 local set 0xffee hello-world\n\t\terratic . {\n\t\t\tdrop 0\n\t\t}\n\t}\n",
        &["erratic"],
    ),
    (
        "test/metrics_test.go: TestMetricsRewriteRequestSize",
        ".:0 {\n\t\tprometheus localhost:0\n\t\trewrite edns0 local set 0x13 test123456 revert\n\t\tforward . 8.8.8.8\n\t}\n",
        &[],
    ),
    (
        "test/plugin_dnssec_test.go: TestLookupBalanceRewriteCacheDnssec",
        "example.org:0 {\n\t\tfile db.example.org\n\t\trewrite type ANY HINFO\n\t\tdnssec {\n\t\t\tkey file Kexample.org\n\t\t}\n\t\tloadbalance\n\t}\n",
        &["dnssec"],
    ),
];

/// Rule lines of plugin/rewrite/README.md (each in a server block of its own).
const README_RULES: &[&str] = &[
    "rewrite name substring service.us-west-1.example.org service.us-west-1.consul",
    "rewrite name regex (.*)-(us-west-1)\\.example\\.org {1}.service.{2}.consul",
    "rewrite name suffix .schmoogle.com. .google.com.",
    "rewrite name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul",
    "rewrite stop {\n        name suffix .coredns.rocks .service.consul answer auto\n    }",
    "rewrite stop {\n        name regex (.*)-(us-west-1)\\.coredns\\.rocks {1}.service.{2}.consul\n        answer name (.*)\\.service\\.(us-west-1)\\.consul {1}-{2}.coredns.rocks\n    }",
    "rewrite stop {\n        name suffix .arpa .arpa\n        answer name auto\n        answer value (.*)\\.service\\.consul\\. {1}.coredns.rocks.\n    }",
    "rewrite name exact RED BLUE",
    "rewrite continue {\n        ttl regex (.*)\\.coredns\\.rocks 15\n    }",
    "rewrite ttl example.com. 30-300",
    "rewrite ttl example.com. -30",
    "rewrite ttl example.com. 30-",
    "rewrite ttl example.com. 30",
    "rewrite continue {\n        rcode regex (.*)\\.coredns\\.rocks SERVFAIL NOERROR\n    }",
    "rewrite continue {\n        rcode regex (.*)\\.coredns\\.rocks 2 0\n    }",
    "rewrite edns0 local set 0xffee {client_ip}",
    "rewrite edns0 local set 0xffee {some-plugin/some-label}",
    "rewrite edns0 local unset 0xffee",
    "rewrite edns0 subnet set 24 56",
    "rewrite edns0 subnet unset",
    "rewrite cname regex (.*).cdn.example.net. {1}.other.cdn.com.",
];

fn validate(corefile: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("Corefile"), corefile).unwrap();
    std::fs::write(dir.path().join("db.example.org"), ZONE).unwrap();
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["-conf", "Corefile", "-validate"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn go_test_corefiles_start() {
    for (from, corefile, needs) in CASES {
        let (code, stderr) = validate(corefile);
        let missing: Vec<&&str> = needs
            .iter()
            .filter(|p| !clusterdns::plugins::entry(p).is_some_and(|e| e.built))
            .collect();
        let what = format!("{from}:\n{corefile}\nstderr: {stderr}");
        if missing.is_empty() {
            assert_eq!(code, Some(0), "{what}");
        } else {
            // Refused only for the plugins not built here.
            assert_eq!(code, Some(1), "{what}");
            for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
                assert!(
                    missing
                        .iter()
                        .any(|p| line.contains(&format!("plugin/{p}: not built yet"))),
                    "{what}"
                );
            }
        }
    }
    for rule in README_RULES {
        let corefile = format!(". {{\n    {rule}\n    whoami\n}}\n");
        let (code, stderr) = validate(&corefile);
        assert_eq!(code, Some(0), "{corefile}\nstderr: {stderr}");
    }
}

#[tokio::test]
async fn rewrite_failure_keeps_the_question() {
    // test/rewrite_test.go: TestRewriteFailure — no plugin after rewrite: SERVFAIL, and the
    // question is the client's.
    let s = crate::util::start(
        ".:0 {\n bind 127.0.0.1\n rewrite name regex (.*)\\.test\\.$ {1}. answer auto\n}\n",
        vec![],
    )
    .await;
    let r = crate::util::udp(
        s.dns(),
        &crate::util::query("example.test.", RecordType::MX, None),
    )
    .await;
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(r.queries[0].name().to_ascii(), "example.test.");
    assert_eq!(r.queries[0].query_type(), RecordType::MX);
    s.running.shutdown().await;
}
