"""Build the policy that a catalog's learning settings ask for, and name its model."""

from __future__ import annotations

from dataclasses import asdict

from engine.learning import Learning
from policies.base import Policy
from policies.linucb import LinUCB
from policies.thompson import Thompson
from policies.uniform import Uniform
from policies.vw import VWPolicy, vw_args


def build(learning: Learning, model: bytes = b"", learned: int = 0) -> Policy:
    """The policy of `learning`, from the bytes of a model saved under the same
    `model_key` (empty: a new one) that had learned `learned` examples."""
    if learning.policy == "vw":
        return VWPolicy(learning, model, learned)
    policy: Uniform | LinUCB | Thompson
    if learning.policy == "linucb":
        s = learning.linucb
        policy = LinUCB(dim=s.dim, alpha=s.alpha, epsilon=s.epsilon, ridge=s.ridge)
    elif learning.policy == "thompson":
        policy = Thompson(draws=learning.thompson.draws, smoothing=learning.thompson.smoothing)
    else:
        policy = Uniform()
    if model and not isinstance(policy, Uniform):
        policy.load(model)
    policy.learned = learned
    return policy


def model_key(learning: Learning) -> str:
    """Two catalog versions share a model only when this key is equal: VW's command line,
    or the policy's name with every setting of its own, so any change of them starts a
    new model and the same settings go on from a checkpoint."""
    if learning.policy == "vw":
        return vw_args(learning)
    if learning.policy == "linucb":
        return _key("linucb", asdict(learning.linucb))
    if learning.policy == "thompson":
        return _key("thompson", asdict(learning.thompson))
    return learning.policy


def _key(policy: str, settings: dict[str, float]) -> str:
    return " ".join([policy, *(f"{name}={value!r}" for name, value in settings.items())])


def continues(saved_key: str, key: str) -> bool:
    """Whether a model saved under `saved_key` serves the settings of `key`: the same
    settings, or the settings from before the action id cross became a default plus that
    cross (`--interactions ci`). VW loads such a model with the extra interaction, keeps
    every learned weight and starts the cross at zero, so upgrading Loopwise does not
    reset what a catalog on default interactions has learned."""
    return saved_key == key or key.split() == [*saved_key.split(), "--interactions", "ci"]
