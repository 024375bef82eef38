#![no_main]
//! The files of a model folder that serve, predict and explain check when they load it:
//! run.json, then optionally `\n#calibration#\n` and calibration.json, then optionally
//! `\n#card#\n` and model_card.json. Whatever a reader accepts must hold the values it
//! promises (folds listed, sizes and probabilities in range).

use libfuzzer_sys::fuzz_target;
use naevus_fuzz::{scratch, split};

fuzz_target!(|data: &[u8]| {
    let dir = scratch().join("model");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("model dir");
    let (run_json, rest) = split(data, b"\n#calibration#\n");
    let (calibration, card) = match rest {
        Some(rest) => {
            let (calibration, card) = split(rest, b"\n#card#\n");
            (Some(calibration), card)
        }
        None => (None, None),
    };
    std::fs::write(dir.join("run.json"), run_json).expect("write run.json");
    if let Some(bytes) = calibration {
        std::fs::write(dir.join(naevus_run::calibration::CALIBRATION_FILE), bytes).expect("write calibration.json");
    }
    if let Some(bytes) = card {
        std::fs::write(dir.join(naevus_report::model_card::MODEL_CARD_JSON), bytes).expect("write model_card.json");
    }

    if let Ok(info) = naevus_run::RunDir::new(&dir).read_info() {
        assert!(!info.folds.is_empty());
        assert!(naevus_run::recipe::MODEL_INPUT_SIDES.contains(&info.image_size));
        assert!(info.std.iter().all(|s| *s > 0.0));
    }
    if calibration.is_some()
        && let Ok(calibration) = naevus_run::Calibration::read(&dir)
    {
        let mut probability = [0.5, 1e-9, 1.0 - 1e-9];
        calibration.apply(&mut probability);
        assert!(probability.iter().all(|p| (0.0..=1.0).contains(p)), "{probability:?}");
    }
    if let Ok(Some(card)) = naevus_report::ModelCard::read(&dir) {
        assert!(card.operating_points.iter().filter_map(|p| p.threshold).all(|t| (0.0..=1.0).contains(&t)));
    }
});
