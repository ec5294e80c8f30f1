"""Image intake against the hostile-input list of issue 6, every file built in memory here.

Oracles: pixel values we put into the files ourselves (colours, 16-bit ramps, frame
colours, orientation), and for errors, that an `ImageError` names the problem and says
what to do. Nothing is read from or written to disk.
"""

from __future__ import annotations

import builtins
import functools
import io
import logging
import os
import struct
import tempfile
import zipfile
import zlib

import numpy as np
import pytest
from PIL import EpsImagePlugin, Image

from app.networks.images import SUPPORTED, ImageError, image_key, load_collection, load_image, safe_name
from tests.conftest import photo, png_bytes

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def solid(colour: tuple[int, int, int], size: tuple[int, int] = (16, 16)) -> Image.Image:
    return Image.new("RGB", size, colour)


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


@functools.cache
def bomb_png(width: int = 30_000, height: int = 30_000) -> bytes:
    """A real 1-bit PNG of width x height zeros, compressed by hand chunk by chunk (~100 KB)."""
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row * 1000) for _ in range(height // 1000)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def assert_colour(img: Image.Image, xy: tuple[int, int], colour: tuple[int, int, int], tol: int = 3) -> None:
    got = img.getpixel(xy)
    assert all(abs(a - b) <= tol for a, b in zip(got, colour, strict=True)), (xy, got, colour)


# ----------------------------------------------------------------------------- images that must load


@pytest.mark.parametrize("fmt", SUPPORTED)
def test_every_supported_format_round_trips(fmt):
    src = photo((40, 30), seed=1)
    kw = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    img = load_image(encode(src, fmt, **kw))
    assert img.mode == "RGB" and img.size == (40, 30)
    err = np.abs(np.asarray(img, dtype=int) - np.asarray(src, dtype=int)).mean()
    assert err < (6 if fmt in ("JPEG", "WEBP", "GIF") else 0.01)


def test_cmyk_jpeg_becomes_rgb():
    cmyk = Image.new("CMYK", (20, 10), (255, 0, 0, 0))  # pure cyan ink
    cmyk.paste((0, 0, 0, 255), (10, 0, 20, 10))  # right half: pure black ink
    img = load_image(encode(cmyk, "JPEG", quality=95))
    assert img.mode == "RGB"
    assert_colour(img, (3, 5), (0, 255, 255), tol=6)
    assert_colour(img, (16, 5), (0, 0, 0), tol=6)


def test_16bit_grey_png_is_scaled_not_clipped():
    ramp = np.linspace(0, 65535, 256).astype(np.uint16).reshape(16, 16)
    src = Image.fromarray(ramp)
    assert src.mode == "I;16"
    img = load_image(png_bytes(src))
    got = np.asarray(img)
    assert img.mode == "RGB" and got.shape == (16, 16, 3)
    expected = np.rint(ramp / 257.0)
    assert np.abs(got[..., 0].astype(int) - expected).max() <= 1
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()
    assert got.min() == 0 and got.max() == 255 and len(np.unique(got)) > 200  # not clipped to a few values


def test_float_tiff_in_unit_range_is_scaled():
    values = np.array([[0.0, 0.25], [0.5, 1.0]], dtype=np.float32)
    img = load_image(encode(Image.fromarray(values, mode="F"), "TIFF"))
    assert np.asarray(img)[..., 0].tolist() == [[0, 64], [128, 255]]


def test_32bit_int_tiff_with_unknown_range_is_stretched():
    values = np.array([[-1000, 0], [1000, 99000]], dtype=np.int32)
    img = load_image(encode(Image.fromarray(values, mode="I"), "TIFF"))
    expected = np.rint((values + 1000) / 100000 * 255)
    assert np.asarray(img)[..., 0].tolist() == expected.tolist()


def test_palette_png_with_transparency_lies_on_white():
    pal = Image.new("P", (8, 4), 0)
    pal.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, index 1 blue
    pal.paste(1, (4, 0, 8, 4))
    img = load_image(encode(pal, "PNG", transparency=0))  # red is the transparent index
    assert_colour(img, (1, 1), (255, 255, 255), tol=0)
    assert_colour(img, (6, 1), BLUE, tol=0)


def test_rgba_and_la_are_composited_on_white():
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 128))
    assert_colour(load_image(png_bytes(rgba)), (0, 0), (255, 127, 127), tol=1)
    la = Image.new("LA", (4, 4), (0, 0))  # black, fully transparent
    assert_colour(load_image(png_bytes(la)), (0, 0), (255, 255, 255), tol=0)


def test_grey_and_bilevel_become_rgb():
    assert load_image(png_bytes(Image.new("L", (3, 3), 77))).getpixel((1, 1)) == (77, 77, 77)
    assert load_image(png_bytes(Image.new("1", (3, 3), 1))).getpixel((1, 1)) == (255, 255, 255)


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animated_file_gives_its_first_frame(fmt):
    frames = [solid(RED), solid(GREEN), solid(BLUE)]
    kw = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, loop=0, **kw)
    assert Image.open(io.BytesIO(data)).n_frames == 3  # really animated
    img = load_image(data)
    assert img.size == (16, 16)
    assert_colour(img, (8, 8), RED, tol=2)


def test_multi_picture_jpeg_gives_its_first_picture():
    data = encode(solid(RED), "MPO", save_all=True, append_images=[solid(BLUE)], quality=95)
    assert_colour(load_image(data), (8, 8), RED, tol=6)


def test_exif_rotated_jpeg_is_shown_upright():
    stored = Image.new("RGB", (40, 20), RED)  # as the sensor wrote it: landscape,
    stored.paste(BLUE, (0, 10, 40, 20))  # red top half, blue bottom half
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    img = load_image(encode(stored, "JPEG", quality=95, exif=exif.tobytes()))
    assert img.size == (20, 40)  # portrait
    assert_colour(img, (15, 20), RED, tol=8)  # the top went to the right
    assert_colour(img, (4, 20), BLUE, tol=8)


@pytest.mark.parametrize("size", [(1, 1), (5000, 3), (3, 5000)])
def test_tiny_and_extremely_thin_images_are_accepted(size):
    img = load_image(png_bytes(Image.new("RGB", size, GREEN)))
    assert img.size == size and img.getpixel((0, 0)) == GREEN


# ----------------------------------------------------------------------------- inputs that must be refused


def refused(data: bytes, **kw) -> str:
    with pytest.raises(ImageError) as info:
        load_image(data, **kw)
    return str(info.value)


def test_zero_bytes():
    assert "empty" in refused(b"")


def test_text_file_named_png():
    msg = refused(b"Hello, this is my homework, not a picture.\n" * 10)
    assert "text" in msg and "PNG" in msg


def test_svg_is_refused_with_advice_to_export_png():
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10"/></svg>'
    for data in (svg, b'\xef\xbb\xbf<?xml version="1.0"?>\n<!-- logo -->\n' + svg):
        msg = refused(data)
        assert "SVG" in msg and "not supported" in msg and "PNG" in msg


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
@pytest.mark.parametrize("keep", [0.5, 0.9, 0.99])
def test_truncated_files_are_errors_not_half_grey_images(fmt, keep):
    data = encode(photo((120, 90), seed=2), fmt)
    msg = refused(data[: int(len(data) * keep)])
    assert "damaged" in msg and "again" in msg


def test_png_with_bad_crc_in_pixel_data():
    data = png_bytes(photo((30, 30), seed=3))
    start = data.index(b"IDAT")
    length = int.from_bytes(data[start - 4 : start], "big")
    bad = bytearray(data)
    bad[start + 4 + length] ^= 0x01  # first byte of the IDAT checksum; the pixels are intact
    assert "damaged" in refused(bytes(bad))


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # PIL warns at 100 MP; we refuse
def test_decompression_bomb_is_refused_from_its_header():
    data = bomb_png()
    assert len(data) < 200_000
    limit_before = Image.MAX_IMAGE_PIXELS
    msg = refused(data)
    assert "900 megapixels" in msg and "Resize" in msg  # PIL's guard (> 2x its limit) answered first
    # Our cap is checked on the header before PIL's guard would only warn (here 100 MP) ...
    assert "10000x10000 pixels, 100 megapixels" in refused(bomb_png(10_000, 10_000))
    # ... the caller's cap is obeyed even when set above PIL's ...
    assert "900 megapixels" in refused(data, max_pixels=10**12)
    # ... and the process-wide limit is untouched.
    assert limit_before == Image.MAX_IMAGE_PIXELS


def test_pixel_and_byte_caps():
    data = png_bytes(Image.new("RGB", (300, 200)))
    assert "300x200" in refused(data, max_pixels=50_000)
    assert load_image(data, max_pixels=60_000).size == (300, 200)
    assert "limit is" in refused(data, max_bytes=len(data) - 1)


def test_formats_pil_knows_but_we_do_not_take():
    ico = encode(solid(RED), "ICO")
    assert "ICO" in refused(ico)
    assert "Photoshop" in refused(b"8BPS\x00\x01" + b"\x00" * 64)
    assert "HEIC" in refused(b"\x00\x00\x00\x18ftypheic" + b"\x00" * 64)
    assert "ZIP" in refused(b"PK\x03\x04" + b"\x00" * 64)


def test_eps_never_reaches_ghostscript(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("Ghostscript was called")

    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", forbidden)
    eps = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 10 10\nshowpage\n%%EOF\n"
    assert "EPS" in refused(eps)
    assert "not an image" in refused(b"\x00\x01" + eps)  # not sniffed by us: PIL must not try EPS either


def test_every_hostile_input_then_a_valid_load_still_works():
    hostile = [
        b"",
        b"not an image" * 100,
        b"<svg/>",
        encode(photo((64, 64)), "JPEG")[:500],
        png_bytes(photo((64, 64)))[:-20],
        bomb_png(),
        b"\x89PNG\r\n\x1a\n" + b"\xff" * 50,
    ]
    for data in hostile:
        with pytest.raises(ImageError):
            load_image(data)
    src = photo((50, 40), seed=4)
    assert np.array_equal(np.asarray(load_image(png_bytes(src))), np.asarray(src))


def test_image_key_is_sha256_of_bytes():
    assert image_key(b"abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"


# ----------------------------------------------------------------------------- collections


def zip_bytes(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def test_zip_with_nested_folders_non_images_and_path_traversal():
    files = {
        "class/shoes/red.png": png_bytes(solid(RED)),
        "class/shoes/deep/green.jpg": encode(solid(GREEN), "JPEG"),
        "../../x.png": png_bytes(solid(BLUE)),
        "C:\\evil\\..\\y.png": png_bytes(solid(BLUE, (8, 8))),
        "class/notes.txt": b"just some notes",
        "class/broken.png": png_bytes(solid(RED))[:40],
        "__MACOSX/class/._red.png": b"\x00\x05\x16\x07 resource fork",
        "inner.zip": zip_bytes({"a.png": png_bytes(solid(RED))}),
    }
    coll = load_collection([("photos.zip", zip_bytes(files)), ("loose.png", png_bytes(solid(GREEN)))])
    assert coll.names == ["class/shoes/red.png", "class/shoes/deep/green.jpg", "x.png", "evil/y.png", "loose.png"]
    assert_colour(coll.images[0], (1, 1), RED, tol=0)
    assert_colour(coll.images[2], (1, 1), BLUE, tol=0)
    reasons = {s.name: s.reason for s in coll.skipped}
    assert set(reasons) == {"class/notes.txt", "class/broken.png", "inner.zip"}
    assert "text" in reasons["class/notes.txt"] and "damaged" in reasons["class/broken.png"]
    assert coll.key != load_collection([("a.png", png_bytes(solid(RED))), ("b.png", png_bytes(solid(BLUE)))]).key


def test_safe_name_never_leaves_the_label():
    assert safe_name("../../x.png") == "x.png"
    assert safe_name("/etc/passwd") == "etc/passwd"
    assert safe_name("C:\\Users\\..\\a.png") == "Users/a.png"
    assert safe_name("a/\x00b\n.png") == "a/b.png"
    assert safe_name("../..") == "unnamed"


def test_collection_shrinks_large_images_and_dedupes_names():
    big = png_bytes(photo((1200, 600)))
    coll = load_collection([("a.png", big), ("a.png", big), ("dir/../a.png", big)], max_side=256)
    assert coll.names == ["a.png", "a (2).png", "dir/a.png"]
    assert all(img.size == (256, 128) for img in coll.images)


def test_collection_needs_two_images_and_says_why():
    with pytest.raises(ImageError, match="at least 2") as info:
        load_collection([("one.png", png_bytes(solid(RED))), ("essay.png", b"words " * 50)])
    assert "essay.png" in str(info.value)
    with pytest.raises(ImageError, match="at least 2"):
        load_collection([("broken.zip", b"PK\x03\x04 not really")])


def test_collection_image_count_limit():
    items = [(f"{i}.png", png_bytes(solid((i, i, i), (4, 4)))) for i in range(6)]
    coll = load_collection([("all.zip", zip_bytes(dict(items)))], max_images=4)
    assert coll.names == ["0.png", "1.png", "2.png", "3.png"]
    assert len(coll.skipped) == 1 and "1 more" in coll.skipped[0].reason


def test_zip_bomb_is_capped_by_total_uncompressed_bytes():
    zeros = b"\0" * (4 * 2**20)  # compresses ~1000x
    bomb = zip_bytes({f"layer{i}/big{i}.png": zeros for i in range(20)} | {"ok1.png": png_bytes(solid(RED))})
    assert len(bomb) < 1_000_000
    good = [("a.png", png_bytes(solid(GREEN))), ("b.png", png_bytes(solid(BLUE)))]
    coll = load_collection([*good, ("bomb.zip", bomb)], max_total_bytes=10 * 2**20)
    assert coll.names == ["a.png", "b.png", "ok1.png"]
    limited = [s for s in coll.skipped if "size limit" in s.reason]
    assert len(limited) >= 18  # at most two 4 MB members fit into 10 MB; the rest are never read


def test_zip_member_lying_about_its_size_is_read_only_up_to_the_limit():
    payload = png_bytes(photo((200, 200)))
    raw = bytearray(zip_bytes({"liar.png": payload, "b.png": png_bytes(solid(RED)), "c.png": png_bytes(solid(BLUE))}))
    # Rewrite the declared size of "liar.png" in the central directory to 100 bytes.
    cd = raw.index(b"PK\x01\x02")
    raw[cd + 24 : cd + 28] = struct.pack("<I", 100)
    coll = load_collection([("set.zip", bytes(raw))])
    assert coll.names == ["b.png", "c.png"]
    assert coll.skipped[0].name == "liar.png"


def test_collection_writes_nothing_to_disk_and_logs_nothing(tmp_path, monkeypatch, caplog):
    work, temp = tmp_path / "work", tmp_path / "temp"
    work.mkdir()
    temp.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    writes: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def spy_open(file, mode="r", *args, **kwargs):
        if any(flag in mode for flag in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    def spy_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append(str(path))
        return real_os_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", spy_open)
    monkeypatch.setattr(io, "open", spy_open)
    monkeypatch.setattr(os, "open", spy_os_open)
    files = {
        "secret-student-photo.png": png_bytes(photo((64, 48))),
        "nested/dir/another.jpg": encode(photo((64, 48), seed=5), "JPEG"),
        "../../escape.png": png_bytes(solid(RED)),
        "notes.txt": b"text",
    }
    with caplog.at_level(logging.DEBUG):
        coll = load_collection([("class.zip", zip_bytes(files)), ("single.gif", encode(solid(BLUE), "GIF"))])
    monkeypatch.undo()
    assert len(coll.items) == 4
    assert writes == []
    assert list(work.iterdir()) == [] and list(temp.iterdir()) == []
    assert not any("secret" in r.getMessage() or "escape" in r.getMessage() for r in caplog.records)
