"""The module a Django project's workers run: `jobworker run jobworker.contrib.django.worker`.

It sets Django up (from `DJANGO_SETTINGS_MODULE`), imports every installed app's `tasks` module
and holds the App of the backend `JOBWORKER_DJANGO_BACKEND` names (default: "default"), which
`jobworker run` (and `jobworker beat`) find as this module's `app`.
"""

from __future__ import annotations

import os

import django
from django.apps import apps

from jobworker.contrib.django.discovery import worker_app

if not apps.ready:
    django.setup()

app = worker_app(os.environ.get("JOBWORKER_DJANGO_BACKEND") or "default")
