#![no_main]
//! naevus_run::Truth::read on a label CSV, as `naevus evaluate --truth` reads it (naevus_fuzz::truth_csv).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::truth_csv(naevus_fuzz::scratch(), data);
});
