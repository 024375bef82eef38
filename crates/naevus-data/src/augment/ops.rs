//! Each operation's parameters, with their documentation, defaults and allowed ranges (the
//! module table of `augment` is their reference; `naevus augment --list` prints them).

use serde::{Deserialize, Serialize};

use super::Border;
use super::spec::{self, OpParams, ParamDoc};

/// Defines one operation's parameter struct: its fields with their documentation, defaults
/// and allowed ranges, from which [`OpParams`] (strict setting by name, the canonical text,
/// the parameter list) is made.
macro_rules! op_params {
    ($(#[doc = $doc:literal])* $ty:ident { $( $(#[doc = $pdoc:literal])* $param:ident : $pty:ty = $default:expr, $lo:tt ..= $hi:tt; )* }) => {
        $(#[doc = $doc])*
        #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
        pub struct $ty {
            $( $(#[doc = $pdoc])* pub $param: $pty, )*
        }

        impl Default for $ty {
            fn default() -> Self {
                Self { $( $param: $default, )* }
            }
        }

        impl OpParams for $ty {
            // A range bound that is not a literal comes in parentheses (one token tree).
            #[allow(unused_parens)]
            fn params(&self) -> Vec<ParamDoc> {
                vec![$( ParamDoc {
                    name: stringify!($param),
                    range: spec::range_text::<$pty>($lo, $hi),
                    doc: concat!($($pdoc),*).trim(),
                }, )*]
            }

            // A range bound that is not a literal comes in parentheses (one token tree).
            #[allow(unused_parens)]
            fn set(&mut self, param: &str, value: &str) -> Result<(), String> {
                match param {
                    $( stringify!($param) => self.$param = spec::parse_param(param, value, $lo, $hi)?, )*
                    _ => return Err(format!("has no parameter {param:?}")),
                }
                Ok(())
            }

            fn chance(&self) -> f32 {
                self.p
            }

            fn get(&self, param: &str) -> Option<String> {
                match param {
                    $( stringify!($param) => Some(self.$param.to_string()), )*
                    _ => None,
                }
            }
        }
    };
}

op_params! {
    /// Random resized crop.
    Crop {
        /// Chance of the operation.
        p: f32 = 1.0, 0.0..=1.0;
        /// Smallest share of the image's area kept.
        area_min: f32 = 0.7, 0.05..=1.0;
        /// Largest share of the image's area kept.
        area_max: f32 = 1.0, 0.05..=1.0;
        /// Smallest width / height of the rectangle.
        aspect_min: f32 = 0.75, 0.2..=5.0;
        /// Largest width / height of the rectangle.
        aspect_max: f32 = 1.3333, 0.2..=5.0;
    }
}

op_params! {
    /// Synthetic hair (seed 002): dark thin curved strands drawn onto the image.
    Hair {
        /// Chance of the operation.
        p: f32 = 1.0, 0.0..=1.0;
        /// Most strands; 0 to this many are drawn.
        count: u32 = 4, 0..=32;
        /// Widest strand in pixels at 224 px (scaled with the side).
        width: f32 = 2.0, 0.5..=8.0;
    }
}

op_params! {
    /// One of the 8 symmetries of the square, all equally likely.
    Dihedral {
        /// Chance of the operation.
        p: f32 = 1.0, 0.0..=1.0;
    }
}

op_params! {
    /// A transpose or flip, applied with chance `p`.
    Flip {
        /// Chance of the operation.
        p: f32 = 0.5, 0.0..=1.0;
    }
}

op_params! {
    /// A brightness or contrast change of at most `limit`, either way.
    Level {
        /// Chance of the operation.
        p: f32 = 0.75, 0.0..=1.0;
        /// Largest change: brightness adds up to limit x 255 levels, contrast scales by 1 ± limit.
        limit: f32 = 0.2, 0.0..=1.0;
    }
}

op_params! {
    /// One of motion blur, median blur, Gaussian blur and Gaussian noise.
    Blur {
        /// Chance of the operation.
        p: f32 = 0.7, 0.0..=1.0;
        /// Weight of motion blur in the choice.
        motion: f32 = 1.0, 0.0..=100.0;
        /// Weight of median blur in the choice.
        median: f32 = 1.0, 0.0..=100.0;
        /// Weight of Gaussian blur in the choice.
        gaussian: f32 = 1.0, 0.0..=100.0;
        /// Weight of Gaussian noise in the choice.
        noise: f32 = 1.0, 0.0..=100.0;
        /// Largest kernel side of the blurs; odd sides from 3 up to it are drawn.
        kernel: u32 = 5, 3..=15;
        /// Smallest variance of the noise, in levels squared.
        var_min: f32 = 5.0, 0.0..=2000.0;
        /// Largest variance of the noise, in levels squared.
        var_max: f32 = 30.0, 0.0..=2000.0;
    }
}

op_params! {
    /// One of optical, grid and elastic distortion.
    Distort {
        /// Chance of the operation.
        p: f32 = 0.7, 0.0..=1.0;
        /// Weight of optical distortion in the choice.
        optical: f32 = 1.0, 0.0..=100.0;
        /// Weight of grid distortion in the choice.
        grid: f32 = 1.0, 0.0..=100.0;
        /// Weight of elastic distortion in the choice.
        elastic: f32 = 1.0, 0.0..=100.0;
        /// Largest radial coefficient k (source radius r (1 + k r^2 + k r^4), r in sides).
        optical_limit: f32 = 1.0, 0.0..=2.0;
        /// Largest shift of the optical distortion's centre, as a share of the side.
        optical_shift: f32 = 0.05, 0.0..=0.5;
        /// Cells per side of the grid distortion.
        grid_steps: u32 = 5, 1..=32;
        /// Each grid cell's source width is 1 ± this (renormalised to the side).
        grid_limit: f32 = 1.0, 0.0..=1.0;
        /// Largest elastic displacement, as a share of the side.
        elastic_alpha: f32 = 0.03, 0.0..=0.25;
        /// Spacing of the random elastic displacements, as a share of the side.
        elastic_sigma: f32 = 0.125, 0.02..=1.0;
    }
}

op_params! {
    /// Contrast-limited adaptive histogram equalisation of the luma.
    Clahe {
        /// Chance of the operation.
        p: f32 = 0.7, 0.0..=1.0;
        /// Histogram clip limit, in multiples of a flat histogram's bin.
        clip: f32 = 4.0, 0.1..=100.0;
        /// Tiles per side.
        tiles: u32 = 8, 1..=32;
    }
}

op_params! {
    /// Hue, saturation and value shifts in albumentations' units.
    Hsv {
        /// Chance of the operation.
        p: f32 = 0.5, 0.0..=1.0;
        /// Largest hue shift in OpenCV's half-degrees (10 = 20 degrees).
        hue: f32 = 10.0, 0.0..=90.0;
        /// Largest saturation shift, in levels of 255.
        sat: f32 = 20.0, 0.0..=255.0;
        /// Largest value shift, in levels of 255.
        val: f32 = 10.0, 0.0..=255.0;
    }
}

op_params! {
    /// Rotation, zoom and shift about the centre.
    Affine {
        /// Chance of the operation.
        p: f32 = 0.85, 0.0..=1.0;
        /// Largest rotation in degrees, either way (180: any angle).
        rotate: f32 = 15.0, 0.0..=180.0;
        /// Largest relative zoom in or out (0.1 = 0.9x to 1.1x).
        scale: f32 = 0.1, 0.0..=0.9;
        /// Largest shift along each axis, as a share of the side.
        shift: f32 = 0.1, 0.0..=0.5;
        /// What shows where the image is moved away: black or reflect.
        border: Border = Border::Black, (Border::Reflect)..=(Border::Black);
    }
}

op_params! {
    /// Brightness, contrast and saturation jitter.
    Color {
        /// Chance of the operation.
        p: f32 = 1.0, 0.0..=1.0;
        /// Largest relative brightness change (values scaled by 1 ± this).
        brightness: f32 = 0.2, 0.0..=1.0;
        /// Largest relative contrast change (about the mean grey level).
        contrast: f32 = 0.2, 0.0..=1.0;
        /// Largest relative saturation change (blend with the pixel's own grey).
        saturation: f32 = 0.2, 0.0..=1.0;
    }
}

op_params! {
    /// Black square holes.
    Cutout {
        /// Chance of the operation.
        p: f32 = 0.7, 0.0..=1.0;
        /// Side of a hole as a share of the image side (cut off where it overhangs).
        size: f32 = 0.375, 0.0..=1.0;
        /// Number of holes.
        holes: u32 = 1, 1..=16;
    }
}
