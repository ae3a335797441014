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
