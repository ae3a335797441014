"""Canary, then waves; and at most ``max_per_server`` migrations at once on one server.

The per-server limit is a counter on the coordinator (:class:`ServerSlots`), not Dask
resources: Dask's resources belong to workers (a worker "has 2 GPUs"), while the scarce
thing here is a database server's connections and I/O, shared by every worker. The
coordinator resolves every URL anyway, so it knows each target's ``host:port`` and
submits a target only when its server has a free slot; nothing to configure on the
cluster, the same on a LocalCluster and on Kubernetes, and no lease timeouts to tune
(as a ``distributed.Semaphore`` would need for a worker that dies holding one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from .spec import FleetSpec, Target


@dataclass
class Wave:
    number: int  # 0 is the canary
    targets: list[Target]

    @property
    def label(self) -> str:
        return "canary" if self.number == 0 else f"wave {self.number}"


def waves(spec: FleetSpec, targets: list[Target] | None = None) -> list[Wave]:
    """The canary (the first ``canary`` targets, in file order), then waves of ``wave_length``."""
    targets = list(spec.targets if targets is None else targets)
    out = [Wave(0, targets[:spec.canary])] if spec.canary else []
    size = spec.wave_length()
    rest = targets[spec.canary:]
    for i in range(0, len(rest), size):
        out.append(Wave(len(out) + (0 if spec.canary else 1), rest[i:i + size]))
    return [w for w in out if w.targets]


class ServerSlots:
    """How many migrations run on each database server; a target starts only below the limit."""

    def __init__(self, limit: int):
        self.limit = limit
        self.running: Counter[str] = Counter()

    def free(self, server: str) -> bool:
        return self.running[server] < self.limit

    def take(self, server: str) -> None:
        self.running[server] += 1

    def give_back(self, server: str) -> None:
        self.running[server] -= 1
        if self.running[server] <= 0:
            del self.running[server]
