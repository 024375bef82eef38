//! Pictures of where a model looks: a saliency map (values in [0, 1], one per pixel) in the
//! JET colour map blended over the image, as the seeds show attention and Grad-CAM; the map
//! alone in grey; and a grid of captioned overlays for a batch of images.
//!
//! Images are square HWC RGB u8 buffers and maps row-major f32 of the same side, as
//! `naevus explain` makes them.

use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageFormat, RgbImage};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;
use crate::plots::{FONT, register_font};

/// Weight of the colour map in an overlay; the image keeps the rest.
pub const OVERLAY_ALPHA: f32 = 0.5;
/// Smallest side of a grid tile: smaller overlays are enlarged so their caption fits.
const MIN_TILE_SIDE: u32 = 224;
/// Height of the caption band under each tile (two lines of text).
const CAPTION_HEIGHT: u32 = 40;
const CAPTION_FONT_SIZE: u32 = 14;
const GAP: u32 = 8;

/// The JET colour map (dark blue, blue, cyan, yellow, red, dark red) at `value` in [0, 1]:
/// each channel is a trapezoid, 1.5 - |4v - k| clamped to [0, 1], with k = 3, 2, 1 for red,
/// green and blue.
pub fn jet(value: f32) -> [u8; 3] {
    let v = value.clamp(0.0, 1.0);
    let channel = |k: f32| ((1.5 - (4.0 * v - k).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [channel(3.0), channel(2.0), channel(1.0)]
}

/// `map` in JET blended over `image` with [`OVERLAY_ALPHA`]: RGB pixels of the same side.
pub fn overlay(image: &[u8], map: &[f32], side: u32) -> Result<Vec<u8>, ReportError> {
    check_sizes("overlay", image, map, side)?;
    let mut pixels = Vec::with_capacity(image.len());
    for (rgb, &value) in image.chunks_exact(3).zip(map) {
        for (channel, colour) in rgb.iter().zip(jet(value)) {
            let blended = (1.0 - OVERLAY_ALPHA) * f32::from(*channel) + OVERLAY_ALPHA * f32::from(colour);
            pixels.push(blended.round().clamp(0.0, 255.0) as u8);
        }
    }
    Ok(pixels)
}

/// RGB pixels of a square image as PNG bytes.
pub fn rgb_png(pixels: &[u8], side: u32) -> Result<Vec<u8>, ReportError> {
    let image = RgbImage::from_raw(side, side, pixels.to_vec()).ok_or_else(|| fail("rgb image", "pixel buffer of the wrong size"))?;
    encode(DynamicImage::ImageRgb8(image), "rgb image")
}

/// The map alone as an 8-bit grey PNG (0 black, 1 white): the raw values, for measuring.
pub fn map_png(map: &[f32], side: u32) -> Result<Vec<u8>, ReportError> {
    let grey: Vec<u8> = map.iter().map(|&v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let image = GrayImage::from_raw(side, side, grey).ok_or_else(|| fail("map image", "map of the wrong size"))?;
    encode(DynamicImage::ImageLuma8(image), "map image")
}

/// One picture of a grid, with up to two caption lines under it.
pub struct Tile {
    /// Square RGB pixels, e.g. an [`overlay`].
    pub pixels: Vec<u8>,
    pub side: u32,
    pub caption: [String; 2],
}

/// Tiles in rows of `columns`, each enlarged to at least [`MIN_TILE_SIDE`] px and captioned
/// in DejaVu Sans on white; PNG bytes.
pub fn grid_png(tiles: &[Tile], columns: usize) -> Result<Vec<u8>, ReportError> {
    if tiles.is_empty() || columns == 0 {
        return Err(fail("grid", "no tiles to draw"));
    }
    register_font()?;
    let columns = columns.min(tiles.len()) as u32;
    let rows = (tiles.len() as u32).div_ceil(columns);
    let cell = tiles.iter().map(|t| t.side).max().unwrap_or(0).max(MIN_TILE_SIDE);
    let (width, height) = (GAP + columns * (cell + GAP), GAP + rows * (cell + CAPTION_HEIGHT + GAP));

    let mut canvas = RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut caption_origins = Vec::with_capacity(tiles.len());
    for (index, tile) in tiles.iter().enumerate() {
        let (column, row) = (index as u32 % columns, index as u32 / columns);
        let (left, top) = (GAP + column * (cell + GAP), GAP + row * (cell + CAPTION_HEIGHT + GAP));
        let picture = RgbImage::from_raw(tile.side, tile.side, tile.pixels.clone())
            .ok_or_else(|| fail("grid", &format!("tile {index} has {} bytes, not {} x {} RGB", tile.pixels.len(), tile.side, tile.side)))?;
        let picture = if tile.side == cell { picture } else { imageops::resize(&picture, cell, cell, FilterType::Triangle) };
        imageops::replace(&mut canvas, &picture, i64::from(left), i64::from(top));
        caption_origins.push((left + cell / 2, top + cell));
    }

    let mut buffer = canvas.into_raw();
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        let style = TextStyle::from((FONT, CAPTION_FONT_SIZE).into_font()).color(&BLACK).pos(Pos::new(HPos::Center, VPos::Center));
        for (tile, (x, y)) in tiles.iter().zip(caption_origins) {
            for (line, text) in tile.caption.iter().enumerate() {
                let y = y + CAPTION_HEIGHT / 4 + line as u32 * CAPTION_HEIGHT / 2;
                root.draw(&Text::new(text.as_str(), (x as i32, y as i32), style.clone())).map_err(|e| fail("grid", &e.to_string()))?;
            }
        }
        root.present().map_err(|e| fail("grid", &e.to_string()))?;
    }
    let canvas = RgbImage::from_raw(width, height, buffer).ok_or_else(|| fail("grid", "pixel buffer of the wrong size"))?;
    encode(DynamicImage::ImageRgb8(canvas), "grid")
}

fn check_sizes(what: &str, image: &[u8], map: &[f32], side: u32) -> Result<(), ReportError> {
    let pixels = side as usize * side as usize;
    if image.len() != 3 * pixels || map.len() != pixels {
        return Err(fail(
            what,
            &format!("a {side} x {side} image needs {} RGB bytes and {pixels} map values, got {} and {}", 3 * pixels, image.len(), map.len()),
        ));
    }
    Ok(())
}

fn encode(image: DynamicImage, what: &str) -> Result<Vec<u8>, ReportError> {
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .map_err(|e| fail(what, &format!("encoding PNG: {e}")))?;
    Ok(png)
}

fn fail(what: &str, message: &str) -> ReportError {
    ReportError::Plot { chart: what.to_string(), message: message.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jet_runs_from_dark_blue_through_green_to_dark_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        // Out-of-range values are clamped.
        assert_eq!(jet(-3.0), jet(0.0));
        assert_eq!(jet(7.0), jet(1.0));
    }

    #[test]
    fn the_overlay_blends_half_image_half_colour() {
        let image = [200, 100, 0, 0, 0, 0, 10, 20, 30, 255, 255, 255];
        let map = [0.0, 1.0, 0.5, 0.5];
        let pixels = overlay(&image, &map, 2).unwrap();
        // (200 + 0) / 2, (100 + 0) / 2, (0 + 128) / 2 for the first pixel.
        assert_eq!(&pixels[..3], &[100, 50, 64]);
        assert_eq!(&pixels[3..6], &[64, 0, 0]);
        assert!(overlay(&image, &map[..3], 2).is_err());
    }

    #[test]
    fn pngs_decode_to_the_drawn_sizes() {
        let side = 20;
        let map: Vec<f32> = (0..side * side).map(|i| i as f32 / (side * side) as f32).collect();
        let grey = image::load_from_memory(&map_png(&map, side as u32).unwrap()).unwrap().to_luma8();
        assert_eq!(grey.dimensions(), (20, 20));
        assert_eq!(grey.get_pixel(0, 0).0, [0]);

        let tiles: Vec<Tile> = (0..3)
            .map(|i| Tile { pixels: vec![40 * i as u8; 3 * side * side], side: side as u32, caption: [format!("image {i}"), "p 0.50".into()] })
            .collect();
        let grid = image::load_from_memory(&grid_png(&tiles, 2).unwrap()).unwrap().to_rgb8();
        let cell = MIN_TILE_SIDE;
        assert_eq!(grid.dimensions(), (GAP + 2 * (cell + GAP), GAP + 2 * (cell + CAPTION_HEIGHT + GAP)));
        // The second tile's (enlarged) pixels sit in its cell; the caption band has ink.
        assert_eq!(grid.get_pixel(GAP + cell + GAP + cell / 2, GAP + cell / 2).0, [40, 40, 40]);
        let band_has_ink = (GAP..GAP + cell).any(|x| (GAP + cell..GAP + cell + CAPTION_HEIGHT).any(|y| grid.get_pixel(x, y).0 != [255, 255, 255]));
        assert!(band_has_ink);
    }
}
