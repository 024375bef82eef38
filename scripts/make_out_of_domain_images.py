"""Images that are not dermoscopy, to test and measure naevus's out-of-domain guard.

One folder per kind under --out:
  text          rendered text on white paper (an invoice, a letter)
  flat          one colour, skin tones among them
  gradient      linear and radial blends of two colours
  ruler         a ruler with ticks and numbers filling most of the frame
  greyscale     grey copies of the dermoscopy images given with --dermoscopy
  tinted        the same images under a strong colour cast
  black-corner  the same images with all but a small disc blacked out
  natural       photographs that ship with scikit-image (only with --natural; not all are
                CC0, so they are for measuring, never for committing)

Every image except `natural` is made here, from nothing or from CC0 dermoscopy, and may be
committed. Usage:

  python scripts/make_out_of_domain_images.py --out DIR --per-kind 30 \
      --dermoscopy data/sample/images --ids ISIC_0001769,... [--natural]
"""

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WORDS = (
    "invoice total amount due date patient clinic referral payment account number item quantity "
    "price tax subtotal thank you please remit within days order reference signature address"
).split()


def text_image(rng, side):
    paper = tuple(rng.randint(235, 255) for _ in range(3))
    image = Image.new("RGB", (side, side), paper)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=rng.choice([10, 12, 14, 18]))
    y = rng.randint(2, 10)
    while y < side - 8:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
        if rng.random() < 0.3:
            line += f" {rng.randint(1, 999)}.{rng.randint(0, 99):02d}"
        draw.text((rng.randint(2, 12), y), line, fill=(rng.randint(0, 40),) * 3, font=font)
        y += font.size + rng.randint(2, 8)
    return image


def flat_image(rng, side):
    if rng.random() < 0.5:
        # Skin tones: light to dark, reddish.
        base = rng.uniform(0.35, 0.95)
        colour = (int(255 * base), int(200 * base), int(170 * base))
    else:
        colour = tuple(rng.randint(0, 255) for _ in range(3))
    return Image.new("RGB", (side, side), colour)


def gradient_image(rng, side):
    a = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    b = np.array([rng.randint(0, 255) for _ in range(3)], dtype=np.float32)
    y, x = np.mgrid[0:side, 0:side].astype(np.float32) / (side - 1)
    if rng.random() < 0.5:
        angle = rng.uniform(0, np.pi)
        t = (np.cos(angle) * x + np.sin(angle) * y)
        t = (t - t.min()) / max(t.max() - t.min(), 1e-6)
    else:
        cx, cy = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8)
        t = np.clip(np.hypot(x - cx, y - cy) / 0.8, 0, 1)
    pixels = a + (b - a) * t[..., None]
    return Image.fromarray(pixels.astype(np.uint8))


def ruler_image(rng, side):
    background = (rng.randint(200, 255), rng.randint(190, 245), rng.randint(160, 220))
    image = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=10)
    step = rng.choice([4, 5, 6, 8])
    for i, x in enumerate(range(2, side, step)):
        length = side // 2 if i % 10 == 0 else side // 4 if i % 5 == 0 else side // 8
        draw.line([(x, 0), (x, length)], fill=(0, 0, 0), width=1)
        if i % 10 == 0:
            draw.text((x + 1, length), str(i // 10), fill=(0, 0, 0), font=font)
    # A strip of skin at the bottom, as when a ruler lies beside a lesion.
    skin = (rng.randint(170, 230), rng.randint(120, 170), rng.randint(100, 140))
    draw.rectangle([0, int(side * 0.8), side, side], fill=skin)
    return image.rotate(rng.choice([0, 90, 180, 270]))


def greyscale(image, rng):
    return image.convert("L").convert("RGB")


def tinted(image, rng):
    pixels = np.asarray(image, dtype=np.float32)
    cast = np.array(rng.choice([(0.2, 1.0, 0.2), (0.2, 0.3, 1.0), (1.0, 1.0, 0.1), (0.1, 0.9, 0.9)]), dtype=np.float32)
    return Image.fromarray(np.clip(pixels * cast * 1.2, 0, 255).astype(np.uint8))


def black_corner(image, rng):
    side = image.size[0]
    mask = Image.new("L", image.size, 0)
    radius = side * rng.uniform(0.12, 0.2)
    c = side / 2
    ImageDraw.Draw(mask).ellipse([c - radius, c - radius, c + radius, c + radius], fill=255)
    return Image.composite(image, Image.new("RGB", image.size, (0, 0, 0)), mask)


def natural_images(rng, side, count):
    from skimage import data

    names = ["astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "colorwheel", "cat"]
    sources = [getattr(data, n)() for n in names if hasattr(data, n)]
    for k in range(count):
        pixels = sources[k % len(sources)]
        if pixels.ndim == 2:
            pixels = np.stack([pixels] * 3, axis=-1)
        pixels = pixels[..., :3]
        h, w = pixels.shape[:2]
        crop = int(min(h, w) * rng.uniform(0.5, 1.0))
        top, left = rng.randint(0, h - crop), rng.randint(0, w - crop)
        yield Image.fromarray(pixels[top : top + crop, left : left + crop].astype(np.uint8)).resize((side, side))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-kind", type=int, default=30)
    parser.add_argument("--side", type=int, default=256)
    parser.add_argument("--dermoscopy", type=Path, help="folder of CC0 dermoscopy JPEGs to copy greyscale, tinted and blacked out")
    parser.add_argument("--ids", help="comma-separated image ids of --dermoscopy to use (default: the first --per-kind)")
    parser.add_argument("--natural", action="store_true", help="also scikit-image's photographs (not all CC0: never commit them)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    made = {"text": text_image, "flat": flat_image, "gradient": gradient_image, "ruler": ruler_image}
    for kind, make in made.items():
        folder = args.out / kind
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(args.per_kind):
            make(rng, args.side).save(folder / f"{kind}-{k:02d}.png")

    if args.dermoscopy:
        files = sorted(args.dermoscopy.glob("*.jpg"))
        if args.ids:
            wanted = set(args.ids.split(","))
            files = [f for f in files if f.stem in wanted]
        files = files[: args.per_kind]
        for kind, change in {"greyscale": greyscale, "tinted": tinted, "black-corner": black_corner}.items():
            folder = args.out / kind
            folder.mkdir(parents=True, exist_ok=True)
            for path in files:
                image = Image.open(path).convert("RGB")
                change(image, rng).save(folder / f"{path.stem}-{kind}.jpg", quality=90)

    if args.natural:
        folder = args.out / "natural"
        folder.mkdir(parents=True, exist_ok=True)
        for k, image in enumerate(natural_images(rng, args.side, args.per_kind)):
            image.save(folder / f"natural-{k:02d}.jpg", quality=90)


if __name__ == "__main__":
    main()
