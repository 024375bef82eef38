"""Reference ImageNet logits of EfficientNet-Lite0 for naevus's pretrained-weights test.

An independent implementation: the legacy PyTorch checkpoint is read with the standard
pickle module (no torch), and the network runs in float64 numpy. Run once in a throwaway
environment with numpy and Pillow:

    python3 make_effnet_reference.py efficientnet-lite0-57934424.pth lesion_a.png lesion_b.png > efficientnet_lite0_top5.json
"""

import collections
import json
import pickle
import struct
import sys

import numpy as np
from PIL import Image

DTYPES = {"FloatStorage": np.float32, "LongStorage": np.int64, "HalfStorage": np.float16, "DoubleStorage": np.float64}


class LazyTensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def array(self, data):
        flat = data[self.storage]
        item = flat.itemsize
        return np.lib.stride_tricks.as_strided(
            flat[self.offset:], shape=self.size, strides=[s * item for s in self.stride]
        ).copy()


class Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: LazyTensor(storage, offset, size, stride)
        if name == "OrderedDict":
            return collections.OrderedDict
        if name in DTYPES:
            return name
        raise pickle.UnpicklingError(f"unexpected class {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, size, view_metadata)
        _, storage_type, key = pid[0], pid[1], pid[2]
        self.storage_types[key] = storage_type
        return key


def load_legacy_checkpoint(path):
    with open(path, "rb") as f:
        assert pickle.load(f) == 0x1950A86A20F9469CFC6C, "not a legacy PyTorch file"
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        unpickler = Unpickler(f)
        unpickler.storage_types = {}
        state = unpickler.load()
        keys = pickle.load(f)
        data = {}
        for key in keys:
            (count,) = struct.unpack("<q", f.read(8))
            dtype = DTYPES[unpickler.storage_types[key]]
            data[key] = np.frombuffer(f.read(count * np.dtype(dtype).itemsize), dtype=dtype)
    return {k: v.array(data) for k, v in state.items()}


def same_pad(x, kernel, stride):
    total = kernel - 1 if stride == 1 else kernel - stride
    before, after = total // 2, total - total // 2
    return np.pad(x, ((0, 0), (before, after), (before, after)))


def conv(x, w, stride, groups):
    """x: [C, H, W]; w: [O, C/groups, k, k]; TensorFlow SAME padding."""
    out_c, in_per_group, k, _ = w.shape
    x = same_pad(x, k, stride)
    c, h, wd = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((out_c, oh, ow))
    out_per_group = out_c // groups
    for g in range(groups):
        xs = x[g * in_per_group:(g + 1) * in_per_group]
        ws = w[g * out_per_group:(g + 1) * out_per_group]
        for i in range(k):
            for j in range(k):
                patch = xs[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
                out[g * out_per_group:(g + 1) * out_per_group] += np.einsum("oc,chw->ohw", ws[:, :, i, j], patch)
    return out


def depthwise(x, w, stride):
    k = w.shape[-1]
    x = same_pad(x, k, stride)
    c, h, wd = x.shape
    oh, ow = (h - k) // stride + 1, (wd - k) // stride + 1
    out = np.zeros((c, oh, ow))
    for i in range(k):
        for j in range(k):
            out += w[:, 0, i, j][:, None, None] * x[:, i:i + stride * oh:stride, j:j + stride * ow:stride]
    return out


def bn(x, p, name):
    scale = p[name + ".weight"] / np.sqrt(p[name + ".running_var"] + 1e-3)
    return x * scale[:, None, None] + (p[name + ".bias"] - p[name + ".running_mean"] * scale)[:, None, None]


def relu6(x):
    return np.clip(x, 0.0, 6.0)


# EfficientNet-B0 block table (repeats, kernel, stride, expansion, in, out); Lite0 has no SE.
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def forward(p, image):
    x = relu6(bn(conv(image, p["_conv_stem.weight"], 2, 1), p, "_bn0"))
    b = 0
    for repeats, k, stride, expand, c_in, c_out in STAGES:
        for r in range(repeats):
            s = stride if r == 0 else 1
            cin = c_in if r == 0 else c_out
            y = x
            pre = f"_blocks.{b}."
            if expand != 1:
                y = relu6(bn(conv(y, p[pre + "_expand_conv.weight"], 1, 1), p, pre + "_bn0"))
            y = relu6(bn(depthwise(y, p[pre + "_depthwise_conv.weight"], s), p, pre + "_bn1"))
            y = bn(conv(y, p[pre + "_project_conv.weight"], 1, 1), p, pre + "_bn2")
            x = y + x if (s == 1 and cin == c_out) else y
            b += 1
    x = relu6(bn(conv(x, p["_conv_head.weight"], 1, 1), p, "_bn1"))
    features = x.mean(axis=(1, 2))
    return p["_fc.weight"] @ features + p["_fc.bias"]


def main():
    params = {k: v.astype(np.float64) for k, v in load_legacy_checkpoint(sys.argv[1]).items()}
    out = {}
    for path in sys.argv[2:]:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64)
        image = ((rgb - 127.0) / 128.0).transpose(2, 0, 1)
        logits = forward(params, image)
        top5 = np.argsort(-logits)[:5]
        out[path.split("/")[-1]] = {"top5_classes": top5.tolist(), "top5_logits": logits[top5].tolist()}
    json.dump(out, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
