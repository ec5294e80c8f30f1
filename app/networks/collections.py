"""The teacher's image collections: labelled folders on the server that every student can explore.

A collection is a folder with one sub-folder per label (fruit/orange/*.jpg,
fruit/basketball/*.jpg). The teacher names them in the same TOML file as the extra
networks ($CNN_LENS_MODELS), in a `[collections]` table:

    [collections]
    fruit = "/srv/collections/fruit"    # relative paths are read from the TOML file's folder

or puts them in one folder, $CNN_LENS_COLLECTIONS, each sub-folder a collection. Files go
through the same checks as a student's upload (app.networks.images): unreadable, oversized
or non-image files are skipped with the upload's message, so the teacher learns which and
why (`make warm` prints them, the pages list them), and the app keeps working.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from app.base.errors import ImageError, LensError
from app.networks.images import MAX_BYTES, Collection, Skipped, check_size, load_collection
from app.networks.models import COLLECTIONS_TABLE, CONFIG_ENV

COLLECTIONS_ENV = "CNN_LENS_COLLECTIONS"
MAX_IMAGES = 500  # as for an upload: each image is held in memory at up to 512 px


class CollectionConfigError(LensError):
    """The teacher's [collections] table, or the collections folder, names something unusable."""


@dataclass(frozen=True)
class TeacherCollection:
    """A loaded collection and its name in the store of computed results (changes with its files)."""

    name: str
    collection: Collection

    @property
    def store_name(self) -> str:
        return f"collection-{self.name}-{self.collection.key[:32]}"


def collection_folders(config: str | Path | None = None, folder: str | Path | None = None) -> dict[str, Path]:
    """{name: folder} of the teacher's collections: the TOML file's [collections] table, then the
    sub-folders of the collections folder (defaults: $CNN_LENS_MODELS, $CNN_LENS_COLLECTIONS).

    Raises CollectionConfigError naming the file and the problem, as a broken model entry does.
    """
    out = _from_config(config or os.environ.get(CONFIG_ENV))
    root = folder or os.environ.get(COLLECTIONS_ENV)
    if root:
        root = Path(root)
        if not root.is_dir():
            raise CollectionConfigError(f"{COLLECTIONS_ENV}={root} is not a folder")
        for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if sub.name in out:
                raise CollectionConfigError(f"Two collections are called {sub.name!r}: {out[sub.name]} and {sub}")
            out[sub.name] = sub
    return out


def _from_config(path: str | Path | None) -> dict[str, Path]:
    if not path:
        return {}
    try:
        tables = tomllib.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise CollectionConfigError(f"Cannot read the config {path}: {exc}") from exc
    entries = tables.get(COLLECTIONS_TABLE, {})
    if not isinstance(entries, dict):
        raise CollectionConfigError(f'{path}: [{COLLECTIONS_TABLE}] must be a table of name = "folder" lines')
    out = {}
    for name, value in entries.items():
        if not isinstance(value, str):
            raise CollectionConfigError(f"{path}: [{COLLECTIONS_TABLE}] {name} must be a folder path in quotes")
        folder = Path(value) if Path(value).is_absolute() else Path(path).resolve().parent / value
        if not folder.is_dir():
            raise CollectionConfigError(f"{path}: [{COLLECTIONS_TABLE}] {name}: {folder} is not a folder")
        out[name] = folder
    return out


def load_teacher_collection(name: str, folder: Path, max_images: int = MAX_IMAGES) -> TeacherCollection:
    """Every file under `folder` (named "label/file.jpg" by its path inside it), checked and decoded as
    an upload is. A file over the upload limit is skipped without being read. Raises ImageError when
    fewer than two images are usable, with the first reasons."""
    skipped: list[Skipped] = []
    collection = load_collection(_files(folder, skipped), max_images=max_images)
    return TeacherCollection(name, Collection(collection.items, skipped + collection.skipped))


def _files(folder: Path, skipped: list[Skipped]) -> Iterator[tuple[str, bytes]]:
    """(path inside the folder, bytes) of each file, in name order; hidden files and folders left out."""
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if any(part.startswith(".") for part in path.relative_to(folder).parts) or not path.is_file():
            continue
        try:
            check_size(path.stat().st_size, MAX_BYTES)
            data = path.read_bytes()
        except ImageError as exc:
            skipped.append(Skipped(name, str(exc)))
            continue
        except OSError as exc:
            skipped.append(Skipped(name, f"cannot be read on the server ({exc.strerror})"))
            continue
        yield name, data
