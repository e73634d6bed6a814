"""A NumPy model and stage-B fitter, so the core runs end to end without any deep-learning framework."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from chainrule2.base import Batch, FitReport, Model
from chainrule2.validation import check_int, check_positive


class GradientModel(Model, Protocol):
    """What :class:`SGDFitter` needs of a model: ``predict``, and the gradients and the parameters it updates in place."""

    def backward(self, inputs: Any, grad_logits: np.ndarray) -> dict[str, np.ndarray]: ...

    def parameters(self) -> dict[str, np.ndarray]: ...


class Objective(Protocol):
    """What :class:`SGDFitter` needs of a stage-B objective (e.g. a :class:`~chainrule2.divergences.SeedAwareObjective`)."""

    def __call__(self, logits: Any, targets: Any, seeds: Any) -> Any: ...

    def gradient(self, logits: Any, targets: Any, seeds: Any) -> Any: ...


class LinearClassifier:
    """Per-node linear logits: ``logits[..., :] = inputs[..., :] @ weights + bias``.

    A mutable model (like a torch module): fitters update ``weights`` and ``bias`` in place.

    Parameters
    ----------
    num_features, num_classes : int
    rng : numpy.random.Generator
        For the small random initialisation.

    Example
    -------
    >>> import numpy as np
    >>> model = LinearClassifier(3, 2, rng=np.random.default_rng(0))
    >>> model.predict(np.zeros((1, 5, 3))).shape
    (1, 5, 2)
    """

    def __init__(self, num_features: int, num_classes: int, rng: np.random.Generator) -> None:
        check_int(num_features, "num_features")
        check_int(num_classes, "num_classes", minimum=2)
        self.weights = 0.01 * rng.standard_normal((num_features, num_classes))
        self.bias = np.zeros(num_classes)

    def parameters(self) -> dict[str, np.ndarray]:
        return {"weights": self.weights, "bias": self.bias}

    def _check(self, inputs: Any) -> np.ndarray:
        inputs = np.asarray(inputs)
        if inputs.ndim < 2 or inputs.shape[-1] != self.weights.shape[0]:
            raise ValueError(f"inputs: expected shape (N, ..., {self.weights.shape[0]}), got {inputs.shape}")
        return inputs

    def predict(self, inputs: Any) -> np.ndarray:
        return self._check(inputs) @ self.weights + self.bias

    def backward(self, inputs: Any, grad_logits: np.ndarray) -> dict[str, np.ndarray]:
        """Gradients of a scalar objective w.r.t. the parameters, given ``∂objective/∂logits``."""
        x = self._check(inputs).reshape(-1, self.weights.shape[0])
        g = grad_logits.reshape(-1, self.weights.shape[1])
        return {"weights": x.T @ g, "bias": g.sum(axis=0)}


@dataclass
class SGDFitter:
    """Stage B for NumPy models: ``steps`` steps of SGD (with momentum) on ``objective``.

    ``objective`` is a :class:`~chainrule2.divergences.SeedAwareObjective` (or anything with
    ``__call__(logits, targets, seeds)`` and ``gradient(logits, targets, seeds)``). The model
    needs ``predict``, ``backward`` and ``parameters`` (see :class:`LinearClassifier`). The
    momentum buffers are the fitter's state, like a torch optimizer's.
    """

    objective: Objective
    learning_rate: float
    steps: int = 1
    momentum: float = 0.0
    _velocity: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        check_positive(self.learning_rate, "learning_rate")
        check_int(self.steps, "steps")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1), got {self.momentum}")

    def fit(self, model: GradientModel, batch: Batch, targets: Any) -> FitReport:
        start = time.perf_counter()
        losses = []
        for _ in range(self.steps):
            logits = model.predict(batch.inputs)
            losses.append(float(self.objective(logits, targets, batch.seeds)))
            grads = model.backward(batch.inputs, self.objective.gradient(logits, targets, batch.seeds))
            for name, param in model.parameters().items():
                velocity = self.momentum * self._velocity.get(name, 0.0) + grads[name]
                self._velocity[name] = velocity
                param -= self.learning_rate * velocity
        return FitReport(tuple(losses), self.steps, time.perf_counter() - start)
