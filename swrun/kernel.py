"""The runbook kernel: ``python -m swrun.kernel -f CONNECTION_FILE``.

ipykernel's own launcher, less two imports a runbook never uses: the debugger (a runbook
kernel is never attached to one) and the syntax highlighting of Mako's HTML error pages
(Alembic imports Mako, which then loads a dozen Pygments lexers). Together they were 0.3 s
of the kernel's boot.
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """Linux: SIGKILL this process when its parent dies. The kernel dies with the runner (even a
    SIGKILLed one), and pg_dump/pg_restore (``preexec_fn`` of their Popen) with the kernel:
    never an orphan finishing a dump nobody will use."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the runner's kill of the process group still holds
        pass


if __name__ == "__main__":
    die_with_parent()
    if os.getppid() == 1:  # the runner died before the line above
        sys.exit(1)
    # as ipykernel_launcher: the working directory is not on the path while ipykernel loads
    # (IPython puts it back for the cells)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.modules.setdefault("debugpy", None)  # ipykernel then runs without its debugger
    sys.modules.setdefault("mako.ext.pygmentplugin", None)  # Mako then escapes its error pages without colour
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
