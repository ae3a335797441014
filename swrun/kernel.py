"""The runbook kernel: ``python -m swrun.kernel -f CONNECTION_FILE``.

ipykernel's own launcher, less two imports a runbook never uses: the debugger (a runbook
kernel is never attached to one) and the syntax highlighting of Mako's HTML error pages
(Alembic imports Mako, which then loads a dozen Pygments lexers). Together they were 0.3 s
of the kernel's boot.
"""

import os
import sys

if __name__ == "__main__":
    # as ipykernel_launcher: the working directory is not on the path while ipykernel loads
    # (IPython puts it back for the cells)
    if sys.path and sys.path[0] in ("", os.getcwd()):
        del sys.path[0]
    sys.modules.setdefault("debugpy", None)  # ipykernel then runs without its debugger
    sys.modules.setdefault("mako.ext.pygmentplugin", None)  # Mako then escapes its error pages without colour
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()
