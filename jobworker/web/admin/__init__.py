"""The admin REST API (`admin_api`, mounted at `<prefix>/api`) and its auth: sessions, roles,
same-origin and CSRF checks (`auth`), the bodies it speaks (`schemas`) and its OpenAPI document.
See docs/admin-api.md."""

from jobworker.web.admin.api import Endpoint, admin_api
from jobworker.web.admin.auth import authorize, require_session
from jobworker.web.admin.sessions import Session

__all__ = ["Endpoint", "Session", "admin_api", "authorize", "require_session"]
