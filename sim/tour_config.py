"""What one tour is: `TourConfig`, validated when it is made (`loopwise tour`)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from engine.errors import InvalidInput
from engine.learning import DEFAULT_FLOOR
from sim.config import SimConfig
from sim.environments import environment

MAX_DECISIONS = 1_000_000
MAX_EVALUATION_S = 3600.0


@dataclass(frozen=True)
class TourConfig:
    base_url: str
    catalog: str = "tour"
    env: str = "segments"
    seed: int = 0
    concurrency: int = 8
    api_key: str | None = None
    exploration_floor: float = DEFAULT_FLOOR  # the catalog default: every banner stays evaluable
    ab_decisions: int = 10_000  # visitors of the A/B
    window: int = 500  # a read of the A/B's results is kept every `window` decisions learned
    apprentice_decisions: int = 2000
    failover_decisions: int = 200
    evaluation_timeout_s: float = 300.0

    def __post_init__(self) -> None:
        self.sim()  # base_url, catalog, env, concurrency, seed, window and floor checked there
        if environment(self.env, self.seed).browsing is not None:
            raise InvalidInput(
                f"the tour plays storefronts whose context names the segment; {self.env!r} "
                "hides it in behaviour",
                field="env",
            )
        if not 0.0 < self.exploration_floor <= 1.0:
            raise InvalidInput(
                "exploration_floor must be in (0, 1]: an evaluation needs every banner's "
                f"probability above 0, got {self.exploration_floor!r}",
                field="exploration_floor",
            )
        for name in ("ab_decisions", "apprentice_decisions", "failover_decisions"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidInput(f"{name} must be an integer, got {value!r}", field=name)
            if not 1 <= value <= MAX_DECISIONS:
                raise InvalidInput(
                    f"{name} must be in [1, {MAX_DECISIONS}], got {value!r}", field=name
                )
        if self.window > self.ab_decisions:
            raise InvalidInput(
                f"window ({self.window}) must be at most ab_decisions ({self.ab_decisions})",
                field="window",
            )
        if not 0.0 < self.evaluation_timeout_s <= MAX_EVALUATION_S:
            raise InvalidInput(
                f"evaluation_timeout_s must be in (0, {MAX_EVALUATION_S:g}], "
                f"got {self.evaluation_timeout_s!r}",
                field="evaluation_timeout_s",
            )

    def sim(self) -> SimConfig:
        """The simulator's view of the same run (what `sim.server.connect` takes)."""
        return SimConfig(
            base_url=self.base_url,
            catalog=self.catalog,
            env=self.env,
            decisions=self.ab_decisions,
            concurrency=self.concurrency,
            seed=self.seed,
            window=self.window,
            api_key=self.api_key,
            exploration_floor=self.exploration_floor,
        )


def quick(config: TourConfig) -> TourConfig:
    """The same tour, small enough for a test (about 15 s of traffic)."""
    return replace(
        config, ab_decisions=600, window=100, apprentice_decisions=200, failover_decisions=50
    )
