"""Health checks: the database, Redis, live workers and beat's leader, for `jobworker health`,
the web tail's `/healthz` and `/readyz`, and a supervisor's health port."""

__all__: list[str] = []
