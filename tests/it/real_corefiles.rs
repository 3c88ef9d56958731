//! Every real Corefile in ../shared/corefiles parses; the only problems left are directives that
//! are not built yet, reported by name.

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
fn every_real_corefile_parses_and_names_what_is_not_built() {
    let files = shared_corefiles();
    assert!(files.len() >= 15, "found only {} Corefiles", files.len());
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name = f.to_string_lossy().to_string();
        match config::load(&name, &text, 53) {
            Ok(c) => assert!(!c.blocks.is_empty(), "{name}"),
            Err(errors) => {
                for e in errors {
                    let msg = e.with_location();
                    assert!(msg.contains("not built yet"), "{name}: {msg}");
                    assert!(msg.contains(&name), "{name}: no location in {msg}");
                }
            }
        }
    }
}
