#![no_main]
//! The isic2019 label CSV reader: `naevus_data::read_source` (see `naevus_fuzz::csv_source`).

use libfuzzer_sys::fuzz_target;
use naevus_data::SourceKind;

fuzz_target!(|data: &[u8]| {
    naevus_fuzz::csv_source(SourceKind::Isic2019, naevus_fuzz::csv_dir(), data);
});
