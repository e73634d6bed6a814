"""Monotone mean-field inference for the dense CRF of Dense-TR (:class:`~chainrule2.energies.DenseMeanFieldEnergy`).

One implementation of the update serves both forms: :meth:`DenseMeanField.step` on one host
:class:`~chainrule2.energies.DenseMeanFieldEnergy` is the batched update of
:meth:`DenseMeanField.run_batch` on a batch of one, and :meth:`DenseMeanField.run_batch` runs it on
N items at once in their arrays' namespace and on their device (torch on CUDA: no host copy of the
logits or of Q).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from array_api_compat import array_namespace
from array_api_compat import device as array_device

from chainrule2.base import Batch, BatchResult, Divergence, Loss, SolverState
from chainrule2.energies.dense import DenseMeanFieldBatch, DenseMeanFieldEnergy
from chainrule2.losses.dense import DenseCRFLoss
from chainrule2.losses.scribble import ScribblePotts
from chainrule2.solvers.base import converged_items, first_state, host_copy, next_state, to_host
from chainrule2.solvers.mean_field import batch_start
from chainrule2.validation import check_int, check_labelling, check_logits, check_positive

__all__ = ["DenseMeanField"]


class _Memo(NamedTuple):
    """What a sweep needs of the current Q beyond Q itself (so one filtering pass per sweep), per item."""

    kernel: Any | None  # W of the small grids (N, M, M), or None to filter in blocks
    degree: Any  # W·1, (N, M)
    small: Any  # D·Q, (N, L, M)
    filtered: Any  # W·D·Q, (N, L, M)


class _Sweep(NamedTuple):
    """One sweep of every item: the new Q, F (the start's where no step was taken), the memo of Q and
    the items still active after it; ``left``: that mask on the host (``None``: not known without a
    further host sync); ``idle``: no item was active at its start (nothing done)."""

    q: Any
    value: Any
    memo: _Memo
    active: Any
    left: np.ndarray | None
    idle: bool


def _check_energy(energy: object, solver: str) -> DenseMeanFieldEnergy:
    if not isinstance(energy, DenseMeanFieldEnergy):
        raise TypeError(f"energy: {solver} solves a DenseMeanFieldEnergy, got {type(energy).__name__}")
    return energy


@dataclass(frozen=True)
class DenseMeanField:
    """Krähenbühl–Koltun parallel mean-field with a backtracking line search: monotone, soft ``(H, W, L)``.

    Minimises the free energy F(Q) of :class:`~chainrule2.energies.DenseMeanFieldEnergy`. One
    :meth:`step` computes the parallel ("all pixels at once") update

        Q' = argmin_Q ⟨U + ∇P(Q₀), Q⟩ + T·Σ Q log Q = softmax(−(U + c·Dᵀ(W1 − 2W·DQ₀))/T),

    the minimiser of F with its pairwise term P linearised at the current Q₀ (the label-constant
    c·DᵀW1 drops out of the softmax: the familiar Q' ∝ exp((2c·DᵀW·DQ₀ − U)/T); the 2 because
    P counts every ordered pair). Alone this update can raise F and oscillate; but Q' − Q₀ is a
    descent direction of F (the linearised objective is strictly convex and Q' its minimiser, so
    ∇F(Q₀)·(Q' − Q₀) ≤ G(Q') − G(Q₀) < 0 unless Q' = Q₀), hence the step takes
    Q₀ + t(Q' − Q₀) for the first t = 1, ½, ¼, … (``max_halvings`` halvings) that lowers F, and
    counts as converged when none does or the decrease is below ``tolerance``. F is quadratic
    plus entropy along the line: W·D(Q' − Q₀) gives every trial's F without another filtering
    pass, so a step costs one pass over the kernel. Seeds stay one-hot, disallowed labels get no
    mass, padding pixels keep their start.

    On grids of at most ``max_kernel_pixels`` small-grid pixels the kernel is kept as an M × M
    matrix for the solve (8·M² bytes: 22 MB at M = 1680, a 96 × 70 image at scale 0.5) and
    dropped from the final state; larger grids are filtered in blocks every step.

    **Batched, on the model's device.** :meth:`batch_energy` and :meth:`run_batch` solve N items
    at once in the logits' array namespace and on their device (numpy, torch on CPU or CUDA,
    array_api_strict), float64: one vectorised update and line search for the whole batch, with
    the step size, the acceptance test and the convergence per item (an item that has converged
    stops changing; once at most half the items still move, the sweeps run on those alone), so
    each item's result is that of :func:`~chainrule2.solvers.run` on its :meth:`energies`
    problem, to float round-off. The N kernels are kept as one ``(N, M, M)`` array (8·N·M²
    bytes: 850 MB for 20 images padded to 96 × 96) under ``max_kernel_pixels``; the sweeps take
    at most one host sync each (and, when the batch shrinks, one copy of the remaining rows' indices
    to the device), and the halvings are computed only in a sweep where some item needs them.
    :class:`~chainrule2.StageA` takes this path for a :class:`~chainrule2.losses.DenseCRFLoss`
    and a fixed β (:meth:`batch_supported`). The kernel's features are computed once on the host
    from ``batch.images`` and ``batch.seeds`` (:meth:`BilateralKernel.items
    <chainrule2.energies.bilateral.BilateralKernel.items>`) and moved to the device.

    Parameters
    ----------
    max_sweeps : int
        Upper bound on steps (one parallel update each).
    temperature : float
        T > 0 of the energies built by :meth:`energies`.
    tolerance : float
        A step that lowers F by at most ``tolerance * max(1, |F|)`` counts as converged.
    max_halvings : int
        Halvings of t tried before a step gives up (F is then at a fixed point up to round-off).
    restrict_labels : bool
        :meth:`energies` allows only the classes present in the item's seeds (all when at most one
        is), the rule of :meth:`chainrule2.losses.ScribblePotts.allowed_labels`.
    max_kernel_pixels : int
        Largest small grid (M) whose kernel is kept as a matrix.
    batched : bool
        Offer the batched path (:meth:`batch_supported`): :class:`~chainrule2.StageA` then solves
        a batch at once on the logits' device. False keeps stage A per item on the host, which is
        faster on a CPU (the batch's N kernels are fresh memory every call: 1.7–1.9× slower on the
        development machine, docs/performance.md); the training loop sets it for CUDA only.

    Example
    -------
    >>> import numpy as np
    >>> from chainrule2.energies import DenseMeanFieldEnergy
    >>> from chainrule2.energies.bilateral import BilateralKernel
    >>> from chainrule2.solvers import run
    >>> unary = np.zeros((1, 3, 2)); unary[0, 1] = [0.5, 0.0]   # the middle pixel alone prefers 1
    >>> seeds = np.array([[0, 255, 0]])
    >>> energy = DenseMeanFieldEnergy(unary, np.zeros((1, 3)), BilateralKernel(sigma_xy=2.0, scale=1.0), 2.0, seeds)
    >>> q = run(DenseMeanField(), energy).solution
    >>> bool(q[0, 1, 0] > 0.9)  # it follows the two seeds it is similar to
    True
    """

    max_sweeps: int = 50
    temperature: float = 1.0
    tolerance: float = 1e-6
    max_halvings: int = 12
    restrict_labels: bool = True
    max_kernel_pixels: int = 4096
    batched: bool = True

    monotone: ClassVar[bool] = True

    def __post_init__(self) -> None:
        check_int(self.max_sweeps, "max_sweeps", minimum=1)
        check_positive(self.temperature, "temperature")
        if isinstance(self.tolerance, bool) or not (
            isinstance(self.tolerance, (int, float)) and 0 <= self.tolerance < 1
        ):
            raise ValueError(f"tolerance: expected a number in [0, 1), got {self.tolerance!r}")
        check_int(self.max_halvings, "max_halvings", minimum=0)
        if not isinstance(self.restrict_labels, bool):
            raise TypeError(f"restrict_labels: expected a bool, got {type(self.restrict_labels).__name__}")
        check_int(self.max_kernel_pixels, "max_kernel_pixels", minimum=0)
        if not isinstance(self.batched, bool):
            raise TypeError(f"batched: expected a bool, got {type(self.batched).__name__}")

    def max_steps(self) -> int:
        return self.max_sweeps

    def energies(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> list[DenseMeanFieldEnergy]:
        """One :class:`~chainrule2.energies.DenseMeanFieldEnergy` per item: U = β·label_costs(logits),
        λ and the kernel of the :class:`~chainrule2.losses.DenseCRFLoss` ``loss``, T = ``temperature``."""
        dense = self._check_loss(loss)
        check_logits(logits)
        beta = check_positive(trust_weight, "trust_weight", allow_zero=True)
        logits = np.asarray(logits)
        if logits.ndim != 4:
            raise ValueError(f"logits: expected (N, H, W, L), got shape {logits.shape}")
        if batch.images is None:
            raise ValueError("batch.images: DenseMeanField needs host images (N, H, W, C), got None")
        images, seeds = np.asarray(batch.images), np.asarray(batch.seeds)
        if seeds.shape != logits.shape[:3]:
            raise ValueError(f"batch.seeds: expected shape {logits.shape[:3]} (the logits' grid), got {seeds.shape}")
        if images.shape[:3] != seeds.shape:
            raise ValueError(
                f"batch.images: expected (N, H, W[, C]) with (N, H, W) = {seeds.shape}, got {images.shape}"
            )
        unary = beta * np.asarray(trust_divergence.label_costs(logits), dtype=np.float64)
        num_labels = int(logits.shape[-1])
        rule = ScribblePotts(restrict_labels=self.restrict_labels)  # the paper's label restriction, one place
        return [
            DenseMeanFieldEnergy(
                unary[i],
                images[i],
                dense.bilateral,
                dense.weight,
                seeds[i],
                rule.allowed_labels(seeds[i], num_labels),
                self.temperature,
            )
            for i in range(unary.shape[0])
        ]

    def batch_supported(self, loss: Loss) -> bool:
        """Whether :meth:`batch_energy` can build ``loss``'s problems (a :class:`~chainrule2.losses.DenseCRFLoss`)
        and the batched path is on (``batched``)."""
        return self.batched and isinstance(loss, DenseCRFLoss)

    def batch_energy(
        self, loss: Loss, logits: Any, batch: Batch, trust_divergence: Divergence, trust_weight: float
    ) -> DenseMeanFieldBatch:
        """The N problems of :meth:`energies` as one :class:`~chainrule2.energies.DenseMeanFieldBatch`,
        in ``logits``' namespace and on its device (U, λ, the kernel and the label restriction as there).

        ``logits`` ``(N, H, W, L)``; ``batch.seeds`` ``(N, H, W)`` in the logits' namespace and on their
        device; ``batch.images`` ``(N, H, W[, C])`` there or host numpy (the kernel's features are
        computed on the host from one copy of the images and seeds, then moved to the device).
        """
        xp = check_logits(logits)
        beta = check_positive(trust_weight, "trust_weight", allow_zero=True)
        dense = self._check_loss(loss)
        shape = tuple(int(s) for s in logits.shape)
        if len(shape) != 4:
            raise ValueError(f"logits: expected (N, H, W, L), got shape {shape}")
        if batch.images is None:
            raise ValueError(f"batch.images: {type(self).__name__} needs images (N, H, W, C), got None")
        seeds = batch.seeds
        try:
            same = array_namespace(seeds) is xp
        except TypeError:
            same = False
        if not same:
            raise TypeError(
                f"batch.seeds: expected an array of the logits' namespace ({xp.__name__}), got {type(seeds).__name__}"
            )
        if tuple(int(s) for s in seeds.shape) != shape[:3]:
            raise ValueError(
                f"batch.seeds: expected shape {shape[:3]} (the logits' grid), got {tuple(int(s) for s in seeds.shape)}"
            )
        images = to_host(batch.images, "batch.images")
        if images.shape[:3] != shape[:3] or images.ndim not in (3, 4):
            raise ValueError(f"batch.images: expected (N, H, W[, C]) with (N, H, W) = {shape[:3]}, got {images.shape}")
        if images.dtype == bool or not np.issubdtype(images.dtype, np.number) or not np.all(np.isfinite(images)):
            raise ValueError("batch.images: expected finite real values (0..255)")
        # as energies: the costs in the logits' dtype, then float64
        unary = beta * xp.astype(trust_divergence.label_costs(logits), xp.float64)
        items = dense.bilateral.items(images, to_host(seeds, "batch.seeds")).to(unary)
        rule = ScribblePotts(restrict_labels=self.restrict_labels)  # the label restriction of energies, batched
        return DenseMeanFieldBatch.build(
            unary,
            items,
            dense.bilateral,
            dense.weight,
            seeds,
            rule.batch_allowed(seeds, shape[-1]),
            self.temperature,
        )

    def _check_loss(self, loss: Loss) -> DenseCRFLoss:
        if not isinstance(loss, DenseCRFLoss):
            raise TypeError(
                f"loss: {type(self).__name__} solves the dense CRF of a chainrule2.losses.DenseCRFLoss, "
                f"got {type(loss).__name__}"
            )
        return loss

    # --- the solver ---------------------------------------------------------------------------------
    def init(self, energy: DenseMeanFieldEnergy, initial: Any = None) -> SolverState:
        """Start from ``initial`` or from Q ∝ exp(−U/T), the minimiser of F without the pairs.

        ``initial`` is projected onto the constraints (as in :meth:`run_batch`): an ``(H, W)``
        labelling becomes one-hot, a disallowed label replaced by the cheapest allowed label of U;
        an ``(H, W, L)`` distribution loses its mass on disallowed labels (the pixel renormalised,
        Q ∝ exp(−U/T) there where nothing is left); seeds are set one-hot.
        """
        energy = _check_energy(energy, type(self).__name__)
        start: Any = initial
        if isinstance(initial, np.ndarray) and initial.ndim == 2:
            start = check_labelling(initial, energy.shape[:2], energy.num_labels, "initial")
        elif initial is not None:
            start = energy.check_distribution(initial, "initial")
        one = energy.as_batch()
        q = batch_start([start], one.unary, one, one.temperature)
        memo = self._memo(one, q)
        return first_state(np.asarray(q[0]), float(_value(one, q, memo)[0]))._replace(memo=memo)

    def step(self, energy: DenseMeanFieldEnergy, state: SolverState) -> SolverState:
        energy = _check_energy(energy, type(self).__name__)
        one = energy.as_batch()
        q = state.solution[None]
        memo = state.memo if isinstance(state.memo, _Memo) else self._memo(one, q)
        sweep = self._sweep(one, q, np.asarray([state.energy], dtype=np.float64), np.ones(1, dtype=bool), memo)
        converged = not bool(sweep.active[0])
        last = converged or state.iteration + 1 >= self.max_sweeps
        # The final state drops the kernel (a batch's states are kept together); a further step rebuilds it.
        return next_state(state, np.asarray(sweep.q[0]), float(sweep.value[0]), converged, None if last else sweep.memo)

    def run_batch(self, energy: DenseMeanFieldBatch, initials: Sequence[Any] | None = None) -> BatchResult:
        """Solve every item of ``energy`` at once (the start, then sweeps until each item converges or
        ``max_sweeps``), in its arrays' namespace and on their device.

        Parameters
        ----------
        energy : DenseMeanFieldBatch
        initials : sequence of N warm starts or None
            Per item ``None`` (cold), an ``(H, W)`` labelling or an ``(H, W, L)`` distribution, in
            the energy's namespace; projected onto the constraints as in :meth:`init`.

        Returns
        -------
        BatchResult
            ``solutions`` ``(N, H, W, L)`` float64 in the energy's namespace; ``traces``: per item,
            F after the start and after each of its sweeps (host floats).
        """
        if not isinstance(energy, DenseMeanFieldBatch):
            raise TypeError(
                f"energy: {type(self).__name__}.run_batch solves a DenseMeanFieldBatch, got {type(energy).__name__}"
            )
        xp = array_namespace(energy.unary)
        n = energy.shape[0]
        q = batch_start(initials, energy.unary, energy, energy.temperature)
        memo = self._memo(energy, q)
        current = _value(energy, q, memo)
        first = current
        rows = np.arange(n)  # the item of each row of the batch being solved
        done: list[tuple[np.ndarray, Any]] = []  # (items, their final Q) of the rows dropped from it
        runs: list[tuple[np.ndarray, list[Any], list[Any]]] = [(rows, [], [])]  # per run of sweeps on rows: F, active
        active = xp.ones((n,), dtype=xp.bool, device=array_device(q))
        for _ in range(self.max_sweeps):
            sweep = self._sweep(energy, q, current, active, memo)
            if sweep.idle:  # every item had converged (known only now, after a sweep with halvings)
                break
            q, current, memo = sweep.q, sweep.value, sweep.memo
            runs[-1][1].append(current)
            runs[-1][2].append(active)
            active = sweep.active
            if sweep.left is None:
                continue
            if not sweep.left.any():
                break
            if 2 * int(sweep.left.sum()) <= len(rows):
                # At most half the rows still move: solve on those alone from now on (a converged item
                # stops changing; moving their kernels to the front costs about one sweep of them).
                keep = np.flatnonzero(sweep.left)
                dropped = xp.asarray(np.flatnonzero(~sweep.left), dtype=xp.int64, device=array_device(q))
                done.append((rows[~sweep.left], xp.take(q, dropped, axis=0)))
                index = xp.asarray(keep, dtype=xp.int64, device=array_device(q))
                energy, q, current = energy.take(index), xp.take(q, index, axis=0), xp.take(current, index, axis=0)
                memo = _Memo(_front(memo.kernel, keep), *(xp.take(a, index, axis=0) for a in memo[1:]))
                active = xp.ones((keep.size,), dtype=xp.bool, device=array_device(q))
                rows = rows[keep]
                runs.append((rows, [], []))
        solutions = q
        if done:  # the rows back in the items' order
            done.append((rows, q))
            order = np.concatenate([items for items, _ in done])
            back = xp.asarray(np.argsort(order), dtype=xp.int64, device=array_device(q))
            solutions = xp.take(xp.concat([part for _, part in done], axis=0), back, axis=0)
        # the traces: per run of sweeps, one host copy of its (sweeps, rows) values at the end
        start = np.asarray(host_copy(first), dtype=np.float64)
        traces: list[list[float]] = [[float(v)] for v in start]
        for items, values, actives in runs:
            if not values:
                continue
            f = np.asarray(host_copy(xp.stack(values)), dtype=np.float64)
            moved = np.asarray(host_copy(xp.stack(actives)), dtype=bool)
            for j, i in enumerate(items):
                traces[i].extend(float(v) for v in f[:, j][moved[:, j]])
        return BatchResult(solutions, tuple(tuple(t) for t in traces))

    def _memo(self, energy: DenseMeanFieldBatch, q: Any) -> _Memo:
        xp = array_namespace(q)
        m = int(energy.items.mask.shape[-1])
        kernel = energy.kernel_matrix() if m <= self.max_kernel_pixels else None
        small = energy.downscale(q)
        both = energy.filter(xp.concat([small, energy.items.mask[:, None, :]], axis=1), kernel)  # W·DQ and W1: one pass
        return _Memo(kernel, both[:, -1, :], small, both[:, :-1, :])

    def _sweep(self, energy: DenseMeanFieldBatch, q: Any, current: Any, active: Any, memo: _Memo) -> _Sweep:
        """One parallel update with its line search for every item; an item takes it only if it is
        ``active`` and it lowers that item's F (``current`` ``(N,)``).

        Q' = the minimiser of F linearised at Q; each item takes Q + t(Q' − Q) for its first
        t = 1, ½, ¼, … (``max_halvings`` halvings) that lowers its F. One host sync, after t = 1:
        the halvings are computed only when some item needs them (then for all, masked; on host
        numpy arrays they stop as soon as no item still searches).
        """
        xp = array_namespace(q)
        host = isinstance(q, np.ndarray)  # host numpy: a sync costs nothing
        fixed = (energy.clamped | energy.padding)[..., None]
        target = xp.where(
            fixed, q, energy.minimiser(energy.unary + energy.pairwise_gradient(memo.filtered, memo.degree))
        )
        delta = target - q
        d_small = energy.downscale(delta)
        d_filtered = energy.filter(d_small, memo.kernel)  # the sweep's one filtering pass
        small, filtered = memo.small + d_small, memo.filtered + d_filtered
        value = energy.free_energy(target, energy.pairwise_from(small, filtered, memo.degree))
        take = active & (value < current)
        best_q, best_small, best_filtered = (_where(take, a, b) for a, b in ((target, q), (small, memo.small),
                                                                             (filtered, memo.filtered)))  # fmt: skip
        best = xp.where(take, value, current)
        searching = active & ~take
        still = active & ~self._converged(best, current)  # the items left if no item needs a halving
        # the sweep's host sync: whether any item is active, any needs a halving, and which are left if none does
        flags = np.asarray(host_copy(xp.concat([xp.stack([xp.any(active), xp.any(searching)]), still])), dtype=bool)
        if not flags[0]:
            return _Sweep(q, current, memo, active, np.zeros(flags.size - 2, dtype=bool), True)
        left: np.ndarray | None = flags[2:]
        if flags[1]:
            for halving in range(1, self.max_halvings + 1):
                t = 0.5**halving
                trial = q + t * delta
                small, filtered = memo.small + t * d_small, memo.filtered + t * d_filtered
                value = energy.free_energy(trial, energy.pairwise_from(small, filtered, memo.degree))
                take = searching & (value < current)
                best_q, best_small, best_filtered = (_where(take, a, b) for a, b in ((trial, best_q),
                                                     (small, best_small), (filtered, best_filtered)))  # fmt: skip
                best = xp.where(take, value, best)
                searching = searching & ~take
                if host and not bool(xp.any(searching)):
                    break
            still = active & ~self._converged(best, current)
            left = np.asarray(host_copy(still), dtype=bool) if host else None
        return _Sweep(best_q, best, _Memo(memo.kernel, memo.degree, best_small, best_filtered), still, left, False)

    def _converged(self, value: Any, start: Any) -> Any:
        """``(N,)`` bool: F fell by at most ``tolerance * max(1, |F|)`` (or not at all)."""
        return converged_items(value, start, self.tolerance)


def _front(kernel: Any | None, keep: np.ndarray) -> Any | None:
    """The kernels of the rows ``keep`` (sorted): moved to the front of ``kernel`` in place, and that
    front (a view). The solve's own array: no new (N, M, M) allocation, at most ``len(keep)`` copies."""
    if kernel is None:
        return None
    for row, item in enumerate(keep.tolist()):
        if item != row:  # item > row: the slot holds a dropped row or one already moved
            kernel[row, ...] = kernel[item, ...]
    return kernel[: keep.size, ...]


def _where(take: Any, a: Any, b: Any) -> Any:
    """``a`` for the items ``take`` ``(N,)``, else ``b`` (arrays ``(N, ...)``)."""
    xp = array_namespace(a)
    return xp.where(xp.reshape(take, (-1,) + (1,) * (a.ndim - 1)), a, b)


def _value(energy: DenseMeanFieldBatch, q: Any, memo: _Memo) -> Any:
    """``(N,)``: F of ``q`` from its memo (no filtering pass)."""
    return energy.free_energy(q, energy.pairwise_from(memo.small, memo.filtered, memo.degree))
