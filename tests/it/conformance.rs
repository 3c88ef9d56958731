//! The black-box conformance kit (../shared/conformance) against this build: the shared cases
//! (the Kubernetes DNS spec and CoreDNS's own test tables) and ours in tests/conformance (the
//! watch paths). The kit needs dnspython and PyYAML: `util::python3` installs them under
//! target/ when python3 lacks them.

use std::path::PathBuf;

const BIN: &str = env!("CARGO_BIN_EXE_clusterdns");

fn kit() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/conformance")
}

fn run(args: &[&str]) {
    let out = crate::util::python3()
        .arg(kit().join("run.py"))
        .args(["--server", BIN, "--keep-going"])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout.lines().last().unwrap_or_default();
    assert!(
        out.status.success() && summary.ends_with(" 0 failed"),
        "{summary}\n{stdout}\n{stderr}"
    );
}

/// Every shared case, no tag skipped (multicluster, zonal and zone transfers included).
#[test]
fn shared_cases_kubernetes_dns_spec_and_coredns_tables() {
    run(&[]);
}

/// Watch paths: add/update/delete of every kind, bookmarks, cut watches, 410 relists, API
/// errors, unsynced start.
#[test]
fn own_cases_watch_paths() {
    let cases = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance");
    run(&["--cases", cases.to_str().unwrap()]);
}
