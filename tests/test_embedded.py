"""The embedded server: start/reuse, one initialiser at a time, a URL psql accepts."""

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from swrun import embedded

START = "import sys; from swrun.embedded import EmbeddedServer; s = EmbeddedServer(sys.argv[1]).start(); print(s.pid, s.port)"


def test_two_processes_starting_one_data_directory_share_one_server(tmp_path):
    home = tmp_path / "state"

    def start(_):
        return subprocess.run([sys.executable, "-c", START, str(home)], capture_output=True, text=True, timeout=180)

    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(start, range(2)))
        assert all(r.returncode == 0 for r in results), [r.stderr for r in results]
        assert results[0].stdout == results[1].stdout  # same pid and port: one initdb, one server
        server = embedded.EmbeddedServer(home)
        status = server.status()
        assert status.running and f"{status.pid} {status.port}\n" == results[0].stdout
        assert (status.data_dir.stat().st_mode & 0o777) == 0o700
        # the URL `swrun db url` prints works with psql as it is
        out = subprocess.run([str(embedded.pg_tool("psql")), status.url(), "-tAc", "select current_database()"],
                             capture_output=True, text=True, check=True).stdout
        assert out.strip() == embedded.DEFAULT_DATABASE
        assert server.stop() is True and not server.status().running
        assert server.stop() is False
    finally:
        embedded.remove(home)


def test_db_commands(tmp_path):
    env_home = {"SWRUN_HOME": str(tmp_path / "h")}
    import os

    env = {**os.environ, **env_home}
    try:
        url = subprocess.run([sys.executable, "-m", "swrun", "db", "url"], capture_output=True, text=True, env=env, check=True).stdout.strip()
        assert url.startswith("postgresql://postgres@/swrun?host=")
        status = subprocess.run([sys.executable, "-m", "swrun", "db", "status"], capture_output=True, text=True, env=env)
        assert status.returncode == 0 and "running" in status.stdout
        stop = subprocess.run([sys.executable, "-m", "swrun", "db", "stop"], capture_output=True, text=True, env=env)
        assert stop.stdout.strip() == "stopped"
        after = subprocess.run([sys.executable, "-m", "swrun", "db", "status"], capture_output=True, text=True, env=env)
        assert after.returncode == 1 and "not running" in after.stdout
    finally:
        embedded.remove(tmp_path / "h")


def test_a_held_state_lock_names_its_holder(tmp_path):
    import pytest

    from swrun.errors import DatabaseError

    home = tmp_path / "held"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from swrun.embedded import EmbeddedServer\n"
                               "with EmbeddedServer(sys.argv[1])._lock():\n    print('held', flush=True); time.sleep(60)", str(home)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DatabaseError) as caught:
            with embedded.EmbeddedServer(home)._lock(wait=0.5):
                pass
        line = caught.value.line()
        assert f"is held by pid {holder.pid} (" in line and "EmbeddedServer" in line and "(waited 0.5s)" in line
    finally:
        holder.kill()
        holder.wait()


def test_a_stale_pid_file_naming_a_live_process_is_never_signalled(tmp_path):
    home = tmp_path / "stale"
    server = embedded.EmbeddedServer(home)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        status = server.start()
        server.stop()
        # the server was killed and its pid reused: postmaster.pid now names an unrelated live process
        pidfile = server.data_dir / "postmaster.pid"
        pidfile.write_text(f"{sleeper.pid}\n{server.data_dir}\n1700000000\n{status.port}\n{status.socket_dir}\n127.0.0.1\n  1  2\nready   \n")
        assert not server.status().running
        assert server.stop() is False
        again = server.start()  # the stale file removed, a real server started
        assert again.running and again.pid != sleeper.pid
        assert server.stop() is True
        assert sleeper.poll() is None  # never signalled
    finally:
        sleeper.kill()
        embedded.remove(home)
