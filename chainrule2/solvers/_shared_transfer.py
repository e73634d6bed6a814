"""Handing a batch's energies to worker processes through shared memory instead of pipes.

A :class:`~chainrule2.solvers.ProcessBatchSolver` call pickles each item (solver, energy, warm
start) with protocol 5, keeping the arrays out of band (``buffer_callback``): the pickles are a
few hundred bytes, and the arrays' bytes are copied once into one anonymous shared-memory file of
the call (``os.memfd_create``). A worker maps that file read-only and unpickles its item with
``buffers=`` views into the mapping, so no array crosses a pipe and none is copied in the worker.
Through pipes, 48 horse energies of 96 px (380 kB each) cost ≈ 1 ms per item in round trips on
the 2-core machine, against a 16 ms solve (docs/performance.md).

The file has no name in any file system and is freed when the caller closes it and the workers
drop their mappings, so a killed run leaves nothing behind. Workers open it as
``/proc/<caller pid>/fd/<fd>``; this is Linux only (:func:`available`); elsewhere, or where a
worker cannot open it (:class:`SharedTransferError`), the pool pickles the items through pipes.
"""

from __future__ import annotations

import mmap
import os
import pickle
import uuid
from typing import Any

from chainrule2.base import SolverState
from chainrule2.solvers.base import run

#: Each array starts at a multiple of this many bytes of the file (numpy's fast paths want aligned data).
ALIGNMENT = 64

#: Per worker process: the mapping of the call it is solving items of (one call at a time).
_mapped: dict[str, mmap.mmap] = {}


class SharedTransferError(OSError):
    """A worker could not map the caller's shared-memory file (the pool then pickles the items)."""


def available() -> bool:
    """Whether this process can hand items over in shared memory (``os.memfd_create`` and ``/proc``)."""
    return hasattr(os, "memfd_create") and os.path.isdir(f"/proc/{os.getpid()}/fd")


class SharedBatch:
    """One call's items: ``payloads[i] = (pickle, spans)``, the arrays of item ``i`` at the byte spans
    of the shared file ``source``; ``failures[i]``: why item ``i`` could not be pickled (that item
    alone fails). Use as a context manager: the file is closed on exit (workers that mapped it keep
    their mapping until they drop it)."""

    def __init__(self, items: list[tuple[Any, Any, Any]]) -> None:
        pickles, buffers = [], []
        self.failures: dict[int, Exception] = {}
        for index, item in enumerate(items):
            own: list[pickle.PickleBuffer] = []
            try:
                pickles.append(pickle.dumps(item, protocol=5, buffer_callback=own.append))
            except Exception as err:  # e.g. a lambda inside the energy
                self.failures[index] = err
                pickles.append(b"")
                own = []
            buffers.append([b.raw() for b in own])
        self.payloads: list[tuple[bytes, list[tuple[int, int]]]] = []
        end = 0
        for blob, raws in zip(pickles, buffers, strict=True):
            spans = []
            for raw in raws:
                start = -(-end // ALIGNMENT) * ALIGNMENT
                end = start + raw.nbytes
                spans.append((start, end))
            self.payloads.append((blob, spans))
        self.fd = os.memfd_create("chainrule2-stage-a", os.MFD_CLOEXEC)
        try:
            if end:
                os.ftruncate(self.fd, end)
                with mmap.mmap(self.fd, end) as target:
                    for (_, spans), raws in zip(self.payloads, buffers, strict=True):
                        for (start, stop), raw in zip(spans, raws, strict=True):
                            target[start:stop] = raw
        except BaseException:
            os.close(self.fd)
            raise
        # the token tells a worker a new call from an old one whose fd number was reused
        self.source = (f"/proc/{os.getpid()}/fd/{self.fd}", uuid.uuid4().hex)

    def __enter__(self) -> SharedBatch:
        return self

    def __exit__(self, *exc: Any) -> None:
        os.close(self.fd)


def solve_shared(source: tuple[str, str], blob: bytes, spans: list[tuple[int, int]]) -> SolverState:
    """In a worker: map the call's file (once per call), unpickle one item onto it, solve it."""
    path, token = source
    view = None
    if spans:
        mapping = _mapped.get(token)
        if mapping is None:
            _mapped.clear()  # the previous call's mapping goes once its arrays are gone
            try:
                with open(path, "rb") as f:
                    mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            except OSError as err:
                raise SharedTransferError(f"cannot map the caller's shared-memory file {path}: {err}") from err
            _mapped[token] = mapping
        view = memoryview(mapping)
    solver, energy, initial = pickle.loads(blob, buffers=[] if view is None else [view[a:b] for a, b in spans])
    return run(solver, energy, initial)
