"""The dashboard's ASGI application: server-rendered pages over ``jobkit.operations``, with its
security rules (a token when one is set, CSRF-checked POSTs, read-only mode, escaped output and
strict headers) in one place.

Pages read with GET and never change anything; every action is a POST that carries a CSRF token
(an HMAC of a random per-browser cookie, so a page of another site can neither read nor forge
it), and redirects back (post/redirect/get) with what it did in a one-time message.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

import attrs
import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from jobkit import JobkitError, JobNotFound, ParameterError, SettingsError, redact_credentials
from jobkit.operations import MAX_PAGE, ActionReport, Operations, job_filter
from jobkit.records import FAILED, Attempt, AttemptState, JobFilter, QueueCounts
from jobkit_dashboard import SECTION, DashboardSettings
from jobkit_dashboard.charts import Chart, chart

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from jobkit.runtime import Runtime

logger = logging.getLogger("jobkit_dashboard")

CSRF_COOKIE = "jobkit_dashboard_csrf"
CSRF_FIELD = "csrf_token"
FLASH_COOKIE = "jobkit_dashboard_flash"
PAGE_SIZE = 50
BULK_LIMIT = 1000
"""The most jobs one bulk action on "all matching" takes (Oban's default cap)."""
LIVE_STATES = (AttemptState.PENDING, AttemptState.SCHEDULED, AttemptState.RUNNING)
STATE_CHOICES = [state.value for state in AttemptState] + [FAILED]
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(s|m|h|d|w)$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    ),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]


def section_of(runtime: Runtime) -> DashboardSettings:
    """The runtime's ``dashboard`` settings section, or the defaults when the plugin was not
    loaded through its entry point (``JOBKIT_DISABLE_PLUGIN_AUTOLOAD``, or mounted by hand)."""
    try:
        section = runtime.settings.section(SECTION)
    except SettingsError:
        return DashboardSettings()
    return section if isinstance(section, DashboardSettings) else DashboardSettings()


class Refused(Exception):
    """A request the dashboard will not serve: its status and the reason shown."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# Formatting -------------------------------------------------------------------------------------


def when(moment: datetime.datetime | None) -> str:
    if moment is None:
        return ""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = max(seconds, 0.0)
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.1f} s"


def ago(moment: datetime.datetime | None) -> str:
    if moment is None:
        return ""
    seconds = (datetime.datetime.now(datetime.UTC) - moment).total_seconds()
    return f"in {seconds_text(-seconds)}" if seconds < 0 else f"{seconds_text(seconds)} ago"


def between(start: datetime.datetime | None, end: datetime.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def queue_wait(attempt: Attempt) -> float | None:
    """Seconds from when the attempt could start to when a worker claimed it."""
    ready = max(filter(None, [attempt.start_at, attempt.created_at]), default=None)
    return between(ready, attempt.claimed_at or attempt.started_at)


def pretty_json(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False, sort_keys=True)
    except ValueError:
        return text


def last_line(error: str, width: int = 100) -> str:
    line = error.strip().rpartition("\n")[2]
    return line if len(line) <= width else line[: width - 1] + "…"


def moment(text: str, name: str) -> datetime.datetime | datetime.timedelta | None:
    """A ``since``/``until`` field: a duration back from now (30s, 15m, 2h, 1d, 1w) or an ISO
    date and time (UTC when it names no offset)."""
    text = text.strip()
    if not text:
        return None
    found = _DURATION.match(text)
    if found:
        return datetime.timedelta(seconds=float(found[1]) * _UNIT[found[2]])
    try:
        parsed = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise ParameterError(
            f"{name}: {text!r} is neither a duration (30s, 15m, 2h, 1d, 1w) nor an ISO date "
            f"and time"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.UTC)


def names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@attrs.frozen
class Criteria:
    """The jobs listing's filter as the page's form gives it (text), and as a ``JobFilter``."""

    status: tuple[str, ...] = ()
    queue: str = ""
    name: str = ""
    key: str = ""
    since: str = ""
    until: str = ""
    error: str = ""

    @classmethod
    def of(cls, params: Any) -> Criteria:
        return cls(
            status=tuple(value for value in params.getlist("status") if value),
            queue=params.get("queue", "").strip(),
            name=params.get("name", "").strip(),
            key=params.get("key", "").strip(),
            since=params.get("since", "").strip(),
            until=params.get("until", "").strip(),
            error=params.get("error", "").strip(),
        )

    def job_filter(self) -> JobFilter:
        return job_filter(
            status=list(self.status),
            queue=names(self.queue),
            name=names(self.name),
            concurrency_key=self.key or None,
            since=moment(self.since, "since"),
            until=moment(self.until, "until"),
            error=self.error or None,
        )

    def pairs(self) -> list[tuple[str, str]]:
        """The criteria as query-string pairs, empty ones left out."""
        pairs = [("status", status) for status in self.status]
        for name in ("queue", "name", "key", "since", "until", "error"):
            if getattr(self, name):
                pairs.append((name, getattr(self, name)))
        return pairs

    def query(self, **extra: str) -> str:
        return urllib.parse.urlencode(self.pairs() + [(k, v) for k, v in extra.items() if v])

    @property
    def empty(self) -> bool:
        return not self.pairs()


# Security ---------------------------------------------------------------------------------------


class Guard:
    """ASGI middleware: the token (when one is set) on every request, and the security headers
    on every response."""

    def __init__(self, app: ASGIApp, *, token: str):
        self.app = app
        self.token = token

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        user = self.user(scope)
        if user is None:
            response = PlainTextResponse(
                "This dashboard needs its token: give it as the password (any user name).",
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="jobkit dashboard"'},
            )
            await response(scope, receive, self.with_headers(send))
            return
        scope.setdefault("state", {})["dashboard_user"] = user
        await self.app(scope, receive, self.with_headers(send))

    def user(self, scope: Scope) -> str | None:
        """Who asks: ``anonymous`` with no token set; with one, the basic-auth user name (or
        ``token``) when the request carries it, else None."""
        if not self.token:
            return "anonymous"
        headers = dict(scope["headers"])
        kind, _, value = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        if kind.lower() == "bearer" and _same(value.strip(), self.token):
            return "token"
        if kind.lower() == "basic":
            try:
                decoded = base64.b64decode(value.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            user, _, password = decoded.partition(":")
            if _same(password, self.token):
                return user or "token"
        return None

    @staticmethod
    def with_headers(send: Send) -> Send:
        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                present = {name.lower() for name, _ in message["headers"]}
                for name, value in SECURITY_HEADERS:
                    if name not in present:
                        message["headers"].append((name, value))
                if b"cache-control" not in present:
                    message["headers"].append((b"cache-control", b"no-store"))
            await send(message)

        return sending


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


# The application --------------------------------------------------------------------------------


class FailedCounts:
    """Each queue's failed jobs (ended badly, not retried), for the overview and queues pages.

    Counting them is one capped count per queue (``Operations.jobs``), cheap on a small history
    and some 20 ms a queue with a million results. So: while the last count took less than
    ``SYNC_BUDGET``, every page counts afresh; once it took longer, pages show the last counts
    (and how old they are) and a background thread counts again when they are older than
    ``MAX_AGE`` (River UI's query cacher, GoodJob's async badges). A page that counts stops at
    ``SYNC_BUDGET`` too, and leaves the queues it did not reach to the background."""

    SYNC_BUDGET = 0.05
    """Seconds of counting a page may spend; past it, counts come from the background."""
    MAX_AGE = 5.0
    """Seconds after which background counts are made again."""

    def __init__(self, dashboard: Dashboard):
        self.dashboard = dashboard
        self.lock = threading.Lock()
        self.counts: dict[str, tuple[int, bool]] | None = None
        self.counted_at = 0.0
        self.cost = 0.0
        self.counting = False

    def count(self, queues: list[str], budget: float | None = None) -> dict[str, tuple[int, bool]]:
        """Count ``queues`` in turn, at least the first, stopping once ``budget`` seconds have
        passed (the queues not reached are left out)."""
        started = time.monotonic()
        counts = {}
        for name in queues:
            page = self.dashboard.operations.jobs(job_filter(status=FAILED, queue=name), limit=1)
            counts[name] = (page.total, page.total_is_estimate)
            if budget is not None and time.monotonic() - started > budget:
                break
        with self.lock:
            self.counts, self.counted_at = counts, time.monotonic()
            self.cost = self.counted_at - started
        return counts

    def get(self, queues: list[str]) -> tuple[dict[str, tuple[int, bool]], float | None]:
        """The counts of ``queues``, and their age in seconds when they are not fresh (a queue
        missing from them is still being counted). While the app's first count runs, none."""
        with self.lock:
            counts, cost, age = self.counts, self.cost, time.monotonic() - self.counted_at
            if counts is None and self.counting:
                return {}, 0.0
            fresh = counts is None or cost < self.SYNC_BUDGET
            start = (
                not fresh
                and not self.counting
                and (age > self.MAX_AGE or set(queues) - set(counts or ()))
            )
            if start:
                self.counting = True
        if fresh:
            counts = self.count(queues, budget=self.SYNC_BUDGET)
            if len(counts) == len(queues):
                return counts, None
            self.start(queues)
            return counts, 0.0
        if start:
            threading.Thread(target=self._count_in_background, args=(queues,), daemon=True).start()
        return counts or {}, age

    def start(self, queues: list[str]) -> None:
        """Count ``queues`` in a background thread, unless one counts already."""
        with self.lock:
            start, self.counting = not self.counting, True
        if start:
            threading.Thread(target=self._count_in_background, args=(queues,), daemon=True).start()

    def _count_in_background(self, queues: list[str]) -> None:
        try:
            self.count(queues)
        except Exception:
            logger.exception("the dashboard could not count the failed jobs")
        finally:
            with self.lock:
                self.counting = False


class DayChart:
    """The last day's chart, made again in the background once it is ``MAX_AGE`` seconds old
    (the page meanwhile shows the one before): its hourly buckets change slowly, and counting a
    day of results costs up to a hundred milliseconds on a big history (the last hour's, a
    few: it is made for every page). Nothing waits for it: the app starts making it when it
    starts (``warm_up``), and until the first one is made the overview says it is being made."""

    MAX_AGE = 60.0

    def __init__(self, dashboard: Dashboard):
        self.dashboard = dashboard
        self.lock = threading.Lock()
        self.chart: Chart | None = None
        self.made_at = 0.0
        self.making = False

    def make(self) -> Chart:
        day = self.dashboard.operations.throughput(buckets=24, bucket_seconds=3600)
        made = chart("Last day, by hour", day, label_every=3, fmt="%H:%M")
        with self.lock:
            self.chart, self.made_at = made, time.monotonic()
        return made

    def get(self) -> Chart | None:
        """The last chart made (None before the first), starting a new one in the background
        when it is missing or old."""
        with self.lock:
            current = self.chart
            start = not self.making and (
                current is None or time.monotonic() - self.made_at > self.MAX_AGE
            )
            if start:
                self.making = True
        if start:
            threading.Thread(target=self._make_in_background, daemon=True).start()
        return current

    def _make_in_background(self) -> None:
        try:
            self.make()
        except Exception:
            logger.exception("the dashboard could not count the last day's results")
        finally:
            with self.lock:
                self.making = False


class Dashboard:
    """The pages and actions, over one runtime's operations."""

    def __init__(
        self,
        runtime: Runtime | None,
        *,
        read_only: bool | None,
        token: str | None,
        refresh: float | None = None,
        secret: str | None = None,
    ):
        self._runtime = runtime
        config = section_of(runtime) if runtime is not None else self._unresolved_config()
        self.read_only = config.read_only if read_only is None else read_only
        self.token = config.token if token is None else token
        self.refresh = config.refresh if refresh is None else refresh
        key = secret or config.secret or secrets.token_hex(32)
        self.secret = key.encode()
        self.failed_counts = FailedCounts(self)
        self.day_chart = DayChart(self)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("jobkit_dashboard", "templates"),
            autoescape=True,  # everything from the database is escaped, in every template
            undefined=jinja2.StrictUndefined,
        )
        self.templates.filters.update(
            when=when,
            ago=ago,
            seconds=seconds_text,
            last_line=last_line,
            pretty_json=pretty_json,
        )
        self.templates.globals.update(
            between=between, queue_wait=queue_wait, STATE_CHOICES=STATE_CHOICES
        )

    @staticmethod
    def _unresolved_config() -> DashboardSettings:
        """The settings section of the process's runtime (``get_runtime()`` reads the settings;
        it connects to nothing until a page asks the store), or the defaults when the settings
        cannot be read yet: the first page then shows the error."""
        from jobkit.runtime import get_runtime

        try:
            return section_of(get_runtime())
        except Exception:  # no settings yet: the defaults; the error shows on the first request
            return DashboardSettings()

    @property
    def runtime(self) -> Runtime:
        if self._runtime is None:
            from jobkit.runtime import get_runtime

            self._runtime = get_runtime()
        return self._runtime

    @property
    def operations(self) -> Operations:
        return Operations(self.runtime)

    def warm_up(self) -> None:
        """Start making what the overview shows from the background (the day's chart, each
        queue's failed count) when the app starts, so its first overview finds them made."""
        try:
            runtime = self.runtime
            figures = runtime.store.stats(heartbeat_timeout=runtime.settings.heartbeat_timeout)
        except Exception:  # no settings or no database yet: the first page shows the error
            logger.warning("the dashboard could not warm up its overview", exc_info=True)
            return
        self.day_chart.get()
        self.failed_counts.start(sorted(figures.queues))

    # Rendering --------------------------------------------------------------------------------

    def render(
        self, request: Request, template: str, status_code: int = 200, **context: Any
    ) -> Response:
        cookie = request.cookies.get(CSRF_COOKIE, "")
        fresh = not re.fullmatch(r"[0-9a-f]{64}", cookie)
        if fresh:
            cookie = secrets.token_hex(32)
        base = request.scope.get("root_path", "").rstrip("/")
        flash = request.cookies.get(FLASH_COOKIE)
        html = self.templates.get_template(template).render(
            base=base,
            request=request,
            read_only=self.read_only,
            refresh=self.refresh,
            csrf_token=self.csrf_token(cookie),
            flash=urllib.parse.unquote(flash) if flash else "",
            database=redact_credentials(self.runtime.settings.database_url or "(embedded)"),
            schema=self.runtime.settings.schema,
            **context,
        )
        response = Response(html, status_code=status_code, media_type="text/html")
        if fresh:
            response.set_cookie(
                CSRF_COOKIE, cookie, path=base or "/", httponly=True, samesite="strict"
            )
        if flash:
            response.delete_cookie(FLASH_COOKIE, path=base or "/")
        return response

    def csrf_token(self, cookie: str) -> str:
        return hmac.new(self.secret, cookie.encode(), hashlib.sha256).hexdigest()

    def redirect(self, request: Request, path: str, message: str) -> Response:
        base = request.scope.get("root_path", "").rstrip("/")
        response = RedirectResponse(base + path, status_code=303)
        response.set_cookie(
            FLASH_COOKIE,
            urllib.parse.quote(message[:1500]),
            path=base or "/",
            max_age=60,
            httponly=True,
            samesite="strict",
        )
        return response

    # The checks of an action -------------------------------------------------------------------

    async def checked_form(self, request: Request) -> Any:
        """The form of a POST that may change something, or ``Refused``: in read-only mode, from
        another site, or without the right CSRF token."""
        if self.read_only:
            raise Refused(403, "This dashboard is read-only: it changes nothing.")
        if request.headers.get("sec-fetch-site") == "cross-site":
            raise Refused(403, "Refused: the request came from another site.")
        form = await request.form()
        cookie = request.cookies.get(CSRF_COOKIE, "")
        given = str(form.get(CSRF_FIELD, ""))
        if not cookie or not given or not _same(given, self.csrf_token(cookie)):
            raise Refused(
                403,
                "Refused: the form's CSRF token is missing or wrong. Load the page again and "
                "repeat the action.",
            )
        return form

    @staticmethod
    def source(request: Request) -> str:
        user = request.scope.get("state", {}).get("dashboard_user", "anonymous")
        client = request.client.host if request.client else "unknown"
        return f"dashboard {user}@{client}"

    # Pages ------------------------------------------------------------------------------------

    def overview_context(self) -> dict[str, Any]:
        runtime = self.runtime
        figures = runtime.store.stats(heartbeat_timeout=runtime.settings.heartbeat_timeout)
        paused = {pause.queue: pause for pause in self.operations.paused_queues()}
        queues = {name: counts for name, counts in figures.queues.items()}
        for name in paused:
            queues.setdefault(name, QueueCounts(paused=True))
        failed, as_of = self.failed_counts.get(sorted(queues))
        known = [failed[name] for name in queues if name in failed]
        hour = self.operations.throughput(buckets=60, bucket_seconds=60)
        return {
            "hour_chart": chart("Last hour, by minute", hour, label_every=10, fmt="%H:%M"),
            "day_chart": self.day_chart.get(),
            "figures": figures,
            "queues": sorted(queues.items()),
            "failed": failed,
            "failed_as_of": as_of,
            "failed_total": (
                sum(count for count, _ in known) if len(known) == len(queues) else None
            ),
            "failed_estimate": any(estimate for _, estimate in known),
            "paused": paused,
        }

    async def overview(self, request: Request) -> Response:
        context = await run_in_threadpool(self.overview_context)
        return self.render(request, "overview.html", page="overview", live=True, **context)

    async def jobs(self, request: Request) -> Response:
        criteria = Criteria.of(request.query_params)
        cursor = request.query_params.get("cursor") or None
        try:
            limit = int(request.query_params.get("limit") or PAGE_SIZE)
            limit = min(max(limit, 1), MAX_PAGE)
            found = await run_in_threadpool(
                self.operations.jobs,
                criteria.job_filter(),
                limit=limit,
                cursor=cursor,
                # An error-text search reads every result it cannot rule out by the other
                # filters; counting its matches too would read them twice.
                count=not criteria.error,
            )
        except (ParameterError, ValueError) as error:
            return self.render(
                request,
                "jobs.html",
                status_code=400,
                page="jobs",
                criteria=criteria,
                found=None,
                problem=str(error),
                limit=PAGE_SIZE,
                cursor=None,
            )
        return self.render(
            request,
            "jobs.html",
            page="jobs",
            criteria=criteria,
            found=found,
            problem="",
            limit=limit,
            cursor=cursor,
        )

    async def job(self, request: Request) -> Response:
        job_id = request.path_params["job_id"]
        try:
            info = await run_in_threadpool(self.operations.job, job_id)
        except (JobNotFound, ParameterError) as error:
            raise Refused(404, str(error)) from error
        return self.render(
            request,
            "job.html",
            page="jobs",
            live=info.state in LIVE_STATES,
            info=info,
            latest=info.latest,
            parameters=pretty_json(info.latest.parameters),
            live_states=LIVE_STATES,
        )

    def workflow_context(self, workflow_id: str) -> dict[str, Any]:
        """A workflow's links (each with its callback's stage and state), and whether anything
        of it waits or runs still."""
        links = self.operations.workflow(workflow_id)
        waiting = any(link.unfinished or link.callback_state in LIVE_STATES for link in links)
        return {
            "links": links,
            "first": links[0],
            "waiting": waiting,
            "failed": sum(link.failed for link in links),
        }

    async def workflow(self, request: Request) -> Response:
        try:
            context = await run_in_threadpool(
                self.workflow_context, request.path_params["workflow_id"]
            )
        except (JobNotFound, ParameterError) as error:
            raise Refused(404, str(error)) from error
        return self.render(
            request, "workflow.html", page="jobs", live=context["waiting"], **context
        )

    async def workflow_action(self, request: Request) -> Response:
        await self.checked_form(request)
        workflow_id = request.path_params["workflow_id"]
        if request.path_params["action"] != "cancel":
            raise Refused(404, f"no action {request.path_params['action']!r} on a workflow")
        try:
            reports = await run_in_threadpool(
                self.operations.cancel_workflow, workflow_id, source=self.source(request)
            )
        except (JobNotFound, ParameterError) as error:
            raise Refused(404, str(error)) from error
        return self.redirect(request, f"/workflows/{workflow_id}", summary("cancel", reports))

    async def queues(self, request: Request) -> Response:
        context = await run_in_threadpool(self.overview_context)
        return self.render(request, "queues.html", page="queues", live=True, **context)

    async def workers(self, request: Request) -> Response:
        found = await run_in_threadpool(self.operations.workers)
        found.sort(key=lambda status: (status.stale, status.info.hostname, status.info.pid))
        return self.render(request, "workers.html", page="workers", live=True, workers=found)

    def schedules_context(self) -> dict[str, Any]:
        try:
            return {"entries": self.operations.schedules(), "problem": None}
        except JobkitError as error:  # a wrong entry: the page says which, as the worker would
            return {"entries": [], "problem": str(error)}

    async def schedules(self, request: Request) -> Response:
        context = await run_in_threadpool(self.schedules_context)
        return self.render(request, "schedules.html", page="schedules", live=True, **context)

    def plugins_context(self) -> dict[str, Any]:
        from jobkit.plugins import describe_plugins

        pm = self.runtime.pm
        plugins = describe_plugins(pm, self.runtime.settings)
        hooks = []
        for name in sorted(n for n in dir(pm.hook) if n.startswith("jobkit_")):
            caller = getattr(pm.hook, name)
            impls = list(reversed(caller.get_hookimpls()))  # in the order pluggy calls them
            wraps = [impl for impl in impls if impl.wrapper or impl.hookwrapper]
            options = caller.spec.opts if caller.spec is not None else {}
            hooks.append(
                {
                    "name": name,
                    "firstresult": bool(options.get("firstresult")),
                    "historic": bool(options.get("historic")),
                    "asked": [impl.plugin_name for impl in impls if impl not in wraps],
                    "wrappers": [impl.plugin_name for impl in wraps],
                }
            )
        return {"plugins": plugins, "hooks": hooks}

    async def plugins(self, request: Request) -> Response:
        context = await run_in_threadpool(self.plugins_context)
        return self.render(request, "plugins.html", page="plugins", **context)

    async def confirm(self, request: Request) -> Response:
        """The confirmation of a bulk action, saying how many jobs it would take; it changes
        nothing (its button POSTs to ``bulk``)."""
        if self.read_only:
            raise Refused(403, "This dashboard is read-only: it changes nothing.")
        params = request.query_params
        action, scope = self.bulk_choice(params.get("do", ""))
        criteria = Criteria.of(params)
        job_ids = [value for value in params.getlist("job_id") if value]
        if scope == "selected" and not job_ids:
            return self.redirect(request, "/jobs?" + criteria.query(), "No job was selected.")
        try:
            count, capped = await run_in_threadpool(
                self.bulk_count, action, scope, criteria, job_ids
            )
        except ParameterError as error:
            raise Refused(400, str(error)) from error
        return self.render(
            request,
            "confirm.html",
            page="jobs",
            action=action,
            scope=scope,
            criteria=criteria,
            job_ids=job_ids,
            selected=len(job_ids),
            count=count,
            capped=capped,
            bulk_limit=BULK_LIMIT,
        )

    @staticmethod
    def bulk_choice(choice: str) -> tuple[str, str]:
        action, _, scope = choice.partition(":")
        if action not in ("retry", "cancel", "delete") or scope not in ("selected", "matching"):
            raise Refused(400, f"unknown bulk action {choice!r}")
        return action, scope

    def bulk_count(
        self, action: str, scope: str, criteria: Criteria, job_ids: list[str]
    ) -> tuple[int, bool]:
        if scope == "selected":
            return self.eligible(action, job_ids[:BULK_LIMIT]), len(job_ids) > BULK_LIMIT
        if action == "retry":
            would = self.operations.retry_failed(
                criteria.job_filter(), source="dry run", dry_run=True, limit=BULK_LIMIT + 1
            )
            return min(len(would), BULK_LIMIT), len(would) > BULK_LIMIT
        if action == "delete":
            jobs = self.deletable_jobs(criteria.job_filter(), BULK_LIMIT + 1)
            return min(len(jobs), BULK_LIMIT), len(jobs) > BULK_LIMIT
        live = self.live_filter(criteria.job_filter())
        if live is None:
            return 0, False
        page = self.operations.jobs(live, limit=1)
        return min(page.total, BULK_LIMIT), page.total > BULK_LIMIT

    def eligible(self, action: str, job_ids: list[str]) -> int:
        """How many of ``job_ids`` the action can take: a retry, jobs that ended; a cancel,
        jobs that wait or run; a delete, jobs that do not run (the others are left alone, and
        the confirmation says so)."""
        count = 0
        for job_id in job_ids:
            try:
                state = self.operations.job(job_id).state
            except (JobNotFound, ParameterError):
                continue
            if action == "delete":
                count += state is not AttemptState.RUNNING
            else:
                live = state in LIVE_STATES
                count += live if action == "cancel" else not live
        return count

    def deletable_jobs(self, found: JobFilter, limit: int) -> list[Any]:
        """The jobs (ids, newest first, each once) of up to ``limit`` of the attempts ``found``
        matches that do not run: a delete of all matching takes these."""
        states = [state.value for state in AttemptState if state is not AttemptState.RUNNING]
        wanted = [state for state in found.states if state != "running"] if found.states else []
        if found.states and not wanted:
            return []
        narrowed = attrs.evolve(found, states=tuple(wanted or states))
        jobs: dict[Any, None] = {}
        cursor = None
        while len(jobs) < limit:
            page = self.operations.jobs(narrowed, limit=200, cursor=cursor, count=False)
            for attempt in page.attempts:
                jobs.setdefault(attempt.job_id)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return list(jobs)[:limit]

    @staticmethod
    def live_filter(found: JobFilter) -> JobFilter | None:
        """``found`` narrowed to the attempts that wait or run (the ones a cancel can end);
        None when its states name none of them."""
        live = [state.value for state in LIVE_STATES]
        states = [state for state in found.states if state in live] if found.states else live
        return attrs.evolve(found, states=tuple(states)) if states else None

    async def bulk(self, request: Request) -> Response:
        form = await self.checked_form(request)
        action, scope = self.bulk_choice(str(form.get("do", "")))
        criteria = Criteria.of(form)
        job_ids = [str(value) for value in form.getlist("job_id") if value]
        source = self.source(request)
        try:
            reports = await run_in_threadpool(
                self.bulk_run, action, scope, criteria, job_ids, source
            )
        except ParameterError as error:
            raise Refused(400, str(error)) from error
        return self.redirect(request, "/jobs?" + criteria.query(), summary(action, reports))

    def bulk_run(
        self, action: str, scope: str, criteria: Criteria, job_ids: list[str], source: str
    ) -> list[Any]:
        operations = self.operations
        if scope == "selected":
            act = {
                "retry": operations.retry,
                "cancel": operations.cancel,
                "delete": operations.delete,
            }[action]
            reports = []
            for job_id in job_ids[:BULK_LIMIT]:
                try:
                    reports.append(act(job_id, source=source))
                except (JobNotFound, ParameterError) as error:
                    reports.append(ActionReport(done=False, message=str(error)))
            return reports
        if action == "retry":
            return operations.retry_failed(criteria.job_filter(), source=source, limit=BULK_LIMIT)
        if action == "delete":
            return [
                operations.delete(job_id, source=source)
                for job_id in self.deletable_jobs(criteria.job_filter(), BULK_LIMIT)
            ]
        live = self.live_filter(criteria.job_filter())
        reports, cursor = [], None
        while live is not None and len(reports) < BULK_LIMIT:
            page = operations.jobs(
                live, limit=min(200, BULK_LIMIT - len(reports)), cursor=cursor, count=False
            )
            for attempt in page.attempts:
                reports.append(operations.cancel(attempt.job_id, source=source))
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return reports

    async def job_action(self, request: Request) -> Response:
        await self.checked_form(request)
        job_id, action = request.path_params["job_id"], request.path_params["action"]
        operations = self.operations
        act = {
            "retry": operations.retry,
            "cancel": operations.cancel,
            "run-now": operations.run_now,
        }.get(action)
        if act is None:
            raise Refused(404, f"no action {action!r} on a job")
        try:
            report = await run_in_threadpool(act, job_id, source=self.source(request))
        except (JobNotFound, ParameterError) as error:
            raise Refused(404, str(error)) from error
        return self.redirect(request, f"/jobs/{report.job_id or job_id}", report.message)

    async def queue_action(self, request: Request) -> Response:
        form = await self.checked_form(request)
        queue, action = str(form.get("queue", "")).strip(), str(form.get("action", ""))
        operations = self.operations
        act = {"pause": operations.pause_queue, "resume": operations.resume_queue}.get(action)
        if act is None:
            raise Refused(400, f"no action {action!r} on a queue")
        try:
            report = await run_in_threadpool(act, queue, source=self.source(request))
        except ParameterError as error:
            return self.redirect(request, "/queues", str(error))
        return self.redirect(request, "/queues", report.message)

    async def refused(self, request: Request, error: Exception) -> Response:
        assert isinstance(error, Refused)
        return self.render(
            request, "error.html", status_code=error.status, page="", message=error.message
        )


def summary(action: str, reports: Iterable[Any]) -> str:
    """One line on a bulk action: how many it did, and why it left the others alone."""
    reports = list(reports)
    done = sum(1 for report in reports if report.done)
    verb = {"retry": "retried", "cancel": "cancelled", "delete": "deleted"}[action]
    text = f"{verb} {done} of {len(reports)} job{'s' if len(reports) != 1 else ''}"
    reasons: dict[str, int] = {}
    for report in reports:
        if not report.done:
            reason = re.sub(r"[0-9a-f]{8}-[0-9a-f-]{27}", "…", report.message)
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        text += "; left alone: " + "; ".join(
            f"{count}: {reason}" for reason, count in sorted(reasons.items())
        )
    return text


def create_app(
    runtime: Runtime | None = None,
    *,
    read_only: bool | None = None,
    token: str | None = None,
    refresh: float | None = None,
    secret: str | None = None,
) -> Starlette:
    """See ``jobkit_dashboard.create_app``."""
    dashboard = Dashboard(runtime, read_only=read_only, token=token, refresh=refresh, secret=secret)
    static = StaticFiles(packages=[("jobkit_dashboard", "static")])

    def guarded(
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def handle(request: Request) -> Response:
            try:
                return await endpoint(request)
            except Refused as error:
                return await dashboard.refused(request, error)

        return handle

    routes = [
        Route("/", guarded(dashboard.overview), name="overview"),
        Route("/jobs", guarded(dashboard.jobs), name="jobs"),
        Route("/jobs/confirm", guarded(dashboard.confirm), name="confirm"),
        Route("/jobs/bulk", guarded(dashboard.bulk), methods=["POST"], name="bulk"),
        Route("/jobs/{job_id}", guarded(dashboard.job), name="job"),
        Route(
            "/jobs/{job_id}/{action}",
            guarded(dashboard.job_action),
            methods=["POST"],
            name="job_action",
        ),
        Route("/workflows/{workflow_id}", guarded(dashboard.workflow), name="workflow"),
        Route(
            "/workflows/{workflow_id}/{action}",
            guarded(dashboard.workflow_action),
            methods=["POST"],
            name="workflow_action",
        ),
        Route("/queues", guarded(dashboard.queues), name="queues"),
        Route("/queues", guarded(dashboard.queue_action), methods=["POST"], name="queue_action"),
        Route("/workers", guarded(dashboard.workers), name="workers"),
        Route("/schedules", guarded(dashboard.schedules), name="schedules"),
        Route("/plugins", guarded(dashboard.plugins), name="plugins"),
        Mount("/static", app=static, name="static"),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # Not run when the app is mounted inside another (Starlette does not pass lifespan on):
        # then the first overview starts the same work.
        await run_in_threadpool(dashboard.warm_up)
        yield

    app = Starlette(routes=routes, lifespan=lifespan)
    app.state.dashboard = dashboard
    app.add_middleware(Guard, token=dashboard.token)
    return app
