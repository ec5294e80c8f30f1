"""Put Fashion-MNIST into the project's data folder (`make data`).

Prefers a local copy (../shared/data, as on the course machines) so no download
is needed; otherwise torchvision downloads the official files. Either way the
MD5 sums are checked, so a half-copied file is caught here, not in the app.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
from pathlib import Path

from app.base.paths import REPO, data_dir

MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
LOCAL_COPIES = [REPO.parent / "shared" / "data"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def _complete(raw: Path) -> bool:
    return all((raw / name).exists() and _md5(raw / name) == digest for name, digest in MD5.items())


def prepare(root: Path) -> str:
    """Make root/FashionMNIST/raw complete; returns where the files came from."""
    raw = root / "FashionMNIST" / "raw"
    if _complete(raw):
        return "already present"
    raw.mkdir(parents=True, exist_ok=True)
    for source in LOCAL_COPIES:
        src = source / "FashionMNIST" / "raw"
        if _complete(src):
            for name in MD5:
                shutil.copyfile(src / name, raw / name)
            return f"copied from {source}"
    from torchvision.datasets import FashionMNIST

    FashionMNIST(root=str(root), train=True, download=True)
    FashionMNIST(root=str(root), train=False, download=True)
    if not _complete(raw):
        raise SystemExit("Fashion-MNIST download finished but the files do not match their MD5 sums.")
    return "downloaded by torchvision"


def main() -> None:
    root = data_dir()
    try:
        how = prepare(root)
    except OSError as exc:
        sys.exit(f"Could not get Fashion-MNIST into {root}: {exc}")
    print(f"Fashion-MNIST in {root / 'FashionMNIST' / 'raw'}: {how}")


if __name__ == "__main__":
    main()
