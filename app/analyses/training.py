"""Train a small Fashion-MNIST CNN while someone watches: live curves, a stop button, a queue.

`train()` is the plain, synchronous loop (notebooks, tests): it reports a `Point`
(loss and accuracy on the training chunk and on a held-out test subset) every
`chunk` batches and checks a stop flag between batches, so stopping takes at most
one batch. `start()` runs it in the background (a separate one-thread process,
mirrored by a thread), which is what the page uses: the Streamlit script keeps
redrawing the curves from `Run.history` while the network trains.

A server has few cores, so trainings take a slot of the process's heavy-work pool
(`app.serving.jobs.HEAVY`, shared with the dreams; one per core unless `$CNN_LENS_MAX_JOBS`
says otherwise); a run that finds every slot taken waits in state "waiting" and the
page shows its place in the queue. Every run builds its own
network: the shipped weights and the shared models are never touched.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from app.base.paths import REPO
from app.networks.datasets import load_fashion_mnist
from app.networks.loaded import LoadedModel
from app.networks.models import MODEL_NAMES, wrap
from app.serving.jobs import HEAVY, Slots
from models.fashion_cnn import FashionCNN, normalise

Optimiser = Literal["SGD", "SGD + momentum", "Adam"]
Outcome = Literal["finished", "stopped", "diverged"]
OPTIMISERS: tuple[Optimiser, ...] = ("SGD", "SGD + momentum", "Adam")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a run.

    Defaults are a quick first run (the page quotes the time measured on its server): a
    network a quarter of the shipped width, 6000 training images seen twice, a 500-image
    test subset for the test curve.
    """

    optimiser: Optimiser = "Adam"
    lr: float = 1e-3
    batch_norm: bool = True
    dropout: bool = True
    epochs: int = 2
    train_size: int = 6000
    test_size: int = 500
    batch_size: int = 64
    width: int = 8  # channels of the first block (the shipped model has 32)
    chunk: int = 10  # batches between two points on the curves
    seed: int = 0

    def label(self) -> str:
        parts = [self.optimiser, f"lr {self.lr:g}", "BN" if self.batch_norm else "no BN"]
        parts += ["dropout" if self.dropout else "no dropout", f"{self.train_size} images × {self.epochs}"]
        return ", ".join(parts)


@dataclass(frozen=True)
class Point:
    """One point of the curves: metrics after `images` training images (epoch = images / train_size)."""

    images: int
    epoch: float
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float


def build_model(config: TrainConfig) -> nn.Module:
    """A fresh FashionCNN; without batch norm its BN layers are left out and the convs get a bias instead."""
    torch.manual_seed(config.seed)
    net = FashionCNN(width=config.width, dropout=0.3 if config.dropout else 0.0)
    if not config.batch_norm:
        layers = []
        for m in net.features:
            if isinstance(m, nn.BatchNorm2d):
                continue
            if isinstance(m, nn.Conv2d):
                m = nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, padding=m.padding)
            layers.append(m)
        net.features = nn.Sequential(*layers)
    return net


def _optimiser(config: TrainConfig, params) -> torch.optim.Optimizer:
    if config.optimiser == "Adam":
        return torch.optim.Adam(params, lr=config.lr)
    momentum = 0.9 if config.optimiser == "SGD + momentum" else 0.0
    return torch.optim.SGD(params, lr=config.lr, momentum=momentum)


def _subset(split: str, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = load_fashion_mnist(split)
    size = min(size, len(images))
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:size]
    return normalise(images[idx]), labels[idx]


def evaluate(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of `net` in eval mode on normalised x."""
    was_training = net.training
    net.eval()
    with torch.inference_mode():
        logits = torch.cat([net(x[i : i + 500]) for i in range(0, len(x), 500)])
    net.train(was_training)
    return F.cross_entropy(logits, y).item(), (logits.argmax(1) == y).float().mean().item()


def train(
    config: TrainConfig,
    on_point: Callable[[Point], None] | None = None,
    stop: threading.Event | None = None,
) -> tuple[nn.Module, list[Point], Outcome]:
    """Train a new network; returns (network in eval mode, curve points, outcome).

    Mini-batch training on a seeded random subset of the training set; the test
    subset (also seeded) is only evaluated, never trained on. Outcome "stopped":
    `stop` was set; "diverged": the loss stopped being a finite number (learning
    rate far too large), and the run ends with what was recorded so far.
    """
    x, y = _subset("train", config.train_size, config.seed)
    test_x, test_y = _subset("test", config.test_size, config.seed + 1)
    net = build_model(config).train()
    opt = _optimiser(config, net.parameters())
    gen = torch.Generator().manual_seed(config.seed)
    batches = math.ceil(len(x) / config.batch_size)
    history: list[Point] = []
    seen, run_loss, run_correct, run_n = 0, 0.0, 0, 0
    outcome: Outcome = "finished"
    for _epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=gen)
        for b in range(batches):
            if stop is not None and stop.is_set():
                outcome = "stopped"
                break
            idx = order[b * config.batch_size : (b + 1) * config.batch_size]
            logits = net(x[idx])
            loss = F.cross_entropy(logits, y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            seen += len(idx)
            run_loss += loss.item() * len(idx)
            run_correct += (logits.argmax(1) == y[idx]).sum().item()
            run_n += len(idx)
            last = b == batches - 1
            if (b + 1) % config.chunk == 0 or last or not math.isfinite(loss.item()):
                test_loss, test_acc = evaluate(net, test_x, test_y)
                point = Point(seen, seen / len(x), run_loss / run_n, run_correct / run_n, test_loss, test_acc)
                history.append(point)
                if on_point is not None:
                    on_point(point)
                run_loss, run_correct, run_n = 0.0, 0, 0
                if not math.isfinite(point.train_loss):
                    outcome = "diverged"
                    break
        if outcome != "finished":
            break
    return net.eval(), history, outcome


# Trainings share the process's one pool of heavy-work slots with the dreams (app/serving/jobs.py):
# a training that finds every slot taken waits, and sees its place in the queue.
SLOTS = HEAVY

State = Literal["waiting", "running", "stopped", "finished", "diverged", "failed"]


@dataclass(eq=False)
class Run:
    """A training in a background thread; the page reads `state`, `history` and `progress()`."""

    config: TrainConfig
    state: State = "waiting"
    history: list[Point] = field(default_factory=list)
    net: nn.Module | None = None
    error: str | None = None
    seconds: float = 0.0
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def stop(self) -> None:
        self.stop_event.set()

    @property
    def active(self) -> bool:
        return self.state in ("waiting", "running")

    def progress(self) -> float:
        total = self.config.epochs * min(self.config.train_size, 60_000)
        return min(1.0, self.history[-1].images / total) if self.history else 0.0

    def join(self, timeout: float | None = None) -> None:
        if self.thread is not None:
            self.thread.join(timeout)


def _worker_main() -> None:
    """Entry point of the training process (`python -c ... <fd>`), see `_train_in_process`.

    argv[2] is the pickled config (hex). One byte on stdin, or its end of file, means
    "stop": if the server dies, the closed pipe stops the training too. stdin is read
    with os.read (no buffered-reader lock left held at exit). Messages go to the pipe
    whose descriptor is argv[1], never to stdout, so stray prints cannot corrupt them.
    """
    out = os.fdopen(int(sys.argv[1]), "wb")
    config = pickle.loads(bytes.fromhex(sys.argv[2]))
    stop = threading.Event()
    threading.Thread(target=lambda: (os.read(0, 1), stop.set()), daemon=True).start()

    def send(message: tuple) -> None:
        pickle.dump(message, out)
        out.flush()

    torch.set_num_threads(1)
    try:
        net, _, outcome = train(config, lambda p: send(("point", p)), stop)
        buf = io.BytesIO()
        torch.save(net.state_dict(), buf)
        send(("done", outcome, buf.getvalue()))
    except Exception as exc:  # reported to the page, not lost with the process
        send(("error", f"{type(exc).__name__}: {exc}"))


def _train_in_process(run: Run) -> tuple[nn.Module, Outcome]:
    """Run `train` in a fresh Python process and mirror its messages into `run`.

    A separate process gets its own PyTorch thread pool of one thread: sharing the
    server's pool made two busy cores about ten times slower (threads waiting on
    each other), and a process cannot slow down the analyses other sessions run.
    It is a plain subprocess, not multiprocessing: multiprocessing's "spawn" re-runs
    the main module in the child, and inside Streamlit that is the page script.
    """
    read_fd, write_fd = os.pipe()
    code = "from app.analyses.training import _worker_main; _worker_main()"
    args = [sys.executable, "-c", code, str(write_fd), pickle.dumps(run.config).hex()]
    proc = subprocess.Popen(args, stdin=subprocess.PIPE, pass_fds=(write_fd,), cwd=REPO)
    os.close(write_fd)

    def forward_stop() -> None:
        while proc.poll() is None:
            if run.stop_event.wait(0.2):
                with contextlib.suppress(OSError):
                    proc.stdin.write(b"s")
                    proc.stdin.flush()
                return

    threading.Thread(target=forward_stop, daemon=True).start()
    try:
        with os.fdopen(read_fd, "rb") as messages:
            while True:
                try:
                    msg = pickle.load(messages)
                except EOFError:
                    raise RuntimeError(f"the training process ended unexpectedly (exit code {proc.wait()})") from None
                if msg[0] == "point":
                    run.history.append(msg[1])
                elif msg[0] == "done":
                    net = build_model(run.config)
                    net.load_state_dict(torch.load(io.BytesIO(msg[2]), weights_only=True))
                    return net.eval(), msg[1]
                else:
                    raise RuntimeError(msg[1])
    finally:
        with contextlib.suppress(OSError):
            proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


# Seconds per training image seen, of the last finished run of each network shape (width,
# batch norm) in this process: estimates are scaled from what this server really did, since
# speed depends on its CPU and on how many people share it.
_pace: dict[tuple[int, bool], float] = {}


def _shape(config: TrainConfig) -> tuple[int, bool]:
    return config.width, config.batch_norm


def estimate_seconds(config: TrainConfig) -> float | None:
    """Expected wall time of a run, scaled linearly from the last finished run of the same network
    shape on this server (images × epochs); None until one has finished."""
    pace = _pace.get(_shape(config))
    return None if pace is None else pace * config.epochs * min(config.train_size, 60_000)


def _work(run: Run, slots: Slots, isolated: bool, owner: Hashable | None) -> None:
    if not slots.acquire(run.stop_event, ticket=run, owner=owner):
        run.state = "stopped"
        return
    try:
        run.state = "running"
        start = time.perf_counter()
        if isolated:
            net, outcome = _train_in_process(run)
        else:
            net, _, outcome = train(run.config, run.history.append, run.stop_event)
        run.seconds, run.net = time.perf_counter() - start, net
        if outcome == "finished":
            _pace[_shape(run.config)] = run.seconds / (run.config.epochs * min(run.config.train_size, 60_000))
        run.state = outcome  # last: the page treats a final state as "everything is filled in"
    except Exception as exc:  # the page shows it; the server thread must not die silently
        run.error = f"{type(exc).__name__}: {exc}"
        run.state = "failed"
    finally:
        slots.release(run)


def start(config: TrainConfig, slots: Slots = SLOTS, isolated: bool = True, owner: Hashable | None = None) -> Run:
    """Start training in the background and return at once; poll the Run for progress.

    isolated=True (the app) trains in a separate process with one thread; False
    trains in a thread of this process (quicker to start, for tests and notebooks).
    owner: the student it is for, so the queue takes students in turn (app.serving.jobs.Slots).
    """
    run = Run(config)
    run.thread = threading.Thread(
        target=_work, args=(run, slots, isolated, owner), daemon=True, name="cnn-lens-training"
    )
    run.thread.start()
    return run


def as_loaded_model(run: Run) -> LoadedModel:
    """The run's network wrapped like the shipped Fashion model, so every page can analyse it.

    Same name, labels, input size and normalisation as `get_model("fashion_cnn")`
    (pages branch on the name), its own module and lock, wrapped by the registry's
    `wrap` exactly as the shipped network is.
    """
    if run.net is None:
        raise ValueError("this run has no trained network yet")
    title = f"{MODEL_NAMES['fashion_cnn']}, trained in this session"
    origin = f"trained in this session ({run.config.label()})"
    return wrap("fashion_cnn", run.net, origin, True, title=title, device=torch.device("cpu"))
