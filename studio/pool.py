"""Runners loaded once and shared: keyed by (variant, device, threads), LRU under a memory budget.

The UI and the benchmark both take runners from here, so a model is never loaded twice.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from studio import settings
from studio.backends.base import Runner
from studio.memory import PeakGrowth, release_freed_memory

Key = tuple[str, str, int]


@dataclass
class _Entry:
    runner: Runner
    cost_mb: float


class RunnerPool:
    """Thread-safe LRU of loaded runners. `budget_mb` bounds their summed resident memory, each
    measured at load as the process's peak RSS growth (at least the weights file's size); the
    least recently used runners are closed first."""

    def __init__(self, budget_mb: float | None = None):
        self.budget_mb = budget_mb if budget_mb is not None else settings.pool_budget_mb()
        self._entries: OrderedDict[Key, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[Key, threading.Lock] = {}

    def get(self, key: Key, factory: Callable[[], Runner], cost_mb: float = 0.0) -> Runner:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                return self._entries[key].runner
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one load per key even when two users ask at once
            with self._lock:
                if key in self._entries:
                    return self._entries[key].runner
            with PeakGrowth() as grew:
                runner = factory()
            with self._lock:
                self._entries[key] = _Entry(runner, max(cost_mb, grew.mb or 0.0))
                self._evict(keep=key)
            return runner

    def _evict(self, keep: Key) -> None:
        while len(self._entries) > 1 and self.used_mb() > self.budget_mb:
            oldest = next(k for k in self._entries if k != keep)
            self._entries.pop(oldest).runner.close()
            release_freed_memory()

    def used_mb(self) -> float:
        return sum(e.cost_mb for e in self._entries.values())

    def has(self, key: Key) -> bool:
        with self._lock:
            return key in self._entries

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._entries)

    def drop(self, variant_id: str | None = None) -> None:
        with self._lock:
            for k in [k for k in self._entries if variant_id is None or k[0] == variant_id]:
                self._entries.pop(k).runner.close()


DEFAULT_POOL = RunnerPool()
