"""This process's recent decisions per catalog, as "why was this action not shown?" reads
them: what each showed and which constraint removed which actions.

One entry per decision (`RECENT` per catalog, the oldest dropped), holding the shown ids
and the decision's own `removed` map (engine.constraints: reason -> ids, the first reason
that removed each), by reference: recording costs a deque append on the decide path, and
the counting happens when somebody asks. Each process sees the decisions it made, a
sample of the traffic when there are several.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

RECENT = 1_000  # decisions kept per catalog


@dataclass(frozen=True, slots=True)
class Entry:
    ts: float
    shown: Sequence[str]  # one id per filled slot
    removed: dict[str, list[str]]


@dataclass
class Recent:
    size: int = RECENT
    catalogs: dict[str, deque[Entry]] = field(default_factory=dict)

    def record(
        self, catalog: str, ts: float, shown: Sequence[str], removed: dict[str, list[str]]
    ) -> None:
        entries = self.catalogs.get(catalog)
        if entries is None:
            entries = self.catalogs[catalog] = deque(maxlen=self.size)
        entries.append(Entry(ts, shown, removed))

    def about(self, catalog: str, action: str) -> dict[str, object]:
        """Over the kept decisions: how many there were, how often `action` was shown and
        how often each constraint removed it."""
        entries = list(self.catalogs.get(catalog, ()))
        shown = sum(1 for e in entries if action in e.shown)
        removed: Counter[str] = Counter()
        for e in entries:
            for reason, ids in e.removed.items():
                if action in ids:
                    removed[reason] += 1
                    break  # an action is removed once, under its first reason
        n = len(entries)
        return {
            "decisions": n,
            "since": entries[0].ts if entries else None,
            "shown": shown,
            "shown_share": shown / n if n else None,
            "removed": dict(removed.most_common()),
            "removed_share": sum(removed.values()) / n if n else None,
        }
