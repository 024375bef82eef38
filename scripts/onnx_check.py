"""Runs each DIR/NAME/model.onnx with ONNX Runtime on DIR/NAME/input.f32 (and metadata.f32, for
a graph with a `metadata` input) and compares its
outputs with naevus's (DIR/NAME/logits.txt for a fold's graph, melanoma.txt for a whole
model's): the largest absolute difference per graph. Exit status 1 when one is above its
tolerance (1e-4 for logits, 1e-5 for probabilities)."""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

root = Path(sys.argv[1])
worst = {"logits": 0.0, "melanoma": 0.0}
# Logits within 1e-4; probabilities (float32 through a sigmoid and a calibration) within 1e-5.
tolerance = {"logits": 1e-4, "melanoma": 1e-5}
for folder in sorted(p for p in root.iterdir() if (p / "model.onnx").exists()):
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    side = session.get_inputs()[0].shape[2]  # [batch, 3, side, side]
    image = np.fromfile(folder / "input.f32", dtype="<f4").reshape(-1, 3, side, side)
    feeds = {"image": image}
    if (folder / "metadata.f32").exists():
        feeds["metadata"] = np.fromfile(folder / "metadata.f32", dtype="<f4").reshape(image.shape[0], -1)
    for output in ("logits", "melanoma"):
        if not (folder / f"{output}.txt").exists():
            continue
        expected = np.loadtxt(folder / f"{output}.txt", dtype=np.float64).reshape(image.shape[0], -1)
        (got,) = session.run([output], feeds)
        diff = float(np.abs(got.astype(np.float64) - expected).max())
        worst[output] = max(worst[output], diff)
        print(f"{folder.name}: max |{output} difference| {diff:.2e} over {expected.size} values (up to {np.abs(expected).max():.2f})")
sys.exit(0 if all(worst[k] <= tolerance[k] for k in worst) else 1)
