//! A table of bad Corefiles: each gives CoreDNS's message with its location and exit 1, both
//! when serving and with `-validate`, and never a panic.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_clusterdns");

/// (name, Corefile, expected message, extra files to write beside it)
type Case = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const CASES: &[Case] = &[
    (
        "unclosed block",
        ".:53 {\n    whoami\n",
        "Corefile:2 - Syntax error: Unexpected token 'whoami', expecting '}'",
        &[],
    ),
    (
        "stray brace in directive",
        ".:53 {\n    whoami }\n}\n",
        "Corefile:2 - Error during parsing: Unexpected '}' because no matching opening brace",
        &[],
    ),
    (
        "stray brace at top",
        ".:53 {\n    whoami\n}\n}\n",
        "Corefile:4 - Error during parsing: Unexpected '}' because no matching opening brace",
        &[],
    ),
    (
        "unclosed directive block",
        ".:53 {\n    health {\n        lameduck 5s\n",
        "Corefile:3 - Error during parsing: Unexpected EOF",
        &[],
    ),
    (
        "unknown directive",
        ".:53 {\n    errors\n    foo\n}\n",
        "Corefile:3 - Error during parsing: Unknown directive 'foo'",
        &[],
    ),
    (
        "extra comma",
        "a.org, {\n    whoami\n}\n",
        "Corefile:1 - Error during parsing: Expected another address but had '{' - check for extra comma",
        &[],
    ),
    (
        "bad port",
        ".:70000 {\n    whoami\n}\n",
        "error inspecting server blocks: invalid port '70000'",
        &[],
    ),
    (
        "non-numeric port",
        "example.org:dns {\n    whoami\n}\n",
        "error inspecting server blocks: invalid port 'dns'",
        &[],
    ),
    (
        "empty port",
        "example.org: {\n    whoami\n}\n",
        "expecting data after last colon",
        &[],
    ),
    (
        "bad env var",
        ".:{$CLUSTERDNS_SURELY_UNSET} {\n    whoami\n}\n",
        "expecting data after last colon: \".:\"",
        &[],
    ),
    (
        "bad CIDR",
        "10.0.0.0/33 {\n    whoami\n}\n",
        "invalid CIDR 10.0.0.0/33",
        &[],
    ),
    (
        "grpc scheme",
        "grpc://.:443 {\n    whoami\n}\n",
        "transport 'grpc' is not built in clusterdns (dns://, tls:// and https:// are)",
        &[],
    ),
    (
        "tls certificate missing",
        "tls://.:853 {\n    tls cert.pem key.pem\n    whoami\n}\n",
        "Corefile:1 - plugin/tls: could not load TLS cert: cert.pem:",
        &[],
    ),
    (
        "tls key not a key",
        "https://.:443 {\n    tls cert.pem cert.pem\n    whoami\n}\n",
        "Corefile:1 - plugin/tls: could not load TLS cert: cert.pem:",
        &[(
            "cert.pem",
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )],
    ),
    (
        "dnstap queue",
        ".:53 {\n    dnstap /tmp/dnstap.sock full 1 5000\n    whoami\n}\n",
        "Corefile:2 - Error during parsing: dnstap: MultipleQueue must be between 1 and 4096 (x10k messages): 5000",
        &[],
    ),
    (
        "dnstap listen",
        ".:53 {\n    dnstap listen tcp://127.0.0.1:6000\n    whoami\n}\n",
        "Corefile:2 - Error during parsing: dnstap listen (sinks connecting to the server) is not built in clusterdns",
        &[],
    ),
    (
        "prometheus tls file missing",
        ".:53 {\n    prometheus {\n        tls web.yml\n    }\n    whoami\n}\n",
        "Corefile:1 - plugin/prometheus: TLS config file web.yml:",
        &[],
    ),
    (
        "prometheus tls without cert_file",
        ".:53 {\n    prometheus {\n        tls web.yml\n    }\n    whoami\n}\n",
        "Corefile:1 - plugin/prometheus: TLS config file web.yml: missing cert_file",
        &[("web.yml", "tls_server_config:\n  key_file: server.key\n")],
    ),
    (
        "tls client_auth",
        "tls://.:853 {\n    tls cert.pem key.pem {\n        client_auth bogus\n    }\n}\n",
        "Corefile:3 - Error during parsing: unknown authentication type 'bogus'",
        &[],
    ),
    (
        "duplicate keys",
        ".:53 {\n    whoami\n}\n.:53 {\n    whoami\n}\n",
        "Corefile:4 - cannot serve dns://.:53 - it is already defined",
        &[],
    ),
    (
        "plugin used twice",
        ".:53 {\n    errors\n    errors\n}\n",
        "plugin/errors: this plugin can only be used once per Server Block",
        &[],
    ),
    (
        "cache used twice",
        ".:53 {\n    cache\n    cache 30\n}\n",
        "plugin/cache: this plugin can only be used once per Server Block",
        &[],
    ),
    (
        "health twice",
        ".:53 {\n    health :8080\n    health :8081\n}\n",
        "plugin/health: this plugin can only be used once per Server Block",
        &[],
    ),
    (
        "health args",
        ".:53 {\n    health a:1 b:2\n}\n",
        "plugin/health: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'b:2'",
        &[],
    ),
    (
        "lameduck value",
        ".:53 {\n    health {\n        lameduck soon\n    }\n}\n",
        "plugin/health: Corefile:3 - Error during parsing: unable to parse lameduck duration value: 'soon'",
        &[],
    ),
    (
        "whoami argument",
        ".:53 {\n    whoami please\n}\n",
        "plugin/whoami: Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'please'",
        &[],
    ),
    (
        "log class",
        ".:53 {\n    log {\n        class loud\n    }\n}\n",
        "plugin/log: Corefile:3 - Error during parsing: unknown class 'loud'",
        &[],
    ),
    (
        "bind address",
        ".:53 {\n    bind 300.1.1.1\n}\n",
        "plugin/bind: Corefile:2 - Error during parsing: not a valid IP address or interface name: \"300.1.1.1\"",
        &[],
    ),
    (
        "ready monitor",
        ".:53 {\n    ready {\n        monitor sometimes\n    }\n}\n",
        "monitor type 'sometimes' not supported",
        &[],
    ),
    (
        "prometheus address",
        ".:53 {\n    prometheus 9153\n}\n",
        "plugin/prometheus: Corefile:2 - Error during parsing: address 9153: missing port in address",
        &[],
    ),
    (
        "errors regexp",
        ".:53 {\n    errors {\n        consolidate 1m (\n    }\n}\n",
        "plugin/errors: Corefile:3 - Error during parsing: invalid regexp",
        &[],
    ),
    (
        // Found by the corefile fuzz target: a duration past Go's int64 nanoseconds panicked.
        "errors consolidate duration overflow",
        ".:53 {\n    errors {\n        consolidate 5555555555555555555555m \".*\"\n    }\n}\n",
        "plugin/errors: Corefile:3 - Error during parsing: invalid duration '5555555555555555555555m'",
        &[],
    ),
    (
        "import without argument",
        ".:53 {\n    import\n}\n",
        "Corefile:2 - Error during parsing: Wrong argument count or unexpected line ending after 'import'",
        &[],
    ),
    (
        "import two arguments",
        ".:53 {\n    import a b\n}\n",
        "Corefile:2 - Error during parsing: Import takes only one argument (glob pattern or file)",
        &[],
    ),
    (
        "import missing file",
        ".:53 {\n    import missing.conf\n}\n",
        "Error during parsing: File to import not found:",
        &[],
    ),
    (
        "import two wildcards",
        ".:53 {\n    import *.a*\n}\n",
        "Glob pattern may only contain one wildcard (*), but has others",
        &[],
    ),
    (
        "import directory",
        ".:53 {\n    import sub\n}\n",
        "is a directory",
        &[("sub/x", "")],
    ),
    (
        "import cycle",
        ".:53 {\n    import a.conf\n}\n",
        "a cycle of imports exists between",
        &[("a.conf", "import b.conf\n"), ("b.conf", "import a.conf\n")],
    ),
    (
        "error inside import keeps its file",
        ".:53 {\n    import extra.conf\n}\n",
        "extra.conf:2 - Error during parsing: Unknown directive 'bogus'",
        &[("extra.conf", "whoami\nbogus\n")],
    ),
    (
        "snippet redeclared",
        "(s) {\n    whoami\n}\n(s) {\n    log\n}\n.:53 {\n    import s\n}\n",
        "Corefile:4 - Error during parsing: redeclaration of previously declared snippet s",
        &[],
    ),
    (
        "snippet imports itself",
        "(s) {\n    import s\n}\n.:53 {\n    import s\n}\n",
        "maximum snippet import depth (10000) exceeded",
        &[],
    ),
    (
        "empty Corefile",
        "# nothing here\n",
        "no server blocks",
        &[],
    ),
    (
        "not built yet",
        ".:53 {\n    errors\n    sign db.example.org\n}\n",
        "Corefile:3 - plugin/sign: not built yet",
        &[],
    ),
    (
        "kubernetes pods value",
        ".:53 {\n    kubernetes cluster.local {\n        pods giant_seed\n    }\n}\n",
        "Corefile:3 - Error during parsing: wrong value for pods: giant_seed,  must be one of: disabled, verified, insecure",
        &[],
    ),
    (
        "kubernetes ttl",
        ".:53 {\n    kubernetes cluster.local {\n        ttl 3601\n    }\n}\n",
        "Corefile:3 - Error during parsing: ttl must be in range [0, 3600]: 3601",
        &[],
    ),
];

fn write_case(dir: &Path, corefile: &str, files: &[(&str, &str)]) {
    std::fs::write(dir.join("Corefile"), corefile).unwrap();
    for (name, text) in files {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

#[test]
fn bad_corefiles_fail_with_coredns_messages() {
    assert!(CASES.len() >= 25);
    for (name, corefile, want, files) in CASES {
        let dir = tempfile::tempdir().unwrap();
        write_case(dir.path(), corefile, files);
        for validate in [true, false] {
            let mut cmd = Command::new(BIN);
            cmd.current_dir(dir.path())
                .args(["-conf", "Corefile", "-dns.port", "0"]);
            if validate {
                cmd.arg("-validate");
            }
            let out = cmd.output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(1),
                "{name} (validate={validate}): {stderr}"
            );
            // -validate drops inner locations: compare the message after the last ` - `.
            let want_here = if validate {
                want.rsplit(" - ").next().unwrap_or(want)
            } else {
                want
            };
            assert!(
                stderr.contains(want_here),
                "{name} (validate={validate}): want {want_here:?}, got {stderr:?}"
            );
            assert!(!stderr.contains("panicked"), "{name}: {stderr}");
            if validate {
                let first = stderr.lines().next().unwrap_or("");
                let located = first.contains(".conf:")
                    || first.starts_with("Corefile:")
                    || first.contains("/Corefile:");
                assert!(
                    located || *name == "empty Corefile",
                    "{name}: -validate must print FILE:LINE first: {first}"
                );
            }
        }
    }
}

#[test]
fn validate_collects_every_setup_problem() {
    let dir = tempfile::tempdir().unwrap();
    write_case(
        dir.path(),
        ".:53 {\n    whoami x\n}\nexample.org {\n    health a b\n    sign db.example.org\n}\n",
        &[],
    );
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .args(["-conf", "Corefile", "-validate"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 3, "{stderr}");
    assert!(stderr.contains("Corefile:2 - plugin/whoami"));
    assert!(stderr.contains("Corefile:5 - plugin/health"));
    assert!(stderr.contains("Corefile:6 - plugin/sign: not built yet"));
}

#[test]
fn imports_snippets_and_env_load() {
    let dir = tempfile::tempdir().unwrap();
    write_case(
        dir.path(),
        "(common) {\n    errors\n    log\n}\nimport servers/*.server\n.:{$CLUSTERDNS_TEST_PORT} {\n    import common\n    import custom/*.override\n    whoami\n}\n",
        &[
            ("servers/a.server", "example.org:5301 {\n    whoami\n}\n"),
            ("custom/x.override", "# only a comment\n"),
        ],
    );
    let out = Command::new(BIN)
        .current_dir(dir.path())
        .env("CLUSTERDNS_TEST_PORT", "5300")
        .args(["-conf", "Corefile", "-validate"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("valid (2 server blocks)"), "{stdout}");
}

#[test]
fn command_line() {
    let out = Command::new(BIN).arg("-plugins").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let order: Vec<&str> = text
        .lines()
        .filter_map(|l| l.trim().strip_prefix("dns."))
        .collect();
    assert_eq!(
        order,
        [
            "metadata",
            "tls",
            "https",
            "timeouts",
            "reload",
            "nsid",
            "bind",
            "ready",
            "health",
            "prometheus",
            "errors",
            "log",
            "dnstap",
            "local",
            "dns64",
            "acl",
            "any",
            "chaos",
            "loadbalance",
            "cache",
            "rewrite",
            "header",
            "autopath",
            "minimal",
            "template",
            "transfer",
            "hosts",
            "k8s_external",
            "kubernetes",
            "file",
            "etcd",
            "loop",
            "forward",
            "whoami",
            "view"
        ]
    );
    let out = Command::new(BIN).arg("-version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("clusterdns-"));
    let out = Command::new(BIN)
        .args(["-conf", "Corefile", "stray"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("extra command line arguments"));
    let out = Command::new(BIN)
        .args(["-conf", "/nonexistent/Corefile"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("open /nonexistent/Corefile"));
    let mut child = Command::new(BIN)
        .args(["-conf", "stdin", "-validate"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b".:53 {\n whoami\n}\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stdin: valid"));
}
