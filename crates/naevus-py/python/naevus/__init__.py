"""naevus from Python: melanoma classification of dermoscopic images.

The engine is naevus's own (the same library calls as the ``naevus`` command line, the GIL
released while it works); this module turns paths, numpy arrays and PIL images into what it
takes, and its answers into numpy arrays and dicts.

>>> import naevus
>>> model = naevus.Model.load("runs/quickstart/model")
>>> result = model.predict(["lesion.jpg"])
>>> result["probability"]          # on the model's one scale (calibrated when it has a calibration)
>>> naevus.evaluate(y_true, y_score)["metrics"]["roc_auc"]
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _naevus

__version__: str = _naevus.__version__

#: What ``Model.predict`` and ``Model.explain`` take as an image: a file's path, an RGB
#: ``uint8`` array of shape (height, width, 3), or a PIL image.
Image = Union[str, "os.PathLike[str]", np.ndarray, Any]

__all__ = ["Model", "evaluate", "prepare", "train", "__version__"]


def _image_arg(image: Image) -> Any:
    """A path as text, an array or PIL image as (RGB bytes, height, width)."""
    if isinstance(image, (str, os.PathLike)):
        return os.fspath(image)
    if hasattr(image, "convert") and hasattr(image, "size"):  # a PIL image, without importing PIL
        image = np.asarray(image.convert("RGB"))
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"an image array must be uint8 of shape (height, width, 3), not {image.dtype} {image.shape}")
        return (np.ascontiguousarray(image).tobytes(), int(image.shape[0]), int(image.shape[1]))
    raise TypeError(f"an image is a path, a uint8 (height, width, 3) array or a PIL image, not {type(image).__name__}")


def _metadata_arg(row: Optional[Mapping[str, Any]]) -> tuple:
    row = row or {}
    unknown = {"age", "sex", "site"}
    extra = set(row) - unknown
    if extra:
        raise ValueError(f"metadata keys are age, sex and site, not {', '.join(sorted(extra))}")
    return tuple("" if row.get(key) is None else str(row.get(key)) for key in ("age", "sex", "site"))


class Model:
    """A trained run, an exported model or an ensemble bundle, loaded once."""

    def __init__(self, inner: "_naevus.Model") -> None:
        self._inner = inner

    @classmethod
    def load(cls, path: Union[str, "os.PathLike[str]"], device: Optional[str] = None, checkpoint: str = "best") -> "Model":
        """Opens ``path`` (a run directory, ``naevus export``'s folder or an ensemble bundle).

        ``device``: flex (CPU), or a GPU backend compiled in; default: the one it trained on.
        Raises FileNotFoundError when there is nothing at ``path``, ValueError when it is not a
        usable model (the message names the file and field).
        """
        return cls(_naevus.Model.load(os.fspath(path), device, checkpoint))

    def predict(
        self,
        images: Union[Image, Sequence[Image]],
        tta: int = 1,
        metadata: Optional[Sequence[Optional[Mapping[str, Any]]]] = None,
    ) -> Dict[str, Optional[np.ndarray]]:
        """Scores images through the command line's input path.

        Returns numpy arrays: ``probability`` (melanoma, on the model's one scale),
        ``probability_uncalibrated``, ``class_probabilities`` ((n, classes) for multi-class
        models, else None), ``in_domain`` and ``domain_distance`` (None without an
        out-of-domain guard), ``members`` ((n, members) for an ensemble, else None).
        ``metadata``: one dict per image with age, sex and site (for metadata models).
        """
        if isinstance(images, (str, os.PathLike, np.ndarray)) or hasattr(images, "convert"):
            images = [images]
        args = [_image_arg(image) for image in images]
        rows = None if metadata is None else [_metadata_arg(row) for row in metadata]
        raw = self._inner.predict(args, tta, rows)
        outputs = np.asarray(raw["outputs"], dtype=np.float64).reshape(len(args), -1)
        as_array = lambda values, dtype=np.float64: None if values is None else np.asarray(values, dtype=dtype)  # noqa: E731
        return {
            "probability": np.asarray(raw["probability"], dtype=np.float64),
            "probability_uncalibrated": np.asarray(raw["probability_uncalibrated"], dtype=np.float64),
            "class_probabilities": outputs if self.classes else None,
            "in_domain": as_array(raw["in_domain"], bool),
            "domain_distance": as_array(raw["domain_distance"]),
            "members": as_array(raw["members"]),
        }

    def explain(self, image: Image, method: str = "gradcam++", layer: Optional[str] = None, member: Optional[str] = None) -> np.ndarray:
        """The map of the regions that raised the image's score most, at the model's input size
        (float32 in [0, 1], relative to this image), by the first fold of the first (or the
        named) member. ``method``: gradcam, gradcam++ or attention."""
        values, side, _layer, _grid = self._inner.explain(_image_arg(image), method, layer, member)
        return np.asarray(values, dtype=np.float32).reshape(side, side)

    @property
    def card(self) -> Optional[Dict[str, Any]]:
        """The model card (model_card.json) as a dict, or None."""
        text = self._inner.card_json()
        return None if text is None else json.loads(text)

    @property
    def description(self) -> str:
        return self._inner.description

    @property
    def scale(self) -> str:
        """What ``probability`` is: calibrated (and how) or not."""
        return self._inner.scale

    @property
    def is_ensemble(self) -> bool:
        return self._inner.is_ensemble

    @property
    def member_names(self) -> List[str]:
        return self._inner.member_names

    @property
    def image_size(self) -> int:
        return self._inner.image_size

    @property
    def classes(self) -> Optional[List[str]]:
        """Class names of a multi-class model's outputs; None for one melanoma output."""
        return self._inner.classes

    @property
    def has_guard(self) -> bool:
        """Whether images are checked against the model's domain."""
        return self._inner.has_guard

    def __repr__(self) -> str:
        return f"naevus.Model({self.description}; {self.scale})"


def evaluate(
    y_true: Iterable[int],
    y_score: Iterable[float],
    groups: Optional[Iterable[Any]] = None,
    threshold: float = 0.5,
    bootstrap: int = 1000,
    as_frame: bool = False,
) -> Any:
    """The ISIC metric table (``naevus evaluate``'s): ROC AUC, pAUC above 80% TPR, average
    precision, operating points, calibration, each ``{"value", "ci95"}`` with bootstrap
    intervals (resampling whole ``groups``, e.g. patients, when given). A dict shaped as
    metrics.json; with ``as_frame=True`` a pandas DataFrame of the metrics (pandas needed)."""
    y_true = [int(v) for v in np.asarray(list(y_true)).ravel()]
    y_score = [float(v) for v in np.asarray(list(y_score), dtype=np.float64).ravel()]
    groups = None if groups is None else [str(g) for g in groups]
    document = json.loads(_naevus.evaluate_json(y_true, y_score, groups, threshold, bootstrap))
    if not as_frame:
        return document
    try:
        import pandas as pd
    except ImportError as error:
        raise ImportError("as_frame=True needs pandas: pip install pandas") from error
    rows = {name: {"value": m["value"], "ci95_low": (m["ci95"] or [None, None])[0], "ci95_high": (m["ci95"] or [None, None])[1]} for name, m in document["metrics"].items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def prepare(source: str, images: Union[str, "os.PathLike[str]"], out: Union[str, "os.PathLike[str]"], csv: Optional[Union[str, "os.PathLike[str]"]] = None, size: int = 256, metadata_csv: Optional[Union[str, "os.PathLike[str]"]] = None) -> Dict[str, Any]:
    """``naevus prepare``: decodes, crops and resizes a dataset into a cache (resumable).
    ``source``: isic2020, isic2019, isic2018, isic2017, ham10000, isic2024, derm7pt, folders."""
    fspath = lambda p: None if p is None else os.fspath(p)  # noqa: E731
    prepared, already_done, rejected, rejects_csv = _naevus.prepare(source, os.fspath(images), os.fspath(out), fspath(csv), size, fspath(metadata_csv))
    return {"prepared": prepared, "already_done": already_done, "rejected": rejected, "rejects_csv": rejects_csv}


def train(data: Union[str, "os.PathLike[str]"], out: Union[str, "os.PathLike[str]"], config: Optional[Union[str, "os.PathLike[str]"]] = None, resume: bool = False, **recipe: Any) -> Dict[str, Any]:
    """``naevus train``: trains on the cache ``data`` into the run ``out``, with a recipe file
    (``config``, e.g. configs/efficientnet-lite0.toml) and recipe keys as keyword arguments
    (``epochs=5, image_size=128``); progress as the command line shows it."""
    summary = _naevus.train(os.fspath(data), os.fspath(out), None if config is None else os.fspath(config), json.dumps(recipe), resume)
    return json.loads(summary)
