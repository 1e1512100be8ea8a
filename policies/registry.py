"""Build the policy that a catalog's learning settings ask for."""

from __future__ import annotations

from engine.catalog import Learning
from policies.base import Policy
from policies.uniform import Uniform
from policies.vw import VWPolicy


def build(learning: Learning, model: bytes = b"", learned: int = 0) -> Policy:
    if learning.policy == "uniform":
        policy: Policy = Uniform()
        policy.learned = learned
        return policy
    return VWPolicy(learning, model, learned)


def model_key(learning: Learning) -> str:
    """Two catalog versions share a model only when this key is equal."""
    return learning.policy if learning.policy == "uniform" else learning.vw_args()
