//! Training-time augmentation of square HWC RGB u8 images, and conversion to normalised CHW
//! f32.
//!
//! An [`AugmentPlan`] is a table: one entry per operation, each off (`None`) or on with its
//! chance `p` and its strengths. [`AugmentPlan::apply`] runs the operations that are on, in
//! the fixed order of the table below (the seeds' order), drawing every random number from
//! the rng it is given; the loader gives each image one seeded by (seed, epoch, position), so
//! the same seed gives the same bytes on any number of threads.
//!
//! A recipe picks a preset with `augment` ([`AugmentPreset`]) and changes single operations
//! with `augment_ops` ([`AugmentOps`]): `op:param=value,param=value;op:...`, for example
//! `cutout:p=0.5,size=0.3;hair:p=0;clahe:clip=2`. Naming an operation the preset lacks adds
//! it with the defaults below (`hair` alone adds hair as listed); `p=0` turns one off.
//!
//! Presets:
//! - `light` (the default; `true` in older recipes): `dihedral`, `affine` (reflected border,
//!   rotate 15, scale 0.1, shift 0.05, always), `color` (0.2 each, always).
//! - `seed-004` (SIIM-ISIC 2020 1st place's albumentations set): `transpose`, `vflip`,
//!   `hflip`, `brightness`, `contrast`, `blur`, `distort`, `clahe`, `hsv`, `affine` (black
//!   border, p 0.85), `cutout`, each with the defaults below.
//! - `seed-002`: `hair` (always), `hflip`, `vflip`, `affine` (any angle, black corners, no
//!   scale or shift, always), `color` (0.2 each, always).
//! - `none` (`false` in older recipes): nothing.
//!
//! Operations, in the order they run. Every one has `p`, its chance (0 to 1); at p = 1 or 0
//! it draws no random number for the decision. Shares are of the image side.
//!
//! | op | what it does | parameters: default (range) |
//! | --- | --- | --- |
//! | `crop` | random resized crop: a rectangle of random area and aspect, resized back to the side | `p` 1, `area_min` 0.7 and `area_max` 1 (0.05-1: share of the image's area), `aspect_min` 0.75 and `aspect_max` 1.3333 (0.2-5: width / height, drawn log-uniformly) |
//! | `hair` | seed 002's synthetic hair: 0 to `count` dark thin curved strands, only ever darkening | `p` 1, `count` 4 (0-32), `width` 2 (0.5-8: widest strand in pixels at 224 px, scaled with the side) |
//! | `dihedral` | one of the 8 symmetries of the square (flips, quarter turns, transposes) | `p` 1 |
//! | `transpose` | swaps rows and columns | `p` 0.5 |
//! | `vflip` | upside down | `p` 0.5 |
//! | `hflip` | mirror left-right | `p` 0.5 |
//! | `brightness` | adds `limit` x 255 levels at most, either way (albumentations' RandomBrightness) | `p` 0.75, `limit` 0.2 (0-1) |
//! | `contrast` | scales values by 1 ± `limit` at most (albumentations' RandomContrast) | `p` 0.75, `limit` 0.2 (0-1) |
//! | `blur` | one of motion blur, median blur, Gaussian blur and Gaussian noise, chosen in proportion to their weights | `p` 0.7, weights `motion` 1, `median` 1, `gaussian` 1, `noise` 1 (0-100), `kernel` 5 (3-15: the largest kernel side; odd sides from 3 up to it are drawn), `var_min` 5 and `var_max` 30 (0-2000: the noise's variance, in levels squared) |
//! | `distort` | one of optical (barrel or pincushion), grid and elastic distortion, chosen in proportion to their weights; reflected border | `p` 0.7, weights `optical` 1, `grid` 1, `elastic` 1 (0-100), `optical_limit` 1 (0-2: the largest radial coefficient k, the source radius being r (1 + k r^2 + k r^4) with r in sides), `optical_shift` 0.05 (0-0.5: largest shift of the distortion's centre), `grid_steps` 5 (1-32: cells per side), `grid_limit` 1 (0-1: each cell's source width is 1 ± this, the whole renormalised to the side), `elastic_alpha` 0.03 (0-0.25: the largest displacement), `elastic_sigma` 0.125 (0.02-1: spacing of the random displacements, smoothly interpolated between) |
//! | `clahe` | contrast-limited adaptive histogram equalisation of the luma (YCbCr's Y; the pixel's R, G and B move by the luma's change) | `p` 0.7, `clip` 4 (0.1-100: histogram clip limit, in multiples of a flat histogram's bin), `tiles` 8 (1-32: tiles per side) |
//! | `hsv` | hue, saturation and value shifts in albumentations' units | `p` 0.5, `hue` 10 (0-90: OpenCV's half-degrees, 10 = 20 degrees), `sat` 20 and `val` 10 (0-255: levels of 255) |
//! | `affine` | rotation, zoom and shift about the centre (albumentations' ShiftScaleRotate; seed 002's RandomRotation at `rotate` 180) | `p` 0.85, `rotate` 15 (0-180: degrees either way), `scale` 0.1 (0-0.9: zoom 1 ± this), `shift` 0.1 (0-0.5: each axis), `border` black (or reflect) |
//! | `color` | brightness (scale), contrast (about the mean grey) and saturation jitter (torchvision's ColorJitter) | `p` 1, `brightness` 0.2, `contrast` 0.2, `saturation` 0.2 (0-1: each factor 1 ± this) |
//! | `cutout` | black square holes of `size`, centred anywhere, cut off where they overhang (albumentations' Cutout) | `p` 0.7, `size` 0.375 (0-1), `holes` 1 (1-16) |
//!
//! Where naevus departs from the seeds' libraries: CLAHE works on YCbCr's luma rather than
//! LAB's L; `elastic` is a visible smooth warp (albumentations' `ElasticTransform(alpha=3)`
//! with its default sigma of 50 moves pixels by a hundredth of one, apart from its built-in
//! random affine); grid distortion is renormalised so the image spans the side; blurs and
//! warps use reflected borders except where `border` says otherwise.

mod draw;
mod filters;
mod geometry;
mod levels;
mod preview;
mod spec;
mod chance;
mod ops;

use rand::Rng;
use serde::{Deserialize, Serialize};

use chance::{choose, happens, symmetric, uniform};
use crate::pixels::dihedral;
pub use ops::*;
pub use preview::augment_preview;
pub use spec::{AugmentOps, AugmentPreset, OpParams, ParamDoc};

/// What a warp samples outside the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Border {
    /// Mirrored about the edge pixel ("reflect 101").
    Reflect,
    /// Black.
    Black,
}

/// Makes [`AugmentPlan`] from one list of its operations, in the order they run: the struct,
/// the operations' names, and the lookups by name.
macro_rules! augment_plan {
    ($( $op:ident: $params:ty, )*) => {
        /// The augmentation table: each operation off (`None`) or on with its parameters, run in
        /// field order by [`AugmentPlan::apply`] (the module documentation lists them).
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct AugmentPlan {
            $( pub $op: Option<$params>, )*
        }

        impl AugmentPlan {
            /// The operations' names, in the order they run.
            pub const OPS: &'static [&'static str] = &[$( stringify!($op) ),*];

            /// The parameters of operation `name`, when it is on.
            pub fn op(&self, name: &str) -> Option<&dyn OpParams> {
                match name {
                    $( stringify!($op) => self.$op.as_ref().map(|params| params as &dyn OpParams), )*
                    _ => None,
                }
            }

            /// Operation `name`, turned on with its defaults when it was off; None for an unknown name.
            pub fn op_mut(&mut self, name: &str) -> Option<&mut dyn OpParams> {
                match name {
                    $( stringify!($op) => Some(self.$op.get_or_insert_with(<$params>::default) as &mut dyn OpParams), )*
                    _ => None,
                }
            }
        }
    };
}

augment_plan! {
    crop: Crop,
    hair: Hair,
    dihedral: Dihedral,
    transpose: Flip,
    vflip: Flip,
    hflip: Flip,
    brightness: Level,
    contrast: Level,
    blur: Blur,
    distort: Distort,
    clahe: Clahe,
    hsv: Hsv,
    affine: Affine,
    color: Color,
    cutout: Cutout,
}

impl AugmentPlan {
    /// Nothing: `apply` returns its input.
    pub fn none() -> Self {
        Self::default()
    }

    /// naevus's original augmentation: a random one of the 8 dihedral transforms, then up to
    /// ±15 degrees, ±10% zoom and ±5% shift with reflected borders, then ±20% brightness,
    /// contrast and saturation, all on every image (the same draws in the same order as
    /// before plans existed, so runs resume and compare byte for byte).
    pub fn light() -> Self {
        Self {
            dihedral: Some(Dihedral { p: 1.0 }),
            affine: Some(Affine { p: 1.0, rotate: 15.0, scale: 0.1, shift: 0.05, border: Border::Reflect }),
            color: Some(Color { p: 1.0, brightness: 0.2, contrast: 0.2, saturation: 0.2 }),
            ..Self::none()
        }
    }

    /// Seed 004's (SIIM-ISIC 2020 1st place) albumentations set, with every default of the
    /// module's table.
    pub fn seed_004() -> Self {
        Self {
            transpose: Some(Flip::default()),
            vflip: Some(Flip::default()),
            hflip: Some(Flip::default()),
            brightness: Some(Level::default()),
            contrast: Some(Level::default()),
            blur: Some(Blur::default()),
            distort: Some(Distort::default()),
            clahe: Some(Clahe::default()),
            hsv: Some(Hsv::default()),
            affine: Some(Affine::default()),
            cutout: Some(Cutout::default()),
            ..Self::none()
        }
    }

    /// Seed 002's: synthetic hair, flips, a rotation by any angle (black corners), colour
    /// jitter of 0.8-1.2, all on every image.
    pub fn seed_002() -> Self {
        Self {
            hair: Some(Hair::default()),
            hflip: Some(Flip::default()),
            vflip: Some(Flip::default()),
            affine: Some(Affine { p: 1.0, rotate: 180.0, scale: 0.0, shift: 0.0, border: Border::Black }),
            color: Some(Color::default()),
            ..Self::none()
        }
    }

    /// The plan of a preset.
    pub fn preset(preset: AugmentPreset) -> Self {
        match preset {
            AugmentPreset::None => Self::none(),
            AugmentPreset::Light => Self::light(),
            AugmentPreset::Seed004 => Self::seed_004(),
            AugmentPreset::Seed002 => Self::seed_002(),
        }
    }

    /// The plan of a recipe's `augment` and `augment_ops`; None when it does nothing.
    pub fn of_recipe(preset: AugmentPreset, ops: &AugmentOps) -> Result<Option<Self>, String> {
        let mut plan = Self::preset(preset);
        ops.apply_to(&mut plan)?;
        Ok((!plan.is_empty()).then_some(plan))
    }

    /// Whether every operation is off (absent, or p = 0).
    pub fn is_empty(&self) -> bool {
        Self::OPS.iter().all(|op| self.op(op).is_none_or(|params| params.chance() <= 0.0))
    }

    /// Rejects ranges given upside down (a minimum above its maximum).
    pub fn validate(&self) -> Result<(), String> {
        let ordered = |op: &str, low: &str, a: f32, high: &str, b: f32| {
            if a <= b { Ok(()) } else { Err(format!("{op}: {low} ({a}) is above {high} ({b})")) }
        };
        if let Some(crop) = &self.crop {
            ordered("crop", "area_min", crop.area_min, "area_max", crop.area_max)?;
            ordered("crop", "aspect_min", crop.aspect_min, "aspect_max", crop.aspect_max)?;
        }
        if let Some(blur) = &self.blur {
            ordered("blur", "var_min", blur.var_min, "var_max", blur.var_max)?;
        }
        Ok(())
    }

    /// Every operation with its parameters, defaults, ranges and meaning, as text for people.
    pub fn describe_ops() -> String {
        let mut everything = Self::none();
        let mut text = format!("  {:<14} {:<8} {:<18} {}\n", "parameter", "default", "range", "meaning");
        for op in Self::OPS {
            let Some(params) = everything.op_mut(op) else { continue };
            text.push_str(op);
            text.push('\n');
            for param in params.params() {
                let default = params.get(param.name).unwrap_or_default();
                text.push_str(&format!("  {:<14} {:<8} {:<18} {}\n", param.name, default, param.range, param.doc));
            }
        }
        text
    }

    /// Applies the operations that are on to one `size` x `size` HWC RGB image; the output has
    /// the input's size. Anything else is returned untouched.
    pub fn apply(&self, pixels: &[u8], size: u32, rng: &mut impl Rng) -> Vec<u8> {
        let n = size as usize;
        if n == 0 || pixels.len() != n * n * 3 {
            return pixels.to_vec();
        }
        let mut img = pixels.to_vec();
        if let Some(op) = &self.crop
            && happens(rng, op.p)
        {
            img = geometry::random_resized_crop(&img, n, op, rng);
        }
        if let Some(op) = &self.hair
            && happens(rng, op.p)
        {
            draw::hair(&mut img, n, op, rng);
        }
        if let Some(op) = &self.dihedral
            && happens(rng, op.p)
        {
            img = dihedral(&img, size, rng.random_range(0..8u8));
        }
        // Dihedral transforms 4, 2 and 1: transpose, vertical and horizontal flip.
        for (op, k) in [(&self.transpose, 4), (&self.vflip, 2), (&self.hflip, 1)] {
            if let Some(op) = op
                && happens(rng, op.p)
            {
                img = dihedral(&img, size, k);
            }
        }
        if let Some(op) = &self.brightness
            && happens(rng, op.p)
        {
            levels::brightness(&mut img, symmetric(rng, op.limit));
        }
        if let Some(op) = &self.contrast
            && happens(rng, op.p)
        {
            levels::contrast(&mut img, 1.0 + symmetric(rng, op.limit));
        }
        if let Some(op) = &self.blur
            && happens(rng, op.p)
        {
            img = filters::blur_or_noise(&img, n, op, rng);
        }
        if let Some(op) = &self.distort
            && happens(rng, op.p)
        {
            img = geometry::distort(&img, n, op, rng);
        }
        if let Some(op) = &self.clahe
            && happens(rng, op.p)
        {
            levels::clahe(&mut img, n, op.clip, op.tiles as usize);
        }
        if let Some(op) = &self.hsv
            && happens(rng, op.p)
        {
            let shifts = [symmetric(rng, op.hue), symmetric(rng, op.sat), symmetric(rng, op.val)];
            levels::hsv_shift(&mut img, shifts);
        }
        if let Some(op) = &self.affine
            && happens(rng, op.p)
        {
            // The draws' order (angle, scale, x shift, y shift) is the light preset's of old.
            let angle = symmetric(rng, op.rotate).to_radians();
            let scale = 1.0 + symmetric(rng, op.scale);
            let tx = symmetric(rng, op.shift) * size as f32;
            let ty = symmetric(rng, op.shift) * size as f32;
            if angle != 0.0 || scale != 1.0 || tx != 0.0 || ty != 0.0 {
                img = geometry::affine(&img, n, angle, scale, (tx, ty), op.border);
            }
        }
        if let Some(op) = &self.color
            && happens(rng, op.p)
        {
            let brightness = 1.0 + symmetric(rng, op.brightness);
            let contrast = 1.0 + symmetric(rng, op.contrast);
            let saturation = 1.0 + symmetric(rng, op.saturation);
            if brightness != 1.0 || contrast != 1.0 || saturation != 1.0 {
                levels::color_jitter(&mut img, brightness, contrast, saturation);
            }
        }
        if let Some(op) = &self.cutout
            && happens(rng, op.p)
        {
            draw::cutout(&mut img, n, op, rng);
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The module's table names every operation and parameter (it is the reference).
    #[test]
    fn module_table_documents_every_operation_and_parameter() {
        let source = include_str!("augment.rs");
        let mut plan = AugmentPlan::none();
        for op in AugmentPlan::OPS {
            let row = source.lines().find(|line| line.starts_with(&format!("//! | `{op}` |"))).unwrap_or_else(|| panic!("no table row for {op}"));
            for param in plan.op_mut(op).unwrap().params() {
                assert!(row.contains(&format!("`{}`", param.name)), "the table's {op} row lacks {}", param.name);
            }
        }
    }

    #[test]
    fn describe_ops_lists_every_parameter() {
        let text = AugmentPlan::describe_ops();
        assert!(text.contains("cutout\n") && text.contains("elastic_sigma") && text.contains("0.375") && text.contains("black or reflect"));
    }
}
