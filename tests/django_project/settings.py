"""Settings of the test project. `DJANGO_TEST_SQLITE` is the SQLite file of the `default`
database; `DJANGO_TEST_PG` (a PostgreSQL URL), when set, is the `pg` database, whose backend
keeps its jobs in schema `DJANGO_TEST_PG_SCHEMA`."""

import os
from importlib.util import find_spec
from urllib.parse import urlsplit

SECRET_KEY = "jobworker-tests"
USE_TZ = True
TIME_ZONE = "UTC"  # Django sets the process's TZ from it: keep the tests' processes on UTC
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "jobworker.contrib.django",
    "tests.django_project.shop",
]
TASKS_PACKAGE = "django.tasks"
if find_spec("django.tasks") is None:  # Django before 6.0: the backport
    INSTALLED_APPS.append("django_tasks")
    TASKS_PACKAGE = "django_tasks"

BACKEND = "jobworker.contrib.django.JobworkerBackend"
QUEUES = ["default", "reports"]
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["DJANGO_TEST_SQLITE"]},
}
TASKS = {
    "default": {"BACKEND": BACKEND, "QUEUES": QUEUES, "OPTIONS": {}},
    # Django's own backend, for a task declared there and sent to jobworker with .using().
    "immediate": {"BACKEND": f"{TASKS_PACKAGE}.backends.immediate.ImmediateBackend"},
}

if os.environ.get("DJANGO_TEST_PG"):
    pg = urlsplit(os.environ["DJANGO_TEST_PG"])
    DATABASES["pg"] = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": pg.path.lstrip("/"),
        "USER": pg.username or "",
        "PASSWORD": pg.password or "",
        "HOST": pg.hostname or "",
        "PORT": str(pg.port or ""),
    }
    TASKS["pg"] = {
        "BACKEND": BACKEND,
        "QUEUES": QUEUES,
        "OPTIONS": {
            "DATABASE": "pg",
            "SETTINGS": {"database_schema": os.environ["DJANGO_TEST_PG_SCHEMA"]},
        },
    }

LOGGING = {"version": 1, "disable_existing_loggers": False}
