//! Image decoding and resizing: any JPEG/PNG in, 8-bit RGB out, within [`DecodeLimits`].

use std::fs::{self, File};
use std::io::{Cursor, Read};
use std::path::Path;

use fast_image_resize::images::{Image as FirImage, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader, RgbImage};
use serde::{Deserialize, Serialize};

use crate::crop::CropBox;
use crate::error::DataError;

/// What one decode may cost. The dimensions in the file's header are checked before any pixel
/// buffer exists, so a file that claims (or inflates to) a huge image is refused at once
/// instead of exhausting memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecodeLimits {
    /// Most pixels (width x height) an image may have.
    pub max_pixels: u64,
}

impl DecodeLimits {
    /// 100 megapixels: room to spare for dermoscopy originals (the ISIC archive's largest are
    /// about 30 megapixels, e.g. 6000 x 4000).
    pub const DEFAULT_MAX_PIXELS: u64 = 100_000_000;
    /// The highest limit a user may set: a gigapixel image decodes to 3 GB at least.
    pub const HIGHEST_MAX_PIXELS: u64 = 1_000_000_000;

    /// Most bytes a decoder may allocate, and the largest file read: the pixels at 8 bytes
    /// each (16-bit RGBA, the widest the decoders produce) plus room for headers and buffers.
    pub fn max_alloc(&self) -> u64 {
        self.max_pixels.saturating_mul(8).saturating_add(16 << 20)
    }

    /// The same bounds for the image crate's decoders: no side can be longer than the pixel
    /// count allows, and their allocations stay within `max_alloc`.
    fn image_limits(&self) -> image::Limits {
        let side = u32::try_from(self.max_pixels).unwrap_or(u32::MAX);
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(side);
        limits.max_image_height = Some(side);
        limits.max_alloc = Some(self.max_alloc());
        limits
    }

    /// The reason an image of `width` x `height` is refused, if it is.
    pub fn check(&self, width: u32, height: u32) -> Result<(), String> {
        let pixels = u64::from(width) * u64::from(height);
        if pixels <= self.max_pixels {
            return Ok(());
        }
        Err(format!(
            "image is {width} x {height} pixels ({}), over the limit of {}; not decoded",
            megapixels(pixels),
            megapixels(self.max_pixels)
        ))
    }
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits { max_pixels: Self::DEFAULT_MAX_PIXELS }
    }
}

/// "100 megapixels", "23.5 megapixels"; small counts (limits set in tests) in plain pixels.
fn megapixels(pixels: u64) -> String {
    if pixels < 100_000 {
        return format!("{pixels} pixels");
    }
    let mp = format!("{:.1}", pixels as f64 / 1e6);
    format!("{} megapixels", mp.strip_suffix(".0").unwrap_or(&mp))
}

/// Decodes a JPEG or PNG file to 8-bit RGB with its EXIF orientation applied, within the
/// default [`DecodeLimits`]. See [`load_rgb_limited`].
pub fn load_rgb(path: &Path) -> Result<RgbImage, DataError> {
    load_rgb_limited(path, &DecodeLimits::default())
}

/// Decodes a JPEG or PNG file to 8-bit RGB with its EXIF orientation applied.
/// Grayscale, CMYK, 16-bit and alpha images are converted (alpha is dropped); empty,
/// truncated, corrupt, non-image and over-limit files, and anything but a regular file (a
/// FIFO, a device), give `DataError::Image` with a reason.
pub fn load_rgb_limited(path: &Path, limits: &DecodeLimits) -> Result<RgbImage, DataError> {
    let bytes = read_image_file(path, limits)?;
    decode_rgb_limited(&bytes, limits).map_err(|reason| DataError::Image { path: path.to_path_buf(), reason })
}

/// Decodes in-memory JPEG/PNG bytes within the default limits; the error is a human-readable reason.
pub fn decode_rgb(bytes: &[u8]) -> Result<RgbImage, String> {
    decode_rgb_limited(bytes, &DecodeLimits::default())
}

/// Decodes in-memory JPEG/PNG bytes within `limits`; the error is a human-readable reason.
pub fn decode_rgb_limited(bytes: &[u8], limits: &DecodeLimits) -> Result<RgbImage, String> {
    decode_rgb_at_least(bytes, None, limits).map_err(|e| e.reason)
}

/// Why bytes did not decode to an image, with its reason in words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct DecodeError {
    pub kind: DecodeFailure,
    pub reason: String,
}

/// The kinds of [`DecodeError`], which a caller may answer differently (the service gives
/// each its own HTTP status).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeFailure {
    /// Empty, or neither JPEG nor PNG.
    NotAnImage,
    /// Larger than the [`DecodeLimits`] allow; not decoded.
    OverLimit,
    /// A JPEG or PNG that is truncated or corrupt.
    Corrupt,
}

impl DecodeError {
    fn new(kind: DecodeFailure, reason: impl Into<String>) -> Self {
        Self { kind, reason: reason.into() }
    }
}

/// Reads a whole image file. Only a regular file is opened: reading a FIFO waits for a writer
/// and a device may never end. A file larger than `max_alloc` is refused unread.
fn read_image_file(path: &Path, limits: &DecodeLimits) -> Result<Vec<u8>, DataError> {
    let refuse = |reason: String| DataError::Image { path: path.to_path_buf(), reason };
    let kind = fs::metadata(path).map_err(|e| DataError::io(path, e))?.file_type();
    if !kind.is_file() {
        return Err(refuse(not_a_regular_file(kind)));
    }
    let file = open_no_wait(path).map_err(|e| DataError::io(path, e))?;
    // The path may have been replaced since the check above.
    let meta = file.metadata().map_err(|e| DataError::io(path, e))?;
    if !meta.is_file() {
        return Err(refuse(not_a_regular_file(meta.file_type())));
    }
    let max = limits.max_alloc();
    let too_large = |len: u64| {
        format!("file is {len} bytes, more than any image within the limit of {} takes ({max} bytes)", megapixels(limits.max_pixels))
    };
    if meta.len() > max {
        return Err(refuse(too_large(meta.len())));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // `take`: the file may grow while it is read.
    file.take(max + 1).read_to_end(&mut bytes).map_err(|e| DataError::io(path, e))?;
    if bytes.len() as u64 > max {
        return Err(refuse(too_large(bytes.len() as u64)));
    }
    Ok(bytes)
}

/// Opens for reading without waiting: should the path have become a FIFO after it was
/// checked, open returns at once (O_NONBLOCK) instead of blocking until a writer comes.
#[cfg(unix)]
fn open_no_wait(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path)
}

#[cfg(not(unix))]
fn open_no_wait(path: &Path) -> std::io::Result<File> {
    File::open(path)
}

fn not_a_regular_file(kind: fs::FileType) -> String {
    format!("not a regular file ({}); only image files are read", file_kind(kind))
}

#[cfg(unix)]
fn file_kind(kind: fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

#[cfg(not(unix))]
fn file_kind(kind: fs::FileType) -> &'static str {
    if kind.is_dir() { "a directory" } else { "a special file" }
}

/// `decode_rgb`, except that with `min_short_side` a large enough JPEG is decoded at reduced
/// scale (`decode_jpeg_reduced`), its short side still at least that many pixels.
fn decode_rgb_at_least(bytes: &[u8], min_short_side: Option<u32>, limits: &DecodeLimits) -> Result<RgbImage, DecodeError> {
    use DecodeFailure::{Corrupt, NotAnImage, OverLimit};
    if bytes.is_empty() {
        return Err(DecodeError::new(NotAnImage, "empty file (0 bytes)"));
    }
    let format = image::guess_format(bytes)
        .map_err(|_| DecodeError::new(NotAnImage, "not a JPEG or PNG image (unrecognised file content)"))?;
    match format {
        ImageFormat::Jpeg => check_jpeg_complete(bytes).map_err(|reason| DecodeError::new(Corrupt, reason))?,
        ImageFormat::Png => {}
        other => return Err(DecodeError::new(NotAnImage, format!("unsupported image format {other:?}; expected JPEG or PNG"))),
    }
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    reader.limits(limits.image_limits());
    let mut decoder = reader.into_decoder().map_err(|e| decode_error(format, "header", limits, e))?;
    // Only the header has been read: refuse before any pixel buffer is allocated.
    let (width, height) = decoder.dimensions();
    limits.check(width, height).map_err(|reason| DecodeError::new(OverLimit, reason))?;
    // A broken EXIF block should not cost us the image: fall back to "no rotation".
    let orientation = decoder.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let reduced = min_short_side
        .filter(|_| format == ImageFormat::Jpeg)
        .and_then(|side| decode_jpeg_reduced(bytes, side, limits));
    let mut img = match reduced {
        Some(img) => DynamicImage::ImageRgb8(img),
        None => DynamicImage::from_decoder(decoder).map_err(|e| decode_error(format, "data", limits, e))?,
    };
    img.apply_orientation(orientation);
    if img.width() == 0 || img.height() == 0 {
        return Err(DecodeError::new(Corrupt, "image has zero width or height"));
    }
    Ok(img.into_rgb8())
}

/// The reason for a decoder error: over a limit, or corrupt `part` ("header" or "data").
fn decode_error(format: ImageFormat, part: &str, limits: &DecodeLimits, error: ImageError) -> DecodeError {
    match error {
        ImageError::Limits(e) => DecodeError::new(
            DecodeFailure::OverLimit,
            format!(
                "{format:?} image over the decoding limits ({}, {} bytes of memory): {e}; not decoded",
                megapixels(limits.max_pixels),
                limits.max_alloc()
            ),
        ),
        e => DecodeError::new(DecodeFailure::Corrupt, format!("corrupt {format:?} {part}: {e}")),
    }
}

/// Decode + crop + resize of one file within the default limits. See [`load_square_limited`].
pub fn load_square(path: &Path, region: Option<&CropBox>, size: u32) -> Result<Vec<u8>, DataError> {
    load_square_limited(path, region, size, &DecodeLimits::default())
}

/// Decode + crop + resize of one file: the square `region` (fractions of the image's centre
/// square; None: the whole centre square) at `size` x `size`, HWC RGB u8. Errors as `load_rgb_limited`.
pub fn load_square_limited(path: &Path, region: Option<&CropBox>, size: u32, limits: &DecodeLimits) -> Result<Vec<u8>, DataError> {
    let bytes = read_image_file(path, limits)?;
    decode_square_limited(&bytes, region, size, limits).map_err(|e| DataError::Image { path: path.to_path_buf(), reason: e.reason })
}

/// [`load_square_limited`] of JPEG/PNG bytes already in memory (an upload); the error is a
/// human-readable reason.
pub fn decode_square_limited(bytes: &[u8], region: Option<&CropBox>, size: u32, limits: &DecodeLimits) -> Result<Vec<u8>, DecodeError> {
    if bytes.len() as u64 > limits.max_alloc() {
        let reason = format!("{} bytes, more than any image within the limit of {} takes", bytes.len(), megapixels(limits.max_pixels));
        return Err(DecodeError::new(DecodeFailure::OverLimit, reason));
    }
    // The region must keep at least `size` source pixels per side for the Lanczos resize.
    let region_side = region.map_or(1.0, |r| r.side).clamp(1e-3, 1.0);
    let min_short_side = (f64::from(size) / region_side).ceil() as u32;
    let img = decode_rgb_at_least(bytes, Some(min_short_side), limits)?;
    Ok(match region {
        Some(region) => crop_resize(&img, region, size),
        None => center_crop_resize(&img, size),
    })
}

/// A JPEG at least four times as large as needed decoded at 1/4 or 1/8 scale inside the
/// inverse DCT (libjpeg's scaled decoding, Pillow's draft mode): most of the decoding work of
/// a 2000-6000 px original is skipped when a 256 px input is wanted, and the reduced IDCT is
/// itself a proper low-pass filter. None (decode in full instead) when no reduction is
/// possible, for CMYK and 16-bit JPEGs, and on any decoding problem, so that errors are
/// reported by the one full decoder (which also refuses an image over the limits). The EXIF orientation is the caller's to apply.
fn decode_jpeg_reduced(bytes: &[u8], min_short_side: u32, limits: &DecodeLimits) -> Option<RgbImage> {
    let mut decoder = jpeg_decoder::Decoder::new(bytes);
    decoder.set_max_decoding_buffer_size(usize::try_from(limits.max_alloc()).unwrap_or(usize::MAX));
    decoder.read_info().ok()?;
    let info = decoder.info()?;
    // The caller checked the header already; this decoder reads it again, on its own.
    limits.check(u32::from(info.width), u32::from(info.height)).ok()?;
    let short_side = u32::from(info.width.min(info.height));
    // 1/4 and 1/8 only: at 1/2 the saved IDCT work measured no gain over zune-jpeg's full
    // decode, whose entropy decoding is faster (bench/NOTES.md).
    let divisor = [8u16, 4].into_iter().find(|&d| short_side / u32::from(d) >= min_short_side)?;
    let grey = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => false,
        jpeg_decoder::PixelFormat::L8 => true,
        _ => return None,
    };
    let (width, height) = decoder.scale(info.width.div_ceil(divisor), info.height.div_ceil(divisor)).ok()?;
    let pixels = decoder.decode().ok()?;
    let rgb = if grey { pixels.iter().flat_map(|&v| [v, v, v]).collect() } else { pixels };
    RgbImage::from_raw(u32::from(width), u32::from(height), rgb)
}

/// The JPEG decoder (zune-jpeg in non-strict mode) silently fills a truncated scan with
/// grey, so we check the structure ourselves: the end-of-image marker (FF D9) must follow
/// the last start-of-scan marker (FF DA). Inside entropy-coded data a 0xFF byte is always
/// followed by 0x00 or a restart marker, so FF D9 there can only be the real end.
fn check_jpeg_complete(bytes: &[u8]) -> Result<(), String> {
    let last_sos = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let Some(sos) = last_sos else {
        return Err("corrupt JPEG: no image data (start-of-scan marker missing)".into());
    };
    let has_eoi = bytes[sos..].windows(2).any(|w| w == [0xFF, 0xD9]);
    if has_eoi {
        Ok(())
    } else {
        Err(format!("truncated JPEG: the file ends after {} bytes without an end-of-image marker", bytes.len()))
    }
}

/// Center-crops to a square and resizes to `size` x `size` (Lanczos3); returns HWC RGB u8.
pub fn center_crop_resize(img: &RgbImage, size: u32) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let side = w.min(h);
    let left = f64::from((w - side) / 2);
    let top = f64::from((h - side) / 2);
    resize_region(img.as_raw(), w, h, (left, top, f64::from(side)), size)
}

/// Crops `region` (fractions of the centre square) and resizes it to `size` x `size`.
pub fn crop_resize(img: &RgbImage, region: &CropBox, size: u32) -> Vec<u8> {
    let (w, h) = img.dimensions();
    let square = f64::from(w.min(h));
    let left = f64::from(w - w.min(h)) / 2.0 + region.left * square;
    let top = f64::from(h - w.min(h)) / 2.0 + region.top * square;
    resize_region(img.as_raw(), w, h, (left, top, region.side * square), size)
}

/// Resizes a square HWC RGB u8 image of side `from` to side `to`.
pub fn resize_square(pixels: &[u8], from: u32, to: u32) -> Vec<u8> {
    if from == to && pixels.len() == rgb_len(to) {
        return pixels.to_vec();
    }
    resize_region(pixels, from, from, (0.0, 0.0, f64::from(from)), to)
}

fn rgb_len(side: u32) -> usize {
    side as usize * side as usize * 3
}

/// Resizes the square crop (left, top, side) of a w x h RGB buffer to `to` x `to`.
fn resize_region(pixels: &[u8], w: u32, h: u32, crop: (f64, f64, f64), to: u32) -> Vec<u8> {
    let (left, top, side) = crop;
    let fast = || -> Option<Vec<u8>> {
        let src = ImageRef::new(w, h, pixels, PixelType::U8x3).ok()?;
        let mut dst = FirImage::new(to, to, PixelType::U8x3);
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(left, top, side, side);
        Resizer::new().resize(&src, &mut dst, &options).ok()?;
        Some(dst.into_vec())
    };
    match fast() {
        Some(out) if out.len() == rgb_len(to) => out,
        // Only reachable for degenerate inputs (empty image, short buffer): never panic,
        // fall back to nearest-neighbour sampling with black outside the buffer.
        _ => nearest_region(pixels, w, h, crop, to),
    }
}

fn nearest_region(pixels: &[u8], w: u32, h: u32, crop: (f64, f64, f64), to: u32) -> Vec<u8> {
    let (left, top, side) = crop;
    let mut out = vec![0u8; rgb_len(to)];
    if to == 0 || w == 0 || h == 0 {
        return out;
    }
    let scale = side / f64::from(to);
    for y in 0..to as usize {
        let sy = ((top + (y as f64 + 0.5) * scale) as usize).min(h as usize - 1);
        for x in 0..to as usize {
            let sx = ((left + (x as f64 + 0.5) * scale) as usize).min(w as usize - 1);
            let s = (sy * w as usize + sx) * 3;
            let d = (y * to as usize + x) * 3;
            if let Some(src) = pixels.get(s..s + 3) {
                out[d..d + 3].copy_from_slice(src);
            }
        }
    }
    out
}
