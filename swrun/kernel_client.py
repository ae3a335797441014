"""The client papermill talks to the runbook kernel through.

jupyter_client's ``wait_for_ready`` ends by draining IOPub until it has been silent for
0.2 s, and waits 0.2 s more whenever the kernel's first status message was missed: at
least 0.2 s of every run spent waiting for nothing. This client waits for something
definite instead: the kernel's reply to its ``kernel_info`` request on shell, then that
request's ``idle`` status on IOPub. The kernel publishes in order, so once that status
arrives IOPub is connected and everything sent before it has been read.
"""

from __future__ import annotations

import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient

ASK_EVERY = 1.0  # a kernel still booting: ask again this often
IOPUB_WAIT = 0.2  # a status published before IOPub subscribed is lost: ask again after this


class ReadyClient(AsyncKernelClient):
    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        asked: set[str] = set()
        answered = False
        while True:
            asked.add(self.kernel_info())
            try:
                if not answered:
                    reply = await self.shell_channel.get_msg(timeout=ASK_EVERY)
                    if reply["msg_type"] == "kernel_info_reply":
                        self._handle_kernel_info_reply(reply)
                        answered = True
                if answered and await self._idle_after(asked):
                    return
            except Empty:
                pass
            if not await self.is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    async def _idle_after(self, asked: set[str]) -> bool:
        """True once IOPub carries the idle status of one of the ``asked`` requests."""
        until = time.monotonic() + IOPUB_WAIT
        while (left := until - time.monotonic()) > 0:
            msg = await self.iopub_channel.get_msg(timeout=left)
            if (msg["msg_type"] == "status" and msg["content"].get("execution_state") == "idle"
                    and msg["parent_header"].get("msg_id") in asked):
                return True
        return False
