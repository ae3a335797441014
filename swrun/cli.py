"""The ``swrun`` command: parse arguments, call one library function, map errors to exit codes.

Like Alembic's ``command.py``, each verb is one function of the library; nothing here
knows how a step works. Errors a user can cause print one line and exit non-zero.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from .errors import SwrunError, UsageError

STEP_VERBS = ("status", "preview", "backup", "upgrade", "verify")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="path to the project's alembic.ini (default: the Smart Waste AI demo)")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $SWRUN_DATABASE_URL, else the embedded server)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", default="development", help="environment name (development, staging, production, ...)")
    parser.add_argument("--reports-dir", default="reports", help="where run records are kept (default: ./reports)")
    parser.add_argument("--backup-dir", default="backups", help="where backups and SQL previews are written (default: ./backups)")
    parser.add_argument("--operator", help="who runs this deployment (default: user@host)")
    parser.add_argument("--cell-timeout", type=float, default=3600, help="seconds one runbook cell may run")
    parser.add_argument("--kernel-timeout", type=float, default=60, help="seconds to wait for the kernel to start")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swrun", description="Executable, auditable Alembic migration runbooks for PostgreSQL.")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="COMMAND")

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

    p = sub.add_parser("verify", help="check revision, enums, invalid indexes, app check (read-only)")
    _common(p)
    p.add_argument("--to", default="head")

    for verb, steps, text in (
        ("deploy", None, "the full checklist as a runbook: preflight, status, preview, backup, upgrade, verify"),
        ("upgrade", "status,upgrade,verify", "apply pending revisions (as a runbook, leaving a record)"),
        ("backup", "preflight,backup", "pg_dump -Fc the database, verified (as a runbook, leaving a record)"),
    ):
        p = sub.add_parser(verb, help=text)
        _common(p)
        _run_options(p)
        p.add_argument("--to", default="head", help="target revision (default: head)")
        p.set_defaults(fixed_steps=steps)
        if verb == "deploy":
            p.add_argument("--steps", help="comma-separated subset of: preflight,status,preview,backup,upgrade,verify")

    p = sub.add_parser("run", help="execute any runbook with parameters")
    _common(p)
    _run_options(p)
    p.add_argument("runbook", help="a runbook name (deploy, ...) or a path to a .ipynb")
    p.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("XDG_RUNTIME_DIR", _runtime_dir())
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except SwrunError as exc:
        print(f"swrun: error: {exc.line()}", file=sys.stderr)
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
    if args.database_url is None and not os.environ.get("SWRUN_DATABASE_URL") and not getattr(args, "json", False):
        from .embedded import EmbeddedServer

        server = EmbeddedServer()
        print(f"swrun: using the embedded PostgreSQL in {server.data_dir}", file=sys.stderr)
    return ctx


def _dispatch(args) -> int:
    if args.verb == "db":
        return _db(args)
    if args.verb in ("status", "preview", "verify"):
        return _read_only(args)
    if args.verb in ("deploy", "upgrade", "backup", "run"):
        return _runbook(args)
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
    from .steps import preview, status, verify

    ctx = _context(args)
    if args.verb == "status":
        result = status.run(ctx, target=args.to)
    elif args.verb == "preview":
        result = preview.run(ctx, target=args.to, out_dir=Path(args.out_dir))
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
            print()
            print(table.to_string(index=False))
    if getattr(args, "show_sql", False):
        for title, sql in result.code.items():
            print(f"\n-- {title}\n{sql}")


def _runbook(args) -> int:
    from . import runner

    params: dict[str, str] = {}
    if args.verb == "run":
        runbook = args.runbook
        params.update({name: value for name, value in args.parameter})
    else:
        runbook = "deploy"
        params["target"] = args.to
        steps = args.fixed_steps or getattr(args, "steps", None)
        if steps:
            params["steps"] = steps
    outcome = runner.run_runbook(
        runbook,
        raw_parameters=params,
        project=args.project,
        database_url=args.database_url,
        environment=args.env,
        reports_dir=Path(args.reports_dir),
        backup_dir=Path(args.backup_dir),
        operator=args.operator,
        cell_timeout=args.cell_timeout,
        kernel_timeout=args.kernel_timeout,
        progress=not args.json,
    )
    if args.json:
        print(json.dumps(outcome.as_dict(), indent=2))
    return outcome.exit_code


if __name__ == "__main__":
    sys.exit(main())
