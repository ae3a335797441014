"""Where the targets run: a Dask ``LocalCluster`` by default, an existing cluster by address.

The LocalCluster uses processes with one thread each (a deploy's kernel is a process of its
own anyway; ``fleet status`` reads through env.py in the worker, whose ``alembic.context``
is module-global, and serialises that per process), and mutual TLS.
With ``--scheduler`` the cluster is someone else's: its security (TLS) comes from Dask's
own configuration (``distributed.comm.tls.*``, see docs/fleet.md), as for any Dask client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from typing import Iterator

from ..errors import UsageError


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


@contextlib.contextmanager
def client(scheduler: str | None = None, workers: int | None = None) -> Iterator[tuple[object, str]]:
    """A connected ``distributed.Client`` and a one-line description of the cluster."""
    for name in ("distributed", "distributed.worker", "distributed.scheduler", "distributed.nanny", "tornado"):
        logging.getLogger(name).setLevel(logging.ERROR)  # the fleet's own lines are the output
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            c = Client(scheduler, timeout="20s")
        except OSError as exc:
            raise UsageError(f"no Dask scheduler answers at {scheduler[:200]}: {' '.join(str(exc).split())[:200]}",
                             hint="start one with `dask scheduler`, or leave out --scheduler for a LocalCluster") from None
        try:
            n = len(c.scheduler_info().get("workers", {}))
            yield c, f"the Dask scheduler at {scheduler} ({n} worker(s))"
        finally:
            c.close()
        return
    n = workers or default_workers()
    # the scheduler's HTTP endpoints (health, metrics) move to a free port when 8787 is taken; say nothing
    warnings.filterwarnings("ignore", message=r"Port \d+ is already in use", category=UserWarning)
    # mutual TLS with a throwaway in-memory CA: the URLs travel encrypted even on loopback, and no
    # other local user can connect to this scheduler (an open one runs any task it is sent)
    cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None,
                           host="127.0.0.1", silence_logs=logging.ERROR, security=True)
    try:
        c = Client(cluster)
        try:
            yield c, f"a Dask LocalCluster ({n} worker process(es))"
        finally:
            c.close()
    finally:
        cluster.close()
