"""A catalog's performance over time: what the served decisions earned, per slot and per
time bucket, beside what choosing uniformly among the same eligible actions would have.

Every learned example (engine.records.TrainingExample) is folded once into the bucket of
its decision time (`BUCKET_SECONDS` wide) for its catalog and slot (None: a single
decision). A bucket keeps the sums engine.ope reads (its `Tally`) with the uniform
policy over the example's eligible actions as the candidate, w = (1/K) / p, so a report
merges any run of buckets and reads them with the estimators evaluations use:

  served   `logged`: the mean reward of what was shown, with its interval
  uniform  `snips` (and `ips`): the value of a uniform choice among the eligible actions

The gap between the two is what the model (with the exploration it keeps) earned beyond
chance, in the same traffic and under the same constraints. The state is a pure function
of the examples, so every serving process that follows the training log reports the same
numbers; it is saved in the replica's checkpoint, at most `MAX_BUCKETS` per catalog and
slot (the oldest dropped).

May import: the standard library, msgspec and engine.errors / ope / records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import msgspec

from engine.errors import CorruptCheckpoint, InvalidInput
from engine.ope import Powers, Tally, estimate
from engine.records import TrainingExample

BUCKET_SECONDS = 300
MAX_BUCKETS = 576  # two days of 5-minute buckets per catalog and slot
MAX_REPORT_SECONDS = 86_400  # the coarsest resolution a report merges buckets to
Key = tuple[str, str | None]  # (catalog, slot)


@dataclass
class Sums:
    """The per-row terms engine.ope.Tally sums, for one bucket, added row by row."""

    n: int = 0
    r1: float = 0.0
    r2: float = 0.0
    r3: float = 0.0
    wr1: float = 0.0
    wr2: float = 0.0
    wr3: float = 0.0
    w1: float = 0.0
    w2: float = 0.0
    w3: float = 0.0
    w2r: float = 0.0
    w3r: float = 0.0
    w3r2: float = 0.0
    max_weight: float = 0.0
    unsupported: float = 0.0  # uniform's mass on actions the logged pmf gave 0

    def add(self, reward: float, weight: float, unsupported: float = 0.0) -> None:
        r, w = reward, weight
        wr, w2 = w * r, w * w
        self.n += 1
        self.r1, self.r2, self.r3 = self.r1 + r, self.r2 + r * r, self.r3 + r * r * r
        self.wr1, self.wr2, self.wr3 = self.wr1 + wr, self.wr2 + wr * wr, self.wr3 + wr * wr * wr
        self.w1, self.w2, self.w3 = self.w1 + w, self.w2 + w2, self.w3 + w2 * w
        self.w2r += w2 * r
        self.w3r += w2 * w * r
        self.w3r2 += w2 * wr * r
        self.max_weight = max(self.max_weight, w)
        self.unsupported += unsupported

    def tally(self) -> Tally:
        return Tally(
            n=self.n,
            max_weight=self.max_weight,
            unsupported=self.unsupported,
            reward=Powers(self.r1, self.r2, self.r3),
            ips=Powers(self.wr1, self.wr2, self.wr3),
            weight=Powers(self.w1, self.w2, self.w3),
            w2r=self.w2r,
            w3r=self.w3r,
            w3r2=self.w3r2,
            model=False,  # no reward model here: doubly robust is not offered
        )


class Performance:
    def __init__(self) -> None:
        self.buckets: dict[Key, dict[int, Sums]] = {}

    def observe(self, ex: TrainingExample) -> None:
        """Fold one learned example into its catalog's, slot's and decision time's bucket."""
        k = len(ex.eligible)
        if k == 0 or not 0.0 < ex.probability <= 1.0 or not math.isfinite(ex.reward):
            return  # nothing was shown, or not a row the estimators can read
        series = self.buckets.setdefault((ex.catalog, ex.slot), {})
        start = int(ex.decided_ts // BUCKET_SECONDS) * BUCKET_SECONDS
        sums = series.get(start)
        if sums is None:
            sums = series[start] = Sums()
            if len(series) > MAX_BUCKETS:
                del series[min(series)]
        never = sum(1 for p in ex.pmf if p <= 0.0)  # shown with probability 0: unsupported
        sums.add(ex.reward, (1.0 / k) / ex.probability, never / k)

    def slots(self, catalog: str) -> list[str | None]:
        return sorted((s for c, s in self.buckets if c == catalog), key=lambda s: s or "")

    def report(
        self, catalog: str, every: int = 3600, since: float = 0.0, alpha: float = 0.05
    ) -> dict[str, object]:
        """Per slot: per `every` seconds from `since`, the decisions, the served value and
        the uniform policy's, with (1 - alpha) intervals; and the same over the whole span."""
        if not BUCKET_SECONDS <= every <= MAX_REPORT_SECONDS or every % BUCKET_SECONDS:
            raise InvalidInput(
                f"every must be a multiple of {BUCKET_SECONDS} s up to {MAX_REPORT_SECONDS} s, "
                f"got {every}",
                field="every",
            )
        out = []
        for slot in self.slots(catalog):
            merged: dict[int, Tally] = {}
            for start, sums in self.buckets[catalog, slot].items():
                if start + BUCKET_SECONDS <= since:
                    continue
                at = start // every * every
                merged[at] = merged.get(at, Tally()) + sums.tally()
            total = sum(merged.values(), Tally())
            out.append(
                {
                    "slot": slot,
                    "series": [{"start": at, **_row(t, alpha)} for at, t in sorted(merged.items())],
                    "total": _row(total, alpha),
                }
            )
        return {
            "catalog": catalog,
            "every": every,
            "since": since,
            "alpha": alpha,
            "estimators": (
                "served: the mean reward of the logged decisions (logged); uniform: a uniform "
                "choice among the same eligible actions, self-normalised (snips) and plain "
                "(ips) inverse-propensity estimates; intervals as in evaluations (engine.ope)"
            ),
            "slots": out,
        }

    # -- checkpoint ---------------------------------------------------------------------

    def encode(self) -> bytes:
        return _encoder.encode(
            [
                [catalog, slot, [[start, *_fields(s)] for start, s in series.items()]]
                for (catalog, slot), series in self.buckets.items()
            ]
        )

    @classmethod
    def decode(cls, blob: bytes) -> Performance:
        out = cls()
        try:
            for catalog, slot, rows in msgspec.json.decode(blob):
                key = (str(catalog), None if slot is None else str(slot))
                series = out.buckets.setdefault(key, {})
                for row in rows:
                    if len(row) != _WIDTH:
                        raise ValueError(f"a bucket of {len(row)} numbers, not {_WIDTH}")
                    n, *floats = row[1:]
                    series[int(row[0])] = Sums(int(n), *(float(v) for v in floats))
        except (msgspec.DecodeError, ValueError, TypeError, IndexError) as exc:
            raise CorruptCheckpoint(f"performance series unreadable: {exc}") from exc
        return out


def _row(t: Tally, alpha: float) -> dict[str, object]:
    return {
        "decisions": t.n,
        "served": estimate(t, "logged", alpha=alpha).to_json(),
        "uniform": estimate(t, "snips", alpha=alpha).to_json(),
        "uniform_ips": estimate(t, "ips", alpha=alpha).to_json(),
    }


def _fields(s: Sums) -> list[float]:
    return [
        s.n, s.r1, s.r2, s.r3, s.wr1, s.wr2, s.wr3, s.w1, s.w2, s.w3,
        s.w2r, s.w3r, s.w3r2, s.max_weight, s.unsupported,
    ]  # fmt: skip


_encoder = msgspec.json.Encoder()
_WIDTH = 1 + len(_fields(Sums()))  # a bucket's start and its sums
