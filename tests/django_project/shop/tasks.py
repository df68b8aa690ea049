"""The shop's tasks, as a Django project declares them."""

import asyncio
import os

from jobworker.contrib.django.compat import SOURCE

if SOURCE == "django.tasks":
    from django.tasks import task
else:
    from django_tasks import task

from .models import Order


class OutOfStock(Exception):
    pass


@task
def order_total(order_id: int, database: str = "default") -> dict:
    """Read an order with the ORM in the worker."""
    order = Order.objects.using(database).get(pk=order_id)
    return {"customer": order.customer, "total": order.total_cents / 100, "pid": os.getpid()}


@task(priority=7, queue_name="reports")
async def greet(name: str) -> str:
    await asyncio.sleep(0)
    return f"hello {name}"


@task(takes_context=True)
def which_attempt(context) -> list:
    return [context.attempt, context.task_result.id]


@task
def reserve(sku: str) -> None:
    raise OutOfStock(f"no {sku} left")


@task(backend="immediate")
def shout(word: str) -> str:
    """Declared on Django's ImmediateBackend; the tests send it to jobworker with .using()."""
    return word.upper()
