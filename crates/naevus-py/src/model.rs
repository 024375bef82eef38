//! `naevus._naevus.Model`: a run, a bundle or an ensemble bundle loaded once
//! ([`LoadedModel`]), scoring files and arrays through the command line's input path.

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use naevus_data::metadata::{parse_age, parse_sex, parse_site};
use naevus_data::{DecodeLimits, Metadata, Record, RgbImage};
use naevus_engine::explain::Method;
use naevus_engine::predict::MAX_TTA;
use naevus_engine::{LoadedModel, ModelInput};
use naevus_report::ModelCard;
use naevus_run::Checkpoint;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::or_raise;

/// One image as the Python package passes it: RGB bytes (height x width x 3) with their
/// height and width, or a file's path.
#[derive(FromPyObject)]
pub enum ImageArg<'py> {
    Array(Bound<'py, PyBytes>, u32, u32),
    Path(PathBuf),
}

/// The same image owned, to be worked on without the GIL.
enum Image {
    Array(Vec<u8>, u32, u32),
    Path(PathBuf),
}

impl From<ImageArg<'_>> for Image {
    fn from(image: ImageArg<'_>) -> Self {
        match image {
            ImageArg::Array(bytes, height, width) => Image::Array(bytes.as_bytes().to_vec(), height, width),
            ImageArg::Path(path) => Image::Path(path),
        }
    }
}

/// A map as explain answers it: values row by row, side, layer, (grid rows, grid columns).
type ExplainedMap = (Vec<f32>, u32, String, (usize, usize));

#[pyclass(frozen, module = "naevus._naevus")]
pub struct Model {
    inner: Arc<LoadedModel>,
    path: PathBuf,
}

#[pymethods]
impl Model {
    /// Opens a run directory, an exported model or an ensemble bundle and loads every fold.
    #[staticmethod]
    #[pyo3(signature = (path, device=None, checkpoint="best"))]
    fn load(py: Python<'_>, path: PathBuf, device: Option<String>, checkpoint: &str) -> PyResult<Self> {
        let checkpoint = or_raise(Checkpoint::from_str(checkpoint).map_err(anyhow::Error::msg))?;
        let loaded = py.allow_threads(|| {
            if !path.exists() {
                return Err(anyhow::Error::new(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: no such run or model folder", path.display()))));
            }
            LoadedModel::open(&path, device.as_deref(), checkpoint)
        });
        Ok(Self { inner: Arc::new(or_raise(loaded)?), path })
    }

    /// Scores images: a dict of lists (the package makes them numpy arrays).
    #[pyo3(signature = (images, tta=1, metadata=None, max_pixels=DecodeLimits::DEFAULT_MAX_PIXELS))]
    fn predict<'py>(
        &self,
        py: Python<'py>,
        images: Vec<ImageArg<'py>>,
        tta: usize,
        metadata: Option<Vec<(String, String, String)>>,
        max_pixels: u64,
    ) -> PyResult<Bound<'py, PyDict>> {
        let images: Vec<Image> = images.into_iter().map(Image::from).collect();
        let model = self.inner.clone();
        let scores = py.allow_threads(|| -> Result<_> {
            if !(1..=MAX_TTA).contains(&tta) {
                bail!("tta must be between 1 and {MAX_TTA}, got {tta}");
            }
            if let Some(rows) = &metadata
                && rows.len() != images.len()
            {
                bail!("{} metadata rows for {} images: give one per image", rows.len(), images.len());
            }
            let limits = DecodeLimits { max_pixels };
            let mut inputs = Vec::with_capacity(images.len());
            for (n, image) in images.iter().enumerate() {
                let pixels = member_pixels(&model, image, &limits).with_context(|| format!("image {n}"))?;
                let record = match &metadata {
                    Some(rows) => Some(record_of(&rows[n]).with_context(|| format!("metadata of image {n}"))?),
                    None => None,
                };
                inputs.push(ModelInput { pixels, metadata: model.metadata_of(record.as_ref()) });
            }
            model.score(&inputs, tta)
        });
        let scores = or_raise(scores)?;
        let answer = PyDict::new(py);
        answer.set_item("probability", scores.melanoma)?;
        answer.set_item("probability_uncalibrated", scores.melanoma_uncalibrated)?;
        answer.set_item("outputs", scores.outputs)?;
        answer.set_item("domain_distance", scores.domain.as_ref().map(|d| d.iter().map(|c| c.distance).collect::<Vec<_>>()))?;
        answer.set_item("in_domain", scores.domain.as_ref().map(|d| d.iter().map(|c| c.within).collect::<Vec<_>>()))?;
        answer.set_item("members", self.inner.is_ensemble().then_some(scores.members))?;
        Ok(answer)
    }

    /// The map of the regions that raised one image's score most: (values row by row, side,
    /// layer, (grid rows, grid columns)), by the first fold of the first (or the named) member.
    #[pyo3(signature = (image, method="gradcam++", layer=None, member=None))]
    fn explain(&self, py: Python<'_>, image: ImageArg<'_>, method: &str, layer: Option<String>, member: Option<String>) -> PyResult<ExplainedMap> {
        let image = Image::from(image);
        let model = self.inner.clone();
        let method = or_raise(Method::from_str(method))?;
        or_raise(py.allow_threads(move || -> Result<_> {
            let (index, chosen) = match &member {
                Some(name) => model.member(name)?,
                None => (0, model.first()),
            };
            let pixels = member_pixels(&model, &image, &DecodeLimits::default())?.swap_remove(index);
            let network = chosen.folds.first().context("the model has no folds")?;
            let explanation = chosen.run.explain(network, &[pixels.as_slice()], method, layer.as_deref())?;
            let map = explanation.into_iter().next().and_then(|e| e.maps.into_iter().next()).context("the explanation has no map")?;
            Ok((map.values, chosen.run.input.image_size, map.layer, map.grid))
        }))
    }

    /// The model card as JSON (None: the model has none and it cannot be made from its run).
    fn card_json(&self, py: Python<'_>) -> PyResult<Option<String>> {
        let (path, model) = (self.path.clone(), self.inner.clone());
        or_raise(py.allow_threads(move || -> Result<_> {
            let card = match ModelCard::read(&path)? {
                Some(card) => Some(card),
                None if model.is_ensemble() => None,
                None => {
                    let run = &model.first().run;
                    ModelCard::of_run(&path, &run.info.folds, model.checkpoint.name()).ok()
                }
            };
            Ok(card.map(|c| serde_json::to_string(&c)).transpose()?)
        }))
    }

    /// "5 fold(s) of efficientnet-lite0", or an ensemble's members.
    #[getter]
    fn description(&self) -> String {
        self.inner.describe()
    }

    /// The scale of `probability`: calibrated or not, in words.
    #[getter]
    fn scale(&self) -> String {
        self.inner.scale()
    }

    #[getter]
    fn is_ensemble(&self) -> bool {
        self.inner.is_ensemble()
    }

    #[getter]
    fn member_names(&self) -> Vec<String> {
        self.inner.members.iter().map(|m| m.name.clone()).collect()
    }

    /// The input side of the first member.
    #[getter]
    fn image_size(&self) -> u32 {
        self.inner.first().run.input.image_size
    }

    /// The class names of a multi-class model's outputs (None: one melanoma output).
    #[getter]
    fn classes(&self) -> Option<Vec<String>> {
        let info = &self.inner.first().run.info;
        (info.num_outputs > 1).then(|| info.classes.class_names().iter().map(|c| c.to_string()).collect())
    }

    #[getter]
    fn has_guard(&self) -> bool {
        self.inner.has_guard()
    }
}

/// The image as every member takes it, as `naevus predict --images` reads a file (an array
/// is taken as a decoded file: its centre square, then the cache's and the input's size).
fn member_pixels(model: &LoadedModel, image: &Image, limits: &DecodeLimits) -> Result<Vec<Vec<u8>>> {
    match image {
        Image::Path(path) => {
            if !path.is_file() {
                return Err(anyhow::Error::new(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{}: no such image file", path.display()))));
            }
            let mut read = model.load_images(std::slice::from_ref(path), limits)?;
            read.pop().context("no image read")?.map_err(anyhow::Error::msg)
        }
        Image::Array(bytes, height, width) => {
            if *height == 0 || *width == 0 {
                bail!("an image array must have pixels, this one is {height} x {width}");
            }
            limits.check(*width, *height).map_err(anyhow::Error::msg)?;
            let rgb = RgbImage::from_raw(*width, *height, bytes.clone())
                .with_context(|| format!("{} bytes are not a {height} x {width} RGB image ({} bytes)", bytes.len(), u64::from(*height) * u64::from(*width) * 3))?;
            model.rgb_image(&rgb)
        }
    }
}

/// A patient's metadata from its (age, sex, site) strings, read as the CSV readers read them
/// (empty: unknown).
fn record_of((age, sex, site): &(String, String, String)) -> Result<Record> {
    let metadata = Metadata {
        age: parse_age(age).map_err(|reason| anyhow::anyhow!("age: {reason}"))?,
        sex: parse_sex(sex).map_err(|reason| anyhow::anyhow!("sex: {reason}"))?,
        site: parse_site(site).map_err(|reason| anyhow::anyhow!("site: {reason}"))?,
    };
    Ok(Record { id: "image".into(), metadata, ..Record::default() })
}
