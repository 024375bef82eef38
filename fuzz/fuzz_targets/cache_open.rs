#![no_main]
//! Cache::open (naevus_fuzz::cache_open).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::cache_open(naevus_fuzz::scratch(), data);
});
