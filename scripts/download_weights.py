"""Fetch torchvision's pretrained VGG-16 weights into the torch cache (`make weights`).

The app works without them (an untrained VGG-16, clearly labelled), so a failed
download is reported and, with --optional, does not stop `make run`.
"""

from __future__ import annotations

import argparse
import sys

from app.base.errors import WeightsUnavailableError
from app.networks.models import get_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--optional", action="store_true", help="exit 0 even if the download fails")
    args = parser.parse_args()
    try:
        model = get_model("vgg16")
    except WeightsUnavailableError as exc:
        print(f"VGG-16 weights: {exc}", file=sys.stderr)
        sys.exit(0 if args.optional else 1)
    print(f"VGG-16 weights ready: {model.weights}")


if __name__ == "__main__":
    main()
