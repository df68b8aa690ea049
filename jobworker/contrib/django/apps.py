"""The Django app (label `jobworker`) that brings the `manage.py jobworker` command."""

from __future__ import annotations

from django.apps import AppConfig


class JobworkerConfig(AppConfig):  # type: ignore[misc]
    name = "jobworker.contrib.django"
    label = "jobworker"
    verbose_name = "jobworker"
