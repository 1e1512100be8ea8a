"""GET /v1/whoami: the role of the key a request carries (the dashboard's sign-in).

Any valid key may ask. Without keys configured the API is open and every caller may do
everything: the answer says so (`"open": true`, role admin).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.serving.state import ROLES, State, of
from engine.errors import Forbidden


async def whoami(request: Request) -> Response:
    st = of(request)
    return JSONResponse({"role": role_of(st, request), "open": not st.keys})


def role_of(st: State, request: Request) -> str:
    """The key's role, asked of State.authorize from the widest role down (Unauthorized
    for a missing or unknown key, as every route answers)."""
    for role in reversed(ROLES):
        try:
            st.authorize(request, role)
        except Forbidden:
            continue
        return role
    raise Forbidden("this key has no role")  # pragma: no cover - every key has one of ROLES
