"""jobworker as the backend of Django's task framework (`django.tasks`, or the `django-tasks`
backport on Django before 6.0). See docs/django.md.

```python
TASKS = {"default": {"BACKEND": "jobworker.contrib.django.JobworkerBackend"}}
```
"""

from jobworker.contrib.django.backend import JobworkerBackend, close_apps
from jobworker.contrib.django.discovery import worker_app

__all__ = ["JobworkerBackend", "close_apps", "worker_app"]
