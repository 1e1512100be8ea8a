"""Build the policy that a catalog's learning settings ask for."""

from __future__ import annotations

from engine.learning import Learning
from policies.base import Policy
from policies.uniform import Uniform
from policies.vw import VWPolicy, vw_args


def build(learning: Learning, model: bytes = b"", learned: int = 0) -> Policy:
    if learning.policy == "uniform":
        policy: Policy = Uniform()
        policy.learned = learned
        return policy
    return VWPolicy(learning, model, learned)


def model_key(learning: Learning) -> str:
    """Two catalog versions share a model only when this key is equal."""
    return learning.policy if learning.policy == "uniform" else vw_args(learning)


def continues(saved_key: str, key: str) -> bool:
    """Whether a model saved under `saved_key` serves the settings of `key`: the same
    settings, or the settings from before the action id cross became a default plus that
    cross (`--interactions ci`). VW loads such a model with the extra interaction, keeps
    every learned weight and starts the cross at zero, so upgrading Loopwise does not
    reset what a catalog on default interactions has learned."""
    return saved_key == key or key.split() == [*saved_key.split(), "--interactions", "ci"]
