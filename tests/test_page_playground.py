"""AppTest of the layer playground page: it renders, and its numbers follow the widgets."""

from __future__ import annotations

import base64
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from app.analyses import playground as pg
from app.pictures import figures
from tests.apptest import rerun_fragment
from tests.conftest import photo, png_bytes

PAGE = str(Path(__file__).resolve().parent.parent / "pages" / "playground.py")


def _app(model: str = "fashion_cnn", image: bytes | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["model_name"] = model
    at.session_state["image_bytes"] = png_bytes(photo((96, 64))) if image is None else image
    return at


def _z(at: AppTest, key: str) -> np.ndarray:
    """The heatmap values of the chart whose widget key contains `key` (Plotly sends them base64-packed)."""
    for el in at.get("plotly_chart"):
        if key in el.proto.id:
            z = json.loads(el.proto.spec)["data"][0]["z"]
            if isinstance(z, dict):
                shape = [int(n) for n in str(z["shape"]).split(",")]
                return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
            return np.array(z)
    raise AssertionError(f"no chart {key}")


def test_page_renders_every_section() -> None:
    at = _app().run()
    assert not at.exception
    assert [h.value for h in at.header] == [
        "1. Convolution",
        "2. ReLU",
        "3. Pooling",
        "4. Fully connected layer and softmax",
        "5. Normalisation",
    ]
    assert any("add up to 1.0000" in c.value for c in at.caption)
    assert len(at.dataframe[-1].value) == 10  # [0] is the kernel editor, [-1] the class table


def test_crop_numbers_follow_the_kernel() -> None:
    at = _app().run()
    at.radio(key="pg_view").set_value("an 8×8 crop with its numbers").run()
    at.selectbox(key="pg_preset").set_value("identity").run()
    at.radio(key="pg_padding").set_value("same (zero padding)").run()
    assert not at.exception
    crop = _z(at, "pg_in")
    fmap = _z(at, "pg_fmap")
    assert crop.shape == (8, 8)
    np.testing.assert_allclose(fmap, crop)  # identity kernel with zero padding changes nothing
    expected = pg.crop(pg.grey_array(photo((96, 64))), 28, 44)  # default: centred 8x8 crop
    np.testing.assert_allclose(crop, expected)


def test_pool_settings_change_the_output_size_and_caption() -> None:
    at = _app().run()
    at.radio(key="pg_view").set_value("an 8×8 crop with its numbers").run()
    at.slider(key="pg_window").set_value(2).run()
    at.slider(key="pg_stride").set_value(3).run()
    assert not at.exception
    pooled = _z(at, "pg_pooled")
    assert pooled.shape == (2, 2)  # valid 3x3 conv: 6x6, then windows at 0 and 3
    assert any("leave gaps" in c.value for c in at.caption)
    grad = _z(at, "pg_grad")
    assert grad.sum() == pytest.approx(1.0) and np.count_nonzero(grad) == 1  # max pool: the winner only


def test_no_image_asks_for_one() -> None:
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.session_state["model_name"] = "fashion_cnn"
    at.run()
    assert not at.exception
    assert "Choose an image" in at.info[0].value


@pytest.mark.slow
def test_vgg_normalises_the_chosen_colour_channel() -> None:
    at = _app("vgg16").run()
    at.radio(key="pg_channel").set_value("green").run()
    assert not at.exception
    assert any("Mean 0.456 and standard deviation 0.224" in c.value for c in at.caption)
    assert len(at.dataframe[-1].value) == 10  # top 10 of 1000 ImageNet classes


def test_backward_pool_starts_where_the_rule_shows_and_an_all_zero_window_says_so() -> None:
    """Issue 21 item 6: on a flat picture the centre cell is all zero after ReLU, a tie for max pooling."""
    flat = np.full((64, 96), 120, dtype=np.uint8)
    flat[6:18, 9:21] = 130 + 10 * np.arange(12)[:, None]  # a shaded square off centre: the only edges
    at = _app(image=png_bytes(Image.fromarray(flat).convert("RGB"))).run()
    assert not at.exception
    row, col = (int(n.value) for n in at.number_input if n.label in ("Output row", "Output column"))
    activated = pg.relu(pg.convolve(pg.grey_array(Image.fromarray(flat)), np.array(pg.KERNELS["Sobel x"])))
    window = activated[2 * row : 2 * row + 2, 2 * col : 2 * col + 2]  # default window 2, stride 2
    assert window.max() > 0 and (window == window.max()).sum() == 1, window
    assert not any("tie for the maximum" in c.value for c in at.caption)

    centre = (activated.shape[0] // 4, activated.shape[1] // 4)
    assert not activated[2 * centre[0] : 2 * centre[0] + 2, 2 * centre[1] : 2 * centre[1] + 2].any()
    [r, c] = [n for n in at.number_input if n.label in ("Output row", "Output column")]
    r.set_value(centre[0]).run()
    c.set_value(centre[1]).run()
    assert any("4 values of this window tie for the maximum (all 0)" in c.value for c in at.caption)
    values = _z(at, "pg_window_values")
    if not values.any():  # the whole shown neighbourhood is 0: the map says so, on a bar from 0
        spec = next(json.loads(e.proto.spec) for e in at.get("plotly_chart") if "pg_window_values" in e.proto.id)
        assert "every value 0" in spec["layout"]["title"]["text"] and spec["data"][0]["zmin"] == 0


def _counted(func, name: str, calls: Counter):
    def counted(*args, **kwargs):
        calls[name] += 1
        return func(*args, **kwargs)

    return counted


def test_a_section_widget_reruns_its_section_alone(monkeypatch) -> None:
    """Each section is an st.fragment: the temperature redraws the softmax table alone, a pooling widget the
    pooling charts alone, not the page's 13 charts (the browser reruns the fragment that holds the widget)."""
    at = _app().run()
    calls: Counter = Counter()
    for module, name in [(figures, "number_map"), (figures, "feature_grid"), (pg, "convolve")]:
        monkeypatch.setattr(module, name, _counted(getattr(module, name), name, calls))
    rerun_fragment(at, at.select_slider(key="pg_temperature").set_value(2.0))
    assert not at.exception
    assert not calls
    assert "probability at T=2" in at.dataframe[0].value.columns
    at.run()
    calls.clear()
    rerun_fragment(at, at.slider(key="pg_stride").set_value(1))
    assert not at.exception
    assert calls == {"number_map": 4}  # coverage, pooled, the window's values and its gradient
