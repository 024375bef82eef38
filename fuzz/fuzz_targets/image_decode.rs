#![no_main]
//! decode_rgb_limited and load_square_limited (naevus_fuzz::image_decode).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::image_decode(naevus_fuzz::scratch(), data);
});
