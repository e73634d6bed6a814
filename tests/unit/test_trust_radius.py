"""The adaptive trust region: the β search (chainrule2.trust_radius) and StageA(trust_weight="auto")."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chainrule2 as cr
from chainrule2.divergences import CrossEntropy
from chainrule2.losses import ChainScribblePotts, ScribblePotts
from chainrule2.solvers import ChainViterbi, solve_batch
from chainrule2.trust_radius import (
    DEFAULT_MAX_CHANGED,
    SEED_ERROR_FLOOR,
    SEED_ERROR_SCALE,
    BetaSearch,
    Bisection,
    changed_fraction,
    free_pixels,
    search_beta,
    seed_error,
    seed_error_bound,
)

maxflow = pytest.importorskip("maxflow")
from chainrule2.solvers import AlphaExpansion  # noqa: E402

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LOSS = ScribblePotts(potts_weight=5.0)


# --- the search on its own -------------------------------------------------------------------------


def test_bisection_queries_log_midpoints_and_returns_the_last_query_that_met_the_bound():
    s = BetaSearch(low=1.0, high=256.0, solves=3).start(bound=0.5)
    queries = []
    while (beta := s.next_beta) is not None:
        queries.append(beta)
        s.tell(beta, 1.0 if beta < 10 else 0.0, f"at {beta:g}")  # the bound holds from β = 10 on
    assert queries == [16.0, 4.0, 8.0]
    choice = s.result()
    assert (choice.beta, choice.state, choice.met, choice.solves) == (16.0, "at 16", True, 3)
    assert choice.tried == ((16.0, 0.0), (4.0, 1.0), (8.0, 1.0))


@given(crossing=st.floats(2.0**-8, 2.0**12), solves=st.integers(1, 8))
def test_on_a_monotone_measure_the_choice_is_the_smallest_grid_beta_that_meets_the_bound(crossing, solves):
    search = BetaSearch(low=2.0**-6, high=2.0**10, solves=solves)
    choice = search_beta(lambda beta, warm: (beta, 0.0 if beta >= crossing else 1.0), 0.5, search)
    grid = [2.0 ** (-6 + 16 * m / 2**solves) for m in range(1, 2**solves + 1)]
    passing = [b for b in grid if b >= crossing]
    if passing:
        assert choice.met and choice.beta == pytest.approx(min(passing), rel=1e-12)
        assert choice.solves == solves + (choice.beta == search.high)  # high is solved only if every query failed
    else:  # the crossing lies above ``high``: high is solved and flagged
        assert not choice.met and choice.beta == search.high and choice.solves == solves + 1


def test_when_even_the_upper_beta_cannot_meet_the_bound_it_is_returned_flagged():
    search = BetaSearch(low=0.5, high=8.0, solves=4)
    choice = search_beta(lambda beta, warm: (f"x{beta:g}", 0.9), 0.1, search)
    assert not choice.met and choice.beta == 8.0 and choice.state == "x8" and choice.measure == 0.9
    assert choice.solves == 5 and choice.tried[-1] == (8.0, 0.9)


@pytest.mark.parametrize("warm_start", ["initial", "previous"])
def test_each_query_starts_from_the_initial_or_from_the_previous_state(warm_start):
    starts = []

    def evaluate(beta, warm):
        starts.append(warm)
        return f"solved at {beta:g}", 1.0 / beta

    search = BetaSearch(low=1.0, high=16.0, solves=3, warm_start=warm_start)
    choice = search_beta(evaluate, 0.25, search, initial="cache")
    assert starts[0] == "cache"
    if warm_start == "initial":
        assert starts == ["cache"] * 3
    else:
        assert starts[1:] == [f"solved at {b:g}" for b, _ in choice.tried[:-1]]


def test_bisection_refuses_a_wrong_tell_and_an_early_result():
    s = BetaSearch(low=1.0, high=4.0, solves=1).start(0.1)
    with pytest.raises(ValueError, match="result: the search is not over"):
        s.result()
    with pytest.raises(ValueError, match="beta: expected the search's next_beta 2.0, got 3"):
        s.tell(3.0, 0.0, None)
    with pytest.raises(ValueError, match="measure: expected a number, got nan"):
        s.tell(2.0, math.nan, None)
    s.tell(2.0, 0.0, None)
    with pytest.raises(ValueError, match="the search is over"):
        s.tell(2.0, 0.0, None)
    with pytest.raises(TypeError, match="search: expected a BetaSearch"):
        Bisection("search", 0.1)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"low": 0.0}, ValueError, "low: expected a finite number > 0, got 0.0"),
        ({"low": -1.0}, ValueError, "low: expected a finite number > 0"),
        ({"high": math.inf}, ValueError, "high: expected a finite number > 0, got inf"),
        ({"low": 4.0, "high": 2.0}, ValueError, "high: expected a number > low = 4.0, got 2.0"),
        ({"low": 2.0, "high": 2.0}, ValueError, "high: expected a number > low"),
        ({"solves": 0}, ValueError, "solves: expected an int >= 1, got 0"),
        ({"solves": 2.5}, TypeError, "solves: expected an int"),
        ({"warm_start": "cold"}, ValueError, "warm_start: expected one of \\('initial', 'previous'\\), got 'cold'"),
        ({"low": "1"}, TypeError, "low: expected a real number, got str"),
    ],
)
def test_bad_search_settings_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        BetaSearch(**kwargs)


def test_seed_error_counts_seed_pixels_only_and_the_bound_is_scaled_floored_and_capped():
    seeds = np.array([[0, 0, 1, 1], [255, 255, 254, 1]])
    labels = np.array([[0, 1, 1, 0], [1, 1, 0, 0]])  # 3 of the 5 seeds wrong; 255/254 not counted
    assert seed_error(labels, seeds) == pytest.approx(3 / 5)
    assert seed_error_bound(labels, seeds) == pytest.approx(min(1.0, SEED_ERROR_SCALE * 3 / 5))
    assert seed_error_bound(np.where(seeds < 2, seeds, 0), seeds) == SEED_ERROR_FLOOR  # every seed right
    assert seed_error_bound(1 - np.where(seeds < 2, seeds, 0), seeds) == 1.0  # every seed wrong: capped
    assert seed_error(labels, np.full_like(seeds, 255)) == 0.0
    with pytest.raises(ValueError, match="labels: expected the seeds' shape"):
        seed_error(labels[:, :3], seeds)


def test_changed_fraction_counts_free_pixels_only():
    seeds = np.array([[0, 255, 255], [254, 255, 1]])
    reference = np.array([[0, 0, 1], [0, 1, 1]])
    labels = np.array([[1, 1, 1], [1, 0, 1]])  # the seed and padding pixels differ too: not counted
    free = free_pixels(seeds)
    assert free.sum() == 3
    assert changed_fraction(labels, reference, free) == pytest.approx(2 / 3)
    assert changed_fraction(labels, reference, np.zeros_like(free)) == 0.0
    with pytest.raises(ValueError, match="labels: expected the shape"):
        changed_fraction(labels[:, :2], reference, free)


# --- StageA(trust_weight="auto") on random grid problems --------------------------------------------------


@st.composite
def grid_problems(draw):
    """A small batch of random grid problems: logits, seeds (some pixels seeded, some padding), images."""
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    n, h, w = draw(st.integers(1, 2)), draw(st.integers(3, 9)), draw(st.integers(3, 9))
    c = draw(st.integers(2, 3))
    logits = rng.normal(scale=draw(st.floats(0.3, 4.0)), size=(n, h, w, c))
    seeds = np.full((n, h, w), cr.UNLABELED)
    for i in range(n):
        for label in range(c):
            seeds[i, rng.integers(h), rng.integers(w)] = label
    if draw(st.booleans()):
        seeds[:, :, -1] = cr.PADDING
    images = rng.uniform(0, 255, size=(n, h, w, 3))
    return logits, cr.Batch(None, seeds, images=images)


def _auto(max_changed=None, search=None, **kwargs):
    return cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), "auto", max_changed=max_changed, beta_search=search,
                     **kwargs)  # fmt: skip


def _references(logits, batch):
    """The arg-max over the labels each item's problem allows (what "changed" counts from)."""
    costs = CrossEntropy().label_costs(logits)
    return [LOSS.energy(costs[i], batch, i).unary_argmin() for i in range(logits.shape[0])]


@SETTINGS
@given(problem=grid_problems(), tau=st.floats(0.01, 1.0))
def test_auto_meets_the_bound_or_returns_the_upper_beta(problem, tau):
    logits, batch = problem
    search = BetaSearch(low=2.0**-4, high=2.0**6, solves=4)
    proposal = _auto(tau, search).propose(logits, batch)
    assert len(proposal.report.betas) == logits.shape[0]
    for i, reference in enumerate(_references(logits, batch)):
        changed = changed_fraction(proposal.targets[i], reference, free_pixels(batch.seeds[i]))
        beta = proposal.report.betas[i]
        assert search.low < beta <= search.high
        assert changed <= tau or beta == search.high


@SETTINGS
@given(problem=grid_problems(), taus=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=4, unique=True))
def test_the_chosen_beta_is_non_increasing_in_max_changed(problem, taus):
    logits, batch = problem
    taus = sorted(taus)
    betas = [_auto(tau).propose(logits, batch).report.betas for tau in taus]
    for smaller, larger in zip(betas, betas[1:], strict=False):
        assert all(a >= b for a, b in zip(smaller, larger, strict=True)), (taus, betas)


@SETTINGS
@given(problem=grid_problems(), tau=st.floats(0.02, 0.8))
def test_auto_keeps_the_solver_contract(problem, tau):
    """The energy of the returned labels at the reported β is the trace's end; seeds are kept; no rise."""
    logits, batch = problem
    proposal = _auto(tau).propose(logits, batch)
    costs = CrossEntropy().label_costs(logits)
    for i, beta in enumerate(proposal.report.betas):
        energy = LOSS.energy(beta * costs[i], batch, i)
        trace = proposal.report.traces[i]
        assert energy.value(proposal.targets[i]) == pytest.approx(trace[-1], rel=1e-12, abs=1e-9)
        assert all(b <= a + 1e-9 * max(1.0, abs(a)) for a, b in zip(trace, trace[1:], strict=False))
        seeded = (batch.seeds[i] >= 0) & (batch.seeds[i] < logits.shape[-1])
        np.testing.assert_array_equal(proposal.targets[i][seeded], batch.seeds[i][seeded])


@SETTINGS
@given(problem=grid_problems(), tau=st.floats(0.02, 0.8), warm=st.booleans())
def test_with_initial_warm_starts_auto_is_the_fixed_beta_stage_a_at_the_chosen_beta(problem, tau, warm):
    logits, batch = problem
    initial = None
    if warm:  # e.g. the cached labels of an earlier stage A
        initial = list(cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), 1.0).propose(logits, batch).targets)
    auto = _auto(tau).propose(logits, batch, initial=initial)
    for i, beta in enumerate(auto.report.betas):
        one = cr.Batch(None, batch.seeds[i : i + 1], batch.images[i : i + 1])
        fixed = cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), beta).propose(
            logits[i : i + 1], one, initial=None if initial is None else [initial[i]]
        )
        np.testing.assert_array_equal(auto.targets[i], fixed.targets[0])
        assert auto.report.traces[i] == fixed.report.traces[0]


def _seed_bounds(logits, batch):
    """τ per item of max_changed="seed_error", computed independently of StageA."""
    out = []
    for i in range(logits.shape[0]):
        allowed = np.asarray(LOSS.energy(np.zeros(logits.shape[1:]), batch, i).labels)
        network = allowed[np.argmax(logits[i][..., allowed], axis=-1)]
        seeds = batch.seeds[i]
        seeded = (seeds >= 0) & (seeds < logits.shape[-1])
        error = float(np.mean(network[seeded] != seeds[seeded])) if seeded.any() else 0.0
        out.append(min(1.0, max(SEED_ERROR_FLOOR, SEED_ERROR_SCALE * error)))
    return out


@SETTINGS
@given(problem=grid_problems())
def test_the_seed_error_rule_meets_its_per_item_bound_or_returns_the_upper_beta(problem):
    logits, batch = problem
    search = BetaSearch(low=2.0**-4, high=2.0**6, solves=4)
    proposal = _auto("seed_error", search).propose(logits, batch)
    for i, (reference, tau) in enumerate(zip(_references(logits, batch), _seed_bounds(logits, batch), strict=True)):
        changed = changed_fraction(proposal.targets[i], reference, free_pixels(batch.seeds[i]))
        assert changed <= tau or proposal.report.betas[i] == search.high


def test_the_seed_error_rule_is_a_fixed_tau_per_item():
    """Each item's labels and β under "seed_error" are those of a fixed τ = its seed-error bound."""
    logits, batch = _grid(np.random.default_rng(7), n=3, h=10, w=12)
    logits[:, :3, :3, 0] -= 3.0  # the network gets the seed at (0, 0) wrong on every item
    logits[1] -= 1.0 * (np.arange(3) == 2)  # and item 1 less sure of class 2
    auto = _auto("seed_error").propose(logits, batch)
    for i, tau in enumerate(_seed_bounds(logits, batch)):
        assert tau > SEED_ERROR_FLOOR
        one = cr.Batch(None, batch.seeds[i : i + 1], batch.images[i : i + 1])
        fixed = _auto(tau).propose(logits[i : i + 1], one)
        np.testing.assert_array_equal(auto.targets[i], fixed.targets[0])
        assert auto.report.betas[i] == fixed.report.betas[0]


def test_auto_without_max_changed_uses_the_documented_default():
    logits, batch = _grid(np.random.default_rng(0))
    default = _auto().propose(logits, batch)
    explicit = _auto(DEFAULT_MAX_CHANGED).propose(logits, batch)
    np.testing.assert_array_equal(default.targets, explicit.targets)
    assert default.report.betas == explicit.report.betas
    assert DEFAULT_MAX_CHANGED == "seed_error"


def test_fixed_beta_reports_no_betas_and_auto_solves_the_item_at_a_fixed_beta_first():
    logits, batch = _grid(np.random.default_rng(1))
    search = BetaSearch(low=1.0, high=16.0, solves=1)  # one query: β = 4, then 16 if 4 fails
    auto = _auto(1.0, search).propose(logits, batch)  # τ = 1: the first query always meets it
    fixed = cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), 4.0).propose(logits, batch)
    assert fixed.report.betas == () and auto.report.betas == (4.0, 4.0)
    np.testing.assert_array_equal(auto.targets, fixed.targets)
    assert auto.report.traces == fixed.report.traces


@pytest.mark.parametrize("warm_start", ["initial", "previous"])
def test_the_searches_of_a_batch_run_in_lockstep_one_batch_solver_call_per_round(warm_start):
    logits, batch = _grid(np.random.default_rng(2))
    calls = []

    def recording(solver, energies, initials, errors="raise"):
        states = solve_batch(solver, energies, initials, errors=errors)
        calls.append(([None if a is None else np.array(a) for a in initials], [s.solution for s in states]))
        return states

    search = BetaSearch(low=0.25, high=64.0, solves=3, warm_start=warm_start)
    cold = [np.asarray(a) for a in _auto(0.2, search).propose(logits, batch).targets]
    proposal = _auto(0.2, search, batch_solver=recording).propose(logits, batch, initial=[None, cold[1]])
    assert len(calls) in (3, 4)  # one batch-solver call per round (a 4th only if some item failed every query)
    assert calls[0][0][0] is None and np.array_equal(calls[0][0][1], cold[1])
    for (_, previous), (initials, _) in zip(calls[:3], calls[1:3], strict=False):  # rounds with every item
        expected = previous if warm_start == "previous" else [None, cold[1]]
        for start, solution in zip(initials, expected, strict=True):
            if solution is None:
                assert start is None
            else:
                np.testing.assert_array_equal(start, solution)
    assert len(proposal.report.betas) == 2


def test_numpy_and_torch_logits_give_the_same_labels_and_betas():
    torch = pytest.importorskip("torch")
    logits, batch = _grid(np.random.default_rng(3))
    expected = _auto().propose(logits, batch)
    nchw = torch.as_tensor(np.moveaxis(logits, -1, 1))
    tbatch = cr.Batch(None, torch.as_tensor(batch.seeds), images=torch.as_tensor(batch.images), ids=batch.ids)
    got = _auto().propose(nchw, tbatch, class_axis=1)
    assert isinstance(got.targets, torch.Tensor)
    np.testing.assert_array_equal(got.targets.numpy(), expected.targets)
    assert got.report.betas == expected.report.betas


def test_a_failing_item_gets_nan_and_the_others_their_search():
    logits, batch = _grid(np.random.default_rng(4))
    logits[1, 0, 0, 0] = np.nan
    proposal = _auto(0.2, on_failure="keep").propose(logits, batch)
    assert [i for i, _, _ in proposal.report.failures] == [1]
    assert math.isnan(proposal.report.betas[1]) and proposal.report.betas[0] > 0
    assert proposal.report.traces[1] == ()


def test_auto_on_a_chain_solver_counts_from_the_logits_arg_max():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 12, 2)) * 2
    seeds = np.full((2, 12), cr.UNLABELED)
    seeds[:, 0], seeds[:, -1] = 0, 1
    batch = cr.Batch(None, seeds, images=rng.normal(size=(2, 12, 1)))
    stage_a = cr.StageA(ChainViterbi(), ChainScribblePotts(potts_weight=2.0), CrossEntropy(), "auto", max_changed=0.25)
    proposal = stage_a.propose(logits, batch)
    for i in range(2):
        changed = changed_fraction(proposal.targets[i], logits[i].argmax(-1), free_pixels(seeds[i]))
        assert changed <= 0.25 or proposal.report.betas[i] == BetaSearch().high


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"trust_weight": "auto", "max_changed": 0.0}, ValueError, r"max_changed: expected a fraction in \(0, 1\]"),
        ({"trust_weight": "auto", "max_changed": -0.1}, ValueError, "max_changed: expected a fraction"),
        ({"trust_weight": "auto", "max_changed": 1.5}, ValueError, "got 1.5"),
        ({"trust_weight": "auto", "max_changed": math.nan}, ValueError, "got nan"),
        ({"trust_weight": "auto", "max_changed": math.inf}, ValueError, "got inf"),
        ({"trust_weight": "auto", "max_changed": True}, TypeError, "max_changed: expected a fraction"),
        ({"trust_weight": "auto", "max_changed": "0.1"}, ValueError, "or 'seed_error', got '0.1'"),
        ({"trust_weight": "auto", "max_changed": "seed-error"}, ValueError, "got 'seed-error'"),
        ({"trust_weight": 2.0, "max_changed": "seed_error"}, ValueError, "max_changed: only used with"),
        ({"trust_weight": "Auto"}, ValueError, "trust_weight: expected a number >= 0 or 'auto', got 'Auto'"),
        ({"trust_weight": "adaptive"}, ValueError, "trust_weight: expected a number >= 0 or 'auto'"),
        ({"trust_weight": 2.0, "max_changed": 0.1}, ValueError, "max_changed: only used with trust_weight='auto'"),
        ({"trust_weight": 2.0, "beta_search": BetaSearch()}, ValueError, "beta_search: only used with"),
        ({"trust_weight": "auto", "beta_search": (1, 2)}, TypeError, "beta_search: expected a chainrule2"),
        ({"trust_weight": -1.0}, ValueError, "trust_weight: expected a finite number >= 0"),
    ],
)
def test_bad_values_get_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), **kwargs)


def test_max_changed_one_accepts_any_beta_and_picks_the_lowest_query():
    logits, batch = _grid(np.random.default_rng(6))
    search = BetaSearch(low=1.0, high=16.0, solves=2)
    assert _auto(1.0, search).propose(logits, batch).report.betas == (2.0, 2.0)


def _grid(rng, n=2, h=8, w=9, c=3):
    logits = rng.normal(size=(n, h, w, c)) * 2
    seeds = np.full((n, h, w), cr.UNLABELED)
    seeds[:, 0, 0], seeds[:, -1, -1], seeds[:, 3, 4] = 0, 1, 2
    images = rng.uniform(0, 255, size=(n, h, w, 3))
    return logits, cr.Batch(None, seeds, images=images, ids=tuple(f"i{k}" for k in range(n)))


# --- hints and tolerance -----------------------------------------------------------------------------


def _table_search(search, measures, bound, hint=None):
    """Run the state machine on a measure given per grid index (``measures[m - 1]`` at ``g_m``)."""
    s = search.start(bound, hint)
    while (beta := s.next_beta) is not None:
        m = [search.grid_beta(k) for k in range(1, search.grid_size + 1)].index(beta) + 1
        s.tell(beta, measures[m - 1], m)
    return s.result()


HINTS = st.one_of(
    st.none(),
    st.floats(2.0**-12, 2.0**16),  # good and bad hints, some off the range
    st.sampled_from([1e-300, 1e-30, 1e30, 1e300, 2.0**-6, 2.0**10]),  # absurd ones and the ends
)


@given(solves=st.integers(1, 6), crossing=st.integers(1, 66), hint=HINTS)
def test_on_a_monotone_measure_a_hint_changes_the_solves_not_the_choice(solves, crossing, hint):
    """Exact guarantee (tolerance 0): the answer is the smallest grid β meeting the bound, whatever the hint."""
    search = BetaSearch(low=2.0**-6, high=2.0**10, solves=solves)
    top = search.grid_size
    measures = [0.0 if m >= crossing else 1.0 for m in range(1, top + 1)]  # meets 0.5 from index ``crossing``
    cold, hinted = _table_search(search, measures, 0.5), _table_search(search, measures, 0.5, hint)
    assert (hinted.beta, hinted.state, hinted.met) == (cold.beta, cold.state, cold.met)
    assert hinted.solves <= 2 * solves + 1
    if crossing <= top:
        exact = _table_search(search, measures, 0.5, search.grid_beta(crossing))  # the right hint: 2 solves
        assert exact.solves == (1 if crossing == 1 else 2) and exact.beta == cold.beta


@given(
    solves=st.integers(1, 5),
    seed=st.integers(0, 2**31 - 1),
    hint=HINTS,
    tolerance=st.sampled_from([0.0, 0.1, 0.3]),
    bounds=st.lists(st.floats(0.0, 1.0), min_size=2, max_size=4, unique=True),
)
def test_on_any_measure_the_choice_is_a_crossing_and_monotone_in_the_bound(solves, seed, hint, tolerance, bounds):
    """On a measure that is not monotone: the chosen β meets the bound and its grid neighbour below was
    solved and failed (or it is the lowest grid β, or within the tolerance); β non-increasing in the bound."""
    search = BetaSearch(low=0.5, high=64.0, solves=solves, tolerance=tolerance)
    measures = list(np.random.default_rng(seed).uniform(0, 1, search.grid_size))
    chosen = []
    for bound in sorted(bounds):
        choice = _table_search(search, measures, bound, hint)
        tried = dict(choice.tried)
        if choice.met:
            m = choice.state
            assert measures[m - 1] <= bound
            below = search.grid_beta(m - 1) if m > 1 else None
            assert m == 1 or (below in tried and tried[below] > bound) or measures[m - 1] > bound - tolerance * bound
        else:
            assert choice.beta == search.high and measures[-1] > bound
        chosen.append(choice.beta)
    assert all(a >= b for a, b in zip(chosen, chosen[1:], strict=False)), (bounds, chosen)


def test_the_hint_is_bracketed_by_doubling_steps_then_bisected():
    search = BetaSearch(low=1.0, high=2.0**16, solves=4)  # the grid: 2, 4, ..., 2^16 (index m: 2^m)
    measures = [1.0 if m < 5 else 0.0 for m in range(1, 17)]  # meets the bound from β = 2^5
    choice = _table_search(search, measures, 0.5, hint=2.0**12)
    assert [math.log2(b) for b, _ in choice.tried] == [12, 11, 9, 5, 2, 3, 4]  # down by 1, 2, 4, bisect
    assert choice.beta == 2.0**5
    choice = _table_search(search, measures, 0.5, hint=2.0)  # from below: up by 1, 2, 4, then bisect
    assert [math.log2(b) for b, _ in choice.tried] == [1, 2, 4, 8, 6, 5]
    assert choice.beta == 2.0**5


def test_with_tolerance_a_solve_close_to_the_bound_ends_the_search():
    search = BetaSearch(low=1.0, high=16.0, solves=2, tolerance=0.2)
    choice = _table_search(search, [0.9, 0.45, 0.3, 0.1], 0.5, hint=4.0)  # 0.45 > 0.5 · (1 - 0.2)
    assert choice.beta == 4.0 and choice.solves == 1
    choice = _table_search(search, [0.9, 0.35, 0.3, 0.1], 0.5, hint=4.0)  # 0.35 is not: try the β below
    assert choice.beta == 4.0 and choice.solves == 2


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"tolerance": -0.1}, ValueError, r"tolerance: expected a number in \[0, 1\)"),
        ({"tolerance": 1.0}, ValueError, "tolerance: expected a number in"),
        ({"tolerance": math.nan}, ValueError, "got nan"),
        ({"tolerance": "0.1"}, TypeError, "tolerance: expected a real number"),
    ],
)
def test_bad_tolerance_is_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        BetaSearch(**kwargs)


def test_bad_hints_of_the_search_are_named():
    with pytest.raises(ValueError, match="hint: expected a finite number > 0, got 0.0"):
        BetaSearch().start(0.1, hint=0.0)
    with pytest.raises(ValueError, match="hint: expected a finite number > 0, got nan"):
        BetaSearch().start(0.1, hint=math.nan)
    with pytest.raises(TypeError, match="hint: expected a real number, got str"):
        BetaSearch().start(0.1, hint="4")


def _changed_at(logits, batch, beta, i):
    one = cr.Batch(None, batch.seeds[i : i + 1], batch.images[i : i + 1])
    labels = cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), beta).propose(logits[i : i + 1], one).targets[0]
    return changed_fraction(labels, _references(logits, batch)[i], free_pixels(batch.seeds[i]))


@SETTINGS
@given(problem=grid_problems(), tau=st.floats(0.02, 0.8), kind=st.sampled_from(["good", "bad", "absurd"]),
       data=st.data())  # fmt: skip
def test_with_hints_auto_meets_the_bound_at_a_crossing_and_on_a_monotone_item_equals_the_cold_search(
    problem, tau, kind, data
):
    logits, batch = problem
    n = logits.shape[0]
    search = BetaSearch(low=2.0**-4, high=2.0**6, solves=3)
    cold = _auto(tau, search).propose(logits, batch)
    if kind == "good":
        hints = list(cold.report.betas)
    elif kind == "bad":
        hints = data.draw(st.lists(st.one_of(st.none(), st.floats(2.0**-6, 2.0**8)), min_size=n, max_size=n))
    else:
        hints = data.draw(st.lists(st.sampled_from([1e-300, 1e300]), min_size=n, max_size=n))
    hinted = _auto(tau, search).propose(logits, batch, beta_hint=hints)
    grid = [search.grid_beta(m) for m in range(1, search.grid_size + 1)]
    for i, beta in enumerate(hinted.report.betas):
        changed = [_changed_at(logits, batch, b, i) for b in grid]  # each query is the fixed-β stage A
        m = grid.index(beta)
        got = changed_fraction(hinted.targets[i], _references(logits, batch)[i], free_pixels(batch.seeds[i]))
        assert got == changed[m]
        if changed[m] <= tau:
            assert m == 0 or changed[m - 1] > tau  # a crossing: the grid β below fails
        else:
            assert beta == search.high and all(c > tau for c in changed[-1:])
        if all(a >= b for a, b in zip(changed, changed[1:], strict=False)):  # monotone: the hint does not matter
            assert beta == cold.report.betas[i]
            np.testing.assert_array_equal(hinted.targets[i], cold.targets[i])


@SETTINGS
@given(problem=grid_problems(), taus=st.lists(st.floats(0.01, 1.0), min_size=2, max_size=3, unique=True),
       hint=st.floats(2.0**-8, 2.0**12))  # fmt: skip
def test_with_a_hint_the_chosen_beta_is_non_increasing_in_max_changed(problem, taus, hint):
    logits, batch = problem
    hints = [hint] * logits.shape[0]
    betas = [_auto(tau).propose(logits, batch, beta_hint=hints).report.betas for tau in sorted(taus)]
    for smaller, larger in zip(betas, betas[1:], strict=False):
        assert all(a >= b for a, b in zip(smaller, larger, strict=True)), (taus, betas)


def test_a_right_hint_takes_two_solves_per_item():
    logits, batch = _grid(np.random.default_rng(8))
    calls = []

    def counting(solver, energies, initials, errors="raise"):
        calls.append(len(energies))
        return solve_batch(solver, energies, initials, errors=errors)

    cold = _auto(0.2).propose(logits, batch)
    hinted = _auto(0.2, batch_solver=counting).propose(logits, batch, beta_hint=list(cold.report.betas))
    assert hinted.report.betas == cold.report.betas
    np.testing.assert_array_equal(hinted.targets, cold.targets)
    assert sum(calls) <= 2 * logits.shape[0] and len(calls) <= 2  # lockstep: one batch-solver call per round


@pytest.mark.parametrize(
    "hint, error, match",
    [
        ([1.0], ValueError, r"beta_hint: expected 2 hints \(one per item, None for none\), got 1"),
        ([1.0, 0.0], ValueError, r"beta_hint\[1\]: expected a finite number > 0 or None"),
        ([-2.0, 1.0], ValueError, r"beta_hint\[0\]: expected a finite number > 0 or None .*got -2.0"),
        ([math.nan, 1.0], ValueError, r"beta_hint\[0\]: .*a failed item's nan: pass None.*got nan"),
        ([math.inf, 1.0], ValueError, "got inf"),
        ([True, 1.0], TypeError, r"beta_hint\[0\]: expected a number > 0 or None, got bool"),
        (["4", 1.0], TypeError, r"beta_hint\[0\]: expected a number > 0 or None, got str"),
        (4.0, TypeError, "beta_hint: expected a sequence of one β"),
        ("44", TypeError, "beta_hint: expected a sequence"),
    ],
)
def test_bad_hints_get_a_clear_error(hint, error, match):
    logits, batch = _grid(np.random.default_rng(9))
    with pytest.raises(error, match=match):
        _auto(0.2).propose(logits, batch, beta_hint=hint)


def test_a_hint_with_a_fixed_beta_is_refused_and_none_hints_are_the_cold_search():
    logits, batch = _grid(np.random.default_rng(10))
    with pytest.raises(ValueError, match="beta_hint: only used with trust_weight='auto'"):
        cr.StageA(AlphaExpansion(), LOSS, CrossEntropy(), 2.0).propose(logits, batch, beta_hint=[1.0, 1.0])
    cold = _auto(0.2).propose(logits, batch)
    none = _auto(0.2).propose(logits, batch, beta_hint=[None, None])
    assert none.report.betas == cold.report.betas


def test_trust_region_passes_max_changed_beta_search_and_hints_through():
    from chainrule2.divergences import SeedAwareObjective
    from chainrule2.models import LinearClassifier, SGDFitter

    search = BetaSearch(low=1.0, high=16.0, solves=2)
    fitter = SGDFitter(SeedAwareObjective(CrossEntropy()), 0.1)
    loss = ChainScribblePotts(potts_weight=2.0)
    tr = cr.TrustRegion(ChainViterbi(), fitter, CrossEntropy(), "auto", max_changed=0.25, beta_search=search)
    stage_a = tr.stage_a_for(loss)
    assert (stage_a.trust_weight, stage_a.max_changed, stage_a.beta_search) == ("auto", 0.25, search)
    rng = np.random.default_rng(11)
    seeds = np.full((2, 12), cr.UNLABELED)
    seeds[:, 0], seeds[:, -1] = 0, 1
    batch = cr.Batch(rng.normal(size=(2, 12, 3)), seeds, images=rng.normal(size=(2, 12, 1)))
    composite = cr.Composite(loss, LinearClassifier(3, 2, rng=np.random.default_rng(0)))
    cold = tr.propose(composite, batch)
    hinted = tr.propose(composite, batch, beta_hint=list(cold.report.betas))
    assert hinted.report.betas == cold.report.betas and len(cold.report.betas) == 2
    assert tr.step(composite, batch, beta_hint=list(cold.report.betas)).stage_a.betas == cold.report.betas
    with pytest.raises(ValueError, match="max_changed: only used with trust_weight='auto'"):
        cr.TrustRegion(ChainViterbi(), fitter, CrossEntropy(), 1.0, max_changed=0.25)
