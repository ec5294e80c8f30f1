"""Draw the bundled Fashion-style sample images (run: `.venv/bin/python -m scripts.make_samples`).

Why drawn and not taken from Fashion-MNIST: the app must show inputs the network has
never seen, and the data set's own files belong in the data set. Each garment is drawn
as white-ish polygons on black at 10x scale, then averaged down to 28x28 (so edges get
the soft grey of the real data set) and enlarged 4x with nearest-neighbour to 112x112,
which the model's 28x28 resize turns back into the same picture.

The "product photos" are the other way round, as a shop would shoot them: a dark
garment on a plain white background, larger, in colour; they exercise the Zalando
photo-to-Fashion-MNIST pipeline in `app.networks.fashion`.

The script is deterministic; its outputs are committed under assets/samples/.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from PIL import Image, ImageDraw, ImageFilter

from app.networks.samples import SAMPLES_DIR

OUT = SAMPLES_DIR
SCALE = 10  # drawing resolution per Fashion-MNIST pixel
Points = Sequence[tuple[float, float]]
Colour = int | tuple[int, int, int]


class Canvas:
    """A 28x28-unit drawing surface at SCALE x resolution (coordinates in Fashion-MNIST pixels)."""

    def __init__(self, units: int = 28, background: int | tuple[int, int, int] = 0, mode: str = "L") -> None:
        self.image = Image.new(mode, (units * SCALE, units * SCALE), background)
        self.draw = ImageDraw.Draw(self.image)

    def poly(self, points: Points, fill: Colour) -> None:
        self.draw.polygon([(x * SCALE, y * SCALE) for x, y in points], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill: Colour) -> None:
        self.draw.rectangle((x0 * SCALE, y0 * SCALE, x1 * SCALE - 1, y1 * SCALE - 1), fill=fill)

    def ellipse(self, x0: float, y0: float, x1: float, y1: float, fill: Colour) -> None:
        self.draw.ellipse((x0 * SCALE, y0 * SCALE, x1 * SCALE, y1 * SCALE), fill=fill)

    def line(self, points: Points, fill: Colour, width: float) -> None:
        self.draw.line([(x * SCALE, y * SCALE) for x, y in points], fill=fill, width=round(width * SCALE))

    def arc(self, box: tuple[float, float, float, float], start: float, end: float, fill: Colour, width: float) -> None:
        self.draw.arc([v * SCALE for v in box], start, end, fill=fill, width=round(width * SCALE))


# --------------------------------------------------------------- Fashion-MNIST-style drawings (white on black)


def tshirt(c: Canvas) -> None:
    body = [(8.5, 2), (11.5, 3), (16.5, 3), (19.5, 2), (25, 4), (27.5, 9.5), (22, 11), (22, 26), (6, 26), (6, 11),
            (0.5, 9.5), (3, 4)]  # fmt: skip
    c.poly(body, 190)
    c.ellipse(11.5, 1, 16.5, 4, 0)  # round neckline
    c.rect(6, 24.5, 22, 26, 165)  # hem


def trouser(c: Canvas) -> None:
    c.poly([(8.5, 1), (19.5, 1), (21, 27), (15.5, 27), (14, 8), (12.5, 27), (7, 27)], 175)
    c.rect(8.5, 1, 19.5, 3, 140)  # waistband
    c.line([(14, 3), (14, 8)], 120, 0.4)  # fly


def dress(c: Canvas) -> None:
    outline = [(10, 1), (12, 1), (14, 3), (16, 1), (18, 1), (18.5, 8), (17, 11), (23, 27), (5, 27), (11, 11), (9.5, 8)]
    c.poly(outline, 175)
    c.rect(10.5, 10, 17.5, 11.5, 130)  # waist seam


def sneaker(c: Canvas) -> None:
    upper = [(1, 17.5), (2.5, 16), (8, 13.5), (13, 12), (16, 11), (27, 11), (27.5, 13), (27.5, 18), (1, 18)]
    c.poly(upper, 160)
    c.rect(0.5, 17.5, 27.5, 19.5, 210)  # sole
    c.line([(11, 12), (15, 14), (19, 13)], 95, 0.5)  # laces edge


def ankle_boot(c: Canvas) -> None:
    boot = [(15, 1), (26, 1), (26.5, 25), (1, 25), (1.5, 21), (5, 18.5), (12, 16), (15, 12)]
    c.poly(boot, 170)
    c.rect(1, 24, 27, 27, 215)  # sole
    c.rect(21, 24, 26.5, 27, 230)  # heel
    c.line([(15, 1), (15, 12)], 120, 0.6)  # zip


def bag(c: Canvas) -> None:
    c.arc((7, 1, 21, 15), 180, 360, 185, 2)  # handle
    c.poly([(1.5, 8), (26.5, 8), (27.5, 25), (0.5, 25)], 165)
    c.rect(1.5, 8, 26.5, 10, 200)  # top edge
    c.rect(12, 12, 16, 15, 110)  # clasp


# Fashion-MNIST class each drawing shows (tests check the trained CNN agrees).
DRAWINGS: dict[str, tuple[str, Callable[[Canvas], None]]] = {
    "fashion_tshirt.png": ("T-shirt/top", tshirt),
    "fashion_trouser.png": ("Trouser", trouser),
    "fashion_dress.png": ("Dress", dress),
    "fashion_sneaker.png": ("Sneaker", sneaker),
    "fashion_ankle_boot.png": ("Ankle boot", ankle_boot),
    "fashion_bag.png": ("Bag", bag),
}


def render_drawing(draw: Callable[[Canvas], None]) -> Image.Image:
    """28x28 greys (box-averaged from the 10x drawing), shown at 112x112 with crisp pixels."""
    canvas = Canvas()
    draw(canvas)
    small = canvas.image.resize((28, 28), Image.Resampling.BOX)
    return small.resize((112, 112), Image.Resampling.NEAREST)


# --------------------------------------------------------------- product photos (dark garment on white)

NAVY, SHADE = (32, 42, 78), (22, 28, 55)
CHARCOAL, RUBBER = (48, 46, 44), (205, 200, 190)


def photo_tshirt(c: Canvas) -> None:
    body = [(8.5, 2), (11.5, 3), (16.5, 3), (19.5, 2), (25, 4), (27.5, 9.5), (22, 11), (22, 26), (6, 26), (6, 11),
            (0.5, 9.5), (3, 4)]  # fmt: skip
    c.poly(body, NAVY)
    c.ellipse(11.5, 1, 16.5, 4, (255, 255, 255))
    c.arc((11.3, 0.8, 16.7, 4.2), 0, 180, SHADE, 0.5)  # collar rib
    c.line([(6, 11), (6, 26)], SHADE, 0.4)  # side seams
    c.line([(22, 11), (22, 26)], SHADE, 0.4)
    c.rect(6, 25, 22, 26, SHADE)  # hem


def photo_sneaker(c: Canvas) -> None:
    upper = [(1, 17.5), (2.5, 15), (8, 13.5), (13, 11), (16, 10), (27, 10), (27.5, 12), (27.5, 18), (1, 18)]
    c.poly(upper, CHARCOAL)
    c.rect(0.5, 17.5, 27.5, 19.5, RUBBER)  # light sole, still darker than the white background
    c.line([(11, 12), (15, 14), (19, 13)], (235, 235, 235), 0.4)  # white laces
    c.line([(3, 16.8), (27, 16.8)], (90, 88, 85), 0.3)  # welt stitching


PHOTOS: dict[str, tuple[str, Callable[[Canvas], None]]] = {
    "product_tshirt.jpg": ("T-shirt/top", photo_tshirt),
    "product_sneaker.jpg": ("Sneaker", photo_sneaker),
}


def render_photo(draw: Callable[[Canvas], None], margin: int = 40) -> Image.Image:
    """A 360 px product shot: the garment at 12x scale, softened a little, on a white margin."""
    canvas = Canvas(background=(255, 255, 255), mode="RGB")
    draw(canvas)
    garment = canvas.image.resize((28 * 12, 28 * 12), Image.Resampling.LANCZOS).filter(ImageFilter.GaussianBlur(0.7))
    shot = Image.new("RGB", (garment.width + 2 * margin, garment.height + 2 * margin), (255, 255, 255))
    shot.paste(garment, (margin, margin))
    return shot


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (_, draw) in DRAWINGS.items():
        render_drawing(draw).save(OUT / name, optimize=True)
    for name, (_, draw) in PHOTOS.items():
        render_photo(draw).save(OUT / name, quality=90)
    print(f"wrote {len(DRAWINGS) + len(PHOTOS)} samples to {OUT}")


if __name__ == "__main__":
    main()
