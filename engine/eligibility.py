"""Which actions may be shown for one request. Applied before the policy, never after."""

from __future__ import annotations

from collections.abc import Sequence

from engine.actions import Action
from engine.catalog import Catalog
from engine.errors import InvalidInput


def eligible(
    catalog: Catalog, candidates: Sequence[str] | None, exclude: Sequence[str] = ()
) -> Sequence[Action]:
    """The catalog's actions, narrowed to `candidates` and without `exclude`, catalog order
    (the catalog's own tuple when nothing narrows it: what is cached per list stays hot)."""
    if candidates is None and not exclude:
        return catalog.actions
    known(catalog, candidates or (), "candidates")
    known(catalog, exclude, "exclude")
    allowed = set(candidates) if candidates is not None else None
    removed = set(exclude)
    out = [
        a for a in catalog.actions if (allowed is None or a.id in allowed) and a.id not in removed
    ]
    if not out:
        raise InvalidInput("no action is left after candidates and exclude", field="candidates")
    return out


def known(catalog: Catalog, ids: Sequence[str], where: str) -> None:
    """Refuses an id of `ids` (the request's field `where`) that is not a catalog action."""
    for i, action_id in enumerate(ids):
        if action_id not in catalog.index:
            of = (
                "the request's actions"
                if catalog.inline
                else f"catalog {catalog.name!r} version {catalog.version}"
            )
            raise InvalidInput(
                f"{where}[{i}] {action_id!r} is not an action of {of}", field=f"{where}[{i}]"
            )
