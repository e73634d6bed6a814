"""chainrule2: the robust trust region ("generalized chain rule") of Marin & Boykov, ICCV 2021.

Each outer step solves a stage-A problem in output space, ``min_y loss(y) + β·d_A(y, S_θ)``,
with a strong (possibly discrete) solver, then fits the model to ``y`` under ``d_B`` (stage B).

``import chainrule2`` imports neither torch nor maxflow.
"""

from chainrule2 import divergences, energies, losses, models, solvers, trust_radius
from chainrule2.base import (
    Batch,
    Composite,
    Divergence,
    Energy,
    FitReport,
    Fitter,
    Loss,
    Model,
    Proposal,
    SolverState,
    StageAReport,
    StepReport,
    Subproblem,
)
from chainrule2.constants import PADDING, UNLABELED
from chainrule2.stage_a import StageA
from chainrule2.trust_radius import BetaSearch
from chainrule2.trust_region import TrustRegion

__version__ = "0.1.0"

__all__ = [
    "Batch",
    "BetaSearch",
    "Composite",
    "Divergence",
    "Energy",
    "FitReport",
    "Fitter",
    "Loss",
    "Model",
    "PADDING",
    "Proposal",
    "SolverState",
    "StageA",
    "StageAReport",
    "StepReport",
    "Subproblem",
    "TrustRegion",
    "UNLABELED",
    "divergences",
    "energies",
    "losses",
    "models",
    "solvers",
    "trust_radius",
]
