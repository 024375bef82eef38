#!/usr/bin/env bash
# Writes the stand-ins for torchvision's ImageNet weight files into OUT_DIR (see
# scripts/torchvision-standins.py): resnet18/34/50 and vgg16_bn state dicts in torchvision's
# exact layout, seeded random values, torch.save's format. The tests of torchvision weights
# (crates/naevus-engine/tests/torchvision_weights.rs, crates/naevus-cli/tests/
# torchvision_train.rs) load them; .ci/run makes them before the tests.
#
#   scripts/torchvision-standins.sh OUT_DIR
#
# Needs python3 with venv and pip (numpy from PyPI, into a throwaway venv under target/,
# kept for the next run). Does nothing when OUT_DIR already holds the files of this
# version of the script. About 940 MB of files (vgg16_bn's dense layers are 530 MB of them).
set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 OUT_DIR" >&2
    exit 2
fi
out=$1
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
script="$here/torchvision-standins.py"
version=$(sha256sum "$script" | cut -c1-16)

up_to_date() {
    [ "$(cat "$out/.standins-version" 2>/dev/null)" = "$version" ] && [ -s "$out/MANIFEST" ] || return 1
    local f
    while read -r f; do
        [ -f "$out/$f" ] || return 1
    done < "$out/MANIFEST"
}

up_to_date && exit 0

mkdir -p "$out"
# One writer at a time (test processes may ask at once); the others find the files made.
exec 9>"$out/.lock"
flock 9
up_to_date && exit 0

venv="$root/target/torchvision-standins-venv"
if ! "$venv/bin/python" -c "import numpy" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "numpy>=1.21"
fi

rm -f "$out/.standins-version"
"$venv/bin/python" "$script" "$out"
echo "$version" > "$out/.standins-version"
