"""Convolution, max pooling, ReLU and the convolution's backward pass, one output cell at a time.

The layer playground shows what these layers compute; this module shows how, by
listing every step a student would do on paper: where the window sits, which
numbers it multiplies, their sum, and the output cell it fills. The steps are
computed here by hand with NumPy loops, on purpose not with PyTorch, so that the
tests (and the page, with the functions at the end) can check them against
`F.conv2d`, `F.max_pool2d` and autograd as independent oracles.

All three sweeps (a forward convolution, the gradient with respect to the input and
the gradient with respect to the kernel) are the same operation: a small grid slid
over a larger one with some stride and dilation, multiplying and adding. `Sweep`
holds one such operation and answers "what happens at output cell (i, j)"; the
functions below set up the grid and the sliding kernel for each case.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from app.analyses import playground
from app.base.errors import LensError


class ShapeError(LensError):
    """The chosen kernel, stride, padding and dilation leave no room for a single window."""


def output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side of a convolution or pooling: floor((n + 2p - d(k-1) - 1) / s) + 1 (PyTorch's formula)."""
    return (n + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def size_formula(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> list[str]:
    """The output-size formula worked through to the answer: LaTeX pieces, each equal to the next."""
    top = n + 2 * padding - dilation * (kernel - 1) - 1
    answer = output_size(n, kernel, stride, padding, dilation)
    floor = r"\left\lfloor \frac{%s}{%s} \right\rfloor + 1"
    filled = rf"{n} + 2\cdot{padding} - {dilation}\cdot({kernel}-1) - 1"
    return [floor % ("H + 2p - d(k-1) - 1", "s"), floor % (filled, stride), floor % (top, stride), str(answer)]


def _check(n: tuple[int, int], kernel: int, stride: int, padding: int, dilation: int) -> None:
    if min(kernel, stride, dilation) < 1 or padding < 0:
        raise ShapeError("Kernel size, stride and dilation must be at least 1, padding at least 0.")
    if min(output_size(side, kernel, stride, padding, dilation) for side in n) < 1:
        span = dilation * (kernel - 1) + 1
        raise ShapeError(
            f"A {kernel}×{kernel} window with dilation {dilation} spans {span} pixels, more than the "
            f"{min(n)} + 2·{padding} pixels of the padded input. Make the kernel or dilation smaller, "
            "or the padding larger."
        )


@dataclass(frozen=True)
class Step:
    """One position of the sliding window."""

    cell: tuple[int, int]  # the output cell it fills (row, column)
    rows: np.ndarray  # grid rows under the kernel's rows, [k]
    cols: np.ndarray  # grid columns under the kernel's columns, [k]
    values: np.ndarray  # the grid values under the kernel [k, k]
    products: np.ndarray  # values × kernel [k, k]
    total: float  # sum of the products: the output cell's value


@dataclass(frozen=True)
class Sweep:
    """A kernel slid over a grid (already padded) with a stride and a dilation, multiply-and-add.

    out_shape may be smaller than the number of positions that fit: the gradient
    with respect to a kernel needs only the first k x k positions.
    """

    grid: np.ndarray  # [H, W], float64
    kernel: np.ndarray  # [k, k], float64
    stride: int
    dilation: int
    out_shape: tuple[int, int]

    def step(self, i: int, j: int) -> Step:
        kh, kw = self.kernel.shape
        rows = i * self.stride + self.dilation * np.arange(kh)
        cols = j * self.stride + self.dilation * np.arange(kw)
        values = self.grid[np.ix_(rows, cols)]
        products = values * self.kernel
        return Step((i, j), rows, cols, values, products, float(products.sum()))

    @cached_property
    def steps(self) -> list[Step]:
        """Every window position in reading order (row by row), as the animation shows them."""
        return [self.step(i, j) for i in range(self.out_shape[0]) for j in range(self.out_shape[1])]

    @cached_property
    def out(self) -> np.ndarray:
        return np.array([s.total for s in self.steps]).reshape(self.out_shape)


def _grid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {x.shape}")
    return x


def convolution(x: np.ndarray, kernel: np.ndarray, stride: int = 1, padding: int = 0, dilation: int = 1) -> Sweep:
    """A conv layer's sweep on one channel (no bias): the grid is x with `padding` zeros around it.

    Like PyTorch (and every CNN library) the kernel is not flipped: strictly this
    is a cross-correlation, which is what "convolution" means in deep learning.
    """
    x, kernel = _grid(x), _grid(kernel)
    _check(x.shape, kernel.shape[0], stride, padding, dilation)
    out = tuple(output_size(n, kernel.shape[0], stride, padding, dilation) for n in x.shape)
    return Sweep(np.pad(x, padding), kernel, stride, dilation, out)


@dataclass(frozen=True)
class PoolStep:
    cell: tuple[int, int]
    rows: np.ndarray  # padded-grid rows of the window, [k]
    cols: np.ndarray
    winner: tuple[int, int]  # position of the largest value in the padded grid (first in reading order on ties)
    value: float


@dataclass(frozen=True)
class Pooling:
    grid: np.ndarray  # input padded with -inf, as F.max_pool2d pads: padding can never win
    padding: int
    steps: list[PoolStep]
    out: np.ndarray


def max_pool(x: np.ndarray, window: int, stride: int, padding: int = 0, dilation: int = 1) -> Pooling:
    """Max pooling step by step: each window, which value wins it, and that value.

    PyTorch requires padding <= window // 2 (a window entirely of padding would have
    no winner); the same rule is enforced here.
    """
    x = _grid(x)
    _check(x.shape, window, stride, padding, dilation)
    if padding > window // 2:
        raise ShapeError(f"Padding may be at most half the window ({window // 2} for a {window}×{window} window).")
    grid = np.pad(x, padding, constant_values=-np.inf)
    out_shape = tuple(output_size(n, window, stride, padding, dilation) for n in x.shape)
    steps = []
    for i in range(out_shape[0]):
        for j in range(out_shape[1]):
            rows = i * stride + dilation * np.arange(window)
            cols = j * stride + dilation * np.arange(window)
            values = grid[np.ix_(rows, cols)]
            a, b = np.unravel_index(int(np.argmax(values)), values.shape)  # argmax: first maximum
            steps.append(PoolStep((i, j), rows, cols, (int(rows[a]), int(cols[b])), float(values[a, b])))
    return Pooling(grid, padding, steps, np.array([s.value for s in steps]).reshape(out_shape))


def relu(x: np.ndarray) -> np.ndarray:
    """max(0, x) elementwise, by hand (the tests compare it with F.relu)."""
    return np.where(x > 0, x, 0.0)


def input_gradient(
    upstream: np.ndarray,
    kernel: np.ndarray,
    in_shape: tuple[int, int],
    stride: int = 1,
    padding: int = 0,
    dilation: int = 1,
) -> tuple[Sweep, np.ndarray]:
    """dL/dx of a convolution: a full convolution of the upstream gradient with the flipped kernel.

    The upstream gradient g = dL/dy is first spread out by the stride (stride - 1
    zeros between its values: output neighbours were that far apart in the input),
    then framed by d(k-1) zeros ("full" padding, so that every input pixel any
    window touched gets a window of its own). The kernel, turned 180°, slides over
    that with stride 1 and the forward dilation. The result covers the padded input;
    the zero frame is cut off at the end (a gradient for padding is thrown away).
    Rows and columns no forward window reached get 0, because of extra zeros
    below and right of g.

    Returns the sweep (its grid is the spread-out, framed g; its output is the
    gradient for the padded input) and dL/dx itself [H, W].
    """
    g, kernel = _grid(upstream), _grid(kernel)
    k = kernel.shape[0]
    h, w = in_shape
    if g.shape != tuple(output_size(n, k, stride, padding, dilation) for n in in_shape):
        raise ValueError(f"upstream gradient {g.shape} does not match the convolution's output")
    frame = dilation * (k - 1)
    hp, wp = h + 2 * padding, w + 2 * padding
    grid = np.zeros((hp + frame, wp + frame))
    grid[
        frame : frame + (g.shape[0] - 1) * stride + 1 : stride, frame : frame + (g.shape[1] - 1) * stride + 1 : stride
    ] = g
    sweep = Sweep(grid, kernel[::-1, ::-1].copy(), 1, dilation, (hp, wp))
    return sweep, sweep.out[padding : padding + h, padding : padding + w]


def kernel_gradient(
    x: np.ndarray, upstream: np.ndarray, kernel_size: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> Sweep:
    """dL/dw of a convolution: the padded input correlated with the upstream gradient.

    Weight w[a, b] multiplied, in the forward pass, the input pixel at
    (i·s + a·d, j·s + b·d) for every output cell (i, j); so its gradient is the sum of
    those pixels weighted by g[i, j]. That is g used as the kernel, slid over the
    input with the roles of stride and dilation swapped (g's cells sit s apart, its
    positions move d apart), for k x k positions.
    """
    x, g = _grid(x), _grid(upstream)
    if g.shape != tuple(output_size(n, kernel_size, stride, padding, dilation) for n in x.shape):
        raise ValueError(f"upstream gradient {g.shape} does not match the convolution's output")
    return Sweep(np.pad(x, padding), g, dilation, stride, (kernel_size, kernel_size))


def max_pool_input_gradient(pooling: Pooling, upstream: np.ndarray) -> np.ndarray:
    """dL/dx of max pooling by hand: each window's upstream gradient goes to its winner (added up on overlaps)."""
    grad = np.zeros(pooling.grid.shape)
    for step in pooling.steps:
        grad[step.winner] += upstream[step.cell]
    p = pooling.padding
    return grad[p : grad.shape[0] - p, p : grad.shape[1] - p]


def upstream_example(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    """A made-up dL/dy of small whole numbers (-2..2), so every product can be checked in one's head."""
    return np.random.default_rng(seed).integers(-2, 3, size=shape).astype(np.float64)


def busiest_crop(x: np.ndarray, side: int) -> tuple[int, int]:
    """(top, left) of the side x side window with the most varied values, the best place to start watching.

    A crop from the middle of a picture is often one flat colour (the inside of a
    T-shirt), where every step computes the same number. Candidates are every
    window position; the spread is their standard deviation.
    """
    spreads = np.lib.stride_tricks.sliding_window_view(_grid(x), (side, side)).std(axis=(-2, -1))
    top, left = np.unravel_index(int(np.argmax(spreads)), spreads.shape)
    return int(top), int(left)


# A small hand-made picture: a bright square on a dark background, with a soft edge,
# so an edge kernel has something to find on every side.
SMALL_EXAMPLE = np.array(
    [
        [0, 0, 0, 0, 0, 0, 0],
        [0, 1, 1, 1, 1, 0, 0],
        [0, 1, 3, 3, 2, 1, 0],
        [0, 1, 3, 3, 2, 1, 0],
        [0, 1, 2, 2, 2, 1, 0],
        [0, 0, 1, 1, 1, 0, 0],
        [0, 0, 0, 0, 0, 0, 0],
    ],
    dtype=np.float64,
)


# ---------------------------------------------------------------- PyTorch's answers, shown beside the steps


def _tensor(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(np.asarray(a, dtype=np.float64))[None, None].requires_grad_(grad)


def torch_convolution(x: np.ndarray, kernel: np.ndarray, stride: int, padding: int, dilation: int) -> np.ndarray:
    """F.conv2d on the same numbers, so the page can show that the steps add up to what a layer computes."""
    return F.conv2d(_tensor(x), _tensor(kernel), stride=stride, padding=padding, dilation=dilation)[0, 0].numpy()


def torch_max_pool(x: np.ndarray, window: int, stride: int, padding: int, dilation: int) -> np.ndarray:
    return F.max_pool2d(_tensor(x), window, stride, padding, dilation)[0, 0].numpy()


def autograd_gradients(
    x: np.ndarray, kernel: np.ndarray, upstream: np.ndarray, stride: int, padding: int, dilation: int
) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dx, dL/dw) by PyTorch's autograd for L = sum(upstream * conv(x, w)): the oracle for the steps."""
    xt, wt = _tensor(x, True), _tensor(kernel, True)
    F.conv2d(xt, wt, stride=stride, padding=padding, dilation=dilation).backward(_tensor(upstream))
    return xt.grad[0, 0].numpy(), wt.grad[0, 0].numpy()


def pool_autograd_gradient(x: np.ndarray, window: int, stride: int, upstream: np.ndarray) -> np.ndarray:
    """dL/dx of max pooling by autograd: the layer playground's per-cell gradient, weighted by upstream and added."""
    return sum(
        (
            upstream[i, j] * playground.pool_backward(x, "max", window, stride, (i, j))
            for i, j in np.ndindex(*upstream.shape)
        ),
        start=np.zeros(np.shape(x)),
    )
