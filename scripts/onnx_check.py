"""Runs each DIR/NAME/model.onnx with ONNX Runtime on DIR/NAME/input.f32 and compares its
logits with naevus's (DIR/NAME/logits.txt): the largest absolute difference per architecture.
Exit status 1 when one is above the tolerance (1e-4)."""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort

root = Path(sys.argv[1])
worst = 0.0
for folder in sorted(p for p in root.iterdir() if (p / "model.onnx").exists()):
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = session.get_inputs()[0].shape  # [batch, 3, side, side]
    side = shape[2]
    image = np.fromfile(folder / "input.f32", dtype="<f4").reshape(-1, 3, side, side)
    expected = np.loadtxt(folder / "logits.txt", dtype=np.float64).reshape(image.shape[0], -1)
    (logits,) = session.run(["logits"], {"image": image})
    diff = float(np.abs(logits.astype(np.float64) - expected).max())
    worst = max(worst, diff)
    print(f"{folder.name}: max |logit difference| {diff:.2e} over {expected.size} logits")
sys.exit(0 if worst <= 1e-4 else 1)
