"""The sidebar's image reaches every page prepared once: a big photo is decoded and converted per image,
not per page visit."""

from __future__ import annotations

import io

import streamlit as st

import app.fashion
from tests.apptest import ENTRY
from tests.conftest import photo


def _jpeg(size: tuple[int, int]) -> bytes:
    buf = io.BytesIO()
    photo(size).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def test_a_photo_is_converted_once_across_pages(monkeypatch) -> None:
    from streamlit.testing.v1 import AppTest

    calls: list[int] = []
    convert = app.fashion.to_fashion_mnist

    def counted(img):
        calls.append(1)
        return convert(img)

    monkeypatch.setattr(app.fashion, "to_fashion_mnist", counted)
    st.cache_resource.clear()
    st.cache_data.clear()
    at = AppTest.from_file(ENTRY, default_timeout=180)
    at.session_state["model_name"] = "fashion_cnn"
    at.session_state["image_source"] = "Upload"
    at.session_state["upload"] = ("big.jpg", _jpeg((1600, 1200)))
    at.session_state["fashion_intake"] = "photo"
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    for page in ("pages/filters.py", "pages/activations.py", "pages/prediction.py"):
        at.switch_page(page).run()
        assert not at.exception, [e.value for e in at.exception]
    assert len(calls) == 1
