"""Every sentence that depends on the model is true for each shipped model (issue 21, items 3 and 4).

One AppTest per model visits the pages whose text depends on the model and checks the claims against
facts written here independently of the app: which models normalise with a data set's statistics,
EfficientNet-Lite's (p - 127) / 128, and which networks have branches (so occlusion runs whole copies).
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from tests.apptest import open_page

# What each shipped model's normalisation is, and whether occlusion can recompute only the changed
# part of each layer (a plain chain) or must run every copy whole (residual branches).
FACTS = {
    "fashion_cnn": dict(statistics="Fashion-MNIST", engine="incremental", zero_fill="Fashion-MNIST mean grey"),
    "vgg16": dict(statistics="ImageNet", engine="incremental", zero_fill="ImageNet mean colour"),
    "efficientnet_lite0": dict(statistics=None, engine="dense", zero_fill="grey 127/255"),
}
WHOLE = "runs whole through"  # how the occlusion footer says every copy ran through the whole network


def _ok(at: AppTest) -> AppTest:
    assert not at.exception, [e.value for e in at.exception]
    return at


@pytest.mark.parametrize("name", list(FACTS))
def test_model_dependent_sentences_are_true(name):
    facts = FACTS[name]
    at = open_page(name, "pages/playground.py", timeout=300)

    # Normalisation (playground and the prediction page): statistics only where they are statistics.
    [norm] = [m.value for m in at.markdown if "standard deviation" in m.value]
    [stats] = [c.value for c in at.caption if c.value.startswith("Mean ")]
    for text in (norm, stats):
        if facts["statistics"]:
            assert "training images" in text and "fixed constants" not in text, text
        else:
            assert "training images" not in text and "fixed constants" in text, text
    if facts["statistics"]:
        assert f"{facts['statistics']} training images" in norm and "spread of about 1" in norm
    else:
        assert "(p − 127) / 128" in norm and "between -0.99 and 1.00" in norm, norm

    _ok(at.switch_page("pages/prediction.py").run())
    [cell] = [c.value for c in at.caption if "The mean and std are" in c.value]
    if facts["statistics"]:
        assert f"{facts['statistics']} training images" in cell
    else:
        assert "fixed constants" in cell and "(p − 127) / 128" in cell

    # Occlusion: fills named by what they are for this model; the engine said truly, before and after.
    window, stride = (5, 5) if name == "fashion_cnn" else (96, 64)  # a handful of positions: fast
    at.session_state[f"occ_window_{name}"] = window
    at.session_state[f"occ_stride_{name}_{window}"] = stride
    _ok(at.switch_page("pages/occlusion.py").run())
    start = [b for b in at.button if b.label.startswith("Compute")]
    if start:
        _ok(start[0].click().run())
    fill = at.selectbox(key="occ_fill")
    names = dict(zip(fill.options, ["zero", "mean", "grey", "blur"], strict=True))
    zero = next(label for label, kind in names.items() if kind == "zero")
    assert facts["zero_fill"] in zero, zero
    if facts["statistics"] is None:
        assert "mean" not in zero  # (p - 127) / 128 makes 0 a grey, not any data set's mean colour
    before = any(WHOLE in c.value for c in at.caption if "occluded copies (" not in c.value)
    after = [c.value for c in at.caption if "occluded copies (" in c.value]
    assert len(after) == 1, "the result's footer is missing"
    assert before == (facts["engine"] == "dense")
    assert (WHOLE in after[0]) == (facts["engine"] == "dense"), after[0]
    assert ("is a plain chain of layers, so only the part" in after[0]) == (facts["engine"] == "incremental")
