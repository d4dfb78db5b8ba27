"""How a flat parameter vector splits into the tensors torch would hold: weight matrices and the
vectors between them. A leaf module: tasks declare their layout with it, and rules that work per
tensor (Muon, Adafactor) read it."""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Matrix:
    """A weight matrix inside the flat parameters: ``flat[offset : offset + rows * cols]`` read
    row-major as (rows, cols). torch's weight of the same layer (nn.Linear's (out, in)) is that
    matrix, or its transpose when ``transposed``."""

    offset: int
    rows: int
    cols: int
    transposed: bool = False

    @property
    def span(self) -> slice:
        """Where the matrix lies in the flat parameters."""
        return slice(self.offset, self.offset + self.rows * self.cols)

    def view(self, flat: "np.ndarray") -> "np.ndarray":
        """The matrix in torch's orientation, as a view into ``flat``: (rows, cols) from flat
        parameters (P,), or every member's, (K, rows, cols), from a population's (K, P)."""
        # splitting the last axis in two never copies
        matrix = flat[..., self.span].reshape(*flat.shape[:-1], self.rows, self.cols)
        return matrix.swapaxes(-1, -2) if self.transposed else matrix


@dataclass(frozen=True, slots=True)
class TensorLayout:
    """Where the weight matrices lie in the flat parameters, the runs of other coordinates
    (``vectors``, contiguous slices in flat order), and which runs form one torch tensor
    (``tensors``: each declared vector alone, or every run together when none is declared)."""

    matrices: tuple[Matrix, ...]
    vectors: tuple[slice, ...]
    tensors: tuple[tuple[slice, ...], ...]


def tensor_layout(matrices: tuple[Matrix, ...], size: int, vectors: tuple[tuple[int, int], ...] = ()) -> TensorLayout:
    """The layout of ``size`` flat parameters holding ``matrices`` and, if declared, ``vectors``
    ((offset, size) each); ValueError if a block is empty, lies outside the parameters or overlaps
    another, or if declared vectors leave a coordinate outside every block."""
    spans = []
    for m in matrices:
        if not (m.rows >= 1 and m.cols >= 1 and m.offset >= 0 and m.offset + m.rows * m.cols <= size):
            raise ValueError(f"matrix {m} does not lie inside the {size} parameters")
        spans.append((m.offset, m.offset + m.rows * m.cols, True))
    for offset, length in vectors:
        if not (length >= 1 and offset >= 0 and offset + length <= size):
            raise ValueError(f"vector ({offset}, {length}) does not lie inside the {size} parameters")
        spans.append((offset, offset + length, False))
    runs, declared, at = [], [], 0
    for start, stop, is_matrix in sorted(spans):
        if start < at:
            raise ValueError(f"parameter blocks overlap at parameter {start}")
        if start > at:
            if vectors:
                raise ValueError(f"parameters {at}-{start - 1} are in no declared matrix or vector")
            runs.append(slice(at, start))
        if not is_matrix:
            declared.append(slice(start, stop))
        at = stop
    if at < size:
        if vectors:
            raise ValueError(f"parameters {at}-{size - 1} are in no declared matrix or vector")
        runs.append(slice(at, size))
    if vectors:
        return TensorLayout(tuple(matrices), tuple(declared), tuple((v,) for v in declared))
    return TensorLayout(tuple(matrices), tuple(runs), (tuple(runs),) if runs else ())
