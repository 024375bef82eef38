"""Stand-ins for torchvision's ImageNet weight files, for tests that cannot download them.

    python3 scripts/torchvision-standins.py OUT_DIR

writes resnet18-standin.pth, resnet34-standin.pth, resnet50-standin.pth and
vgg16_bn-standin.pth (and three damaged variants, for tests of refusals, and MANIFEST
listing them all): for each, a state dict in exactly the layout of torchvision's
IMAGENET1K_V1 file (the same keys in the same order, shapes, dtypes, int64
`num_batches_tracked`, the `_metadata` module versions) filled with seeded random values,
in the zip format of `torch.save` (pickle protocol 2, one storage per tensor). torch is not
needed: the pickle names torch's classes through stub modules. Only numpy is, and numpy's
legacy RandomState draws the same values on every version, so the files are the same
wherever they are made.

The values are meant to be told apart: convolutions He-scaled (activations stay of order
one through the network), BatchNorm weights, biases, running means and variances all
random and away from 0 and 1, so that a loader that dropped any of them would compute
different outputs. They are not ImageNet weights and classify nothing.

scripts/torchvision-reference.py (run once by a developer, with torch and torchvision)
checks the files against torchvision's own modules and computes the reference outputs the
Rust tests compare with.
"""

import collections
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import numpy as np

# Bumped whenever the files this script writes change (scripts/torchvision-standins.sh
# also compares a hash of this file).
FORMAT = 1

# Values are drawn and written in pieces of this many elements.
CHUNK = 1 << 22


def torch_stubs():
    """Modules named torch and torch._utils holding the classes a checkpoint's pickle
    names, so that the pickler can write references to them without torch installed."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def storage_class(name):
        return type(name, (), {"__module__": "torch", "__qualname__": name})

    torch.FloatStorage = storage_class("FloatStorage")
    torch.LongStorage = storage_class("LongStorage")

    def _rebuild_tensor_v2(*args):
        raise RuntimeError("a stub: only pickled, never called")

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch._utils = utils
    return torch, utils


TORCH, TORCH_UTILS = torch_stubs()


class Storage:
    """One tensor's storage: pickled as a persistent id, its bytes in data/<key>."""

    def __init__(self, key, dtype, numel):
        self.key, self.dtype, self.numel = key, dtype, numel


class TensorRef:
    """A contiguous tensor over a whole storage, pickled as torch pickles a tensor."""

    def __init__(self, storage, shape):
        self.storage, self.shape = storage, tuple(shape)

    def __reduce__(self):
        stride, step = [], 1
        for size in reversed(self.shape):
            stride.append(step)
            step *= size
        stride = tuple(reversed(stride))
        # (storage, storage_offset, size, stride, requires_grad, backward_hooks)
        args = (self.storage, 0, self.shape, stride, False, collections.OrderedDict())
        return (TORCH_UTILS._rebuild_tensor_v2, args)


class CheckpointPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            storage_type = TORCH.FloatStorage if obj.dtype == np.float32 else TORCH.LongStorage
            return ("storage", storage_type, obj.key, "cpu", obj.numel)
        return None


class Param:
    """A tensor of the state dict, its values drawn when it is written."""

    def __init__(self, shape, draw, dtype=np.float32):
        self.shape, self.draw, self.dtype = tuple(shape), draw, dtype

    @property
    def numel(self):
        return int(np.prod(self.shape, dtype=np.int64))


def uniform(low, high):
    return lambda rng, n: rng.uniform(low, high, n)


def he_uniform(fan_in):
    # Variance 2 / fan_in: ReLU networks keep the scale of their activations.
    bound = np.sqrt(6.0 / fan_in)
    return uniform(-bound, bound)


class Layout:
    """A state dict under construction: keys in torchvision's order, and the module tree
    (`_metadata`: one entry per module, in the order `state_dict` visits them)."""

    def __init__(self):
        self.params = collections.OrderedDict()
        self.metadata = collections.OrderedDict()

    def module(self, name, version=1):
        self.metadata[name] = {"version": version}

    def conv(self, name, channels_in, channels_out, kernel, bias=False):
        self.module(name)
        fan_in = channels_in * kernel * kernel
        self.params[name + ".weight"] = Param((channels_out, channels_in, kernel, kernel), he_uniform(fan_in))
        if bias:
            self.params[name + ".bias"] = Param((channels_out,), uniform(-0.1, 0.1))

    def batch_norm(self, name, channels, gamma=(0.6, 1.4)):
        self.module(name, version=2)
        self.params[name + ".weight"] = Param((channels,), uniform(*gamma))
        self.params[name + ".bias"] = Param((channels,), uniform(-0.2, 0.2))
        self.params[name + ".running_mean"] = Param((channels,), uniform(-0.3, 0.3))
        self.params[name + ".running_var"] = Param((channels,), uniform(0.5, 2.0))
        self.params[name + ".num_batches_tracked"] = Param((), lambda rng, n: rng.randint(1, 1 << 20, n), np.int64)

    def linear(self, name, features_in, features_out):
        self.module(name)
        bound = np.sqrt(3.0 / features_in)  # variance 1 / fan_in
        self.params[name + ".weight"] = Param((features_out, features_in), uniform(-bound, bound))
        self.params[name + ".bias"] = Param((features_out,), uniform(-0.1, 0.1))


def resnet(depth):
    """torchvision.models.resnet18/34/50's state dict layout."""
    blocks, bottleneck = {18: ([2, 2, 2, 2], False), 34: ([3, 4, 6, 3], False), 50: ([3, 4, 6, 3], True)}[depth]
    expansion = 4 if bottleneck else 1
    # The last BN of each residual branch is kept small, so that the sum of a deep stack
    # of residuals stays of order one.
    last_gamma = (0.15, 0.45)
    t = Layout()
    t.module("")
    t.conv("conv1", 3, 64, 7)
    t.batch_norm("bn1", 64)
    t.module("relu")
    t.module("maxpool")
    channels_in = 64
    for stage, (width, count) in enumerate(zip([64, 128, 256, 512], blocks), start=1):
        t.module(f"layer{stage}")
        for i in range(count):
            stride = 2 if stage > 1 and i == 0 else 1
            block = f"layer{stage}.{i}"
            channels_out = width * expansion
            t.module(block)
            if bottleneck:
                t.conv(block + ".conv1", channels_in, width, 1)
                t.batch_norm(block + ".bn1", width)
                t.conv(block + ".conv2", width, width, 3)
                t.batch_norm(block + ".bn2", width)
                t.conv(block + ".conv3", width, channels_out, 1)
                t.batch_norm(block + ".bn3", channels_out, last_gamma)
                t.module(block + ".relu")
            else:
                t.conv(block + ".conv1", channels_in, width, 3)
                t.batch_norm(block + ".bn1", width)
                t.module(block + ".relu")
                t.conv(block + ".conv2", width, width, 3)
                t.batch_norm(block + ".bn2", width, last_gamma)
            if stride != 1 or channels_in != channels_out:
                t.module(block + ".downsample")
                t.conv(block + ".downsample.0", channels_in, channels_out, 1)
                t.batch_norm(block + ".downsample.1", channels_out)
            channels_in = channels_out
    t.module("avgpool")
    t.linear("fc", 512 * expansion, 1000)
    return t


def vgg16_bn():
    """torchvision.models.vgg16_bn's state dict layout."""
    config = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
    t = Layout()
    t.module("")
    t.module("features")
    index, channels_in = 0, 3
    for entry in config:
        if entry == "M":
            t.module(f"features.{index}")
            index += 1
            continue
        t.conv(f"features.{index}", channels_in, entry, 3, bias=True)
        t.batch_norm(f"features.{index + 1}", entry)
        t.module(f"features.{index + 2}")
        index += 3
        channels_in = entry
    t.module("avgpool")
    t.module("classifier")
    t.linear("classifier.0", 512 * 7 * 7, 4096)
    t.module("classifier.1")
    t.module("classifier.2")
    t.linear("classifier.3", 4096, 4096)
    t.module("classifier.4")
    t.module("classifier.5")
    t.linear("classifier.6", 4096, 1000)
    return t


MODELS = [
    ("resnet18-standin.pth", lambda: resnet(18), 18),
    ("resnet34-standin.pth", lambda: resnet(34), 34),
    ("resnet50-standin.pth", lambda: resnet(50), 50),
    ("vgg16_bn-standin.pth", vgg16_bn, 16),
]


def missing_tensor():
    """resnet18 less one BatchNorm statistic: a loader must refuse it."""
    t = resnet(18)
    del t.params["layer3.1.bn2.running_mean"]
    return t


def extra_tensor():
    """resnet18 with a tensor that has no place in it (a third block's conv)."""
    t = resnet(18)
    t.conv("layer4.2.conv1", 512, 512, 3)
    return t


def vgg_extra_tensor():
    """vgg16_bn's features with a 14th conv after the last, and no classifier: the dense
    layers go unused by design, a feature layer may not."""
    t = vgg16_bn()
    for key in [k for k in t.params if k.startswith("classifier.")]:
        del t.params[key]
    t.conv("features.44", 512, 512, 3, bias=True)
    return t


# Damaged files for the tests of the loader's refusals.
VARIANTS = [
    ("resnet18-standin-missing.pth", missing_tensor, 18),
    ("resnet18-standin-extra.pth", extra_tensor, 18),
    ("vgg16_bn-standin-extra.pth", vgg_extra_tensor, 16),
]


def aligned_info(archive, name, size):
    """A stored zip entry whose data starts at a multiple of 64 bytes, as torch.save aligns
    its records (the padding is an extra field, of id "FB" as torch's)."""
    info = zipfile.ZipInfo(name)  # dated 1980-01-01: the same bytes on every run
    info.compress_type = zipfile.ZIP_STORED
    info.file_size = size
    header_end = archive.fp.tell() + 30 + len(name.encode()) + 4
    padding = -header_end % 64
    info.extra = b"FB" + struct.pack("<H", padding) + b"Z" * padding
    return info


def write_entry(archive, name, data):
    with archive.open(aligned_info(archive, name, len(data)), "w") as entry:
        entry.write(data)


def write_checkpoint(path, layout, seed):
    rng = np.random.RandomState(seed)
    state = collections.OrderedDict()
    storages = []
    for i, (key, param) in enumerate(layout.params.items()):
        storage = Storage(str(i), param.dtype, param.numel)
        storages.append((storage, param))
        state[key] = TensorRef(storage, param.shape)
    state._metadata = layout.metadata

    pickled = io.BytesIO()
    CheckpointPickler(pickled, protocol=2).dump(state)

    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        write_entry(archive, "archive/data.pkl", pickled.getvalue())
        write_entry(archive, "archive/byteorder", b"little")
        for storage, param in storages:
            itemsize = np.dtype(param.dtype).itemsize
            info = aligned_info(archive, f"archive/data/{storage.key}", param.numel * itemsize)
            with archive.open(info, "w") as entry:
                for start in range(0, param.numel, CHUNK):
                    n = min(CHUNK, param.numel - start)
                    values = np.asarray(param.draw(rng, n)).astype(np.dtype(param.dtype).newbyteorder("<"))
                    entry.write(values.tobytes())
        write_entry(archive, "archive/version", b"3\n")
    os.replace(tmp, path)


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} OUT_DIR")
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    # Register the stubs only while pickling, so nothing else mistakes them for torch.
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = TORCH, TORCH_UTILS
    try:
        for file_name, layout, seed in MODELS + VARIANTS:
            write_checkpoint(os.path.join(out, file_name), layout(), seed)
            print(f"wrote {os.path.join(out, file_name)}")
        with open(os.path.join(out, "MANIFEST"), "w") as f:
            f.writelines(name + "\n" for name, _, _ in MODELS + VARIANTS)
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


if __name__ == "__main__":
    main()
