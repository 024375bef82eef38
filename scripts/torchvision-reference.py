"""Reference outputs of torchvision's own networks on the weight stand-ins, for
crates/naevus-engine/tests/torchvision_weights.rs.

Run once by a developer, in an environment with torch and torchvision (not in CI: naevus
itself never needs them). With the stand-ins of scripts/torchvision-standins.sh in STANDINS:

    python3 scripts/torchvision-reference.py STANDINS

For each stand-in it
  1. checks the file against torchvision's module: `torch.load(weights_only=True)` gives the
     keys of `torchvision.models.NAME().state_dict()` in its order, with its shapes, dtypes and
     `_metadata`, and `load_state_dict(strict=True)` takes it;
  2. runs the network in eval mode on two CC0 ISIC 2017 images of data/sample (128 px, kept
     as lossless PNGs in crates/naevus-engine/tests/reference/torchvision/ so that both sides
     decode the same pixels), normalised with the ImageNet mean and std in float32 as naevus
     does (v * (1 / (255 std)) + (-mean / std));
  3. records the ResNets' 1000 logits per image, and for vgg16_bn the `features(x)` map
     (pool-5: 512 x 4 x 4): its mean per channel and a spread of raw values;
and writes it all to torchvision.json in that folder, with the stand-ins' sha256.
"""

import hashlib
import json
import os
import sys

import numpy as np
import torch
import torchvision
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates/naevus-engine/tests/reference/torchvision")
# A melanoma and a nevus of the ISIC 2017 training set (CC0), already 128 px in data/sample.
IMAGES = {"ISIC_0000002.png": "ISIC_0000002.jpg", "ISIC_0000003.png": "ISIC_0000003.jpg"}
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
MODELS = ["resnet18", "resnet34", "resnet50", "vgg16_bn"]
# Raw values of the VGG feature map kept besides the channel means: every 67th (flat index
# into [1, 512, 4, 4]), about 120 per image.
RAW_STEP = 67


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fixture_images():
    """The PNG fixtures, made once from data/sample; their pixels as [1, 3, h, w] float32."""
    os.makedirs(FIXTURES, exist_ok=True)
    tensors = {}
    for png, jpg in IMAGES.items():
        path = os.path.join(FIXTURES, png)
        if not os.path.exists(path):
            Image.open(os.path.join(ROOT, "data/sample/images", jpg)).convert("RGB").save(path, optimize=True)
        pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.uint8)
        planes = []
        for c in range(3):
            a = np.float32(1.0) / (np.float32(255.0) * np.float32(STD[c]))
            b = -np.float32(MEAN[c]) / np.float32(STD[c])
            planes.append(pixels[:, :, c].astype(np.float32) * a + b)
        tensors[png] = torch.from_numpy(np.stack(planes)[None].astype(np.float32))
    return tensors


def check_layout(name, state, module):
    reference = module.state_dict()
    assert list(state.keys()) == list(reference.keys()), f"{name}: keys differ from torchvision's"
    for key, tensor in reference.items():
        got = state[key]
        assert got.shape == tensor.shape and got.dtype == tensor.dtype, f"{name}: {key} {got.shape} {got.dtype}"
    assert list(state._metadata.items()) == list(reference._metadata.items()), f"{name}: _metadata differs"
    module.load_state_dict(state, strict=True)


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} STANDINS_DIR")
    standins = sys.argv[1]
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    images = fixture_images()
    out = {
        "about": "torchvision 0.20.1 / torch 2.5.1 outputs on the stand-ins of scripts/torchvision-standins.sh, "
        "eval mode, float32; written by scripts/torchvision-reference.py",
        "images": list(IMAGES),
        "mean": MEAN,
        "std": STD,
        "standins": {},
    }
    for name in MODELS:
        path = os.path.join(standins, f"{name}-standin.pth")
        state = torch.load(path, weights_only=True, map_location="cpu")
        module = getattr(torchvision.models, name)()
        check_layout(name, state, module)
        module.eval()
        out["standins"][os.path.basename(path)] = sha256(path)
        results = {}
        with torch.no_grad():
            for png, x in images.items():
                if name.startswith("vgg"):
                    features = module.features(x)
                    flat = features.flatten()
                    indices = list(range(0, flat.numel(), RAW_STEP))
                    results[png] = {
                        "shape": list(features.shape),
                        "channel_means": [round(float(v), 6) for v in features.mean(dim=(2, 3))[0]],
                        "raw_indices": indices,
                        "raw_values": [round(float(flat[i]), 6) for i in indices],
                    }
                else:
                    results[png] = [round(float(v), 6) for v in module(x)[0]]
        out[name] = results
        print(f"{name}: layout matches torchvision, strict load ok", file=sys.stderr)
    with open(os.path.join(FIXTURES, "torchvision.json"), "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
