#!/usr/bin/env bash
# naevus against PyTorch eager on this machine, in one run: builds naevus, runs `naevus bench`
# (models at 224 px, data path on JPEGs re-encoded at 1024 and 2048 px, loader, latency), then
# the same workloads in a throwaway virtual environment with PyTorch, torchvision and Pillow
# from PyPI, and prints the naevus/PyTorch ratio of every row.
#
#   bench/pytorch_reference.sh [IMAGES_DIR] [extra naevus bench flags...]
#
# IMAGES_DIR: JPEGs to re-encode (default: ../shared/data/isic2017/images, else data/sample/images).
# BENCH_VENV: where the virtual environment lives (default /tmp/naevus-bench-venv; reused).
# BENCH_STEPS, BENCH_WARMUP: timed and untimed steps per model row, both sides (default 3, 1).
# BENCH_LAYERS=0: skip the layer map (each distinct layer of ResNet-18 and EfficientNet-Lite0,
#   forward and both gradients through flex's kernels, beside PyTorch's time for the same pass).
# NAEVUS_FEATURES: cargo features to build with. On a GPU (PyPI's torch wheel has CUDA):
#   NAEVUS_FEATURES=vulkan BENCH_WARMUP=2 BENCH_STEPS=6 bench/pytorch_reference.sh IMAGES --devices vulkan
# (rows on vulkan are compared with PyTorch on CUDA; add --precision f16 for half precision).
set -euo pipefail
cd "$(dirname "$0")/.."

images=${1:-../shared/data/isic2017/images}
[ -d "$images" ] || images=data/sample/images
shift || true
venv=${BENCH_VENV:-/tmp/naevus-bench-venv}
steps=${BENCH_STEPS:-3}
warmup=${BENCH_WARMUP:-1}
work=${TMPDIR:-/tmp}

if [ ! -x "$venv/bin/python" ]; then
    echo "== creating $venv with torch 2.9.0, torchvision and Pillow from PyPI (large download, once)"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet torch==2.9.0 torchvision pillow
fi

echo "== building naevus"
cargo build --release --locked ${NAEVUS_FEATURES:+--features "$NAEVUS_FEATURES"}

echo "== a cache of the bundled sample at 256 px for the loader row"
cache="$work/naevus-bench-cache"
./target/release/naevus prepare --source isic2017 --csv data/sample/labels.csv --images data/sample/images \
    --size 256 --out "$cache" > /dev/null

echo "== naevus bench"
./target/release/naevus bench --images "$images" --cache "$cache" --steps "$steps" --warmup "$warmup" --out "$work/naevus-bench.json" "$@"

echo "== the same in PyTorch"
"$venv/bin/python" bench/pytorch_reference.py --naevus "$work/naevus-bench.json" --images "$work/naevus-bench-1024" \
    --steps "$steps" --warmup "$warmup"

if [ "${BENCH_LAYERS:-1}" = 1 ] && [ -z "${NAEVUS_FEATURES:-}" ]; then
    echo "== the layer map (flex kernels), then the same passes in PyTorch"
    ./target/release/naevus bench --layers --models resnet18,efficientnet-lite0 --steps "$steps" --warmup "$warmup" \
        --out "$work/naevus-layers.json"
    "$venv/bin/python" bench/pytorch_reference.py --layers "$work/naevus-layers.json"
fi
