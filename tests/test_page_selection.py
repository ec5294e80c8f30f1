"""The sidebar's image reaches every page prepared once: a big photo is decoded and converted per image,
not per page visit."""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image
from streamlit.testing.v1 import AppTest

import app.networks.fashion
from pages.common import INTAKE, INTAKE_LABEL
from tests.apptest import ENTRY
from tests.conftest import photo, png_bytes


def _jpeg(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    photo(size).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def _app(image: bytes, intake: str) -> AppTest:
    at = AppTest.from_file(ENTRY, default_timeout=180)
    at.session_state["model_name"] = "fashion_cnn"
    at.session_state["image_source"] = "Upload"
    at.session_state["upload"] = ("mine.png", image)
    at.session_state["fashion_intake"] = intake
    return at


def test_what_the_model_can_see_is_said() -> None:
    """An astronaut still gets a clothing label: the page says the network only knows its 10 classes;
    a flat image that the photo conversion cannot use points to the setting that can."""
    at = _app(png_bytes(photo((300, 200))), "photo").run()
    assert any("only knows the 10 kinds of clothing" in i.value for i in at.info)
    at = _app(png_bytes(Image.new("RGB", (1, 1), (200, 30, 30))), "photo").run()
    assert not at.exception
    (error,) = at.error
    assert "single flat colour" in error.value and f"“{INTAKE['dataset']}”" in error.value
    assert f"“{INTAKE_LABEL}”" in error.value


def test_a_photo_is_converted_once_across_pages(monkeypatch) -> None:
    calls: list[int] = []
    convert = app.networks.fashion.to_fashion_mnist

    def counted(img):
        calls.append(1)
        return convert(img)

    monkeypatch.setattr(app.networks.fashion, "to_fashion_mnist", counted)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = _app(_jpeg((1600, 1200)), "photo").run()
    assert not at.exception, [e.value for e in at.exception]
    for page in ("pages/filters.py", "pages/activations.py", "pages/prediction.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
    assert len(calls) == 1


def test_the_sidebar_shows_an_upload_kept_from_before() -> None:
    """After Sample -> Upload the upload box is empty while the earlier file is still used: the sidebar
    shows it, says so, and can forget it."""
    at = _app(png_bytes(photo((300, 200))), "photo")
    at.session_state["upload"] = ("astronaut.png", png_bytes(photo((300, 200))))
    at.run()
    assert not at.exception
    assert any("Still using **astronaut.png**" in c.value for c in at.sidebar.caption)
    assert len(at.sidebar.get("image")) == 1
    at.sidebar.button(key="forget_Upload").click().run()
    assert not at.exception and at.session_state["upload"] is None
