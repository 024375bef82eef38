#![no_main]
//! sealed::unseal and FoldDir::read_training_state (naevus_fuzz::checkpoint).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::checkpoint(naevus_fuzz::scratch(), data);
});
