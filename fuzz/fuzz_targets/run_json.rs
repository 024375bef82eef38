#![no_main]
//! RunDir::read_info (naevus_fuzz::run_json).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::run_json(naevus_fuzz::scratch(), data);
});
