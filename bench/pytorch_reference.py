"""The workloads of `naevus bench`, in PyTorch eager on the same machine, and the
naevus / PyTorch ratio of each row.

Run through bench/pytorch_reference.sh, which makes the throwaway virtual environment and
runs `naevus bench` first. Every model row runs in a fresh process so that its peak resident
memory (ru_maxrss) is its own. naevus rows on a GPU backend (vulkan) are compared with PyTorch
on CUDA in the same floating-point type, peak memory being what the allocator reserved.

With --layers, times instead each convolution and batch-norm pass of a `naevus bench --layers`
map on the CPU, to tell which layers, and how much of the step outside them, trail PyTorch.
"""

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


# ---------------------------------------------------------------- models (same shapes as naevus)


class MbConv(nn.Module):
    """EfficientNet-Lite block: 1x1 expand, depthwise kxk, 1x1 project, ReLU6, no SE."""

    def __init__(self, cin, cout, kernel, stride, expand):
        super().__init__()
        hidden = cin * expand
        layers = []
        if expand != 1:
            layers += [nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden, eps=1e-3), nn.ReLU6()]
        layers += [
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden, eps=1e-3),
            nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout, eps=1e-3),
        ]
        self.body = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.body(x)
        return x + y if self.residual else y


def efficientnet_lite0(outputs=1):
    # repeats, kernel, stride, expand, in, out (the B0 table; Lite0 scales nothing)
    table = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
             (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
    layers = [nn.Conv2d(3, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32, eps=1e-3), nn.ReLU6()]
    for repeats, kernel, stride, expand, cin, cout in table:
        for r in range(repeats):
            layers.append(MbConv(cin if r == 0 else cout, cout, kernel, stride if r == 0 else 1, expand))
    layers += [nn.Conv2d(320, 1280, 1, bias=False), nn.BatchNorm2d(1280, eps=1e-3), nn.ReLU6(),
               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(1280, outputs)]
    return nn.Sequential(*layers)


class AttentionBlock(nn.Module):
    """Grid attention of Yan et al. 2019 (softmax normalisation)."""

    def __init__(self, local_channels, global_channels, inner):
        super().__init__()
        self.w_l = nn.Conv2d(local_channels, inner, 1, bias=False)
        self.w_g = nn.Conv2d(global_channels, inner, 1, bias=False)
        self.phi = nn.Conv2d(inner, 1, 1)

    def forward(self, local, global_map):
        n, c, h, w = local.shape
        g = F.interpolate(self.w_g(global_map), size=(h, w), mode="bilinear", align_corners=False)
        scores = self.phi(F.relu(self.w_l(local) + g)).view(n, 1, -1)
        attention = F.softmax(scores, dim=2)
        return torch.bmm(local.view(n, c, -1), attention.transpose(1, 2)).view(n, c)


class AttnVgg16Bn(nn.Module):
    def __init__(self, outputs=1):
        super().__init__()
        cfg = [[64, 64], [128, 128], [256, 256, 256], [512, 512, 512], [512, 512, 512]]
        self.blocks = nn.ModuleList()
        cin = 3
        for widths in cfg:
            layers = []
            for width in widths:
                layers += [nn.Conv2d(cin, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU()]
                cin = width
            self.blocks.append(nn.Sequential(*layers))
        self.attention1 = AttentionBlock(256, 512, 256)
        self.attention2 = AttentionBlock(512, 512, 256)
        self.fc = nn.Linear(512 + 256 + 512, outputs)

    def forward(self, x):
        pools = []
        for block in self.blocks:
            x = F.max_pool2d(block(x), 2)
            pools.append(x)
        pool3, pool4, pool5 = pools[2], pools[3], pools[4]
        g = pool5.mean(dim=(2, 3))
        return self.fc(torch.cat([g, self.attention1(pool3, pool5), self.attention2(pool4, pool5)], dim=1))


def build(name):
    import torchvision
    if name == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=1)
    if name == "efficientnet-lite0":
        return efficientnet_lite0()
    if name == "attn-vgg16-bn":
        return AttnVgg16Bn()
    if name == "small-cnn":
        return nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(64, 128, 3, padding=1), nn.BatchNorm2d(128), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 256), nn.ReLU(), nn.Dropout(0.5), nn.Linear(256, 1))
    raise SystemExit(f"no PyTorch twin for model {name}")


# ---------------------------------------------------------------- one row per process


def peak_mib(device):
    if device.type == "cuda":
        return torch.cuda.max_memory_reserved() / (1024.0 * 1024.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}


def train_row(name, size, batch, steps, warmup, device, dtype):
    model = build(name).train().to(device, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    images = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    labels = (torch.arange(batch, device=device) % 2).to(dtype).unsqueeze(1)

    def step():
        optimizer.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()

    for _ in range(warmup):
        step()
    started = time.perf_counter()
    for _ in range(steps):
        step()
    return {"workload": f"train {name} {size}px batch {batch}", "images_per_second": steps * batch / (time.perf_counter() - started),
            "peak_mib": peak_mib(device)}


def infer_row(name, size, batch, steps, warmup, device, dtype):
    model = build(name).eval().to(device, dtype)
    images = torch.randn(batch, 3, size, size, device=device, dtype=dtype)
    with torch.no_grad():
        for _ in range(warmup):
            torch.sigmoid(model(images)).tolist()
        started = time.perf_counter()
        for _ in range(steps):
            torch.sigmoid(model(images)).tolist()
    return {"workload": f"infer {name} {size}px batch {batch}", "images_per_second": steps * batch / (time.perf_counter() - started),
            "peak_mib": peak_mib(device)}


def preprocess(path, size):
    """PIL decode, torchvision center crop to the short side and antialiased resize."""
    from PIL import Image
    import torchvision.transforms.functional as TF
    image = Image.open(path).convert("RGB")
    side = min(image.size)
    image = TF.center_crop(image, [side, side])
    return TF.pil_to_tensor(TF.resize(image, [size, size], antialias=True))


def latency_row(name, size, images, device, dtype):
    import torchvision.transforms.functional as TF
    model = build(name).eval().to(device, dtype)
    files = sorted(os.path.join(images, f) for f in os.listdir(images) if f.lower().endswith((".jpg", ".jpeg")))[:21]
    mean, std = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
    millis = []
    with torch.no_grad():
        for path in files:
            started = time.perf_counter()
            x = TF.normalize(preprocess(path, size).float() / 255.0, mean, std).unsqueeze(0).to(device, dtype)
            torch.sigmoid(model(x)).item()
            millis.append((time.perf_counter() - started) * 1000.0)
    millis = sorted(millis[1:])
    q = lambda p: millis[round((len(millis) - 1) * p)]
    return {"workload": f"latency 1024px JPEG -> probability {name} {size}px", "images_per_second": 1000.0 / q(0.5),
            "p50_ms": q(0.5), "p95_ms": q(0.95)}


def _preprocess_256(path):
    torch.set_num_threads(1)
    return preprocess(path, 256).shape[0]


def data_rows(folder, side):
    files = sorted(os.path.join(folder, f) for f in os.listdir(folder) if f.lower().endswith(".jpg"))
    rows = []
    started = time.perf_counter()
    for path in files:
        preprocess(path, 256)
    rate = len(files) / (time.perf_counter() - started)
    rows.append({"workload": f"decode+crop+resize {side}x{side * 3 // 4} JPEG -> 256px, 1 thread", "images_per_second": rate})
    with multiprocessing.Pool(os.cpu_count()) as pool:
        pool.map(_preprocess_256, files[:2])  # start the workers
        started = time.perf_counter()
        pool.map(_preprocess_256, files)
        rate = len(files) / (time.perf_counter() - started)
    rows.append({"workload": f"decode+crop+resize {side}x{side * 3 // 4} JPEG -> 256px, all threads", "images_per_second": rate})
    return rows


# ---------------------------------------------------------------- layer map (`naevus bench --layers`)


def elapsed_ms(call):
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000.0


def median_ms(call, steps):
    call()  # warm-up: first-call allocations and kernel selection
    return statistics.median(elapsed_ms(call) for _ in range(steps))


def known(values):
    return [v for v in values if v is not None]


def layer_calls(layer):
    """The forward, input-gradient and weight-gradient calls of one map entry, on random inputs."""
    x = torch.randn(layer["input"])
    if layer["kind"] == "batch_norm":
        gamma, beta = torch.randn(x.shape[1]), torch.randn(x.shape[1])
        forward = lambda: torch.ops.aten.native_batch_norm(x, gamma, beta, None, None, True, 0.1, 1e-5)
        _, mean, invstd = forward()
        grad = torch.randn_like(x)
        backward = lambda: torch.ops.aten.native_batch_norm_backward(grad, x, gamma, None, None, mean, invstd, True, 1e-5,
                                                                     [True, True, True])
        return forward, backward, None  # the backward gives gamma's and beta's gradients too
    (top, bottom), (left, right) = layer["padding"]
    x = F.pad(x, (left, right, top, bottom))  # conv2d's own padding is symmetric only
    w, stride, groups = torch.randn(layer["weight"]), layer["stride"], layer["groups"]
    forward = lambda: F.conv2d(x, w, stride=stride, groups=groups)
    grad = torch.randn_like(forward())
    backward = lambda mask: torch.ops.aten.convolution_backward(grad, x, w, None, stride, [0, 0], [1, 1], False, [0, 0],
                                                                groups, mask)
    return forward, lambda: backward([True, False, False]), lambda: backward([False, True, False])


def gemm_peak_gflops():
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    torch.mm(a, b)
    best = min(elapsed_ms(lambda: torch.mm(a, b)) for _ in range(5))
    return 2.0 * 2048**3 / (best / 1000.0) / 1e9


def triple(values, spec):
    return " / ".join("-" if v is None else format(v, spec) for v in values)


def layer_row(layer, steps, peak):
    """One table row, and naevus's and PyTorch's ms summed over the passes; PyTorch times only those naevus timed."""
    ours = [layer["forward_ms"], layer["input_grad_ms"], layer["weight_grad_ms"]]
    theirs = [None if ms is None else median_ms(call, steps) for ms, call in zip(ours, layer_calls(layer))]
    ratio = sum(known(theirs)) / sum(known(ours))
    rates, share = "-", "-"
    if layer["kind"] != "batch_norm":
        gflops = [None if ms is None else layer["gflop"] / (ms / 1000.0) for ms in ours]
        rates, share = triple(gflops, ".1f"), f"{max(known(gflops)) / peak:.0%}"
    row = (f"| {layer['layer']} | {layer['count']} | {triple(ours, '.2f')} | {triple(theirs, '.2f')} | {ratio:.2f} | "
           f"{rates} | {share} |")
    return row, sum(known(ours)), sum(known(theirs))


@torch.no_grad()
def layer_map(path):
    with open(path) as f:
        data = json.load(f)
    torch.set_num_threads(data["threads"])
    print(f"\nnaevus layer map vs PyTorch {torch.__version__}, {data['threads']} threads, f32 GEMM peak: "
          f"naevus {data['gemm_peak_gflops']:.1f} GFLOP/s, PyTorch {gemm_peak_gflops():.1f} GFLOP/s")
    step_ms = {m["model"]: m["train_step_ms"] for m in data["models"]}
    for model in dict.fromkeys(layer["model"] for layer in data["layers"]):
        print(f"\n{model}\n")
        print("| layer | count | naevus fwd / dx / dw ms | PyTorch fwd / dx / dw ms | PyTorch / naevus time "
              "| naevus GFLOP/s fwd / dx / dw | best pass / naevus GEMM peak |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        ours = theirs = 0.0
        for layer in (layer for layer in data["layers"] if layer["model"] == model):
            row, ms, torch_ms = layer_row(layer, data["steps"], data["gemm_peak_gflops"])
            print(row, flush=True)
            ours, theirs = ours + layer["count"] * ms, theirs + layer["count"] * torch_ms
        print(f"\nlayers, count x (fwd + dx + dw): naevus {ours:.1f} ms, PyTorch {theirs:.1f} ms, ratio {theirs / ours:.2f}")
        if model in step_ms:
            rest = step_ms[model] - ours
            print(f"rest of the step (elementwise ops, pooling, head, loss, optimizer): {rest:.1f} ms "
                  f"of naevus's {step_ms[model]:.1f} ms train step ({rest / step_ms[model]:.0%})")


# ---------------------------------------------------------------- driver


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--naevus", help="JSON rows written by `naevus bench --out` (required without --layers)")
    parser.add_argument("--layers", metavar="FILE", help="layer map written by `naevus bench --layers`: time its layers only")
    parser.add_argument("--images", help="folder of JPEGs for the latency rows")
    parser.add_argument("--row", nargs="+", help=argparse.SUPPRESS)  # internal: one row in this process
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    if not args.naevus and not args.layers:
        parser.error("--naevus is required unless --layers is given")
    torch.set_num_threads(os.cpu_count())
    # naevus's f32 is IEEE f32 throughout; PyTorch's default would run convolutions in TF32.
    if hasattr(torch.backends.cudnn, "conv"):  # the settings' names from PyTorch 2.9 on
        torch.backends.cudnn.conv.fp32_precision = "ieee"
        torch.backends.cuda.matmul.fp32_precision = "ieee"
    else:
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    if args.layers:
        layer_map(args.layers)
        return
    if args.row:
        kind, name, size, batch = args.row[0], args.row[1], int(args.row[2]), int(args.row[3])
        device, dtype = torch.device(args.row[4]), DTYPES[args.row[5]]
        row = {"train": lambda: train_row(name, size, batch, args.steps, args.warmup, device, dtype),
               "infer": lambda: infer_row(name, size, batch, args.steps, args.warmup, device, dtype),
               "latency": lambda: latency_row(name, size, args.images, device, dtype)}[kind]()
        print(json.dumps(row))
        return

    with open(args.naevus) as f:
        naevus_rows = json.load(f)
    torch_rows = {}  # (workload, naevus device) -> PyTorch row
    for row in naevus_rows:
        words = row["workload"].split()
        key = (row["workload"], row["device"])
        if row["device"] == "cpu" and words[0] == "decode+crop+resize":
            side = int(words[1].split("x")[0])
            folder = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"naevus-bench-{side}")
            if os.path.isdir(folder) and key not in torch_rows:
                for r in data_rows(folder, side):
                    torch_rows[(r["workload"], "cpu")] = r
            continue
        if row["device"] == "cpu":
            continue  # the cache loader has no PyTorch twin here
        # "flex", "tch": the CPU; "vulkan", "vulkan f16": a GPU, which PyTorch reaches through CUDA.
        backend, precision = (row["device"].split() + ["f32"])[:2]
        torch_device = "cpu" if backend in ("flex", "tch") else "cuda"
        if words[0] in ("train", "infer"):
            request = [words[0], words[1], words[2].removesuffix("px"), words[4], torch_device, precision]
        elif words[0] == "latency":
            if not args.images:
                continue
            request = ["latency", words[5], words[6].removesuffix("px"), "1", torch_device, precision]
        else:
            continue
        command = [sys.executable, __file__, "--naevus", args.naevus, "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--row", *request]
        if args.images:
            command += ["--images", args.images]
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        torch_rows[key] = result
        print(f"  pytorch {result['workload']} ({torch_device} {precision}): {result['images_per_second']:.1f} images/s", file=sys.stderr)

    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ""
    print(f"\nnaevus vs PyTorch {torch.__version__} eager, {os.cpu_count()} threads{gpu}")
    print("| workload | naevus device | naevus images/s | PyTorch images/s | ratio | naevus peak MiB | PyTorch peak MiB | memory ratio |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for row in naevus_rows:
        ref = torch_rows.get((row["workload"], row["device"]))
        if ref is None:
            continue
        mem = lambda r: r.get("peak_mib")
        memory = f"{mem(row):.0f} | {mem(ref):.0f} | {mem(row) / mem(ref):.2f}" if mem(row) and mem(ref) else "- | - | -"
        print(f"| {row['workload']} | {row['device']} | {row['images_per_second']:.1f} | {ref['images_per_second']:.1f} | "
              f"{row['images_per_second'] / ref['images_per_second']:.2f} | {memory} |")


if __name__ == "__main__":
    main()
