"""The guide's recovery procedures and troubleshooting section, each checking before it acts.

* :mod:`.rollback` - ``alembic downgrade``: plan (what is undone, its SQL, what data goes),
  then the downgrade under swrun's lock, then verify.
* :mod:`.stamp` - ``alembic stamp``, only when a scratch database built at the revision
  has the live schema.
* :mod:`.doctor` - the guide's troubleshooting cases diagnosed, each with its evidence and
  what to do (read-only).
* :mod:`.fresh` - ``downgrade base`` + ``upgrade head``, for development only.
* :mod:`.enum_change` - the guide's six-step enum change procedure, generated as a
  migration from a mapping old -> new, with per-value row counts checked.
* :mod:`.scratch` - throwaway databases built from the migrations, and schema comparison.
* :mod:`.steps` - how the recovery runbooks' cells call all of the above.

Each function returns a :class:`~swrun.result.StepResult`; none knows about notebooks.
"""
