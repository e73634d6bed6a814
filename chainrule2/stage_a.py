"""Stage A as a function of the model's output: logits in, targets out, in the caller's arrays.

:class:`StageA` needs no model wrapper and no fitter: a training loop that already has the
network's logits (numpy, torch on CPU or CUDA, any array-API library) calls
``StageA.propose(logits, batch)`` and gets the targets back in the same namespace and on the
same device.

Two paths. **Batched on the logits' device**: a solver that solves a whole batch in any array
namespace (:class:`~chainrule2.base.BatchSubproblem`: :class:`~chainrule2.solvers.MeanField` with
a loss that builds its problems there, e.g. :class:`~chainrule2.losses.ScribblePotts`,
:class:`~chainrule2.solvers.DenseMeanField` with a :class:`~chainrule2.losses.DenseCRFLoss`, and
:class:`~chainrule2.solvers.GradientStep`) gets the logits, seeds and images where they are (host
seeds and images are moved to the logits' device) and returns its targets there; only the
per-item energies of the report come to the host. **On the host**, for every other solver (the
graph cuts of :class:`~chainrule2.solvers.AlphaExpansion`), with ``trust_weight="auto"`` (its β
search runs here) or a ``batch_solver``: the logits, seeds and images are copied to the host once
and solved item by item. The batched path hands a batch to the host path when an item's logits or
final energy are not finite or the batched solve raises, so failures are found, named and kept
(``on_failure``) the same way.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device, is_numpy_array, is_torch_array

from chainrule2.base import Batch, Divergence, Loss, Proposal, StageAReport, Subproblem, as_items
from chainrule2.constants import IGNORED_LABELS
from chainrule2.divergences import softmax
from chainrule2.solvers.base import BatchSolver, SolveFailure, host_copy, solve_batch, to_host
from chainrule2.trust_radius import (
    DEFAULT_MAX_CHANGED,
    SEED_ERROR,
    BetaSearch,
    changed_fraction,
    check_max_changed,
    free_pixels,
    hard_labels,
    seed_error_bound,
)
from chainrule2.validation import check_choice, check_logits, check_num_classes, check_positive

logger = logging.getLogger(__name__)

__all__ = ["AUTO", "ON_FAILURE", "StageA", "to_host"]

#: What :class:`StageA` does when one item's problem cannot be built or solved (see ``on_failure``).
ON_FAILURE = ("raise", "keep")

#: ``StageA(trust_weight=AUTO)``: β per item from the radius rule (:mod:`chainrule2.trust_radius`).
AUTO = "auto"


def _to_caller(targets: np.ndarray, like: Any) -> Any:
    """``targets`` in ``like``'s namespace and on its device (numpy stays numpy)."""
    if is_numpy_array(like):
        return targets
    xp = array_namespace(like)
    return xp.asarray(targets, device=device(like))


def _class_axis_last(logits: Any, class_axis: int, seeds_shape: tuple[int, ...]) -> Any:
    """Move the class axis last (in ``logits``' own namespace), with an error that says how to fix a layout mistake."""
    ndim = logits.ndim
    shape = tuple(int(s) for s in logits.shape)
    if isinstance(class_axis, bool) or not isinstance(class_axis, (int, np.integer)) or not -ndim <= class_axis < ndim:
        raise ValueError(
            f"class_axis: expected an int in [-{ndim}, {ndim}) for logits of shape {shape}, got {class_axis!r}"
        )

    def others(axis: int) -> tuple[int, ...]:
        return shape[: axis % ndim] + shape[axis % ndim + 1 :]

    if others(class_axis) == seeds_shape:
        return (
            np.moveaxis(logits, class_axis, -1)
            if is_numpy_array(logits)
            else array_namespace(logits).moveaxis(logits, class_axis, -1)
        )
    hint = ""
    for axis, suggestion in (
        (1, "for NCHW logits (N, C, H, W) pass class_axis=1"),
        (-1, "for NHWC logits pass class_axis=-1"),
    ):
        if axis % ndim != class_axis % ndim and others(axis) == seeds_shape:
            hint = f"; {suggestion}"
    raise ValueError(
        f"logits: expected the class axis at class_axis={class_axis} so that the other axes {others(class_axis)} "
        f"match batch.seeds {seeds_shape}, got logits of shape {shape}{hint}"
    )


def _check_images_shape(shape: tuple[int, ...], seeds_shape: tuple[int, ...]) -> None:
    """``batch.images`` is ``(N, H, W[, C])`` with the seeds' ``(N, H, W)`` (a hint for channels-first images)."""
    if shape[: len(seeds_shape)] != seeds_shape:
        hint = ""
        if len(shape) == len(seeds_shape) + 1 and shape[:1] + shape[2:] == seeds_shape:
            hint = " (channels-first images: pass them channel-last, e.g. images.permute(0, 2, 3, 1))"
        raise ValueError(
            f"batch.images: expected images (N, H, W[, C]) with (N, H, W) = {seeds_shape} (the seeds'), "
            f"got {shape}{hint}"
        )


def _host_images(images: Any, seeds_shape: tuple[int, ...]) -> np.ndarray | None:
    if images is None:
        return None
    host = to_host(images, "batch.images")
    _check_images_shape(tuple(host.shape), seeds_shape)
    return host.astype(np.float64, copy=False)


def _where(ids: tuple[Any, ...], index: int) -> str:
    return f"item {ids[index]!r} (index {index})" if ids[index] is not None else f"item {index}"


def _naming(err: Exception, where: str) -> Exception:
    """``err`` with ``where`` in its message: a copy for a builtin exception with one message, else a note."""
    if type(err).__module__ == "builtins" and len(err.args) == 1 and isinstance(err.args[0], str):
        try:
            return type(err)(f"{err.args[0]} (stage A, {where})")
        except Exception:  # an unusual constructor: fall back to a note
            pass
    if hasattr(err, "add_note"):  # Python >= 3.11
        err.add_note(f"stage A, {where}")
    return err


def _accepts_errors(batch_solver: Any) -> bool:
    """Whether ``batch_solver`` takes ``errors=`` (the batch solvers of :mod:`chainrule2.solvers` do)."""
    try:
        parameters = inspect.signature(batch_solver).parameters.values()
    except (TypeError, ValueError):
        return False
    return any(p.name == "errors" or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def _kept_labels(initial: Any, seeds: np.ndarray, num_labels: int) -> tuple[np.ndarray, str]:
    """A failed item's labels: ``initial`` if it is a valid labelling of the item, else its seeds."""
    if initial is not None:
        a = np.asarray(initial)
        if a.shape == seeds.shape and np.issubdtype(a.dtype, np.integer):
            valid = ((a >= 0) & (a < num_labels)) | np.isin(a, IGNORED_LABELS)
            if valid.all():
                return a.astype(np.int64), "its previous labels (initial)"
    return seeds.astype(np.int64), "its seeds (255 elsewhere)"


def _kept_distribution(initial: Any, logits: np.ndarray) -> tuple[np.ndarray, str]:
    """A failed item's soft target: ``initial`` if it is a distribution of the item's shape, else the
    model's own prediction (a target stage B already fits: no pull on the non-seed pixels)."""
    if initial is not None:
        a = np.asarray(initial)
        if a.shape == logits.shape and np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)):
            return a.astype(np.float64), "its previous target (initial)"
    return np.asarray(softmax(logits.astype(np.float64))), "the model's own prediction"


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
    trust_weight : float or "auto"
        β ≥ 0, the same for every item; or ``"auto"``: per item, the smallest β whose solution
        relabels at most ``max_changed`` of the item's free pixels (neither seed nor padding)
        away from the network's arg-max over the labels stage A may use, found by bisection in
        log β (:mod:`chainrule2.trust_radius`, docs/concepts.md "An adaptive trust region");
        ``report.betas`` holds the β chosen per item.
    batch_solver : callable or None
        ``batch_solver(solver, energies, initials) -> list[SolverState]``; default a serial loop
        (:func:`chainrule2.solvers.solve_batch`); e.g. :class:`~chainrule2.solvers.ProcessBatchSolver`.
        One that takes ``errors="return"`` (those of :mod:`chainrule2.solvers` do) reports a failing
        item as a :class:`~chainrule2.solvers.base.SolveFailure`; with any other, a batch that raises
        is solved again one item per call to find the failing item.
    on_failure : {"raise", "keep"}
        When one item's problem cannot be built or solved (the loss or the solver raises, the
        model's logits or the final energy are not finite, a worker process dies):

        * ``"raise"`` (default): the error propagates, its message naming the item (``batch.ids``);
        * ``"keep"``: the item is logged (a warning with its id and the error) and listed in
          ``report.failures``; its target is its ``initial`` (the previous labels) when that is a
          valid labelling, else **its seeds as they are**: the seed labels, 255 on unlabeled and
          254 on padding pixels, which :class:`~chainrule2.divergences.SeedAwareObjective` ignores
          (that item then trains on its seeds only). For soft targets: the ``initial`` distribution,
          else the model's own prediction ``softmax(logits)`` (uniform where the logits were not
          finite). The other items are solved as usual.

        The caller's own mistakes (layouts, dtypes, shapes, too many classes, a batch solver that
        returns the wrong number of states) are raised in both modes; ``BaseException`` (e.g.
        ``KeyboardInterrupt``) always propagates.
    max_changed : float, "seed_error" or None
        Only with ``trust_weight="auto"``: τ in (0, 1], the fraction of an item's free pixels stage A
        may relabel from the network's arg-max; or ``"seed_error"``: per item, τ = 1.5 × the
        fraction of the item's seed pixels the network's arg-max gets wrong (at least 0.01, at
        most 1; :func:`~chainrule2.trust_radius.seed_error_bound`). ``None`` =
        :data:`~chainrule2.trust_radius.DEFAULT_MAX_CHANGED` (``"seed_error"``).
    beta_search : BetaSearch or None
        Only with ``trust_weight="auto"``: the search's β range, number of solves, where each
        solve starts and its tolerance; ``None`` = :class:`~chainrule2.trust_radius.BetaSearch`'s
        defaults (2^-6 to 2^10, 6 solves, each from ``initial`` like a fixed-β stage A, tolerance 0).
        If even the upper β relabels more than τ, the item gets that β and its solution (logged).
        ``propose(..., beta_hint=...)`` starts each item's search from a β (e.g. the previous one).

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

    solver: Subproblem
    loss: Loss
    trust_divergence: Divergence
    trust_weight: float | str
    batch_solver: BatchSolver | None = None
    on_failure: str = "raise"
    max_changed: float | str | None = None
    beta_search: BetaSearch | None = None

    def __post_init__(self) -> None:
        self._check_trust_weight()
        for name in ("solver", "loss", "trust_divergence", "batch_solver"):
            value = getattr(self, name)
            if isinstance(value, type):  # e.g. StageA(AlphaExpansion, ...): the class passes the method checks
                raise TypeError(
                    f"{name}: expected an instance, got the class {value.__name__}; call it: {value.__name__}()"
                )
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
        check_choice(self.on_failure, "on_failure", ON_FAILURE)

    def propose(
        self,
        logits: Any,
        batch: Batch,
        initial: Sequence[Any] | None = None,
        *,
        class_axis: int = -1,
        beta_hint: Sequence[float | None] | None = None,
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
        beta_hint : sequence of float or None, or None
            Only with ``trust_weight="auto"``: per item, a β to start its search from (e.g. its
            ``report.betas`` entry of the previous stage A; ``None`` entries, or ``None`` for all,
            search from scratch). A hint changes how many solves the search takes, not what it
            guarantees (:class:`~chainrule2.trust_radius.BetaSearch`): 2 solves when it is right.

        Returns
        -------
        Proposal
            ``targets``: labels ``(N, ...)`` (int64) or soft targets with the class axis where it
            was in ``logits``, in ``logits``' namespace and on its device (computed there by a
            batched solver, see the module docstring); ``report``: one energy trace per item, the
            seconds of the host copy (or of the moves to the device) and of the solver and, with
            ``on_failure="keep"``, the items that failed (``report.failures``, see ``on_failure``).

        Raises
        ------
        ValueError, TypeError
            On the caller's mistakes (layout, dtype, shapes, more than 254 classes) and, with
            ``on_failure="raise"``, on an item's failure (the message names the item).
        """
        start = time.perf_counter()
        if beta_hint is None and self._batched():
            on_device = self._propose_batched(logits, batch, initial, class_axis, start)
            if on_device is not None:
                return on_device
        host_batch = self._host_batch(batch)
        grid = tuple(host_batch.seeds.shape)
        host_logits = _class_axis_last(to_host(logits, "logits"), class_axis, grid)
        n = host_logits.shape[0]
        ids = tuple(host_batch.ids) if host_batch.ids is not None else (None,) * n
        failures: dict[int, str] = {}
        host_logits = self._finite_logits(host_logits, ids, failures)
        check_logits(host_logits, "logits")
        num_labels = check_num_classes(int(host_logits.shape[-1]), "logits")  # the seeds carry 254/255
        initials = [None if a is None else to_host(a, "initial") for a in as_items(initial, n, "initial")]
        hints = self._hints(beta_hint, n)
        copied = time.perf_counter()
        betas: tuple[float, ...] = ()
        if self.trust_weight == AUTO:
            energies, states, betas = self._auto(host_logits, host_batch, initials, ids, failures, hints)
        else:
            energies = self._energies(host_logits, host_batch, ids, failures)
            states = self._solve(energies, initials, ids, failures)
        soft = self._soft(states, energies, len(grid) - 1)
        solutions = []
        for i, state in enumerate(states):
            if state is not None:
                solutions.append(np.asarray(state.solution))
                continue
            if soft:
                target, kept = _kept_distribution(initials[i], host_logits[i])
            else:
                target, kept = _kept_labels(initials[i], host_batch.seeds[i], num_labels)
            logger.warning("stage A: %s failed and keeps %s: %s", _where(ids, i), kept, failures[i])
            solutions.append(target)
        targets = np.stack(solutions)
        if targets.ndim == host_logits.ndim:  # soft targets: back to the caller's layout
            targets = np.moveaxis(targets, -1, class_axis)
        report = StageAReport(
            traces=tuple(() if state is None else state.trace for state in states),
            predict_seconds=copied - start,
            solve_seconds=time.perf_counter() - copied,
            failures=tuple((i, ids[i], failures[i]) for i in sorted(failures)),
            betas=betas,
        )
        logger.debug("stage A: energy %.6g in %.3fs", report.energy, report.seconds)
        return Proposal(_to_caller(targets, logits), report)

    def _check_trust_weight(self) -> None:
        """``trust_weight``: a number β >= 0 or "auto"; ``max_changed`` and ``beta_search`` only with "auto"."""
        if isinstance(self.trust_weight, str):
            if self.trust_weight != AUTO:
                raise ValueError(f"trust_weight: expected a number >= 0 or {AUTO!r}, got {self.trust_weight!r}")
            if self.max_changed is not None:
                check_max_changed(self.max_changed)
            if self.beta_search is not None and not isinstance(self.beta_search, BetaSearch):
                raise TypeError(
                    f"beta_search: expected a chainrule2.trust_radius.BetaSearch or None, "
                    f"got {type(self.beta_search).__name__}"
                )
            return
        check_positive(self.trust_weight, "trust_weight", allow_zero=True)
        for name in ("max_changed", "beta_search"):
            if getattr(self, name) is not None:
                raise ValueError(
                    f"{name}: only used with trust_weight={AUTO!r} (the adaptive trust region), "
                    f"got {name}={getattr(self, name)!r} with the fixed trust_weight={self.trust_weight!r}"
                )

    def _item_energy(
        self, logits: np.ndarray, batch: Batch, index: int, beta: float, ids: tuple[Any, ...], failures: dict[int, str]
    ) -> Any:
        """Item ``index``'s stage-A problem at trust weight ``beta`` (``None`` if it cannot be built)."""
        i = index
        one = Batch(None, batch.seeds[i : i + 1], None if batch.images is None else batch.images[i : i + 1],
                    None if batch.ids is None else tuple(batch.ids[i : i + 1]))  # fmt: skip
        try:
            built = list(self.solver.energies(self.loss, logits[i : i + 1], one, self.trust_divergence, beta))
        except Exception as err:
            self._fail(i, ids, err, failures, "building its stage-A problem")
            return None
        if len(built) != 1:
            raise ValueError(
                f"solver: expected {type(self.solver).__name__}.energies to return 1 energy for 1 item, got {len(built)}"
            )
        return built[0]

    @staticmethod
    def _reference(energy: Any, logits: np.ndarray) -> np.ndarray:
        """The network's arg-max over the labels the item's problem allows (its unary's argmin)."""
        for problem in (energy, getattr(energy, "grid", None)):
            argmin = getattr(problem, "unary_argmin", None)
            if callable(argmin):
                return np.asarray(argmin())
        return np.argmax(logits, axis=-1)

    @staticmethod
    def _bound(max_changed: float | str, energy: Any, logits: np.ndarray, seeds: np.ndarray) -> float:
        """τ of one item: ``max_changed``, or the network's error rate on the item's seeds (``"seed_error"``)."""
        if max_changed != SEED_ERROR:
            return float(max_changed)
        allowed = None
        for problem in (energy, getattr(energy, "grid", None)):
            allowed = getattr(problem, "labels", None)
            if allowed is not None:
                break
        allowed = np.arange(logits.shape[-1]) if allowed is None else np.asarray(allowed)
        network = allowed[np.argmax(logits[..., allowed], axis=-1)]  # the arg-max, seeds not clamped
        return seed_error_bound(network, seeds)

    def _hints(self, beta_hint: Any, n: int) -> list[float | None]:
        """``beta_hint`` checked: one finite β > 0 or ``None`` per item (only with ``trust_weight="auto"``)."""
        if beta_hint is None:
            return [None] * n
        if self.trust_weight != AUTO:
            raise ValueError(
                f"beta_hint: only used with trust_weight={AUTO!r} (the β search starts from it), "
                f"got hints with the fixed trust_weight={self.trust_weight!r}"
            )
        if isinstance(beta_hint, (str, bytes)) or not isinstance(beta_hint, Sequence):
            raise TypeError(
                f"beta_hint: expected a sequence of one β (a number > 0) or None per item, got {type(beta_hint).__name__}"
            )
        if len(beta_hint) != n:
            raise ValueError(f"beta_hint: expected {n} hints (one per item, None for none), got {len(beta_hint)}")
        hints: list[float | None] = []
        for i, hint in enumerate(beta_hint):
            if hint is None:
                hints.append(None)
                continue
            if isinstance(hint, bool) or not isinstance(hint, (int, float, np.integer, np.floating)):
                raise TypeError(f"beta_hint[{i}]: expected a number > 0 or None, got {type(hint).__name__}")
            if not (math.isfinite(float(hint)) and hint > 0):
                raise ValueError(
                    f"beta_hint[{i}]: expected a finite number > 0 or None (a failed item's nan: pass None), got {hint!r}"
                )
            hints.append(float(hint))
        return hints

    def _auto(
        self,
        logits: np.ndarray,
        batch: Batch,
        initials: list[Any],
        ids: tuple[Any, ...],
        failures: dict[int, str],
        hints: list[float | None],
    ) -> tuple[list[Any], list[Any], tuple[float, ...]]:
        """``trust_weight="auto"``: every item's β search, in lockstep (one batch-solver call per round).

        Returns the energies and states at the chosen β (``None`` for a failed item) and the β per
        item (``nan`` for a failed item).
        """
        n = logits.shape[0]
        max_changed = DEFAULT_MAX_CHANGED if self.max_changed is None else self.max_changed
        search = BetaSearch() if self.beta_search is None else self.beta_search
        # An item's first query does not depend on its bound, which is set once its problem is built.
        searches = {i: search.start(1.0, hints[i]) for i in range(n) if i not in failures}
        bounds: dict[int, float] = {}
        warm = list(initials)
        references: dict[int, np.ndarray] = {}
        free = free_pixels(batch.seeds)
        while True:
            round_ = {i: s.next_beta for i, s in searches.items() if i not in failures and s.next_beta is not None}
            if not round_:
                break
            energies: list[Any] = [None] * n
            for i, beta in round_.items():
                energies[i] = self._item_energy(logits, batch, i, beta, ids, failures)
            states = self._solve(energies, warm, ids, failures)
            for i, beta in round_.items():
                if states[i] is None:  # failed: recorded in ``failures``
                    continue
                if i not in references:
                    references[i] = self._reference(energies[i], logits[i])
                    bounds[i] = self._bound(max_changed, energies[i], logits[i], batch.seeds[i])
                    searches[i] = search.start(bounds[i], hints[i])
                measure = changed_fraction(hard_labels(states[i].solution), references[i], free[i])
                searches[i].tell(beta, measure, (energies[i], states[i]))
                if search.warm_start == "previous":
                    warm[i] = states[i].solution
        chosen_energies: list[Any] = [None] * n
        chosen_states: list[Any] = [None] * n
        betas = [math.nan] * n
        for i, s in searches.items():
            if i in failures:
                continue
            choice = s.result()
            chosen_energies[i], chosen_states[i] = choice.state
            betas[i] = choice.beta
            if not choice.met:
                logger.info(
                    "stage A: %s relabels %.3g of its free pixels even at the upper trust weight %g (max_changed %g)",
                    _where(ids, i), choice.measure, choice.beta, bounds[i],
                )  # fmt: skip
        return chosen_energies, chosen_states, tuple(betas)

    def _fail(self, index: int, ids: tuple[Any, ...], err: Exception, failures: dict[int, str], what: str) -> None:
        """Raise ``err`` naming the item (``on_failure="raise"``) or record it in ``failures``."""
        if self.on_failure == "raise":
            named = _naming(err, _where(ids, index))
            if named is err:
                raise err
            raise named from err
        failures[index] = f"{what}: {type(err).__name__}: {err}"

    def _finite_logits(self, logits: np.ndarray, ids: tuple[Any, ...], failures: dict[int, str]) -> np.ndarray:
        """``logits`` with the items whose values are not finite failed (and zeroed, so the others build)."""
        if logits.shape[0] == 0 or not np.issubdtype(logits.dtype, np.floating):
            return logits  # check_logits says what is wrong
        bad = np.flatnonzero(~np.isfinite(logits.reshape(logits.shape[0], -1)).all(axis=1))
        if bad.size == 0:
            return logits
        if self.on_failure == "raise":
            raise ValueError(f"logits: expected finite values, got NaN or inf in {_where(ids, int(bad[0]))}")
        logits = logits.copy()
        for i in bad.tolist():
            self._fail(i, ids, ValueError("logits: expected finite values, got NaN or inf"), failures, "model output")
            logits[i] = 0.0
        return logits

    def _energies(self, logits: np.ndarray, batch: Batch, ids: tuple[Any, ...], failures: dict[int, str]) -> list[Any]:
        """One energy per item (``None`` for a failed item): the batch at once, or item by item if that raises."""
        n = logits.shape[0]
        build = self.solver.energies
        beta = float(self.trust_weight)  # the fixed rule; trust_weight="auto" searches its betas elsewhere
        try:
            built = list(build(self.loss, logits, batch, self.trust_divergence, beta))
        except Exception as err:
            batch_error = err
        else:
            if len(built) != n:
                raise ValueError(
                    f"solver: expected {type(self.solver).__name__}.energies to return {n} energies (one per item), "
                    f"got {len(built)}"
                )
            return [None if i in failures else energy for i, energy in enumerate(built)]
        energies: list[Any] = []
        found = False
        for i in range(n):  # which item's problem cannot be built?
            if i in failures:
                energies.append(None)
                continue
            one = Batch(None, batch.seeds[i : i + 1], None if batch.images is None else batch.images[i : i + 1],
                        None if batch.ids is None else tuple(batch.ids[i : i + 1]))  # fmt: skip
            try:
                energies.append(build(self.loss, logits[i : i + 1], one, self.trust_divergence, beta)[0])
            except Exception as err:
                found = True
                self._fail(i, ids, err, failures, "building its stage-A problem")
                energies.append(None)
        if not found and self.on_failure == "raise":
            raise batch_error  # no single item is to blame
        return energies

    def _solve(
        self, energies: list[Any], initials: list[Any], ids: tuple[Any, ...], failures: dict[int, str]
    ) -> list[Any]:
        """One state per item (``None`` for a failed item), from the batch solver."""
        todo = [i for i, energy in enumerate(energies) if energy is not None]
        states: list[Any] = [None] * len(energies)
        if not todo:
            return states
        results = self._batch_solve([energies[i] for i in todo], [initials[i] for i in todo])
        for i, result in zip(todo, results, strict=True):
            if isinstance(result, SolveFailure):
                self._fail(i, ids, result.error, failures, "solving")
                continue
            energy = float(result.energy)
            solution = np.asarray(result.solution)
            if not math.isfinite(energy) or (
                np.issubdtype(solution.dtype, np.floating) and not np.isfinite(solution).all()
            ):
                what = f"energy {energy}" if not math.isfinite(energy) else "a solution with NaN or inf"
                err = ValueError(f"energy: expected a finite stage-A energy and solution, got {what}")
                self._fail(i, ids, err, failures, "solving")
                continue
            states[i] = result
        return states

    def _batch_solve(self, energies: list[Any], initials: list[Any]) -> list[Any]:
        """The batch solver's results, a :class:`SolveFailure` in place of each item whose solve raised."""
        batch_solver = solve_batch if self.batch_solver is None else self.batch_solver
        kwargs = {"errors": "return"} if _accepts_errors(batch_solver) else {}
        try:
            results = list(batch_solver(self.solver, energies, initials, **kwargs))
        except Exception as err:
            if len(energies) == 1:
                return [SolveFailure(0, err)]
            batch_error = err
        else:
            if len(results) != len(energies):
                raise ValueError(f"batch_solver: expected {len(energies)} states (one per energy), got {len(results)}")
            return results
        results = []
        for k, (energy, initial) in enumerate(zip(energies, initials, strict=True)):  # which item raises?
            try:
                results.append(list(batch_solver(self.solver, [energy], [initial], **kwargs))[0])
            except Exception as err:
                results.append(SolveFailure(k, err))
        if self.on_failure == "raise" and not any(isinstance(r, SolveFailure) for r in results):
            raise batch_error  # no single item is to blame
        return results

    @staticmethod
    def _soft(states: list[Any], energies: list[Any], grid_ndim: int) -> bool:
        """Whether the targets are soft ``(..., L)``: as the solved items', else as the energies' shape."""
        for state in states:
            if state is not None:
                return np.ndim(state.solution) == grid_ndim + 1
        for energy in energies:
            if energy is not None:
                return len(tuple(energy.shape)) == grid_ndim + 1
        return False  # nothing built: labels (the seeds)

    @staticmethod
    def _host_batch(batch: Batch) -> Batch:
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a chainrule2.Batch, got {type(batch).__name__}")
        seeds = to_host(batch.seeds, "batch.seeds")
        if not np.issubdtype(seeds.dtype, np.integer):
            raise TypeError(
                f"batch.seeds: expected integer labels (255 unlabeled, 254 padding), got dtype {seeds.dtype}"
            )
        if batch.ids is not None and len(batch.ids) != seeds.shape[0]:
            raise ValueError(
                f"batch.ids: expected {seeds.shape[0]} ids (one per item of batch.seeds), got {len(batch.ids)}"
            )
        return Batch(None, seeds, _host_images(batch.images, tuple(seeds.shape)), batch.ids)

    # --- the batched path on the logits' device (solvers with run_batch, a fixed β) -----------------
    def _batched(self) -> bool:
        """Whether :meth:`propose` solves the batch at once on the logits' device: the solver is a
        :class:`~chainrule2.base.BatchSubproblem` that supports the loss, β is a number (the auto
        rule's search runs on the host) and no ``batch_solver`` was given (that is the host path's)."""
        supported = getattr(self.solver, "batch_supported", None)
        return (
            self.trust_weight != AUTO
            and self.batch_solver is None
            and callable(supported)
            and callable(getattr(self.solver, "run_batch", None))
            and bool(supported(self.loss))
        )

    @staticmethod
    def _on_logits(x: Any, logits: Any, name: str) -> Any:
        """``x`` in ``logits``' namespace and on its device: kept if it is there, else copied there
        (host seeds and images go to the model's device; the logits never leave it)."""
        xp = array_namespace(logits)
        try:
            same = array_namespace(x) is xp and device(x) == device(logits)
        except TypeError:
            raise TypeError(
                f"{name}: expected a numpy array, a torch tensor or another array-API array, got {type(x).__name__}"
            ) from None
        if same:
            return x
        try:
            return xp.asarray(to_host(x, name), device=device(logits))
        except (TypeError, ValueError, RuntimeError) as err:
            raise TypeError(f"{name}: cannot be moved to the logits' namespace and device ({err})") from None

    def _propose_batched(
        self, logits: Any, batch: Batch, initial: Sequence[Any] | None, class_axis: int, start: float
    ) -> Proposal | None:
        """Stage A with the solver's ``batch_energy`` and ``run_batch``, in ``logits``' namespace and
        on its device (no host copy but the energies of the report).

        Returns ``None`` to hand the batch to the host path, which finds, names or keeps a failing
        item: when an item's logits are not finite, when building or solving the batch raises, or
        when an item's final energy is not finite (each logged).
        """
        if not isinstance(batch, Batch):
            raise TypeError(f"batch: expected a chainrule2.Batch, got {type(batch).__name__}")
        try:
            xp = array_namespace(logits)
        except TypeError:
            raise TypeError(
                f"logits: expected a numpy array, a torch tensor or another array-API array, got {type(logits).__name__}"
            ) from None
        if is_torch_array(logits):
            logits = logits.detach()  # stage A is a constant for stage B
        seeds = self._on_logits(batch.seeds, logits, "batch.seeds")
        if not xp.isdtype(seeds.dtype, "integral"):
            raise TypeError(
                f"batch.seeds: expected integer labels (255 unlabeled, 254 padding), got dtype {seeds.dtype}"
            )
        n = int(seeds.shape[0])
        if batch.ids is not None and len(batch.ids) != n:
            raise ValueError(f"batch.ids: expected {n} ids (one per item of batch.seeds), got {len(batch.ids)}")
        grid = tuple(int(s) for s in seeds.shape)
        images = None if batch.images is None else self._on_logits(batch.images, logits, "batch.images")
        if images is not None:
            _check_images_shape(tuple(int(s) for s in images.shape), grid)
        z = _class_axis_last(logits, class_axis, grid)
        if z.ndim >= 2 and xp.isdtype(z.dtype, "real floating"):
            finite = np.asarray(host_copy(xp.all(xp.reshape(xp.isfinite(z), (n, -1)), axis=1)), dtype=bool)
            if not finite.all():
                logger.info("stage A: logits not finite in %d item(s): solving on the host", int((~finite).sum()))
                return None
        check_logits(z, "logits")
        check_num_classes(int(z.shape[-1]), "logits")
        initials = [
            None if a is None else self._on_logits(a, logits, "initial") for a in as_items(initial, n, "initial")
        ]
        moved = time.perf_counter()
        try:
            energy = self.solver.batch_energy(  # type: ignore[attr-defined]
                self.loss, z, Batch(None, seeds, images, batch.ids), self.trust_divergence, float(self.trust_weight)
            )
            result = self.solver.run_batch(energy, initials)  # type: ignore[attr-defined]
        except Exception as err:
            logger.warning(
                "stage A: the batched solve on the logits' device raised %s: %s; solving on the host, item by item",
                type(err).__name__, err,
            )  # fmt: skip
            return None
        if len(result.traces) != n or not all(trace and math.isfinite(trace[-1]) for trace in result.traces):
            logger.warning("stage A: the batched solve gave a non-finite energy; solving on the host, item by item")
            return None
        targets = result.solutions
        if targets.ndim == z.ndim:  # soft targets: back to the caller's layout
            targets = xp.moveaxis(targets, -1, class_axis)
        report = StageAReport(
            traces=tuple(tuple(trace) for trace in result.traces),
            predict_seconds=moved - start,
            solve_seconds=time.perf_counter() - moved,
        )
        logger.debug("stage A (batched): energy %.6g in %.3fs", report.energy, report.seconds)
        return Proposal(targets, report)
