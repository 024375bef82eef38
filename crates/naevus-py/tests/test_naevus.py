"""The Python package against the command line: the same probabilities for files and arrays,
the same metric table, and Python's exception types for bad input.

Run by .ci/run after `maturin build` and `pip install` of the wheel; NAEVUS_BIN names the
command-line binary built from the same source (default: target/release/naevus).
"""

import csv
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import naevus

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "isic2017"
NAEVUS_BIN = os.environ.get("NAEVUS_BIN", str(ROOT / "target" / "release" / "naevus"))


def cli(*args):
    done = subprocess.run([NAEVUS_BIN, *map(str, args)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def read_targets(path):
    with open(path, newline="") as f:
        return {row["image_name"]: float(row["target"]) for row in csv.DictReader(f)}


@pytest.fixture(scope="session")
def bundle(tmp_path_factory):
    """The fixtures prepared and trained through the Python API, exported by the CLI."""
    work = tmp_path_factory.mktemp("model")
    summary = naevus.prepare("isic2017", FIXTURES / "images", work / "cache", csv=FIXTURES / "labels.csv", size=32)
    assert summary["prepared"] == 8
    trained = naevus.train(work / "cache", work / "run", folds=2, epochs=1, batch_size=4)
    assert 0.0 <= trained["oof_auc"] <= 1.0
    cli("export", "--run", work / "run", "--out", work / "model")
    return work / "model"


@pytest.fixture(scope="session")
def model(bundle):
    return naevus.Model.load(bundle)


def test_files_score_as_the_command_line_scores_them(bundle, model, tmp_path):
    cli("predict", "--run", bundle, "--images", FIXTURES / "images", "--out", tmp_path / "cli.csv")
    expected = read_targets(tmp_path / "cli.csv")
    paths = sorted((FIXTURES / "images").glob("*.jpg"))
    result = model.predict(paths)
    assert result["probability"].shape == (8,)
    for path, probability in zip(paths, result["probability"]):
        assert abs(probability - expected[path.stem]) <= 1e-6, path.name
    assert result["class_probabilities"] is None and result["members"] is None


def test_arrays_and_pil_images_score_as_their_files(bundle, model, tmp_path):
    # PNG copies: lossless, so numpy and the command line see the same pixels.
    folder = tmp_path / "png"
    folder.mkdir()
    for path in sorted((FIXTURES / "images").glob("*.jpg")):
        Image.open(path).convert("RGB").save(folder / (path.stem + ".png"))
    cli("predict", "--run", bundle, "--images", folder, "--out", tmp_path / "cli.csv")
    expected = read_targets(tmp_path / "cli.csv")
    pngs = sorted(folder.glob("*.png"))
    arrays = [np.asarray(Image.open(p).convert("RGB")) for p in pngs]
    from_arrays = model.predict(arrays)["probability"]
    from_pil = model.predict([Image.open(p) for p in pngs])["probability"]
    for png, a, b in zip(pngs, from_arrays, from_pil):
        assert abs(a - expected[png.stem]) <= 1e-6, png.name
        assert abs(b - expected[png.stem]) <= 1e-6, png.name
    # One image alone, and mixed with a path, answers the same.
    assert abs(model.predict(arrays[0])["probability"][0] - from_arrays[0]) <= 1e-12
    mixed = model.predict([pngs[1], arrays[0]])["probability"]
    assert abs(mixed[0] - from_arrays[1]) <= 1e-12 and abs(mixed[1] - from_arrays[0]) <= 1e-12


def test_evaluate_gives_the_command_lines_table(tmp_path):
    rng = np.random.default_rng(7)
    labels = rng.integers(0, 2, 60)
    scores = np.clip(labels * 0.3 + rng.random(60) * 0.7, 0, 1)
    patients = [f"p{i // 2}" for i in range(60)]
    with open(tmp_path / "pred.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_name", "target"])
        writer.writerows([[f"i{i}", repr(float(s))] for i, s in enumerate(scores)])
    with open(tmp_path / "truth.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image_name", "target", "patient_id"])
        writer.writerows([[f"i{i}", int(l), p] for i, (l, p) in enumerate(zip(labels, patients))])
    expected = json.loads(cli("evaluate", "--pred", tmp_path / "pred.csv", "--truth", tmp_path / "truth.csv", "--json"))
    got = naevus.evaluate(labels, scores, groups=patients)
    assert got == expected
    assert got["metrics"]["roc_auc"]["ci95"] is not None


def test_explain_gives_a_map_at_the_input_size(model):
    image = FIXTURES / "images" / "ISIC_0000000.jpg"
    heat = model.explain(image, method="gradcam++")
    assert heat.shape == (model.image_size, model.image_size) and heat.dtype == np.float32
    assert 0.0 <= heat.min() and heat.max() <= 1.0


def test_the_card_and_the_description(model):
    card = model.card
    assert card["validation"]["images"] == 8 and card["operating_points"]
    assert "fold(s) of small-cnn" in model.description and "calibrated" in model.scale
    assert not model.is_ensemble and model.classes is None


def test_bad_inputs_raise_pythons_exceptions(model, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run or model folder"):
        naevus.Model.load(tmp_path / "nothing-here")
    with pytest.raises(FileNotFoundError, match="run.json"):
        naevus.Model.load(tmp_path)
    (tmp_path / "run.json").write_text("{")
    with pytest.raises(ValueError, match="run.json"):
        naevus.Model.load(tmp_path)
    with pytest.raises(FileNotFoundError, match="missing.jpg"):
        model.predict([tmp_path / "missing.jpg"])
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(ValueError, match="broken.jpg"):
        model.predict([broken])
    with pytest.raises(ValueError, match="shape"):
        model.predict(np.zeros((4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        model.predict(np.zeros((4, 4, 3), dtype=np.float32))
    with pytest.raises(TypeError):
        model.predict([42])
    with pytest.raises(ValueError, match="tta must be between 1 and 8"):
        model.predict(FIXTURES / "images" / "ISIC_0000000.jpg", tta=9)
    with pytest.raises(ValueError, match="unknown explanation method"):
        model.explain(FIXTURES / "images" / "ISIC_0000000.jpg", method="lime")
    with pytest.raises(ValueError, match=r"y_true\[1\] is 2, not 0 or 1"):
        naevus.evaluate([0, 2], [0.1, 0.2])
    with pytest.raises(ValueError, match="give one of each per image"):
        naevus.evaluate([0, 1, 1], [0.1, 0.2])
    with pytest.raises(ValueError, match="not a recipe value|unknown"):
        naevus.train(tmp_path, tmp_path / "run", epochs=None)
