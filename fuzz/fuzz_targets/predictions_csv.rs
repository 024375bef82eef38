#![no_main]
//! Predictions::read (naevus_fuzz::predictions_csv).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::predictions_csv(naevus_fuzz::scratch(), data);
});
