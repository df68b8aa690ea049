import json
import os

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "tests.django_project.shop"
    label = "shop"

    def ready(self) -> None:
        # Worker processes write the task signals they send to this file, a JSON line each.
        path = os.environ.get("DJANGO_TEST_SIGNAL_LOG")
        if not path:
            return
        from jobworker.contrib.django.compat import task_finished, task_started

        def record(signal_name):
            def receiver(sender, task_result, **kwargs):
                line = {
                    "signal": signal_name,
                    "sender": f"{sender.__module__}.{sender.__qualname__}",
                    "id": task_result.id,
                    "task": task_result.task.module_path,
                    "status": str(task_result.status),
                    "pid": os.getpid(),
                }
                with open(path, "a") as log:
                    log.write(json.dumps(line) + "\n")

            return receiver

        task_started.connect(record("started"), weak=False)
        task_finished.connect(record("finished"), weak=False)
