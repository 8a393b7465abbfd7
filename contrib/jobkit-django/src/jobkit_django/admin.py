"""Admin pages for jobs: requests (waiting), running attempts, results, and queues; with the
filters, search and actions of jobkit's operations API (retry, retry all failed, cancel, pause
and resume a queue). Every page reads through that API, so it shows jobkit's data as it is
now, without a copy, and every action is one an operator could take with ``jobkit retry``."""

from __future__ import annotations

import json
import uuid
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

import jobkit
from jobkit import CallbackStage, JobkitError, JobNotFound
from jobkit.runtime import get_runtime
from jobkit_django.models import JobProcess, JobRequest, JobResult, Queue

PAGE_SIZE = 50


def source(request: HttpRequest) -> str:
    """Who took an action, as jobkit records it."""
    return f"django admin {request.user.get_username()}"


class OperationsAdmin(admin.ModelAdmin):
    """A page of attempts in some states, read with ``jobkit.jobs()``."""

    states: tuple[str, ...] = ()
    actions_offered: tuple[str, ...] = ()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[Any]:
        job = self.admin_site.admin_view(self.job_view)
        return [
            path("<uuid:job_id>/", job, name=self.job_url_name),
            *super().get_urls(),
        ]

    def criteria(self, request: HttpRequest) -> dict[str, Any]:
        """The listing's filters from the query string: state, queue, name, and the search
        (text in the error)."""
        state = request.GET.get("state", "")
        return {
            "status": [state] if state in self.filter_states() else list(self.states),
            "queue": request.GET.get("queue") or None,
            "name": request.GET.get("name") or None,
            "error": request.GET.get("q") or None,
        }

    def filter_states(self) -> tuple[str, ...]:
        return self.states

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self.take_action(request)
        search = request.GET.get("q", "").strip()
        if _is_uuid(search):
            return HttpResponseRedirect(self.job_url(search))
        try:
            page = jobkit.jobs(
                **self.criteria(request), cursor=request.GET.get("cursor"), limit=PAGE_SIZE
            )
        except JobkitError as error:
            self.message_user(request, str(error), messages.ERROR)
            page = None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": self.opts.verbose_name_plural.capitalize(),
            "page": page,
            "states": self.filter_states(),
            "queues": known_queues(),
            "current": request.GET,
            "actions_offered": self.actions_offered,
            "can_act": self.has_change_permission(request),
            "job_url": self.job_url,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/jobkit_django/attempts.html", context)

    @property
    def job_url_name(self) -> str:
        return f"{self.opts.app_label}_{self.opts.model_name}_job"

    def job_url(self, job_id: Any) -> str:
        return reverse(f"{self.admin_site.name}:{self.job_url_name}", args=[str(job_id)])

    def job_view(self, request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
        """One job with every attempt: times, worker, error and traceback; retry, cancel."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            return self.take_action(request, back=self.job_url(job_id))
        try:
            info = jobkit.job(job_id)
        except JobNotFound as error:
            self.message_user(request, str(error), messages.WARNING)
            return HttpResponseRedirect(reverse(f"{self.admin_site.name}:index"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{info.job_name} {info.job_id}",
            "job": info,
            "attempts": list(reversed(info.attempts)),
            "can_act": self.has_change_permission(request),
            "workflow": self.workflow_links(info.workflow_id) if info.workflow_id else None,
            "workspace": (
                json.dumps(json.loads(info.pipeline.workspace_json), indent=2, sort_keys=True)
                if info.pipeline
                else ""
            ),
        }
        return TemplateResponse(request, "admin/jobkit_django/job.html", context)

    def workflow_links(self, workflow_id: uuid.UUID) -> list[dict[str, Any]]:
        """The workflow a job belongs to, as its page shows it: each link's members (with the
        URLs of their pages) and what became of its callback."""
        links = []
        for link in jobkit.workflow(workflow_id):
            stage = link.callback_stage
            state = link.callback_state.value if link.callback_state else "cleared"
            if stage is None:
                callback = "no callback"
            elif stage is CallbackStage.RELEASED:
                callback = f"callback released {link.released_at:%Y-%m-%d %H:%M:%S}: {state}"
            elif stage is CallbackStage.HELD:
                callback = "callback held until the members have ended"
            else:
                callback = f"callback never released: {state}"
            links.append(
                {
                    "state": link,
                    "ended": len(link.members) - link.unfinished,
                    "members": [(self.job_url(member.job_id), member) for member in link.members],
                    "callback": callback,
                    "callback_url": link.callback_id and self.job_url(link.callback_id),
                }
            )
        return links

    def take_action(self, request: HttpRequest, back: str | None = None) -> HttpResponse:
        """Retry or cancel the selected jobs, or retry every failed job the filters match."""
        if not self.has_change_permission(request):
            raise PermissionDenied
        action = request.POST.get("action", "")
        who = source(request)
        if action == "cancel_workflow":
            reports = jobkit.cancel_workflow(request.POST.get("workflow", ""), source=who)
            done = sum(report.done for report in reports)
            self.message_user(request, f"cancelled {done} waiting jobs of the workflow")
        elif action == "retry_all_failed":
            criteria = self.criteria(request)
            reports = jobkit.retry_failed(
                queue=criteria["queue"], name=criteria["name"], error=criteria["error"], source=who
            )
            done = sum(report.done for report in reports)
            self.message_user(request, f"retried {done} of {len(reports)} failed jobs")
        elif action in ("retry", "cancel"):
            act = jobkit.retry if action == "retry" else jobkit.cancel
            for job_id in request.POST.getlist("job"):
                try:
                    report = act(job_id, source=who)
                except JobkitError as error:
                    self.message_user(request, f"{job_id}: {error}", messages.ERROR)
                    continue
                level = messages.SUCCESS if report.done else messages.WARNING
                self.message_user(request, f"{job_id}: {report.message}", level)
        else:
            self.message_user(request, f"unknown action {action!r}", messages.ERROR)
        return HttpResponseRedirect(back or request.get_full_path())


@admin.register(JobRequest)
class JobRequestAdmin(OperationsAdmin):
    states = ("pending", "scheduled")
    actions_offered = ("cancel",)


@admin.register(JobProcess)
class JobProcessAdmin(OperationsAdmin):
    states = ("running",)
    actions_offered = ("cancel",)


@admin.register(JobResult)
class JobResultAdmin(OperationsAdmin):
    states = ("successful", "errored", "deferred", "lost", "cancelled")
    actions_offered = ("retry", "retry_all_failed")

    def filter_states(self) -> tuple[str, ...]:
        return (*self.states, "failed")


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    """Each queue's depths, and pause or resume it."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            if not self.has_change_permission(request):
                raise PermissionDenied
            queue, action = request.POST.get("queue", ""), request.POST.get("action")
            act = jobkit.pause_queue if action == "pause" else jobkit.resume_queue
            try:
                report = act(queue, source=source(request))
                level = messages.SUCCESS if report.done else messages.WARNING
                self.message_user(request, report.message, level)
            except JobkitError as error:
                self.message_user(request, str(error), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())
        names = known_queues()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Queues",
            "depths": jobkit.queue_depths(names).items(),
            "can_act": self.has_change_permission(request),
        }
        return TemplateResponse(request, "admin/jobkit_django/queues.html", context)


def known_queues() -> list[str]:
    """The queues workers claim from by default, and every queue that has a job waiting or
    running."""
    return sorted({*get_runtime().settings.worker_queues, *jobkit.queue_depths()})


def _is_uuid(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True
