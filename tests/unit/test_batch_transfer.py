"""How ProcessBatchSolver hands items to its workers: shared memory (default on Linux) or pipes."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from chainrule2.energies.grid import GridPotts, contrast_weights
from chainrule2.solvers import AlphaExpansion, ProcessBatchSolver, parallel, solve_batch
from chainrule2.solvers._shared_transfer import SharedBatch, SharedTransferError, available, solve_shared

needs_shared = pytest.mark.skipif(not available(), reason="shared-memory transfer needs os.memfd_create and /proc")


def _energies():
    """Items of different sizes and label counts, with seeds, warm starts and a non-contiguous one."""
    out, initials = [], []
    for k, (h, w, labels) in enumerate([(9, 11, 2), (14, 10, 3), (7, 7, 4), (12, 16, 3)]):
        rng = np.random.default_rng(k)
        unary = rng.random((h, w, labels)) * 2
        seeds = np.full((h, w), 255)
        seeds[0, :3] = 0
        out.append(GridPotts(unary, contrast_weights(rng.random((h, w, 3)) * 255), potts_weight=0.5, seeds=seeds))
        initials.append(None if k % 2 else np.asfortranarray(rng.integers(0, labels, (h, w))))
    initials[3] = np.zeros((w, h), dtype=np.int64).T  # a transposed view: not C-contiguous
    return out, initials


def _assert_same(results, expected):
    for got, want in zip(results, expected, strict=True):
        np.testing.assert_array_equal(got.solution, want.solution)
        assert got.trace == want.trace


@needs_shared
@pytest.mark.parametrize("transfer", ["shared", "pickle"])
def test_both_transfers_give_the_serial_results_and_leak_no_file(transfer):
    energies, initials = _energies()
    serial = solve_batch(AlphaExpansion(), energies, initials)
    before = len(os.listdir("/proc/self/fd"))
    with ProcessBatchSolver(workers=2, transfer=transfer) as pool:
        for _ in range(3):  # a held pool over several calls: each call's file is a new one
            _assert_same(pool(AlphaExpansion(), energies, initials), serial)
    assert len(os.listdir("/proc/self/fd")) == before  # every call's shared file was closed


@needs_shared
def test_a_shared_batch_round_trips_in_process():
    energies, initials = _energies()
    items = [(AlphaExpansion(), e, i) for e, i in zip(energies, initials, strict=True)]
    with SharedBatch(items) as shared:
        assert all(len(blob) < 2000 for blob, _ in shared.payloads)  # the arrays are out of band
        starts = [a for _, spans in shared.payloads for a, _ in spans]
        assert all(a % 64 == 0 for a in starts)
        states = [solve_shared(shared.source, *payload) for payload in shared.payloads]
    _assert_same(states, solve_batch(AlphaExpansion(), energies, initials))


def test_a_worker_that_cannot_map_the_file_says_so():
    energies, _ = _energies()
    with SharedBatch([(AlphaExpansion(), energies[0], None)]) as shared:
        blob, spans = shared.payloads[0]
        with pytest.raises(SharedTransferError, match="cannot map the caller's shared-memory file"):
            solve_shared(("/nonexistent/chainrule2", "another-call"), blob, spans)


class _Unreachable(SharedBatch):
    """A shared batch whose file the workers cannot open (as where /proc is restricted)."""

    def __init__(self, items):
        super().__init__(items)
        self.source = ("/nonexistent/chainrule2-stage-a", self.source[1])


@needs_shared
def test_the_pool_falls_back_to_pipes_when_workers_cannot_map_the_file(monkeypatch, caplog):
    monkeypatch.setattr(parallel, "SharedBatch", _Unreachable)
    energies, initials = _energies()
    pool = ProcessBatchSolver(workers=2)
    with caplog.at_level(logging.WARNING, logger="chainrule2.solvers.parallel"), pool:
        _assert_same(pool(AlphaExpansion(), energies, initials), solve_batch(AlphaExpansion(), energies, initials))
        assert "pickling the items instead" in caplog.text
        assert pool._shared_failed  # later calls go through the pipes at once
        assert pool._shared(AlphaExpansion(), [(energies[0], None)]) is None


def test_bad_transfer_is_named():
    with pytest.raises(ValueError, match="transfer"):
        ProcessBatchSolver(transfer="mmap")
