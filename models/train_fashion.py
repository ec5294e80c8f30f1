"""Reproducible training of the Fashion-MNIST CNN.

Run `python -m models.train_fashion` to rebuild `models/fashion_cnn.pt` and
`models/fashion_cnn.json`. Seeded and single-process so a rerun on the same
machine gives the same weights; bf16 autocast is used only where the CPU
supports it natively, because it roughly halves the epoch time there.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from app.networks.datasets import load_fashion_mnist
from app.serving.precision import bf16_fast
from models.fashion_cnn import FashionCNN, normalise

HERE = Path(__file__).resolve().parent
WEIGHTS = HERE / "fashion_cnn.pt"
METRICS = HERE / "fashion_cnn.json"


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random shift of up to 2 pixels."""
    flip = torch.rand(x.shape[0], generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (2, 2, 2, 2))
    dy, dx = torch.randint(0, 5, (2,), generator=gen).tolist()
    return padded[:, :, dy : dy + 28, dx : dx + 28]


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of `model` on uint8 images [N, 28, 28]."""
    model.eval()
    correct = 0
    with torch.inference_mode():
        for i in range(0, len(images), 1000):
            x = normalise(images[i : i + 1000])
            correct += (model(x).argmax(1) == labels[i : i + 1000]).sum().item()
    return correct / len(images)


def train(
    epochs: int = 12, batch_size: int = 128, lr: float = 0.1, seed: int = 0, data_dir: Path | None = None
) -> dict:
    torch.manual_seed(seed)
    np.random.seed(seed)
    gen = torch.Generator().manual_seed(seed)
    train_x, train_y = load_fashion_mnist("train", data_dir)
    test_x, test_y = load_fashion_mnist("test", data_dir)
    model = FashionCNN()
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4, nesterov=True)
    steps = epochs * (len(train_x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=lr, total_steps=steps)
    use_bf16 = bf16_fast("cpu")
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        total, seen = 0.0, 0
        n_batches = len(train_x) // batch_size
        for b in range(n_batches):
            idx = order[b * batch_size : (b + 1) * batch_size]
            x = _augment(normalise(train_x[idx]), gen)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use_bf16):
                loss = F.cross_entropy(model(x), train_y[idx], label_smoothing=0.1)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            if b % 50 == 0 or b == n_batches - 1:
                bar = "#" * int(30 * (b + 1) / n_batches)
                print(f"\repoch {epoch + 1}/{epochs} [{bar:<30}] loss {total / seen:.4f}", end="", flush=True)
        acc = evaluate(model, test_x, test_y)
        print(f"  test acc {acc:.4f}  ({time.perf_counter() - start:.0f}s)", flush=True)
    seconds = time.perf_counter() - start
    return {
        "model": model,
        "metrics": {
            "test_accuracy": acc,
            "epochs": epochs,
            "seed": seed,
            "batch_size": batch_size,
            "max_lr": lr,
            "train_seconds": round(seconds, 1),
            "bf16_autocast": use_bf16,
            "torch": torch.__version__,
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=WEIGHTS)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    result = train(epochs=args.epochs, seed=args.seed)
    torch.save(result["model"].state_dict(), args.out)
    args.out.with_suffix(".json").write_text(json.dumps(result["metrics"], indent=2) + "\n")
    print(json.dumps(result["metrics"], indent=2))


if __name__ == "__main__":
    main()
