"""Public test helpers: the solver contract, brute force, and hypothesis strategies.

Users check their own stage-A solvers with :func:`check_subproblem`. Importing the
strategies needs ``hypothesis`` (``pip install hypothesis``); the contract does not.
"""

from chainrule2.testing.contract import ContractError, brute_force_minimum, check_subproblem

__all__ = ["ContractError", "brute_force_minimum", "check_subproblem"]
