#!/usr/bin/env python3
"""Build the bundled naevus sample (data/sample) from the ISIC 2017 CC0 images.

One-off, reproducible: needs only Pillow (tested with Pillow 12).

    python3 -m venv /tmp/venv-sample && /tmp/venv-sample/bin/pip install pillow
    /tmp/venv-sample/bin/python data/sample/make_sample.py \
        --src /work/shared/data/isic2017 --dst data/sample --size 128 --quality 93

Every val image is kept. Train images are all kept unless --max-train N is
given; then every train melanoma is kept and the remaining places are filled
with non-melanoma train images drawn at random (random.Random(--seed)).
labels.csv keeps the source columns, row order and line endings, restricted to
the chosen images.
"""
import argparse
import random
from pathlib import Path

from PIL import Image


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--src", type=Path, default=Path("/work/shared/data/isic2017"))
    ap.add_argument("--dst", type=Path, default=Path(__file__).resolve().parent)
    ap.add_argument("--size", type=int, default=128, help="output side length in px")
    ap.add_argument("--quality", type=int, default=93, help="JPEG quality")
    ap.add_argument("--max-train", type=int, default=None, help="cap on train images")
    ap.add_argument("--seed", type=int, default=2017)
    args = ap.parse_args()

    raw = (args.src / "labels.csv").read_bytes()
    newline = b"\r\n" if b"\r\n" in raw else b"\n"
    lines = raw.decode("utf-8").splitlines()
    header, rows = lines[0], [line for line in lines[1:] if line]
    cols = header.split(",")
    i_id, i_split, i_mel = cols.index("image_id"), cols.index("split"), cols.index("melanoma")
    parsed = [line.split(",") for line in rows]

    keep = {r[i_id] for r in parsed if r[i_split] == "val"}
    train = [r for r in parsed if r[i_split] == "train"]
    if args.max_train is None or args.max_train >= len(train):
        keep.update(r[i_id] for r in train)
    else:
        mel = [r[i_id] for r in train if r[i_mel] == "1"]
        other = [r[i_id] for r in train if r[i_mel] != "1"]
        if args.max_train < len(mel):
            raise SystemExit(f"--max-train {args.max_train} < {len(mel)} train melanomas")
        keep.update(mel)
        keep.update(random.Random(args.seed).sample(other, args.max_train - len(mel)))

    out_images = args.dst / "images"
    out_images.mkdir(parents=True, exist_ok=True)
    for old in out_images.glob("*.jpg"):
        old.unlink()
    kept_rows = []
    for line, r in zip(rows, parsed):
        if r[i_id] not in keep:
            continue
        kept_rows.append(line)
        with Image.open(args.src / "images" / f"{r[i_id]}.jpg") as im:
            small = im.convert("RGB").resize((args.size, args.size), Image.Resampling.LANCZOS)
        # Baseline (non-progressive) JPEG, optimised Huffman tables, no metadata.
        small.save(out_images / f"{r[i_id]}.jpg", "JPEG", quality=args.quality, optimize=True)

    text = newline.join(line.encode("utf-8") for line in [header, *kept_rows]) + newline
    (args.dst / "labels.csv").write_bytes(text)
    print(f"wrote {len(kept_rows)} images ({args.size}px, quality {args.quality}) to {args.dst}")


if __name__ == "__main__":
    main()
