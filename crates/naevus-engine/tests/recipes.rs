//! Every recipe in configs/ parses (unknown keys are errors) and passes the engine's check
//! (its values' bounds, a model the registry knows, ImageNet weights where it asks for them),
//! so a typo in a shipped recipe fails here rather than in a user's run; so does every
//! ensemble definition.

use std::path::Path;

use naevus_engine::TrainConfig;

#[test]
fn every_shipped_recipe_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let config = TrainConfig::from_toml_file(&path).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            naevus_engine::config::check(&config).unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            checked += 1;
        }
        // Ensemble definitions (naevus export --ensemble) read as such.
        if path.extension().is_some_and(|e| e == "json") {
            naevus_run::EnsembleDefinition::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }
    assert!(checked >= 6, "only {checked} recipes found in {}", dir.display());
}
