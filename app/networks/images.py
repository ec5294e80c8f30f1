"""Image intake: turn uploaded bytes into a clean RGB picture, or a message a student can act on.

Everything here works on bytes in memory. Uploads are never written to disk or logged:
the app is run for a class, and students' photos are theirs. Decoding is restricted to a
short list of common formats so that rarely used, rarely audited decoders (and PIL's
Ghostscript bridge for EPS) are never reached with a stranger's file.
"""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from app.base.errors import ImageError

__all__ = [
    "MAX_BYTES",
    "MAX_PIXELS",
    "SUPPORTED",
    "Collection",
    "ImageError",
    "NamedImage",
    "Skipped",
    "check_size",
    "collection_image",
    "image_key",
    "load_collection",
    "load_image",
]

SUPPORTED = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_BYTES = 20 * 2**20
MAX_PIXELS = 40_000_000

_ASK_FOR = "Please upload a PNG, JPEG, WebP, BMP, GIF or TIFF file."
# Magic numbers of files people commonly try, with advice on what to do instead.
_KNOWN_OTHERS: tuple[tuple[int, bytes, str], ...] = (
    (4, b"ftypheic", "This is a HEIC photo (the iPhone default), which is not supported. Export it as JPEG"),
    (4, b"ftypheix", "This is a HEIC photo (the iPhone default), which is not supported. Export it as JPEG"),
    (4, b"ftypmif1", "This is a HEIF photo (the iPhone default), which is not supported. Export it as JPEG"),
    (4, b"ftypavif", "This is an AVIF image, which is not supported. Export it as PNG or JPEG"),
    (0, b"%PDF", "This is a PDF document, not an image. Take a screenshot or export the page as PNG"),
    (0, b"%!PS", "This is a PostScript/EPS file, which is not supported. Export it as PNG"),
    (0, b"\xc5\xd0\xd3\xc6", "This is an EPS file, which is not supported. Export it as PNG"),
    (0, b"8BPS", "This is a Photoshop (PSD) file. Export it as PNG or JPEG"),
    (0, b"\x00\x00\x01\x00", "This is an icon (ICO) file, which is not supported. Save it as PNG"),
    (0, b"PK\x03\x04", "This is a ZIP archive. Upload .zip collections on the Feature space page, not as one image"),
)


def image_key(data: bytes) -> str:
    """SHA-256 of the uploaded bytes: a cache key that never needs the file's name or a disk copy."""
    return hashlib.sha256(data).hexdigest()


def pixel_key(img: Image.Image) -> str:
    """SHA-256 of a decoded picture (mode, size and pixels): equal for the same picture in other bytes.

    Two files of one picture (PNG at another compression level, say) decode to the same
    pixels, so they are the same image to every analysis. Their feature vectors, though,
    are only equal to rounding when computed in different batches (oneDNN picks kernels by
    batch size and thread count), so "same image" is decided here, never by a distance of 0.
    """
    h = hashlib.sha256(f"{img.mode}:{img.width}x{img.height}:".encode())
    h.update(img.tobytes())
    return h.hexdigest()


def load_image(data: bytes, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `data` into an upright RGB image, or raise `ImageError` with a message for the user.

    The pixel cap is checked on the size the file *declares*, before any pixel is decoded,
    so a tiny file declaring a gigantic canvas (a decompression bomb) costs nothing. PIL's
    own bomb limit (`Image.MAX_IMAGE_PIXELS`) also applies, but is never changed here: it is
    process-wide and other code relies on it.
    """
    _check_bytes(data, max_bytes)
    img = _open(data, max_pixels)
    try:
        img.load()  # frame 0 of animations: `open` leaves the file there
    except Image.DecompressionBombError as exc:
        raise _too_many_pixels(img.width * img.height, max_pixels, img.size) from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, MemoryError) as exc:
        raise ImageError(
            f"The {img.format} file is damaged or cut off, so it cannot be shown in full. "
            "Download or export it again and re-upload it."
        ) from exc
    return _to_rgb(_upright(img))


def check_size(size: int, max_bytes: int = MAX_BYTES) -> None:
    """Raise ImageError when a file of `size` bytes is over the limit: checkable before reading it."""
    if size > max_bytes:
        raise ImageError(
            f"The file is {size / 2**20:.1f} MB; the limit is {max_bytes / 2**20:.0f} MB. "
            "Save a smaller copy (for example a JPEG about 2000 pixels wide) and upload that."
        )


def _check_bytes(data: bytes, max_bytes: int) -> None:
    if not data:
        raise ImageError("The file is empty (0 bytes). Check that it saved correctly and upload it again.")
    check_size(len(data), max_bytes)
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if b"<svg" in head or (head.startswith(b"<?xml") and b"svg" in data[:4096].lower()):
        raise ImageError(
            "SVG drawings are not supported: they are instructions for drawing, not pixels. "
            "Export the drawing as PNG (for example in Inkscape: File > Export) and upload that."
        )
    for offset, magic, advice in _KNOWN_OTHERS:
        if data[offset : offset + len(magic)] == magic:
            raise ImageError(f"{advice}. {_ASK_FOR}")


def _open(data: bytes, max_pixels: int) -> Image.ImageFile.ImageFile:
    """Identify the file (headers only) and enforce format and size limits before decoding."""
    try:
        img = Image.open(io.BytesIO(data), formats=SUPPORTED)
    except Image.DecompressionBombError as exc:
        # PIL's own guard fired (the file declares > 2x Image.MAX_IMAGE_PIXELS); its message has the count.
        found = re.search(r"\((\d+) pixels\)", str(exc))
        raise _too_many_pixels(int(found[1]) if found else None, _pixel_limit(max_pixels)) from exc
    except UnidentifiedImageError as exc:
        if _is_text(data):
            raise ImageError(f"This file contains text, not an image, whatever its name says. {_ASK_FOR}") from exc
        raise ImageError(f"This file is not an image we can read (or it is badly damaged). {_ASK_FOR}") from exc
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ImageError(f"The file looks like an image but its header is damaged. {_ASK_FOR}") from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise ImageError(f"The image has no pixels ({width}x{height}). {_ASK_FOR}")
    limit = _pixel_limit(max_pixels)
    if width * height > limit:
        raise _too_many_pixels(width * height, limit, img.size)
    if img.format == "PNG":
        _verify_png(data)
    return img


def _pixel_limit(max_pixels: int) -> int:
    """The caller's cap, or PIL's process-wide bomb limit if that is lower."""
    return min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)


def _too_many_pixels(pixels: int | None, limit: int, size: tuple[int, int] | None = None) -> ImageError:
    what = f"{size[0]}x{size[1]} pixels, " if size else ""
    count = f"{what}{pixels / 1e6:,.0f} megapixels" if pixels else "far too many pixels"
    return ImageError(
        f"The image is too large to open safely ({count}; the limit is {limit / 1e6:.0f} megapixels). "
        "Resize it (for example to 2000 pixels wide) and upload it again."
    )


def _verify_png(data: bytes) -> None:
    """Check every chunk's CRC: PIL skips the checksums of pixel data when decoding."""
    try:
        Image.open(io.BytesIO(data), formats=("PNG",)).verify()
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError) as exc:
        raise ImageError(
            "The PNG file is damaged or cut off (its checksums or its ending do not check out). "
            "Export or download it again and re-upload it."
        ) from exc


def _is_text(data: bytes) -> bool:
    """UTF-8 without control characters (a cut may split the last character of a longer file)."""
    sample = data[:4096] if len(data) <= 4096 else data[:4096].rstrip(bytes(range(0x80, 0x100)))
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return not any(b < 9 or 13 < b < 32 for b in sample)


def _upright(img: Image.Image) -> Image.Image:
    """Apply the camera's EXIF orientation so phone photos are not shown on their side."""
    try:
        return ImageOps.exif_transpose(img)
    except (SyntaxError, ValueError, TypeError, KeyError, struct.error, OSError):
        # Orientation is metadata; a broken EXIF block should not cost the student their picture.
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any supported mode -> 8-bit RGB; transparency is laid on white, as a viewer shows it."""
    if img.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        return _high_depth_grey(img).convert("RGB")
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def _high_depth_grey(img: Image.Image) -> Image.Image:
    """16-bit/32-bit/float grey -> 8-bit by rescaling, not clipping (clipping turns most of it white).

    16-bit files declare their range (0..65535), so they are scaled by 255/65535. Integer
    and float images ("I", "F", e.g. from scientific TIFFs) declare none: values already in
    0..255 or 0..65535 are taken as 8- or 16-bit; anything else is stretched from its
    minimum to its maximum.
    """
    values = np.asarray(img, dtype=np.float64)
    if img.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    else:
        finite = values[np.isfinite(values)]
        vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        if vmin >= 0 and vmax <= 255 and (img.mode == "I" or vmax > 1):
            lo, hi = 0.0, 255.0
        elif img.mode == "F" and vmin >= 0 and vmax <= 1:
            lo, hi = 0.0, 1.0
        elif vmin >= 0 and vmax <= 65535:
            lo, hi = 0.0, 65535.0
        else:
            lo, hi = vmin, max(vmax, vmin + 1e-12)
    scaled = (np.nan_to_num(values, nan=lo) - lo) / (hi - lo) * 255.0
    return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), mode="L")


# ---------------------------------------------------------------- collections (many images at once)

MAX_COLLECTION_BYTES = 300 * 2**20
COLLECTION_SIDE = 512  # every analysis works at 224 px or less; 500 full-size photos would not fit in memory


def collection_image(
    data: bytes, max_side: int = COLLECTION_SIDE, max_bytes: int = MAX_BYTES, max_pixels: int = MAX_PIXELS
) -> Image.Image:
    """One file as a collection holds it: decoded and validated (load_image), shrunk to `max_side`.

    The one way an image enters a collection, and the way a query image compared with a
    collection must enter too: the same bytes then give the same pixels, so the same
    feature vector (a photo shrunk from another size resamples to slightly other pixels).
    """
    img = load_image(data, max_bytes=max_bytes, max_pixels=max_pixels)
    img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img


@dataclass(frozen=True)
class NamedImage:
    name: str
    image: Image.Image
    key: str  # sha256 of the file's bytes
    pixels: str  # pixel_key of the image as the collection holds it


@dataclass(frozen=True)
class Skipped:
    name: str
    reason: str


@dataclass(frozen=True)
class Collection:
    """Usable images in upload order, and every file left out with the reason why."""

    items: list[NamedImage]
    skipped: list[Skipped]

    @property
    def names(self) -> list[str]:
        return [item.name for item in self.items]

    @property
    def images(self) -> list[Image.Image]:
        return [item.image for item in self.items]

    def find(self, data: bytes) -> int | None:
        """Index of the first member that is the same image as `data`, or None.

        The same file (its bytes' hash), or the same picture in other bytes (the hash of
        its pixels once prepared by collection_image, as members are). The feature-space
        page then takes the user's image from the collection's own computation: its own
        row, at distance 0 from itself. Any other image is prepared with collection_image
        and embedding.collection_vectors, as the collection's are.
        """
        key = image_key(data)
        same_file = next((i for i, item in enumerate(self.items) if item.key == key), None)
        if same_file is not None:
            return same_file
        try:
            pixels = pixel_key(collection_image(data))
        except ImageError:
            return None
        return next((i for i, item in enumerate(self.items) if item.pixels == pixels), None)

    @property
    def key(self) -> str:
        """One cache key for the whole collection: its names and contents, in order."""
        h = hashlib.sha256()
        for item in self.items:
            h.update(f"{item.name}\0{item.key}\0".encode())
        return h.hexdigest()


def load_collection(
    items: Iterable[tuple[str, bytes]],
    max_images: int = 500,
    max_side: int = COLLECTION_SIDE,
    max_total_bytes: int = MAX_COLLECTION_BYTES,
    max_bytes: int = MAX_BYTES,
    max_pixels: int = MAX_PIXELS,
) -> Collection:
    """Load (name, bytes) uploads; `.zip` items are opened in memory and their images taken.

    Names inside archives are only labels: "../../x.png" becomes "x.png", nothing is ever
    extracted to disk. Each image is shrunk to at most `max_side` pixels on its long side
    (collection_image). `max_total_bytes` caps the bytes read (after unzipping) to defuse zip bombs.
    Raises `ImageError` when fewer than two images are usable.
    """
    loaded: list[NamedImage] = []
    skipped: list[Skipped] = []
    seen: dict[str, int] = {}
    budget = max_total_bytes
    entries = _expand(items, skipped)

    for name, entry in entries:
        clean = _unique(safe_name(name), seen)
        if len(loaded) >= max_images:
            more = 1 + sum(1 for _ in entries)
            skipped.append(Skipped(clean, f"this and {more - 1} more files: the limit is {max_images} images"))
            break
        if isinstance(entry, str):
            skipped.append(Skipped(clean, entry))
            continue
        size = len(entry) if isinstance(entry, bytes) else entry[1].file_size
        if size > budget:
            skipped.append(Skipped(clean, f"the collection's size limit ({max_total_bytes / 2**20:.0f} MB) is reached"))
            continue
        try:
            data = entry if isinstance(entry, bytes) else _read_member(*entry, limit=min(budget, max_bytes) + 1)
            budget -= len(data)
            img = collection_image(data, max_side, max_bytes=max_bytes, max_pixels=max_pixels)
        except ImageError as exc:
            skipped.append(Skipped(clean, str(exc)))
            continue
        loaded.append(NamedImage(clean, img, image_key(data), pixel_key(img)))

    if len(loaded) < 2:
        reasons = "; ".join(f"{s.name}: {s.reason}" for s in skipped[:3])
        raise ImageError(
            f"A collection needs at least 2 usable images; found {len(loaded)}. "
            "Upload several PNG/JPEG files or a .zip of them." + (f" Left out: {reasons}" if reasons else "")
        )
    return Collection(loaded, skipped)


_Entry = bytes | tuple[zipfile.ZipFile, zipfile.ZipInfo] | str  # bytes, a zip member, or why it is skipped


def _expand(items: Iterable[tuple[str, bytes]], skipped: list[Skipped]) -> Iterator[tuple[str, _Entry]]:
    """Yield each upload, or each file of an uploaded .zip (unread, so its size is checked first)."""
    for name, data in items:
        if not name.lower().endswith(".zip"):
            yield name, data
            continue
        try:
            archive = zipfile.ZipFile(io.BytesIO(data))
            members = archive.infolist()
        except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
            skipped.append(Skipped(safe_name(name), f"not a readable .zip archive ({exc})"))
            continue
        for info in members:
            parts = info.filename.replace("\\", "/").split("/")
            if info.is_dir() or parts[0] == "__MACOSX" or parts[-1].startswith("."):
                continue  # folders and hidden/macOS bookkeeping files: not the user's pictures
            if info.flag_bits & 0x1:
                yield info.filename, "password-protected files cannot be read"
            elif info.filename.lower().endswith(".zip"):
                yield info.filename, "archives inside the archive are not opened; unpack them first"
            else:
                yield info.filename, (archive, info)


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limit: int) -> bytes:
    """Read at most `limit` bytes, however large the member claims (or turns out) to be."""
    try:
        with archive.open(info) as f:
            return f.read(limit)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
        raise ImageError(f"this file is damaged inside the .zip or uses an unsupported compression ({exc})") from exc


def safe_name(name: str) -> str:
    """A display label from an uploaded or archived path: no folders above, no drive, no control characters."""
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".", "..")]
    if parts and len(parts[0]) == 2 and parts[0][1] == ":":
        parts = parts[1:]  # Windows drive letter
    cleaned = "/".join("".join(ch for ch in p if ch.isprintable()) for p in parts).strip()
    return cleaned[:200] or "unnamed"


def _unique(name: str, seen: dict[str, int]) -> str:
    count = seen.get(name, 0) + 1
    seen[name] = count
    if count == 1:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem} ({count}).{ext}" if dot and stem else f"{name} ({count})"
