"""Settings and database from Django; ``manage.py migrate`` makes jobkit's schema; ``manage.py
jobkit`` and plain ``jobkit`` with DJANGO_SETTINGS_MODULE run with Django set up."""

from __future__ import annotations

import json

import pytest

from conftest import jobkit_command, manage
from jobkit import SettingsError, Status, get_result
from jobkit.runtime import get_runtime


def test_migrate_makes_jobkit_schema_in_one_step(migrated, django_project):
    from django.db import connection

    assert "Applying jobkit_django.0001_initial..." in migrated
    assert "jobkit: applied 0001_" in migrated
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT to_regclass('jobkit.requests'), to_regclass('jobkit_django_taskreturnvalue')"
        )
        assert all(cursor.fetchone())
    get_runtime().store.check_schema()


def test_jobkit_settings_come_from_settings_jobkit_and_databases(django_project):
    from django.db import connection

    settings = get_runtime().settings
    assert settings.worker_queues == ["default", "emails"]
    assert settings.heartbeat_timeout == 5
    assert f"/{connection.settings_dict['NAME']}" in settings.database_url
    assert settings.imports == ["shop.jobs", "shop.tasks", "billing.jobs"]


def test_manage_py_jobkit_worker_runs_jobs_with_django_set_up(project_environ, jobs):
    from shop.jobs import ConfirmOrder
    from shop.models import Order

    order = Order.objects.create(customer="ada")
    request = ConfirmOrder(order.id).run_in_worker()

    done = manage(project_environ, "jobkit", "worker", "--burst")

    assert done.returncode == 0, done.stderr
    assert get_result(request.id).status is Status.SUCCESSFUL
    order.refresh_from_db()
    assert order.confirmed


def test_plain_jobkit_with_django_settings_module_is_the_same(project_environ, jobs):
    from shop.jobs import ConfirmOrder
    from shop.models import Order

    order = Order.objects.create(customer="bob")
    ConfirmOrder(order.id).run_in_worker(queue="emails")

    listed = jobkit_command(project_environ, "list")
    assert listed.returncode == 0, listed.stderr
    for name in ("shop.jobs.ConfirmOrder", "shop.tasks.add", "billing.jobs.SendInvoice"):
        assert name in listed.stdout
    stats = jobkit_command(project_environ, "stats", "--json")
    assert json.loads(stats.stdout)["queues"]["emails"]["pending"] == 1
    done = jobkit_command(project_environ, "worker", "--burst", "--queue", "emails")
    assert done.returncode == 0, done.stderr
    order.refresh_from_db()
    assert order.confirmed


def test_manage_py_jobkit_passes_every_command_and_flag(project_environ, django_project):
    helped = manage(project_environ, "jobkit", "--help")
    assert helped.returncode == 0, helped.stderr
    assert "Usage: manage.py jobkit" in helped.stdout and "worker" in helped.stdout
    listed = manage(project_environ, "jobkit", "--settings", "testproject.settings", "list")
    assert listed.returncode == 0 and "shop.jobs.ConfirmOrder" in listed.stdout, listed.stderr
    bad = manage(project_environ, "jobkit", "worker", "--max-processes", "0")
    assert bad.returncode == 2 and "must be greater than 0" in bad.stderr


@pytest.mark.parametrize(
    ("alias", "message"),
    [
        ("nope", "settings.JOBKIT['database'] is 'nope', which is not an alias of DATABASES"),
        ("sqlite", "DATABASES['sqlite'] uses ENGINE 'django.db.backends.sqlite3', but jobkit"),
    ],
)
def test_a_database_alias_jobkit_cannot_use_is_a_clear_error(project_environ, alias, message):
    done = manage({**project_environ, "TESTPROJECT_JOBKIT_DATABASE": alias}, "jobkit", "stats")
    assert done.returncode == 1
    assert message in done.stderr


@pytest.mark.parametrize(
    ("jobkit", "message"),
    [
        (
            {"heartbeat_timeout": "soon"},
            "setting heartbeat_timeout (from settings.JOBKIT) must be a number, got 'soon'",
        ),
        ({"worker_queue": ["a"]}, "unknown setting 'worker_queue' in settings.JOBKIT; known"),
        ({"database_url": "postgresql://x/y"}, "settings.JOBKIT sets database_url, but with"),
        ({"otel": {"sdk": "none"}}, "settings.JOBKIT sets 'otel' to a table"),
    ],
)
def test_a_bad_settings_jobkit_value_is_a_clear_error(project_environ, jobkit, message):
    done = manage({**project_environ, "TESTPROJECT_JOBKIT": json.dumps(jobkit)}, "jobkit", "stats")
    assert done.returncode == 1
    assert message in done.stderr


def test_jobkit_database_url_beside_django_is_a_clear_error(project_environ):
    environ = {**project_environ, "JOBKIT_DATABASE_URL": "postgresql://elsewhere/db"}
    done = jobkit_command(environ, "stats")
    assert done.returncode == 1
    assert "JOBKIT_DATABASE_URL is set, but with jobkit_django" in done.stderr


def test_jobkit_outside_the_project_says_how_to_find_it(project_environ, tmp_path):
    done = jobkit_command({**project_environ, "PYTHONPATH": ""}, "stats", cwd=tmp_path)
    assert done.returncode == 1
    assert "DJANGO_SETTINGS_MODULE is 'testproject.settings', which cannot be imported" in (
        done.stderr
    )
    assert "run jobkit from the directory of manage.py" in done.stderr


def test_django_on_psycopg2_is_a_clear_error(django_project, monkeypatch):
    from django.db.backends.postgresql import psycopg_any
    from jobkit_django.conf import database_alias

    monkeypatch.setattr(psycopg_any, "is_psycopg3", False)
    with pytest.raises(SettingsError, match="with psycopg2, but jobkit enqueues on Django's"):
        database_alias()


def test_manage_py_check_reports_bad_jobkit_settings(project_environ, django_project):
    assert manage(project_environ, "check").returncode == 0
    done = manage({**project_environ, "TESTPROJECT_JOBKIT_DATABASE": "nope"}, "check")
    assert done.returncode == 1
    assert "(jobkit_django.E001) settings.JOBKIT['database'] is 'nope'" in done.stderr


def test_the_migrations_match_the_models(project_environ, django_project):
    done = manage(project_environ, "makemigrations", "--check", "--dry-run", "jobkit_django")
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_schedule_in_settings_jobkit_reaches_the_scheduler(project_environ, django_project):
    entry = {"job": "billing.jobs.SendInvoice", "schedule": "@daily", "kwargs": {"invoice_id": 1}}
    environ = {**project_environ, "TESTPROJECT_JOBKIT": json.dumps({"schedule": [entry]})}

    done = manage(environ, "jobkit", "schedule", "--json")

    assert done.returncode == 0, done.stderr
    [described] = json.loads(done.stdout)
    assert (described["job"], described["schedule"]) == ("billing.jobs.SendInvoice", "@daily")
