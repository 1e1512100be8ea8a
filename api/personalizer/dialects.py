"""The API versions this adapter answers, and which loop a URL names.

`azure-cognitiveservices-personalizer` builds `{endpoint}/personalizer/v1.0/<route>`;
`azure-ai-personalizer` 1.0.0b1 builds `{endpoint}/personalizer/<route>?api-version=
2022-09-01-preview`. An endpoint may end in `/loops/{loop}` (the SDKs append their paths to
it as given), which names the loop; without it the loop is `LOOPWISE_PERSONALIZER_LOOP`.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from api.serving.state import State
from engine.catalog import check_name


@dataclass(frozen=True, slots=True)
class Dialect:
    name: str  # the version as the URL or `api-version` names it
    specific_codes: bool  # v1.0 knows only BadRequest, ResourceNotFound, InternalServerError
    multislot: bool = True
    paged_lists: bool = False  # 2022-09-01-preview lists as {"value": [...]}
    title_statuses: bool = False  # 2022-09-01-preview: Succeeded, Running, ... (not completed)


V1_0 = Dialect("v1.0", specific_codes=False, multislot=False)
V1_1 = Dialect("v1.1-preview.3", specific_codes=True)
PREVIEW_2022 = Dialect(
    "2022-09-01-preview", specific_codes=True, paged_lists=True, title_statuses=True
)
UNVERSIONED = (PREVIEW_2022,)  # what `/personalizer/<route>?api-version=` may name


def loop_name(request: Request, st: State) -> str:
    """The loop (catalog) a request names: its `/loops/{loop}` prefix, else the default."""
    name = request.path_params.get("loop") or st.settings.personalizer_loop
    return check_name(str(name), "loop")


def unserved_version(request: Request, dialect: Dialect) -> str | None:
    """Why the request's `api-version` is not served, or None: an unversioned path takes
    its version from `api-version` (default: the 2022 preview)."""
    if dialect is not PREVIEW_2022:
        return None
    asked = request.query_params.get("api-version", PREVIEW_2022.name)
    if asked in {d.name for d in UNVERSIONED}:
        return None
    return (
        f"api-version {asked!r} is not served here; this path serves "
        f"{', '.join(d.name for d in UNVERSIONED)}, and /personalizer/v1.0/ and "
        "/personalizer/v1.1-preview.3/ serve those versions"
    )
