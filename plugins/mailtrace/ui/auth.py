"""Who is looking at the Delivery page, and whether they may see addresses in full.

Authentication is Airflow's own: the page and its JSON are mounted on the api-server, which the
browser reaches with the UI's session cookie (or an API client with `Authorization: Bearer <jwt>`).
`get_viewer` resolves that credential with Airflow's `get_user` dependency, so an unauthenticated
request is refused (401) exactly as the REST API refuses it.

Masking: every user allowed to open the Airflow UI sees the page, with addresses masked
(`a***@example.gov`). Addresses are shown in full only to a user the auth manager allows to read the
warehouse connection (`is_authorized_connection(GET, mailtrace_warehouse)`): whoever may read the
connection's credentials could read the addresses straight from the warehouse anyway. With the
simple auth manager that is the Op and Admin roles; with FAB, roles holding "can read on
Connections" (Op and Admin by default).

Airflow's security module is imported inside the functions: it pulls in the ORM models and takes
seconds to import, and every Airflow process that loads plugins imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mailtrace.warehouse import WAREHOUSE_CONN_ID

_bearer = HTTPBearer(auto_error=False, description="An Airflow API token (POST /auth/token)")


@dataclass(frozen=True)
class Viewer:
    """The authenticated user as the Delivery page needs them."""

    name: str
    full_addresses: bool


def _auth_manager() -> Any:
    from airflow.api_fastapi.app import get_auth_manager

    return get_auth_manager()


def may_see_full_addresses(user: Any) -> bool:
    """True when the auth manager lets `user` read the warehouse connection."""
    from airflow.api_fastapi.auth.managers.models.resource_details import ConnectionDetails

    return bool(
        _auth_manager().is_authorized_connection(
            method="GET", details=ConnectionDetails(conn_id=WAREHOUSE_CONN_ID), user=user
        )
    )


def may_open_page(user: Any) -> bool:
    """True when the auth manager lets `user` use the Airflow UI at all."""
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    return bool(_auth_manager().is_authorized_view(access_view=AccessView.WEBSITE, user=user))


async def get_viewer(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Viewer:
    """FastAPI dependency: the signed-in user, or 401/403 (tests override this one)."""
    from airflow.api_fastapi.core_api.security import get_user

    # Airflow's own dependency, called with the same inputs FastAPI would give it: the bearer
    # header when present, else the UI's session cookie (validated by the auth manager).
    user = await get_user(request, None, bearer)
    if not may_open_page(user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "Forbidden")
    return Viewer(name=user.get_name(), full_addresses=may_see_full_addresses(user))


def login_url(next_url: str) -> str | None:
    """Where the auth manager signs people in, coming back to `next_url`; None if unknown."""
    try:
        return _auth_manager().get_url_login(next_url=next_url)
    except Exception:  # no auth manager in this process: refuse without a redirect
        return None
