//! Colour constancy: undo the colour cast of a dermoscope's light before the model sees an
//! image, so that images of one lesion under two devices look alike.
//!
//! Shades of Gray (Finlayson and Trezzi, 2004) estimates the light's colour as the Minkowski
//! p-mean of each channel, e_c = (mean of v^p)^(1/p), and scales each channel so that the three
//! estimates become equal. p = 1 is the gray-world assumption (the scene averages to gray);
//! the ISIC 2019 winners (Gessert et al. 2020) used p = 6 on multi-source dermoscopy. The
//! estimate is normalised to unit length first, as they did, so overall brightness stays as
//! it was: only the balance between channels changes.

use serde::{Deserialize, Serialize};

/// How an image's colour balance is corrected before it becomes a model input.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "kebab-case")]
pub enum ColourConstancy {
    /// The image as it is.
    #[default]
    None,
    /// Shades of Gray with Minkowski norm `p` (1 to 20).
    ShadesOfGray { p: f32 },
    /// Gray world: the channel means made equal (Shades of Gray with p = 1).
    GrayWorld,
}

/// The method names a recipe and the command line give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ColourConstancyKind {
    #[default]
    None,
    ShadesOfGray,
    GrayWorld,
}

impl std::str::FromStr for ColourConstancyKind {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim() {
            "none" => Ok(ColourConstancyKind::None),
            "shades-of-gray" => Ok(ColourConstancyKind::ShadesOfGray),
            "gray-world" => Ok(ColourConstancyKind::GrayWorld),
            other => Err(format!("unknown colour constancy \"{}\"; expected none, shades-of-gray or gray-world", crate::error::excerpt(other))),
        }
    }
}

/// Norms `p` Shades of Gray accepts: 1 is gray world; above 20 the estimate is the channel
/// maxima in all but name, and (v/255)^p underflows for dark pixels.
pub const SHADES_OF_GRAY_P: std::ops::RangeInclusive<f64> = 1.0..=20.0;

impl ColourConstancy {
    /// The correction a recipe names: its method and, for Shades of Gray, its norm.
    pub fn of_recipe(kind: ColourConstancyKind, p: f64) -> Self {
        match kind {
            ColourConstancyKind::None => ColourConstancy::None,
            ColourConstancyKind::ShadesOfGray => ColourConstancy::ShadesOfGray { p: p as f32 },
            ColourConstancyKind::GrayWorld => ColourConstancy::GrayWorld,
        }
    }

    /// The Minkowski norm p of the estimate (1 for gray world), or None when nothing is
    /// corrected.
    pub fn norm(self) -> Option<f32> {
        match self {
            ColourConstancy::None => None,
            ColourConstancy::ShadesOfGray { p } => Some(p.clamp(*SHADES_OF_GRAY_P.start() as f32, *SHADES_OF_GRAY_P.end() as f32)),
            ColourConstancy::GrayWorld => Some(1.0),
        }
    }

    /// A short description for logs and notes, e.g. "Shades of Gray, p = 6".
    pub fn describe(self) -> String {
        match self {
            ColourConstancy::None => "none".into(),
            ColourConstancy::ShadesOfGray { p } => format!("Shades of Gray, p = {p}"),
            ColourConstancy::GrayWorld => "gray world".into(),
        }
    }

    /// Corrects HWC RGB u8 `pixels` in place. A black image, or a channel without any light,
    /// is left as it is (there is no cast to estimate).
    pub fn apply(self, pixels: &mut [u8]) {
        let Some(gains) = self.gains(pixels) else { return };
        let tables: [[u8; 256]; 3] = gains.map(|gain| std::array::from_fn(|v| (v as f32 * gain).round().clamp(0.0, 255.0) as u8));
        for pixel in pixels.chunks_exact_mut(3) {
            for (value, table) in pixel.iter_mut().zip(&tables) {
                *value = table[*value as usize];
            }
        }
    }

    /// The factor each channel is multiplied by, or None when the image stays as it is.
    fn gains(self, pixels: &[u8]) -> Option<[f32; 3]> {
        let p = self.norm()?;
        let power: [f64; 256] = std::array::from_fn(|v| (v as f64 / 255.0).powf(f64::from(p)));
        let mut sums = [0.0f64; 3];
        let mut count = 0usize;
        for pixel in pixels.chunks_exact(3) {
            for c in 0..3 {
                sums[c] += power[pixel[c] as usize];
            }
            count += 1;
        }
        if count == 0 {
            return None;
        }
        let estimate = sums.map(|s| (s / count as f64).powf(1.0 / f64::from(p)));
        let length = estimate.iter().map(|e| e * e).sum::<f64>().sqrt();
        if length <= 0.0 {
            return None;
        }
        // Each channel's estimate brought to length / sqrt(3): a gray light of the same length.
        Some(estimate.map(|e| if e > 0.0 { (length / (e * 3f64.sqrt())) as f32 } else { 1.0 }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Minkowski p-mean of each channel, in 0..1.
    fn p_means(pixels: &[u8], p: f64) -> [f64; 3] {
        let mut sums = [0.0; 3];
        for pixel in pixels.chunks_exact(3) {
            for c in 0..3 {
                sums[c] += (f64::from(pixel[c]) / 255.0).powf(p);
            }
        }
        let n = (pixels.len() / 3) as f64;
        sums.map(|s| (s / n).powf(1.0 / p))
    }

    /// A gray, textured scene (values 40 to 160) seen under a warm light.
    fn cast_scene() -> (Vec<u8>, Vec<u8>) {
        let gray: Vec<u8> = (0..64 * 64).flat_map(|i| {
            let v = 40 + ((i * 37 + i / 64 * 11) % 121) as u8;
            [v, v, v]
        }).collect();
        let cast: Vec<u8> = gray.chunks_exact(3).flat_map(|p| [p[0], (f32::from(p[1]) * 0.8) as u8, (f32::from(p[2]) * 0.55) as u8]).collect();
        (gray, cast)
    }

    #[test]
    fn shades_of_gray_makes_the_channels_p_means_equal_under_a_cast() {
        let (_, mut image) = cast_scene();
        let before = p_means(&image, 6.0);
        assert!(before[0] / before[2] > 1.7, "the cast is strong: {before:?}");
        ColourConstancy::ShadesOfGray { p: 6.0 }.apply(&mut image);
        let after = p_means(&image, 6.0);
        for c in 1..3 {
            assert!((after[c] / after[0] - 1.0).abs() < 0.01, "p-means after correction: {after:?}");
        }
        // The estimate has unit length before it is applied: brightness (its length) is kept.
        let length = |m: [f64; 3]| m.iter().map(|v| v * v).sum::<f64>().sqrt();
        assert!((length(after) / length(before) - 1.0).abs() < 0.01);
    }

    #[test]
    fn gray_world_makes_the_channel_means_equal_and_recovers_the_gray_scene() {
        let (gray, mut image) = cast_scene();
        ColourConstancy::GrayWorld.apply(&mut image);
        let means = p_means(&image, 1.0);
        assert!((means[1] / means[0] - 1.0).abs() < 0.01 && (means[2] / means[0] - 1.0).abs() < 0.01, "{means:?}");
        // Each pixel is gray again (up to the rounding of the cast), at a common brightness.
        let worst = image.chunks_exact(3).map(|p| p.iter().max().unwrap() - p.iter().min().unwrap()).max().unwrap();
        assert!(worst <= 3, "a pixel's channels differ by {worst} levels");
        assert_eq!(image.len(), gray.len());
    }

    #[test]
    fn a_gray_image_and_a_black_one_are_left_as_they_are() {
        let (gray, _) = cast_scene();
        for method in [ColourConstancy::ShadesOfGray { p: 6.0 }, ColourConstancy::GrayWorld, ColourConstancy::None] {
            let mut image = gray.clone();
            method.apply(&mut image);
            assert_eq!(image, gray, "{method:?}");
            let mut black = vec![0u8; 300];
            method.apply(&mut black);
            assert!(black.iter().all(|&v| v == 0));
        }
        // No blue light at all: that channel cannot be corrected and stays dark.
        let mut no_blue: Vec<u8> = (0..100).flat_map(|i| [100 + i as u8, 80, 0]).collect();
        ColourConstancy::ShadesOfGray { p: 6.0 }.apply(&mut no_blue);
        assert!(no_blue.chunks_exact(3).all(|p| p[2] == 0));
    }

    #[test]
    fn recipe_names_map_to_methods() {
        assert_eq!(ColourConstancy::of_recipe(ColourConstancyKind::ShadesOfGray, 6.0), ColourConstancy::ShadesOfGray { p: 6.0 });
        assert_eq!(ColourConstancy::of_recipe(ColourConstancyKind::GrayWorld, 6.0), ColourConstancy::GrayWorld);
        assert_eq!(serde_json::to_string(&ColourConstancy::ShadesOfGray { p: 6.0 }).unwrap(), r#"{"method":"shades-of-gray","p":6.0}"#);
    }
}
