"""Learning settings as Personalizer's "policy": a Vowpal Wabbit argument string.

GET answers the VW command line the catalog's model really runs (policies.vw.vw_args,
without `--quiet`). PUT reads such a string back into a catalog's `learning` block; what a
string may say is what engine.learning can declare:

- `--cb_explore_adf` (required: every Loopwise model is an ADF contextual bandit);
- one exploration: `--epsilon E` alone (epsilon-greedy, Personalizer's own), `--squarecb`
  [`--gamma_scale`, `--gamma_exponent`], `--softmax` [`--lambda`], `--bag N` [`--epsilon`],
  `--cover N` [`--psi`, `--nounif`], `--rnd N` [`--rnd_alpha`, `--rnd_invlambda`,
  `--epsilon`], `--regcbopt` [`--mellowness`, `--cb_min_cost`, `--cb_max_cost`];
- `--coin` (coin-betting optimiser; without it VW's adaptive SGD);
- interactions: `-q ::` (Personalizer's "every namespace with every other": Loopwise's
  default, every context namespace with the action's features and its id), or
  `--interactions` with Loopwise's namespace letters (c context, a action, i action id,
  p slot);
- accepted without effect: `--cb_type mtr` (what cb_explore_adf does), `--dsjson`,
  `--json`, `--quiet` (Loopwise writes its own examples).

Everything else is refused, naming the option: `-l` and `--power_t` (Loopwise runs VW's
adaptive or coin optimiser with its own rates), other `--cb_type`s, and `-q` between your
own namespaces (Loopwise gives every context namespace one VW namespace letter, `c`, so
that no namespace name can collide with another's first letter, which VW's `-q` reads).
"""

from __future__ import annotations

from typing import Any

from engine.errors import InvalidInput
from engine.learning import (
    DEFAULT_INTERACTIONS,
    INTERACTION_RE,
    USES,
    Learning,
)
from policies.vw import vw_args

FIELD = "arguments"
ALGORITHM_FLAGS = {"--squarecb": "squarecb", "--softmax": "softmax", "--regcbopt": "regcbopt"}
COUNTED = {"--bag": "bag", "--cover": "cover", "--rnd": "rnd"}  # an algorithm with its size
PARAMETERS = {
    "--epsilon": "epsilon",
    "--gamma_scale": "gamma_scale",
    "--gamma_exponent": "gamma_exponent",
    "--lambda": "lambda",
    "--psi": "psi",
    "--rnd_alpha": "rnd_alpha",
    "--rnd_invlambda": "rnd_invlambda",
    "--mellowness": "mellowness",
}
NO_EFFECT = {"--dsjson", "--json", "--quiet", "--nounif"}
REFUSED = {
    "-l": "Loopwise does not set VW's learning rate: it runs VW's adaptive SGD or --coin",
    "--learning_rate": "Loopwise does not set VW's learning rate: it runs VW's adaptive SGD "
    "or --coin",
    "--power_t": "Loopwise does not set VW's power_t: it runs VW's adaptive SGD or --coin",
}
TAKES_VALUE = {
    "--cb_type",
    "--cb_min_cost",
    "--cb_max_cost",
    "-q",
    "--quadratic",
    "--interactions",
    *PARAMETERS,
    *COUNTED,
    *REFUSED,
}


def arguments(learning: Learning) -> str:
    """The VW arguments of the catalog's model, as Personalizer showed a policy; "" for a
    catalog on a policy that is not VW's (linucb, thompson, uniform)."""
    if learning.policy != "vw":
        return ""
    return " ".join(a for a in vw_args(learning).split() if a != "--quiet")


def learning_body(text: str) -> dict[str, Any]:
    """A `learning` block (policy, exploration, interactions, optimizer) from a VW
    argument string; the reward settings are the service configuration's, not here."""
    options = _options(text)
    if "--cb_explore_adf" not in options:
        raise InvalidInput(
            "arguments must contain --cb_explore_adf: every Loopwise model is VW's "
            "contextual bandit with action-dependent features",
            field=FIELD,
        )
    for flag, reason in REFUSED.items():
        if flag in options:
            raise InvalidInput(f"arguments: {flag} is not supported: {reason}", field=FIELD)
    cb_type = options.pop("--cb_type", ["mtr"])[-1]
    if cb_type != "mtr":
        raise InvalidInput(
            f"arguments: --cb_type {cb_type} is not supported: Loopwise's exploration "
            "algorithms learn with VW's default for cb_explore_adf, mtr",
            field=FIELD,
        )
    algorithm, parameters = _exploration(options)
    body: dict[str, Any] = {
        "policy": "vw",
        "exploration": {"algorithm": algorithm, **parameters},
        "interactions": _interactions(options),
        "optimizer": "coin" if "--coin" in options else "adaptive",
    }
    return body


def _options(text: str) -> dict[str, list[str]]:
    """`--name value`, `--name=value`, `-q ::` and `-qab` as {option: [values...]}."""
    tokens = text.split()
    out: dict[str, list[str]] = {}
    i = 0
    while i < len(tokens):
        token = tokens[i]
        i += 1
        name, value = token, None
        if token.startswith("--") and "=" in token:
            name, value = token.split("=", 1)
        elif token.startswith("-") and not token.startswith("--") and len(token) > 2:
            name, value = token[:2], token[2:]
        known = name in TAKES_VALUE or name in NO_EFFECT or name in ALGORITHM_FLAGS
        if not name.startswith("-") or not (known or name in ("--cb_explore_adf", "--coin")):
            raise InvalidInput(
                f"arguments: {token!r} is not an option Loopwise supports; see "
                "docs/migration-from-personalizer.md#learning-settings for the options it reads",
                field=FIELD,
            )
        if name in TAKES_VALUE and value is None:
            if i >= len(tokens):
                raise InvalidInput(f"arguments: {name} needs a value", field=FIELD)
            value = tokens[i]
            i += 1
        out.setdefault(name, [])
        if value is not None:
            out[name].append(value)
    return out


def _exploration(options: dict[str, list[str]]) -> tuple[str, dict[str, float]]:
    named = [a for flag, a in ALGORITHM_FLAGS.items() if flag in options]
    named += [a for flag, a in COUNTED.items() if flag in options]
    if len(named) > 1:
        raise InvalidInput(
            f"arguments name {len(named)} exploration algorithms ({', '.join(named)}); give one",
            field=FIELD,
        )
    algorithm = named[0] if named else "epsilon"
    parameters: dict[str, float] = {}
    for flag, name in COUNTED.items():
        if flag in options:
            parameters[name] = _number(flag, options[flag][-1])
    for flag, name in PARAMETERS.items():
        if flag not in options:
            continue
        if name not in USES[algorithm]:
            raise InvalidInput(
                f"arguments: {flag} is not a parameter of {algorithm}; it takes "
                f"{', '.join('--' + p for p in USES[algorithm])}",
                field=FIELD,
            )
        parameters[name] = _number(flag, options[flag][-1])
    costs = [c for c in ("--cb_min_cost", "--cb_max_cost") if c in options]
    if costs and algorithm != "regcbopt":
        raise InvalidInput(f"arguments: {costs[0]} is read only with --regcbopt", field=FIELD)
    if costs:  # VW's costs are Loopwise's rewards turned over
        if "--cb_max_cost" in options:
            parameters["min_reward"] = -_number("--cb_max_cost", options["--cb_max_cost"][-1])
        if "--cb_min_cost" in options:
            parameters["max_reward"] = -_number("--cb_min_cost", options["--cb_min_cost"][-1])
    if "--nounif" in options and algorithm != "cover":
        raise InvalidInput("arguments: --nounif is read only with --cover", field=FIELD)
    if algorithm == "epsilon" and "epsilon" not in parameters:
        raise InvalidInput(
            "arguments name no exploration: give --epsilon E (Personalizer's epsilon-greedy) "
            "or one of --squarecb, --softmax, --bag N, --cover N, --rnd N, --regcbopt",
            field=FIELD,
        )
    return algorithm, parameters


def _interactions(options: dict[str, list[str]]) -> list[str]:
    pairs = options.get("-q", []) + options.get("--quadratic", [])
    pairs += options.get("--interactions", [])
    if not pairs:
        return []
    out: list[str] = []
    for pair in pairs:
        if pair == "::":
            out += DEFAULT_INTERACTIONS
        elif INTERACTION_RE.fullmatch(pair):
            out.append(pair)
        else:
            raise InvalidInput(
                f"arguments: interaction {pair!r} is not supported: Loopwise puts every "
                "context namespace in VW namespace c and the action's in a (its id in i, "
                "the slot in p), so give -q :: (every context namespace with the action) "
                "or --interactions with those letters, such as --interactions ca",
                field=FIELD,
            )
    return list(dict.fromkeys(out))


def _number(flag: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InvalidInput(f"arguments: {flag} needs a number, got {text!r}", field=FIELD) from None
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"arguments: {flag} needs a finite number, got {text!r}", field=FIELD)
    return value
