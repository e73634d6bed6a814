"""Stage-A solvers. All follow the :class:`~chainrule2.base.Subproblem` contract."""

from chainrule2.solvers.alpha_expansion import AlphaExpansion
from chainrule2.solvers.base import DiscreteSubproblem, run, solve_batch
from chainrule2.solvers.chain import ChainViterbi
from chainrule2.solvers.dense_mean_field import DenseMeanField
from chainrule2.solvers.gradient_step import GradientStep
from chainrule2.solvers.icm import ICM
from chainrule2.solvers.mean_field import MeanField
from chainrule2.solvers.parallel import ProcessBatchSolver, ThreadBatchSolver

__all__ = [
    "AlphaExpansion",
    "ChainViterbi",
    "DenseMeanField",
    "DiscreteSubproblem",
    "GradientStep",
    "ICM",
    "MeanField",
    "ProcessBatchSolver",
    "ThreadBatchSolver",
    "run",
    "solve_batch",
]
