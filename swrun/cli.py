"""The ``swrun`` command: parse arguments, call one library function, map errors to exit codes.

Like Alembic's ``command.py``, each verb is one function of the library; nothing here
knows how a step works. Errors a user can cause print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import math
import os
import sys
from pathlib import Path

from .errors import SwrunError, UsageError

STEP_VERBS = ("status", "preview", "backup", "upgrade", "verify")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="path to the project's alembic.ini (default: the Smart Waste AI demo)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $SWRUN_DATABASE_URL, else the embedded server)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--url-env", metavar="NAME[,NAME]", type=_export_url_env,
                        help="environment variable(s) the project's env.py reads its URL from: swrun sets them to the "
                             "database it migrates while env.py runs (also [swrun] url_env in alembic.ini)")


def _export_url_env(text: str) -> str:
    """--url-env: exported as $SWRUN_URL_ENV, so the runbook's kernel inherits it (swrun.runtime reads it)."""
    names = [n for n in text.replace(",", " ").split() if n]
    if not names or any(not (n.replace("_", "").isalnum() and n.isascii()) or n[0].isdigit() for n in names):
        raise argparse.ArgumentTypeError(f"expects environment variable names, got {text[:40]!r}")
    os.environ["SWRUN_URL_ENV"] = ",".join(names)
    return os.environ["SWRUN_URL_ENV"]


def _seconds(low: float, high: float):
    """An argparse type: a finite number of seconds in [low, high] (``inf``, ``nan``, negatives refused)."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects a number of seconds, got {text[:40]!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expects seconds between {low:g} and {high:g}, got {text[:40]!r}")
        return value
    return parse


def _run_options(parser: argparse.ArgumentParser) -> None:
    # no argparse defaults for the settings -p may give instead: params.take_run_options tells
    # "not given" from "given" (--env production -p environment development is an error) and fills them in
    parser.add_argument("--env", help="environment name (development, staging, production, ...; default: development)")
    parser.add_argument("--reports-dir", help="where run records are kept (default: ./reports)")
    parser.add_argument("--backup-dir", help="where backups and SQL previews are written (default: ./backups)")
    parser.add_argument("--operator", help="who runs this deployment (default: user@host)")
    parser.add_argument("--cell-timeout", type=_seconds(0.001, 30 * 86400), default=3600, help="seconds one runbook cell may run")
    parser.add_argument("--kernel-timeout", type=_seconds(0.001, 3600), default=60, help="seconds to wait for the kernel to start")
    parser.add_argument("--quiet", action="store_true", help="only the step lines: no live progress (docs/progress.md)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one line like every other swrun error."""

    def error(self, message: str):
        self.exit(2, f"swrun: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="swrun", description="Executable, auditable Alembic migration runbooks for PostgreSQL.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND", parser_class=_Parser)

    db = sub.add_parser("db", help="the embedded PostgreSQL used when no URL is given")
    db.add_argument("action", choices=["start", "stop", "status", "url"])
    db.add_argument("--json", action="store_true")

    p = sub.add_parser("status", help="current revision, heads, pending revisions, history (read-only)")
    _common(p)
    p.add_argument("--to", default="head", help="target revision (default: head)")
    p.add_argument("--history", action="store_true", help="also print the full history")

    p = sub.add_parser("preview", help="the SQL of the pending range, per revision, written to a file (read-only)")
    _common(p)
    p.add_argument("--to", default="head")
    p.add_argument("--out-dir", default="backups", help="directory for the .sql file")
    p.add_argument("--show-sql", action="store_true", help="print the SQL too")
    p.add_argument("--sql-file", metavar="PATH", help="also write the SQL as a psql script (psql -v ON_ERROR_STOP=1 -f PATH): "
                   "timeouts set, a start-revision check, one transaction per revision")
    p.add_argument("--lock-timeout", default="2s", help="lock_timeout per attempt the --sql-file sets (default: 2s)")
    p.add_argument("--lock-retries", type=int, default=10, help="the --sql-file retries a revision cancelled for a lock timeout "
                   "this often, with backoff (default: 10; 0: plain BEGIN/COMMIT; docs/lock-retries.md)")
    p.add_argument("--statement-timeout", default="0", help="statement_timeout the --sql-file sets (default: 0, no limit)")

    p = sub.add_parser("verify", help="check revision, enums, invalid indexes, app check (read-only)")
    _common(p)
    p.add_argument("--to", default="head")

    for verb, steps, text in (
        ("deploy", None, "the full checklist as a runbook: preflight, status, preview, guards, backup, rehearse, upgrade, verify, watch"),
        ("upgrade", "status,guards,upgrade,verify", "apply pending revisions (as a runbook, leaving a record)"),
        ("backup", "preflight,backup", "pg_dump -Fc the database, verified (as a runbook, leaving a record)"),
        ("rehearse", "preflight,status,backup,rehearse", "back up, restore the backup into a scratch database and run the "
                                                        "pending migrations up, down and up on it (as a runbook, leaving a record)"),
    ):
        p = sub.add_parser(verb, help=text)
        _common(p)
        _run_options(p)
        p.add_argument("--to", default="head", help="target revision (default: head)")
        p.set_defaults(fixed_steps=steps)
        if verb in ("deploy", "upgrade", "rehearse"):  # docs/lock-retries.md
            p.add_argument("--lock-timeout", dest="lock_timeout", metavar="DURATION",
                           help="how long one attempt of a revision waits for a lock (default: 2s)")
            p.add_argument("--lock-retries", dest="lock_retries", type=int, metavar="N",
                           help="retries of a revision PostgreSQL cancels for a lock timeout (default: 10; 0: none)")
            p.add_argument("--lock-retry-budget", dest="lock_retry_budget", metavar="DURATION",
                           help="the run's time lost to timed-out lock waits and pauses, at most (default: 5min)")
            p.add_argument("--statement-timeout", dest="statement_timeout", metavar="DURATION",
                           help="bounds each statement of the revisions (default: 0, no bound)")
        if verb == "deploy":
            p.add_argument("--steps", help="comma-separated subset of: preflight,status,preview,guards,backup,rehearse,upgrade,verify,watch")
            p.add_argument("--watch", dest="watch_seconds", type=_seconds(0, 86400), metavar="SECONDS",
                           help="after the upgrade, watch the database's error signals this long against as long before it")
            p.add_argument("--fail-on-rise", dest="watch_fail_on_rise", action="store_true",
                           help="a rise in the watched error signals fails the run (exit 9)")
        if verb in ("deploy", "rehearse"):
            p.add_argument("--rehearse-on", dest="rehearse_on", choices=["embedded", "target"],
                           help="where the rehearsal's scratch database goes: the embedded server (default) or the target's server")
            p.add_argument("--rehearse-copy", dest="rehearse_copy", choices=["full", "touched", "auto"],
                           help="the rehearsal's copy: full (every row), touched (the rows of the tables the migrations touch "
                                "and what their foreign keys need), auto (default: touched, full when that is most of the database)")
        if verb in ("deploy", "backup", "rehearse"):
            p.add_argument("--verify-restore", dest="verify_restore", choices=["toc", "full"],
                           help="how the backup is proven: toc (default: pg_restore --list, and the rehearsal's restore of the "
                                "rows it needs) or full (the whole backup restored into a scratch database)")
        if verb in ("deploy", "backup", "rehearse"):
            p.add_argument("--mode", dest="backup_mode", choices=["custom", "custom-fast", "directory-fast"],
                           help="backup format: custom = pg_dump -Fc (default); custom-fast = -Fc with gzip:1; "
                                "directory-fast = -Fd -j (parallel)")
        if verb not in ("backup", "rehearse"):
            p.add_argument("--acknowledge", metavar="IDS", help="comma-separated guard finding ids to let through (the record keeps them)")
            p.add_argument("--override-gates", metavar="GATES", help="production gates to override: staging, locks, long-transactions, rehearsal")

    p = sub.add_parser("run", help="execute any runbook with parameters")
    _common(p)
    _run_options(p)
    p.add_argument("runbook", help="a runbook name (deploy, ...) or a path to a .ipynb")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))

    p = sub.add_parser("revision", help="a new migration (Alembic's autogenerate with --autogenerate), reviewed at once")
    _common(p)
    p.add_argument("-m", "--message", required=True, help="what the migration does")
    p.add_argument("--autogenerate", action="store_true", help="compare the models with the database (enum values too)")
    p.add_argument("--rev-id", help="the new revision's id (default: Alembic generates one)")
    _reports_parser(sub)
    _recovery_parsers(sub)
    _fleet_parser(sub)
    _check_parser(sub)
    return parser


def _check_parser(sub) -> None:
    p = sub.add_parser("check", help="CI: the guide's rules against git, heads after the merge, review, the chain and the "
                                     "deploy runbook executed on a throwaway database (exit 0 clean, 1 findings, 2+ could not check)")
    p.add_argument("--project", help="path to the project's alembic.ini (default: the Smart Waste AI demo)")
    p.add_argument("--base", metavar="REF", help="the branch the change merges into (default: origin/HEAD, else main/master)")
    p.add_argument("--format", dest="output_format", choices=["text", "github", "json"], default="text",
                   help="text (default); github: workflow annotations (and $GITHUB_STEP_SUMMARY); json")
    p.add_argument("--json", action="store_true", help="same as --format json")
    p.add_argument("--junit", metavar="PATH", help="also write a JUnit XML file (one testcase per check, one failure per finding)")
    p.add_argument("--reports-dir", default="reports", help="where the executed deploy runbook is kept (default: ./reports)")
    p.add_argument("--no-execute", action="store_true", help="static checks only: no throwaway database, no stairway, no runbook")
    p.add_argument("--no-runbook", action="store_true", help="execute the chain, but not the deploy runbook")


def _fleet_parser(sub) -> None:
    p = sub.add_parser("fleet", help="one migration set across many databases: a canary, then waves, on Dask")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, text in (("deploy", "deploy every target of FLEET.toml (the deploy runbook each, its own record)"),
                       ("status", "each target's current revision and pending count (read-only, in parallel)")):
        a = actions.add_parser(name, help=text)
        a.add_argument("fleet_file", metavar="FLEET.toml")
        a.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (default: a LocalCluster)")
        a.add_argument("--workers", type=int, metavar="N", help="LocalCluster worker processes (default: up to 4)")
        if name == "deploy":
            a.add_argument("--resume", metavar="FLEET_RUN", help="skip the targets that succeeded in that fleet run "
                                                                 "with the same migration set")
            a.add_argument("--reports-dir", default="reports", help="where run records are kept (default: ./reports)")
            a.add_argument("--backup-dir", default="backups", help="where each target's backup goes (default: ./backups)")
            a.add_argument("--operator", help="who runs this deployment (default: user@host)")
            a.add_argument("--cell-timeout", type=_seconds(0.001, 30 * 86400), default=3600, help="seconds one runbook cell may run")
            a.add_argument("--kernel-timeout", type=_seconds(0.001, 3600), default=60, help="seconds to wait for a kernel to start")
        else:
            a.add_argument("--json", action="store_true")


def _fleet(args) -> int:
    from .fleet import spec as fleet_spec

    if args.workers is not None and not 1 <= args.workers <= 256:
        raise UsageError(f"--workers must be between 1 and 256, got {args.workers}")
    try:
        spec = fleet_spec.load(args.fleet_file)
    except fleet_spec.FleetFileError as exc:  # every problem, one line each, before anything starts
        from .records import scrub_known

        for line in exc.lines:
            print(f"swrun: error: {scrub_known(line)}", file=sys.stderr)
        return exc.exit_code
    if args.action == "status":
        from .fleet import status

        rows = status.collect(spec, scheduler=args.scheduler, workers=args.workers)
        print(json.dumps(rows, indent=2) if args.json else status.text(rows))
        return 0 if all(r["error"] is None for r in rows) else 1
    from .fleet import coordinator

    result = coordinator.deploy(spec, scheduler=args.scheduler, workers=args.workers, resume=args.resume,
                                reports_dir=Path(args.reports_dir), backup_dir=Path(args.backup_dir), operator=args.operator,
                                cell_timeout=args.cell_timeout, kernel_timeout=args.kernel_timeout)
    return result.exit_code


def _reports_parser(sub) -> None:
    p = sub.add_parser("reports", help="the record store: list, show, export, verify, site")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="the indexed runs, filtered; a table or --json")
    a.add_argument("--env", help="only this environment")
    a.add_argument("--runbook", help="only this runbook")
    a.add_argument("--outcome", choices=["succeeded", "failed", "interrupted"])
    a.add_argument("--since", help="started at or after (ISO date or time, UTC unless given)")
    a.add_argument("--until", help="started before (a bare date includes that day)")
    a.add_argument("--revision", help="touched this revision (before or after; a prefix is enough)")
    a.add_argument("--fleet", metavar="FLEET_RUN", help="only the records of this fleet run (its targets' and its own)")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("show", help="one run's summary (RUN: a run id or a unique prefix)")
    a.add_argument("run", metavar="RUN")
    a = actions.add_parser("export", help="one run's record as HTML (nbconvert), inputs and outputs shown")
    a.add_argument("run", metavar="RUN")
    a.add_argument("--html", action="store_true", default=True, help="HTML (the only format; the default)")
    a.add_argument("--out", help="file or directory to write to (default: next to the record)")
    a = actions.add_parser("verify", help="recompute every hash; check the chain, the records and the database copy")
    a.add_argument("--database-url", help="check the copies in this database (default: $SWRUN_DATABASE_URL)")
    a.add_argument("--json", action="store_true")
    a = actions.add_parser("site", help="a static HTML site: an index page linking each record's HTML")
    a.add_argument("--out", help="directory (default: REPORTS_DIR/site)")
    for a in actions.choices.values():
        a.add_argument("--reports-dir", default="reports", help="the reports directory (default: ./reports)")


def run() -> None:
    """The ``swrun`` command: :func:`main`, then exit without the interpreter's teardown.

    Freeing everything a run built (the record's notebook, pandas, SQLAlchemy, Alembic's
    modules) takes about 0.3 s and nothing needs it: records and backups are closed by
    then. The atexit handlers still run and the output is flushed first.
    """
    code = main()
    getattr(atexit, "_run_exitfuncs", lambda: None)()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(int(code or 0))


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("XDG_RUNTIME_DIR", _runtime_dir())
    from .redaction import guard_stdio

    guard_stdio()  # what a project's env.py prints in this process: no secret swrun has met
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SwrunError as exc:
        from .records import scrub_known  # the last line of defence: no secret swrun has met, in any spelling

        print(f"swrun: error: {scrub_known(exc.line())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("swrun: interrupted", file=sys.stderr)
        return 130


def _runtime_dir() -> str:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"swrun-runtime-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    return str(path)


def _context(args, **extra):
    from .config import RunContext

    ctx = RunContext(project_path=args.project, database_url=args.database_url, **extra)
    if args.database_url is None and os.environ.get("SWRUN_DATABASE_URL") is None and not getattr(args, "json", False):
        from .embedded import EmbeddedServer

        server = EmbeddedServer()
        print(f"swrun: using the embedded PostgreSQL in {server.data_dir}", file=sys.stderr)
    return ctx


PATH_OPTIONS = ("project", "reports_dir", "backup_dir", "out_dir", "sql_file", "out", "junit")


def _dispatch(args) -> int:
    from . import params

    for name in PATH_OPTIONS:  # operator paths go anywhere, but a name the OS refuses is one line, not a traceback
        if getattr(args, name, None) is not None:
            params.check_path("--" + name.replace("_", "-"), getattr(args, name))
    if args.verb == "db":
        return _db(args)
    if args.verb in ("status", "preview", "verify"):
        return _read_only(args)
    if args.verb in ("deploy", "upgrade", "backup", "rehearse", "run"):
        return _runbook(args)
    if args.verb == "revision":
        return _revision(args)
    if args.verb == "reports":
        return _reports(args)
    if args.verb in RECOVERY_VERBS:
        return _recovery(args)
    if args.verb == "fleet":
        return _fleet(args)
    if args.verb == "check":
        return _check(args)
    raise UsageError(f"unknown command {args.verb}")


def _db(args) -> int:
    from .embedded import EmbeddedServer

    server = EmbeddedServer()
    if args.action == "start":
        status = server.start()
        print(f"embedded PostgreSQL {status.version} running (pid {status.pid}), data in {status.data_dir}")
        print(status.url())
    elif args.action == "stop":
        print("stopped" if server.stop() else "not running")
    elif args.action == "url":
        print(server.start().url())
    else:
        status = server.status()
        if args.json:
            print(json.dumps(status.as_dict(), indent=2))
        elif status.running:
            print(f"running: pid {status.pid}, PostgreSQL {status.version}, data in {status.data_dir}\n{status.url()}")
        else:
            print(f"not running (data directory {status.data_dir})")
            return 1
    return 0


def _read_only(args) -> int:
    from . import params
    from .steps import preview, status, verify

    params.check_pattern("target", args.to)
    if args.verb == "preview":
        params.check_duration("lock_timeout", args.lock_timeout)
        params.check_duration("statement_timeout", args.statement_timeout)
        params.check_number("lock_retries", args.lock_retries)
    ctx = _context(args, **({"lock_timeout": args.lock_timeout, "lock_retries": args.lock_retries,
                             "statement_timeout": args.statement_timeout} if args.verb == "preview" else {}))
    if args.verb == "status":
        result = status.run(ctx, target=args.to)
    elif args.verb == "preview":
        result = preview.run(ctx, target=args.to, out_dir=Path(args.out_dir),
                             sql_file=Path(args.sql_file) if args.sql_file else None, statement_timeout=args.statement_timeout)
    else:
        result = verify.run(ctx, target=args.to)
    _print_result(result, args)
    return 0 if result.ok else 1


def _print_result(result, args) -> None:
    if args.json:
        print(json.dumps(result.as_dict(), indent=2))
        return
    print(result.summary)
    for name, table in result.tables.items():
        if name == "history" and not getattr(args, "history", False):
            continue
        if len(table):
            from .display import frame_text

            print()
            print(frame_text(table))
    if getattr(args, "show_sql", False):
        for title, sql in result.code.items():
            print(f"\n-- {title}\n{sql}")


def _run_settings(args, pairs=()) -> tuple[dict, dict]:
    """The runbook's parameters from ``-p`` pairs, and the runner's settings (one value each)."""
    from . import params

    given, settings = params.take_run_options(pairs, {"environment": args.env, "reports_dir": args.reports_dir,
                                                      "backup_dir": args.backup_dir, "operator": args.operator,
                                                      "project": args.project})
    for name in ("project", "reports_dir", "backup_dir"):
        if settings[name] is not None:
            params.check_path(name, settings[name])
    return given, dict(settings, environment=params.environment_name(settings["environment"]))


def _start(runbook: str, given: dict, settings: dict, args, label: str | None = None):
    from . import runner

    return runner.run_runbook(
        runbook, raw_parameters=given, project=settings["project"], database_url=args.database_url,
        environment=settings["environment"], reports_dir=Path(settings["reports_dir"]),
        backup_dir=Path(settings["backup_dir"]), operator=settings["operator"], cell_timeout=args.cell_timeout,
        kernel_timeout=args.kernel_timeout, progress=False if args.json else ("quiet" if getattr(args, "quiet", False) else True), label=label)


def _check_target(project: str | None, target) -> None:
    """An unknown target revision is bad input (exit 2), refused before any kernel starts or any
    record is written. Only plain ids are checked here: ``head``, ``heads``, ``base``, ``label@head``
    and relative targets depend on the database, which the runbook's status step reads."""
    import re

    if not isinstance(target, str):
        return
    from . import params

    params.check_text("target", target)  # a 2000-character value is too long before it is an unknown revision
    if target in ("head", "heads", "base", "") or not re.fullmatch(r"[0-9A-Za-z_]+", target):
        return
    from .migrations import Project

    Project.load(project).resolve(target)  # UsageError: "unknown target revision ..."


def _runbook(args) -> int:
    params, settings = _run_settings(args, args.parameter if args.verb == "run" else ())
    if args.verb == "run":
        runbook = args.runbook
        if Path(runbook).stem in ("deploy", "rollback", "stamp") and "target" in params:
            _check_target(settings["project"], params["target"])
    else:
        runbook = "deploy"
        params["target"] = args.to
        steps = args.fixed_steps or getattr(args, "steps", None)
        if steps is not None:  # --steps "" is an error (params.check_steps), never "every step"
            params["steps"] = steps
        for name in ("acknowledge", "override_gates", "backup_mode", "rehearse_on", "rehearse_copy", "verify_restore",
                     "watch_seconds", "watch_fail_on_rise", "lock_timeout", "lock_retries", "lock_retry_budget",
                     "statement_timeout"):
            if getattr(args, name, None) is not None:
                params[name] = getattr(args, name)
        _check_target(settings["project"], args.to)
    # swrun upgrade/backup/rehearse run deploy.ipynb's steps and are indexed under their own name
    outcome = _start(runbook, params, settings, args, label=args.verb if args.verb in ("upgrade", "backup", "rehearse") else None)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    _embedded_note(args)
    return outcome.exit_code


def _embedded_note(args) -> None:
    """The last line of a run on the embedded server: it keeps running (the next run starts at
    once), and how to stop it."""
    if args.database_url is not None or os.environ.get("SWRUN_DATABASE_URL") is not None or getattr(args, "json", False):
        return
    from .embedded import EmbeddedServer

    status = EmbeddedServer().status()
    if status.running:
        print(f"swrun: the embedded PostgreSQL is still running (pid {status.pid}, data in {status.data_dir}); "
              "stop it with: swrun db stop", file=sys.stderr, flush=True)


RECOVERY_VERBS = ("rollback", "stamp", "doctor", "start-fresh", "enum-change")
_BACKUP_MODES = ["custom", "custom-fast", "directory-fast"]


def _recovery_parsers(sub) -> None:
    """The guide's recovery procedures and troubleshooting: runbooks/rollback, stamp, doctor, start_fresh, enum_change."""
    p = sub.add_parser("rollback", help="roll back (one revision, the guide's downgrade -1): plan, backup, downgrade, verify (a runbook)")
    _common(p)
    _run_options(p)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--to", metavar="REV", help="the revision to roll back to (base: undo everything)")
    which.add_argument("--steps", type=int, metavar="N", help="how many revisions to roll back (default: 1)")
    p.add_argument("--mode", dest="backup_mode", choices=_BACKUP_MODES, help="backup format (default: custom, pg_dump -Fc)")

    p = sub.add_parser("stamp", help="set alembic_version to REV, only if a scratch database built at REV has the live schema (a runbook)")
    _common(p)
    _run_options(p)
    p.add_argument("revision", metavar="REV", help="the revision to stamp (a revision id, head, base)")
    p.add_argument("--override", action="store_true", help="stamp even though the schemas differ (the record keeps that it was used)")
    p.add_argument("--scratch", choices=["embedded", "target"], help="where the scratch database is built (default: the embedded server)")

    p = sub.add_parser("doctor", help="diagnose the guide's troubleshooting cases: the evidence and what to do (read-only)")
    _common(p)
    _run_options(p)
    p.add_argument("--scratch", choices=["embedded", "target"], default="embedded",
                   help="where the schema check's scratch database is built (default: the embedded server)")
    p.add_argument("--record", action="store_true", help="run runbooks/doctor.ipynb and keep the record under reports/")

    p = sub.add_parser("start-fresh", help="downgrade base, then upgrade head: development environments only (a runbook)")
    _common(p)
    _run_options(p)
    p.add_argument("--mode", dest="backup_mode", choices=_BACKUP_MODES, help="backup format (default: custom, pg_dump -Fc)")

    p = sub.add_parser("enum-change", help="the guide's enum change procedure: a migration generated from a mapping, "
                                           "applied, every row checked (a runbook)")
    _common(p)
    _run_options(p)
    p.add_argument("--enum", required=True, help="the enum type")
    p.add_argument("--table", required=True, help="the table whose column has that type")
    p.add_argument("--column", required=True, help="the column")
    p.add_argument("--map", dest="mapping", action="append", required=True, metavar="OLD=NEW",
                   help="one per value of the enum (VALUE alone keeps it); every value must be mapped")
    p.add_argument("--rev-id", help="the new revision's id (default: derived from the change and its parent)")
    p.add_argument("--generate-only", action="store_true", help="write the migration and stop (deploy it later)")
    p.add_argument("--acknowledge", metavar="IDS", help="comma-separated guard finding ids to let through (the record keeps them)")
    p.add_argument("--override-gates", metavar="GATES", help="production gates to override")
    p.add_argument("--mode", dest="backup_mode", choices=_BACKUP_MODES, help="backup format (default: custom, pg_dump -Fc)")


def _recovery(args) -> int:
    _, settings = _run_settings(args)
    if args.verb == "doctor" and not args.record:  # read-only: print the diagnosis, keep nothing
        from .recovery import doctor

        ctx = _context(args, environment=settings["environment"])
        results = doctor.diagnose(ctx, where=args.scratch)
        print(json.dumps([r.as_dict() for r in results], indent=2) if args.json else doctor.text(results, ctx))
        return 1 if any(r.outcome in ("warning", "failed") for r in results) else 0
    params: dict = {}
    runbook = args.verb.replace("-", "_")
    if args.verb == "rollback":
        if args.steps is not None and args.steps < 1:
            raise UsageError(f"--steps must be a positive number of revisions, got {args.steps}")
        if args.to:
            _check_target(settings["project"], args.to)
            params["target"] = args.to
        if args.steps:
            params["steps_back"] = args.steps
    elif args.verb == "stamp":
        _check_target(settings["project"], args.revision)
        params["target"] = args.revision
        params["override"] = args.override
        if args.scratch:
            params["scratch"] = args.scratch
    elif args.verb == "doctor":
        params["scratch"] = args.scratch
    elif args.verb == "enum-change":
        bad = [m for m in args.mapping if "," in m]
        if bad:
            raise UsageError(f"bad --map {bad[0]!r}: one OLD=NEW per --map")
        params.update(enum_name=args.enum, table=args.table, column=args.column, mapping=",".join(args.mapping))
        if args.rev_id:
            params["rev_id"] = args.rev_id
        if args.generate_only:
            params["steps"] = "enum-plan,enum-generate"
        for name in ("acknowledge", "override_gates"):
            if getattr(args, name, None) is not None:
                params[name] = getattr(args, name)
    if getattr(args, "backup_mode", None):
        params["backup_mode"] = args.backup_mode
    outcome = _start(runbook, params, settings, args)
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
        return outcome.exit_code
    import nbformat

    steps = {s["step"]: s for s in nbformat.read(str(outcome.record), as_version=4).metadata.get("swrun", {}).get("steps", [])}
    _print_recovery_tables(steps)
    sys.stdout.flush()
    _embedded_note(args)
    if args.verb == "doctor" and outcome.exit_code == 0:
        return 1 if any(s.get("outcome") == "warning" for s in steps.values()) else 0
    return outcome.exit_code


def _print_recovery_tables(steps: dict) -> None:
    """The tables the terminal needs besides the progress lines: a stamp's schema differences, an enum change's counts."""
    import pandas as pd

    from .display import frame_text

    found = steps.get("stamp-check", {}).get("data", {}).get("differences")
    if found:
        print(f"schema differences (migrations at {', '.join(steps['stamp-check']['data']['target']) or '<base>'} vs the live database):")
        print(frame_text(pd.DataFrame(found, columns=["kind", "object", "difference", "migrations", "live"])))
    counts = steps.get("enum-check", {}).get("data", {}).get("per_value")
    if counts:
        print("rows per value, before and after:")
        print(frame_text(pd.DataFrame(counts, columns=["value", "from", "rows before", "rows after", "result"])))


def _revision(args) -> int:
    from . import params
    from .guards import review

    params.check_text("message", args.message)  # Alembic makes the file name's slug of it
    if args.rev_id is not None:  # the new file's name starts with it: no separators, no traversal
        params.check_pattern("rev_id", args.rev_id)
    result = review.new_revision(_context(args), args.message, autogenerate=args.autogenerate, rev_id=args.rev_id)
    _print_result(result, args)
    return 0


def _check(args) -> int:
    from . import check
    from .check import writers

    try:
        report = check.check(args.project, args.base, reports_dir=Path(args.reports_dir), execute_chain=not args.no_execute,
                             run_runbook=not args.no_runbook)
    except SwrunError as exc:  # could not check: never the exit code of findings
        exc.exit_code = max(exc.exit_code, 2)
        raise
    fmt = "json" if args.json else args.output_format
    if args.junit:
        writers.write_junit(report, Path(args.junit))
    if fmt == "json":
        print(writers.as_json(report))
    elif fmt == "github":
        print(writers.github(report))
        print(writers.text(report))
        writers.write_step_summary(report)
    else:
        print(writers.text(report))
    return report.exit_code


def _embedded_default() -> str | None:
    """The URL runs use when none is given (the embedded server's), so ``reports verify`` checks
    the same database copy they wrote; None when this directory has no embedded server."""
    from .embedded import EmbeddedServer

    server = EmbeddedServer()
    if not (server.data_dir / "PG_VERSION").exists():
        return None
    return server.start().url()  # the report's "database copy:" line names it


def _reports(args) -> int:
    from . import store

    reports_dir = Path(args.reports_dir)
    if args.action == "verify":
        report = store.verify(reports_dir, key=store.record_key(),
                              database_url=args.database_url or os.environ.get("SWRUN_DATABASE_URL") or _embedded_default())
        print(json.dumps(report.as_dict(), indent=2) if args.json else report.text())
        if not report.ok:
            raise store.StoreError(f"verification failed: {len(report.problems)} problem(s), first: {report.problems[0]}")
        return 0
    if args.action in ("export", "site"):
        from . import site

        if args.action == "export":
            print(site.export_html(reports_dir, args.run, Path(args.out) if args.out else None))
            return 0
        built = site.build_site(reports_dir, Path(args.out) if args.out else None)
        print(f"{built.index} ({built.pages} page(s) written, {built.reused} unchanged)")
        if built.problems:
            raise store.StoreError(f"{len(built.problems)} record(s) not in the site: {built.problems[0]}")
        return 0
    index = store.read_index(reports_dir)
    if args.action == "show":
        text, problem = store.show_text(reports_dir, store.find(index.entries, args.run))
        print(text)
        if problem:
            raise problem
        return 0
    entries = store.filter_entries(
        index.entries, environment=args.env.strip().lower() if args.env else None, runbook=args.runbook, outcome=args.outcome, revision=args.revision,
        since=store.parse_time(args.since) if args.since else None,
        until=store.parse_time(args.until, end=True) if args.until else None, fleet=args.fleet)
    print(json.dumps([store.public(e) for e in entries], indent=1) if args.json else store.format_table(entries))
    if index.problems:
        raise store.StoreError(f"{index.problems[0].message} ({len(index.problems)} unreadable line(s); "
                               f"the other {len(index.entries)} entries were read)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
