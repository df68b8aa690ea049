"""The admin dashboard: a single page (Preact + htm, vendored) on top of the admin API, served
from the package with no build step and nothing fetched from elsewhere."""

from jobworker.web.dashboard.routes import PAGES, dashboard_routes

__all__ = ["PAGES", "dashboard_routes"]
