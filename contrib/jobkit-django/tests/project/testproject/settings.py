"""Settings of the test project: a shop app with jobs and tasks, the admin, jobkit_django.
The database comes from TESTPROJECT_DATABASE_* variables the tests set."""

import json
import os

import django

SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "testproject.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    *(["django_tasks"] if django.VERSION < (6,) else []),  # the backport; Django 6 has tasks
    "jobkit_django",
    "shop",
    "billing",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("TESTPROJECT_DATABASE_NAME", "testproject"),
        "HOST": os.environ.get("TESTPROJECT_DATABASE_HOST", ""),
        "PORT": os.environ.get("TESTPROJECT_DATABASE_PORT", ""),
        "USER": os.environ.get("TESTPROJECT_DATABASE_USER", ""),
        "PASSWORD": os.environ.get("TESTPROJECT_DATABASE_PASSWORD", ""),
        "OPTIONS": json.loads(os.environ.get("TESTPROJECT_DATABASE_OPTIONS", "{}")),
    },
    "sqlite": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}

JOBKIT = {
    "database": os.environ.get("TESTPROJECT_JOBKIT_DATABASE", "default"),
    "worker_queues": ["default", "emails"],
    "heartbeat_interval": 1,
    "heartbeat_timeout": 5,
    "worker_poll_interval": 0.5,
    "worker_stats_every": 0,
    "worker_max_processes": 1,
    **json.loads(os.environ.get("TESTPROJECT_JOBKIT", "{}")),
}

TASKS = {
    "default": {
        "BACKEND": "jobkit_django.tasks.JobkitBackend",
        "QUEUES": ["default", "emails"],
    }
}
