"""Stage A as a function of the model's output: logits in, targets out, in the caller's arrays.

:class:`StageA` needs no model wrapper and no fitter: a training loop that already has the
network's logits (numpy, torch on CPU or CUDA, any array-API library) calls
``StageA.propose(logits, batch)`` and gets the targets back in the same namespace and on the
same device. The solvers run on the host: the logits, seeds and images are copied there once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array, is_torch_array

from chainrule2._validation import check_logits, check_positive
from chainrule2.base import Batch, Proposal, StageAReport, as_items
from chainrule2.solvers.base import solve_batch

logger = logging.getLogger(__name__)

__all__ = ["StageA", "to_host"]


def to_host(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy, torch on any device, or another array-API array) as a host numpy array.

    One device-to-host copy at most; autograd is cut (stage A is a constant for stage B).
    """
    if is_numpy_array(x):
        return np.asarray(x)
    if is_torch_array(x):
        return x.detach().cpu().numpy()
    try:
        array_namespace(x)
    except TypeError:
        raise TypeError(
            f"{name}: expected a numpy array, a torch tensor or another array-API array, got {type(x).__name__}"
        ) from None
    try:
        return np.from_dlpack(x)
    except (TypeError, RuntimeError, BufferError):  # not on the host, or no DLPack export
        return np.asarray(x)


def _to_caller(targets: np.ndarray, like: Any) -> Any:
    """``targets`` in ``like``'s namespace and on its device (numpy stays numpy)."""
    if is_numpy_array(like):
        return targets
    xp = array_namespace(like)
    return xp.asarray(targets, device=device(like))


def _class_axis_last(logits: np.ndarray, class_axis: int, seeds_shape: tuple[int, ...]) -> np.ndarray:
    """Move the class axis last, with an error that says how to fix a layout mistake."""
    ndim = logits.ndim
    if isinstance(class_axis, bool) or not isinstance(class_axis, (int, np.integer)) or not -ndim <= class_axis < ndim:
        raise ValueError(
            f"class_axis: expected an int in [-{ndim}, {ndim}) for logits of shape {logits.shape}, got {class_axis!r}"
        )
    moved = np.moveaxis(logits, class_axis, -1)
    if moved.shape[:-1] == seeds_shape:
        return moved
    hint = ""
    for axis, suggestion in (
        (1, "for NCHW logits (N, C, H, W) pass class_axis=1"),
        (-1, "for NHWC logits pass class_axis=-1"),
    ):
        if axis % ndim != class_axis % ndim and np.moveaxis(logits, axis, -1).shape[:-1] == seeds_shape:
            hint = f"; {suggestion}"
    raise ValueError(
        f"logits: expected the class axis at class_axis={class_axis} so that the other axes {moved.shape[:-1]} "
        f"match batch.seeds {seeds_shape}, got logits of shape {logits.shape}{hint}"
    )


def _host_images(images: Any, seeds_shape: tuple[int, ...]) -> np.ndarray | None:
    if images is None:
        return None
    host = to_host(images, "batch.images")
    if host.shape[: len(seeds_shape)] != seeds_shape:
        hint = ""
        if host.ndim == len(seeds_shape) + 1 and host.shape[:1] + host.shape[2:] == seeds_shape:
            hint = " (channels-first images: pass them channel-last, e.g. images.permute(0, 2, 3, 1))"
        raise ValueError(
            f"batch.images: expected host images (N, H, W[, C]) with (N, H, W) = {seeds_shape} (the seeds'), "
            f"got {host.shape}{hint}"
        )
    return host.astype(np.float64, copy=False)


@dataclass(frozen=True)
class StageA:
    """Stage A: per item, ``min_y loss(y) + trust_weight · d_A(y, softmax(logits))``.

    Parameters
    ----------
    solver : Subproblem
        E.g. :class:`~chainrule2.solvers.AlphaExpansion`, :class:`~chainrule2.solvers.MeanField`
        or :class:`~chainrule2.solvers.GradientStep`.
    loss : Loss
        The regularised loss, e.g. :class:`~chainrule2.losses.ScribblePotts`.
    trust_divergence : Divergence
        d_A, the trust region around the model's prediction.
    trust_weight : float
        β ≥ 0.
    batch_solver : callable or None
        ``batch_solver(solver, energies, initials) -> list[SolverState]``; default a serial loop
        (:func:`chainrule2.solvers.solve_batch`); e.g. :class:`~chainrule2.solvers.ProcessBatchSolver`.

    Examples
    --------
    >>> import numpy as np
    >>> from chainrule2.divergences import CrossEntropy
    >>> from chainrule2.losses import ChainScribblePotts
    >>> from chainrule2.solvers import ChainViterbi
    >>> stage_a = StageA(ChainViterbi(), ChainScribblePotts(potts_weight=1.0), CrossEntropy(), trust_weight=0.5)
    >>> logits = np.zeros((1, 4, 2))                      # (N, n, L): an undecided model
    >>> seeds = np.array([[0, 255, 255, 1]])              # 255 = unlabeled
    >>> stage_a.propose(logits, Batch(None, seeds, images=np.zeros((1, 4, 1)))).targets.shape
    (1, 4)
    """

    solver: Any
    loss: Any
    trust_divergence: Any
    trust_weight: float
    batch_solver: Any = None

    def __post_init__(self) -> None:
        check_positive(self.trust_weight, "trust_weight", allow_zero=True)
        for method in ("init", "step", "energies", "max_steps"):
            if not callable(getattr(self.solver, method, None)):
                raise TypeError(f"solver: expected a Subproblem with {method}(), got {type(self.solver).__name__}")
        if not callable(getattr(self.trust_divergence, "label_costs", None)):
            raise TypeError(f"trust_divergence: expected a Divergence, got {type(self.trust_divergence).__name__}")
        if self.batch_solver is not None and not callable(self.batch_solver):
            raise TypeError(
                "batch_solver: expected None or a callable (solver, energies, initials) -> states, "
                f"got {type(self.batch_solver).__name__}"
            )

    def propose(
        self, logits: Any, batch: Batch, initial: Sequence[Any] | None = None, *, class_axis: int = -1
    ) -> Proposal:
        """Stage-A targets for every item of ``batch``, from the model's ``logits``.

        Parameters
        ----------
        logits : array (N, ..., L), or with the class axis at ``class_axis``
            The model's output on ``batch`` (numpy, torch on CPU/CUDA, array-API). Gradients are
            not tracked through stage A; compute them in eval mode for the paper's unary.
        batch : Batch
            ``seeds`` ``(N, ...)`` (255 unlabeled, 254 padding) and, for contrast-sensitive losses,
            ``images`` ``(N, ..., C)``; numpy or torch on any device. ``inputs`` is not used.
        initial : sequence of per-item warm starts or None
            E.g. the cached previous labels (any array type; ``None`` entries start cold).
        class_axis : int
            Where the class axis of ``logits`` is: ``-1`` (class axis last, the default) or ``1``
            for NCHW torch output.

        Returns
        -------
        Proposal
            ``targets``: labels ``(N, ...)`` (int64) or soft targets with the class axis where it
            was in ``logits``, in ``logits``' namespace and on its device; ``report``: one energy
            trace per item and the seconds of the host copy and of the solver.
        """
        start = time.perf_counter()
        host_batch = self._host_batch(batch)
        host_logits = _class_axis_last(to_host(logits, "logits"), class_axis, tuple(host_batch.seeds.shape))
        check_logits(host_logits, "logits")
        initials = [
            None if a is None else to_host(a, "initial") for a in as_items(initial, host_logits.shape[0], "initial")
        ]
        copied = time.perf_counter()
        energies = self.solver.energies(self.loss, host_logits, host_batch, self.trust_divergence, self.trust_weight)
        batch_solver = solve_batch if self.batch_solver is None else self.batch_solver
        states = batch_solver(self.solver, energies, initials)
        targets = np.stack([np.asarray(state.solution) for state in states])
        if targets.ndim == host_logits.ndim:  # soft targets: back to the caller's layout
            targets = np.moveaxis(targets, -1, class_axis)
        report = StageAReport(
            traces=tuple(state.trace for state in states),
            predict_seconds=copied - start,
            solve_seconds=time.perf_counter() - copied,
        )
        logger.debug("stage A: energy %.6g in %.3fs", report.energy, report.seconds)
        return Proposal(_to_caller(targets, logits), report)

    @staticmethod
    def _host_batch(batch: Batch) -> Batch:
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a chainrule2.Batch, got {type(batch).__name__}")
        seeds = to_host(batch.seeds, "batch.seeds")
        if not np.issubdtype(seeds.dtype, np.integer):
            raise TypeError(
                f"batch.seeds: expected integer labels (255 unlabeled, 254 padding), got dtype {seeds.dtype}"
            )
        return Batch(None, seeds, _host_images(batch.images, tuple(seeds.shape)), batch.ids)
