"""The generalized chain rule on a non-image problem, with NumPy only (no torch needed).

Data: chains of n nodes whose classes come in runs (a piecewise-constant sequence); each
node has a noisy feature vector, and only a few nodes carry a label (seeds). The model is a
linear per-node classifier; the loss is partial cross-entropy on the seeds plus a Potts term
on the chain:

    L(θ) = −Σ_{seeds} log S_i(y_i) + λ Σ_i w_i R(S_i, S_{i+1}),   S = softmax(X θ)

Three optimisers of the same loss, differing only in configuration:

* ``gd``  — gradient descent on the bilinear relaxation R = 1 − S_i·S_{i+1}
             (TrustRegion with GradientStep, Squared d_A and d_B, one stage-B step);
* ``adm`` — exact discrete stage A (Viterbi), cross-entropy d_A and d_B, one stage-B step;
* ``tr``  — exact discrete stage A, robust cross-entropy d_B, many stage-B steps.

Run ``python examples/chain_numpy.py`` (add ``--json`` for machine-readable output).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy, RobustCrossEntropy, SeedAwareObjective, Squared
from chainrule2.losses import ChainScribblePotts
from chainrule2.models import LinearClassifier, SGDFitter
from chainrule2.solvers import ChainViterbi, GradientStep


def make_chains(
    rng: np.random.Generator,
    num_chains: int = 8,
    length: int = 200,
    num_classes: int = 3,
    num_features: int = 2,
    mean_run: float = 40.0,
    noise: float = 1.2,
    seeds_per_chain: int = 3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Signal (N, n, F), ground truth (N, n), seeds (N, n) with 255 on unlabeled nodes."""
    angles = 2 * np.pi * np.arange(num_classes) / num_classes
    centres = np.zeros((num_classes, num_features))
    centres[:, 0], centres[:, 1] = np.cos(angles), np.sin(angles)  # unit-spaced class means
    truth = np.empty((num_chains, length), dtype=np.int64)
    for c in range(num_chains):
        pos = 0
        while pos < length:
            run = max(1, int(rng.exponential(mean_run)))
            truth[c, pos : pos + run] = rng.integers(num_classes)
            pos += run
    features = centres[truth] + noise * rng.standard_normal((num_chains, length, num_features))
    seeds = np.full_like(truth, cr.UNLABELED)
    for c in range(num_chains):
        picked = rng.choice(length, size=seeds_per_chain, replace=False)
        seeds[c, picked] = truth[c, picked]
    return features, truth, seeds


def windowed(signal: np.ndarray, radius: int) -> np.ndarray:
    """Model inputs: each node sees the signal at offsets −radius..radius (edges replicated)."""
    padded = np.pad(signal, ((0, 0), (radius, radius), (0, 0)), mode="edge")
    n = signal.shape[1]
    return np.concatenate([padded[:, k : k + n] for k in range(2 * radius + 1)], axis=-1)


def hard_potts(loss: ChainScribblePotts, labels: np.ndarray, batch: cr.Batch) -> float:
    """The Potts term of hard predictions, λ Σ_i w_i [x_i ≠ x_{i+1}], summed over chains."""
    return float(
        sum(
            np.sum(loss.edge_weights(batch, i, labels.shape[1]) * (labels[i, :-1] != labels[i, 1:]))
            for i in range(labels.shape[0])
        )
    )


STAGE_B_STEPS = 20  # stage-B steps per stage A for "tr"; gd and adm get as many outer steps in total


def optimisers(num_classes: int, learning_rate: float, trust_weight: float) -> dict[str, cr.TrustRegion]:
    """The three configurations compared (they differ in configuration only)."""
    sum_squared = SeedAwareObjective(Squared(), seed_divergence=None, normalization="sum")
    return {
        "gd": cr.TrustRegion(
            stage_a=GradientStep(),
            stage_b=SGDFitter(sum_squared, learning_rate=learning_rate, steps=1, momentum=0.9),
            trust_divergence=Squared(),
            trust_weight=1.0,
        ),
        "adm": cr.TrustRegion(
            stage_a=ChainViterbi(),
            stage_b=SGDFitter(SeedAwareObjective(CrossEntropy(), normalization="sum"), learning_rate, momentum=0.9),
            trust_divergence=CrossEntropy(),
            trust_weight=trust_weight,
        ),
        "tr": cr.TrustRegion(
            stage_a=ChainViterbi(),
            stage_b=SGDFitter(
                SeedAwareObjective(RobustCrossEntropy(error_prob=0.2, num_classes=num_classes), normalization="mean"),
                learning_rate=0.5,
                steps=STAGE_B_STEPS,
                momentum=0.9,
            ),
            trust_divergence=CrossEntropy(),
            trust_weight=trust_weight,
        ),
    }


def compare(
    seed: int = 0,
    iterations: int = 40,
    potts_weight: float = 2.0,
    learning_rate: float = 0.002,
    trust_weight: float = 0.05,
    noise: float = 1.2,
    radius: int = 3,
    methods: tuple[str, ...] = ("gd", "adm", "tr"),
) -> dict:
    """Train one model per method from the same initialisation on one data set (``seed``)."""
    rng = np.random.default_rng(seed)
    signal, truth, seeds = make_chains(rng, noise=noise)
    features = windowed(signal, radius)
    num_classes = int(truth.max()) + 1
    batch = cr.Batch(inputs=features, seeds=seeds, images=signal)
    loss = ChainScribblePotts(potts_weight=potts_weight)
    results = {}
    for name in methods:
        optimiser = optimisers(num_classes, learning_rate, trust_weight)[name]
        model = LinearClassifier(features.shape[-1], num_classes, rng=np.random.default_rng(seed))
        composite = cr.Composite(loss=loss, model=model)
        start = time.perf_counter()
        # Same gradient budget for every method: tr runs STAGE_B_STEPS model updates per stage A.
        for _ in range(iterations if name == "tr" else iterations * STAGE_B_STEPS):
            optimiser.step(composite, batch)
        predicted = np.argmax(model.predict(features), axis=-1)
        results[name] = {
            "relaxed_loss": composite.value(batch),
            "potts_of_prediction": hard_potts(loss, predicted, batch),
            "accuracy": float(np.mean(predicted == truth)),
            "seconds": time.perf_counter() - start,
        }
    return {"seed": seed, "methods": results}


def summarise(runs: list[dict]) -> dict:
    """Median over data seeds of every measure, per method."""
    methods = runs[0]["methods"]
    return {
        name: {key: float(np.median([r["methods"][name][key] for r in runs])) for key in methods[name]}
        for name in methods
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="data/initialisation seeds")
    parser.add_argument("--iterations", type=int, default=40, help="stage-A solves for tr (gd/adm get 20x steps)")
    parser.add_argument("--methods", nargs="+", default=["gd", "adm", "tr"], choices=["gd", "adm", "tr"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    runs = [compare(seed=seed, iterations=args.iterations, methods=tuple(args.methods)) for seed in args.seeds]
    summary = summarise(runs)
    if args.json:
        print(json.dumps({"runs": runs, "median": summary}, indent=2))
        return
    header = f"{'seed':>4s} {'method':6s} {'relaxed loss':>13s} {'hard Potts':>11s} {'accuracy':>9s} {'seconds':>8s}"
    print(header)
    rows = [(str(r["seed"]), r["methods"]) for r in runs] + [("med", summary)]
    for label, methods in rows:
        for name, m in methods.items():
            print(
                f"{label:>4s} {name:6s} {m['relaxed_loss']:13.2f} {m['potts_of_prediction']:11.2f} "
                f"{m['accuracy']:9.3f} {m['seconds']:8.2f}"
            )


if __name__ == "__main__":
    main()
