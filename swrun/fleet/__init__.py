"""Fleet: one migration set across many databases, a canary first, then waves, run on Dask.

A fleet target runs exactly the runbook ``swrun deploy`` runs (its own backup, rehearsal,
gates and record); Dask only decides where and when. The modules, in the order a fleet
run uses them:

* :mod:`.spec`: the fleet file (TOML), validated whole before anything starts;
* :mod:`.plan`: canary and waves, and the per-server limit (``max_per_server``);
* :mod:`.cluster`: a ``LocalCluster`` by default, an existing scheduler by address;
* :mod:`.worker`: what a Dask worker runs: one target's deploy, its record handed back;
* :mod:`.coordinator`: the one writer of records and index entries; stops, resumes;
* :mod:`.record`: the fleet's own record (runbooks/fleet.ipynb) and its tables and plot;
* :mod:`.status`: each target's revision and pending count, read-only, in parallel.
"""
