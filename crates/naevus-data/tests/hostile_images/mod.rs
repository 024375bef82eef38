//! Small image files that claim to be, or inflate to, enormous ones: the hostile inputs of
//! naevus-data's decode tests and naevus-serve's upload tests (which include this file by
//! its path).

use std::io::Cursor;

use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ExtendedColorType, ImageEncoder};

/// CRC-32 of PNG chunks (ISO 3309, reflected 0xEDB88320).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

pub fn png(width: u32, height: u32, color: ExtendedColorType, pixels: &[u8], compression: CompressionType) -> Vec<u8> {
    let mut out = Vec::new();
    PngEncoder::new_with_quality(&mut out, compression, FilterType::NoFilter).write_image(pixels, width, height, color).unwrap();
    out
}

/// A valid 1 x 1 PNG whose IHDR (CRC fixed up) claims `width` x `height`: a tiny file whose
/// decode would allocate width * height * 3 bytes.
pub fn png_claiming(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = png(1, 1, ExtendedColorType::Rgb8, &[200, 100, 50], CompressionType::Default);
    // Signature (8), IHDR length (4), "IHDR" (4), width, height, 5 more bytes, CRC.
    assert_eq!(&bytes[12..16], b"IHDR");
    bytes[16..20].copy_from_slice(&width.to_be_bytes());
    bytes[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&bytes[12..29]);
    bytes[29..33].copy_from_slice(&crc.to_be_bytes());
    bytes
}

/// A real decompression bomb: a grey `side` x `side` PNG of zeros, a few hundred KB that
/// inflate to side * side bytes (three times that as RGB).
pub fn png_bomb(side: u32) -> Vec<u8> {
    // Zeroed allocation: the pages are not touched until the encoder reads them.
    let zeros = vec![0u8; side as usize * side as usize];
    png(side, side, ExtendedColorType::L8, &zeros, CompressionType::Best)
}

/// A valid 16 x 16 baseline JPEG whose SOF0 header claims `width` x `height`.
pub fn jpeg_claiming(width: u16, height: u16) -> Vec<u8> {
    let mut bytes = Vec::new();
    JpegEncoder::new_with_quality(Cursor::new(&mut bytes), 90)
        .write_image(&[128u8; 16 * 16 * 3], 16, 16, ExtendedColorType::Rgb8)
        .unwrap();
    let sof = bytes.windows(2).position(|w| w == [0xFF, 0xC0]).expect("baseline JPEG has SOF0");
    // FF C0, segment length (2), precision (1), height (2), width (2).
    bytes[sof + 5..sof + 7].copy_from_slice(&height.to_be_bytes());
    bytes[sof + 7..sof + 9].copy_from_slice(&width.to_be_bytes());
    bytes
}
