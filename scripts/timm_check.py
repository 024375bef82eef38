"""Loads each DIR/NAME/timm.safetensors into the timm model its metadata names
(`timm.create_model(timm_model, pretrained=False, num_classes=N)`, `load_state_dict(strict=True)`),
runs it in eval mode on DIR/NAME/input.f32 (normalised, NCHW) and compares its logits with
naevus's (DIR/NAME/logits.txt): the largest absolute difference per model. So that passing
means something, it also swaps the deepest two BatchNorms of the same width and requires the
logits to move by more than 10x the tolerance. Exit status 1 when a difference is above 1e-4,
a swap goes unnoticed, or a model does not load."""

import sys
from pathlib import Path

import numpy as np
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file

root = Path(sys.argv[1])
tolerance = 1e-4
worst = 0.0
checked = 0
insensitive = []
for folder in sorted(p for p in root.iterdir() if (p / "timm.safetensors").exists()):
    weights = folder / "timm.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    name, classes = meta["timm_model"], int(meta["num_classes"])
    state = load_file(str(weights))
    expected = np.loadtxt(folder / "logits.txt", dtype=np.float64).reshape(-1, classes)
    pixels = np.fromfile(folder / "input.f32", dtype="<f4")
    side = int(round((pixels.size / (3 * expected.shape[0])) ** 0.5))
    image = torch.from_numpy(pixels.reshape(-1, 3, side, side))

    def max_difference(state):
        model = timm.create_model(name, pretrained=False, num_classes=classes)
        model.load_state_dict(state, strict=True)
        model.eval()
        with torch.no_grad():
            return float(np.abs(model(image).double().numpy() - expected).max())

    diff = max_difference(state)
    worst = max(worst, diff)
    checked += 1
    # The deepest two BatchNorms of one width (in the network's order), swapped: the logits
    # must notice.
    order = [k[: -len(".running_var")] for k in timm.create_model(name, num_classes=classes).state_dict() if k.endswith(".running_var")]
    width = {}
    for depth, key in enumerate(order):
        width.setdefault(state[key + ".running_var"].shape[0], []).append((depth, key))
    a, b = (key for _, key in max((group for group in width.values() if len(group) > 1), key=lambda group: group[-1][0])[-2:])
    swapped = dict(state)
    for part in ("weight", "bias", "running_mean", "running_var"):
        swapped[f"{a}.{part}"], swapped[f"{b}.{part}"] = state[f"{b}.{part}"], state[f"{a}.{part}"]
    noticed = max_difference(swapped)
    if noticed <= 10 * tolerance:
        insensitive.append(folder.name)
    print(
        f"{folder.name}: timm {name}, max |logit difference| {diff:.2e} over {expected.size} values "
        f"(logits up to {np.abs(expected).max():.2f}; with {a} and {b} swapped: {noticed:.2e})"
    )
if checked == 0:
    sys.exit(f"no timm.safetensors under {root}")
if insensitive:
    sys.exit(f"a swap of two BatchNorms went unnoticed in {', '.join(insensitive)}: the check proves nothing there")
sys.exit(0 if worst <= tolerance else 1)
