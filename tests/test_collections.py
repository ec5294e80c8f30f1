"""The teacher's collections: where they are named, how their files are checked, what breaks them."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.networks.collections import (
    COLLECTIONS_ENV,
    CollectionConfigError,
    collection_folders,
    load_teacher_collection,
)
from app.networks.images import MAX_BYTES, ImageError
from app.networks.models import CONFIG_ENV, configured_models
from tests.conftest import photo, png_bytes


def make_collection(folder: Path, per_label: int = 3) -> Path:
    """fruit/orange and fruit/ball of generated pictures, one unreadable file, one oversized, one hidden."""
    for j, label in enumerate(("orange", "ball")):
        (folder / label).mkdir(parents=True)
        for i in range(per_label):
            (folder / label / f"{i}.png").write_bytes(png_bytes(photo((90 + 10 * i, 70), seed=i + 10 * j)))
    (folder / "orange" / "notes.jpg").write_text("a text file with an image's name")
    with open(folder / "ball" / "huge.jpg", "wb") as f:
        f.truncate(MAX_BYTES + 2**20)  # sparse: 21 MB on paper, nothing on the disk
    (folder / ".DS_Store").write_bytes(b"\0\1")
    return folder


def test_a_folder_is_loaded_label_by_folder_with_bad_files_skipped_and_explained(tmp_path):
    loaded = load_teacher_collection("fruit", make_collection(tmp_path / "fruit"))
    c = loaded.collection
    assert c.names == [f"ball/{i}.png" for i in range(3)] + [f"orange/{i}.png" for i in range(3)]
    reasons = {s.name: s.reason for s in c.skipped}
    assert set(reasons) == {"orange/notes.jpg", "ball/huge.jpg"}  # the hidden file is not the teacher's picture
    assert "text, not an image" in reasons["orange/notes.jpg"]
    assert reasons["ball/huge.jpg"].startswith("The file is 21.0 MB; the limit is 20 MB")
    assert loaded.store_name.startswith("collection-fruit-")


def test_the_store_name_follows_the_files(tmp_path):
    folder = make_collection(tmp_path / "fruit")
    before = load_teacher_collection("fruit", folder).store_name
    assert load_teacher_collection("fruit", folder).store_name == before
    (folder / "ball" / "0.png").write_bytes(png_bytes(photo((50, 50), seed=99)))
    assert load_teacher_collection("fruit", folder).store_name != before


def test_too_few_usable_images_is_a_clear_error(tmp_path):
    folder = tmp_path / "empty"
    (folder / "a").mkdir(parents=True)
    (folder / "a" / "only.png").write_bytes(png_bytes(photo((40, 40))))
    with pytest.raises(ImageError, match="at least 2 usable images"):
        load_teacher_collection("empty", folder)


def test_named_in_the_models_toml_and_in_a_collections_folder(tmp_path, monkeypatch):
    make_collection(tmp_path / "fruit")
    shelf = tmp_path / "shelf"
    make_collection(shelf / "animals")
    config = tmp_path / "models.toml"
    config.write_text(
        '[collections]\nfruit = "fruit"\n\n'
        '[my_resnet]\ntitle = "ResNet"\narchitecture = "resnet18"\nweights = "r.pth"\n'
    )
    monkeypatch.setenv(CONFIG_ENV, str(config))
    monkeypatch.setenv(COLLECTIONS_ENV, str(shelf))
    assert collection_folders() == {"fruit": tmp_path / "fruit", "animals": shelf / "animals"}
    assert list(configured_models()) == ["my_resnet"]  # [collections] is not a network


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('collections = "fruit"\n', "must be a table"),
        ("[collections]\nfruit = 3\n", "must be a folder path"),
        ('[collections]\nfruit = "nowhere"\n', "is not a folder"),
        ("[collections\n", "Cannot read"),
    ],
)
def test_a_broken_collections_table_is_reported_with_the_file(tmp_path, toml, message):
    config = tmp_path / "models.toml"
    config.write_text(toml)
    with pytest.raises(CollectionConfigError, match=message) as info:
        collection_folders(config)
    assert str(config) in str(info.value)


def test_the_same_name_twice_and_a_missing_folder_are_reported(tmp_path):
    make_collection(tmp_path / "fruit")
    (tmp_path / "shelf" / "fruit").mkdir(parents=True)
    config = tmp_path / "models.toml"
    config.write_text('[collections]\nfruit = "fruit"\n')
    with pytest.raises(CollectionConfigError, match="Two collections are called 'fruit'"):
        collection_folders(config, tmp_path / "shelf")
    with pytest.raises(CollectionConfigError, match="is not a folder"):
        collection_folders(None, tmp_path / "missing")
