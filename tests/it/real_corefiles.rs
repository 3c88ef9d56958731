//! Every real Corefile in ../shared/corefiles (the `.filled` twin where the raw file holds
//! template placeholders) loads and builds — every plugin they use is built.

use std::path::PathBuf;

use clusterdns::config;

fn shared_corefiles() -> Vec<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corefiles");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (the shared/ folder must sit beside the repository)",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "Corefile"))
        .collect();
    files.sort();
    // Use the `.filled` twin where one exists: the raw file holds template placeholders.
    files
        .iter()
        .filter(|p| {
            let s = p.to_string_lossy();
            s.ends_with(".filled.Corefile")
                || !files
                    .iter()
                    .any(|q| q.to_string_lossy() == s.replace(".Corefile", ".filled.Corefile"))
        })
        .cloned()
        .collect()
}

#[test]
fn every_real_corefile_loads_and_builds() {
    let files = shared_corefiles();
    assert!(files.len() >= 15, "found only {} Corefiles", files.len());
    let metrics = std::sync::Arc::new(
        clusterdns::plugins::prometheus::Metrics::new(prometheus::Registry::new()).unwrap(),
    );
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.to_string_lossy().to_string();
        let cfg = config::load(&name, &text, 53).unwrap_or_else(|errors| {
            let msgs: Vec<String> = errors.iter().map(|e| e.with_location()).collect();
            panic!("{name}: {msgs:?}")
        });
        assert!(!cfg.blocks.is_empty(), "{name}");
        if let Err(e) = clusterdns::server::build(&cfg, &metrics) {
            panic!("{name}: {}", e.with_location());
        }
    }
}
