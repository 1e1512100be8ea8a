"""The Vowpal Wabbit contextual bandit (`cb_explore_adf`): the only vowpalwabbit import
(and of `pylibvw`, its native module).

Examples are built by `engine.vwformat` (escaped, so no user byte changes structure);
action lines are built once per catalog version and cached on the Action, and for
predictions the *parsed* action examples are cached too: parsing, not predicting,
dominates a VW call, and the cached examples give identical probabilities
(docs/decisions/hot-paths.md). The reward -> cost sign flip happens here, once: VW
minimises cost, Loopwise maximises reward. VW's command line is built here too
(`vw_args`): the adapter owns every VW argument.
"""

from __future__ import annotations

import itertools
import logging
import os
import tempfile
from collections.abc import Sequence

import numpy as np
import pylibvw  # vowpalwabbit's native module
import vowpalwabbit

from engine import vwformat
from engine.actions import Action
from engine.errors import CorruptCheckpoint, InvalidInput
from engine.features import Features
from engine.learning import INTEGER_PARAMETERS, USES, Exploration, Learning
from engine.sampling import Pmf
from policies.base import Example

log = logging.getLogger(__name__)
CB = vowpalwabbit.LabelType.CONTEXTUAL_BANDIT
NO_FEATURES = "|"  # an action line without features
# Parsed action examples kept per model. Each holds about 32 KB inside VW, and joined
# features (an action's popularity) make new ones all the time, so the cache is an LRU
# whose evicted examples go back to VW (`_evict`): 20,000 unbounded grew an API by
# 0.8 MB a minute in the soak (benchmarks/soak.py).
MAX_PARSED = 2_048
EVICT_BATCH = 64
# Exploration algorithms whose update touches only the chosen action: VW learns them by
# MTR (cb_explore_adf's default cb_type), a regression on the chosen action alone, scaled
# by events/actions seen. The other actions' lines are then written without features:
# their number still counts, their features never did. Same weights, bit for bit
# (tests/test_vw_policy.py), for less learning time, most on wide catalogs
# (docs/decisions/hot-paths.md). Not cover: it learns every action's cost estimate.
CHOSEN_ONLY = frozenset({"epsilon", "squarecb", "softmax", "bag", "rnd", "regcbopt"})


class VWPolicy:
    def __init__(self, learning: Learning, model: bytes = b"", learned: int = 0) -> None:
        self.args = vw_args(learning)
        self.name = f"vw:{learning.exploration.algorithm}"
        self.learned = learned
        self._chosen_only = learning.exploration.algorithm in CHOSEN_ONLY
        # RegCB's confidence assumes costs in the declared range: rewards are clipped to it
        self._learned_reward = learning.exploration.learned_reward
        # RegCB is a plain regression on the chosen action (its pmf is one-hot, so a
        # logged probability below 1 comes from a floor or a boost, not from RegCB), so it
        # learns without importance weights: level with VW's weights on regret, and the
        # fewest segments served a wrong banner (docs/decisions/default-policy.md).
        self._unweighted = learning.exploration.algorithm == "regcbopt"
        self._ws = _workspace(self.args, model)
        # (action id, action line) -> its parsed example, reused by every prediction
        self._parsed: dict[tuple[str, str], vowpalwabbit.Example] = {}

    def distribution(self, features: Features, eligible: Sequence[Action]) -> Pmf:
        return self._predict(features, eligible, None)

    def ranked(self, features: Features, eligible: Sequence[Action]) -> tuple[Pmf, Pmf]:
        """Scores: VW's estimated reward of each action (its cost estimate, negated)."""
        scores = np.empty(len(eligible))
        return self._predict(features, eligible, scores), scores

    def _predict(self, features: Features, eligible: Sequence[Action], scores: Pmf | None) -> Pmf:
        """The pmf; fills `scores` (if given) while the examples hold this prediction."""
        shared = self._ws.parse([vwformat.shared_line(features)], CB)
        actions = self._action_examples(eligible)
        try:
            probabilities = self._ws.predict(shared + actions)
            if scores is not None:
                scores[:] = [-a.get_partial_prediction() for a in actions]
        finally:
            self._ws.finish_example(shared)
        pmf = np.asarray(probabilities, dtype=np.float64)
        if pmf.shape != (len(eligible),):
            raise InvalidInput(
                f"VW returned {pmf.size} probabilities for {len(eligible)} actions",
                field="eligible",
            )
        if self._unweighted:  # RegCB gives 1 to every action tied for the best (all, when new)
            pmf = pmf / pmf.sum()
        return pmf

    def learn(self, example: Example) -> None:
        self._learn_lines(self.lines(example))
        self.learned += 1

    def lines(self, example: Example) -> list[str]:
        """The VW text of a labeled example, as it is learned."""
        reward = self._learned_reward(example.reward)
        probability = 1.0 if self._unweighted else example.probability
        label = vwformat.cb_label(cost_of(reward), probability)
        lines = [vwformat.shared_line(example.context)]
        for i, action in enumerate(example.actions):
            if i == example.chosen:
                lines.append(vwformat.labeled(action_body(action), label))
            else:
                lines.append(NO_FEATURES if self._chosen_only else action_body(action))
        return lines

    def _learn_lines(self, lines: list[str]) -> None:
        """`Workspace.learn(lines)` without its Python wrappers: pyvw wraps every parsed line
        in an `Example` object, which was most of a learn at 50 actions
        (docs/decisions/hot-paths.md). The same native parse, learn and finish, in the same
        order, so the same model, statistics included (tests/test_vw_policy.py). Like
        pyvw, a learn that raises leaves its examples unfinished."""
        examples = self._ws._parse("\n".join(lines))
        pylibvw.vw.learn_multi(self._ws, examples)
        pylibvw.vw._finish_example_multi_ex(self._ws, examples)

    @property
    def parsed_examples(self) -> int:
        """Action examples held parsed for predictions (each about 32 KB inside VW)."""
        return len(self._parsed)

    def _action_examples(self, eligible: Sequence[Action]) -> list[vowpalwabbit.Example]:
        overflow = len(self._parsed) + len(eligible) - MAX_PARSED
        if overflow > 0:  # before, never while, building this prediction's list
            self._evict(overflow + MAX_PARSED // 4)
        out = []
        for action in eligible:
            key = (action.id, action_body(action))
            example = self._parsed.pop(key, None)  # re-inserted: most recently used last
            if example is None:
                example = self._ws.parse([key[1]], CB)[0]
            self._parsed[key] = example
            out.append(example)
        return out

    def _evict(self, n: int) -> None:
        """Give the `n` least recently used parsed examples back to VW. Finishing one on
        its own crashed VW 9.11 once it had taken part in predictions between learns
        (tests/test_vw_policy.py); finished as the actions of a multi-line example that
        was just predicted, as every fresh example is, it does not, and its memory returns
        to VW's pool. A prediction does not change the model."""
        keys = list(itertools.islice(self._parsed, n))
        examples = [self._parsed.pop(k) for k in keys]
        for start in range(0, len(examples), EVICT_BATCH):
            part = examples[start : start + EVICT_BATCH]
            shared = self._ws.parse([vwformat.shared_line({})], CB)
            try:
                self._ws.predict(shared + part)
            finally:
                self._ws.finish_example(shared + part)

    def save(self) -> bytes:
        fd, path = tempfile.mkstemp(prefix="loopwise-vw-", suffix=".model")
        os.close(fd)
        try:
            self._ws.save(path)
            with open(path, "rb") as f:
                return f.read()
        finally:
            os.unlink(path)

    def close(self) -> None:
        self._parsed.clear()
        self._ws.finish()


def vw_args(learning: Learning) -> str:
    """The VW command line of `learning`: a model is only compatible with the same command
    line, so this string is also the model's key (policies.registry.model_key)."""
    parts = ["--cb_explore_adf", "--quiet", *_exploration_args(learning.exploration)]
    if learning.optimizer == "coin":
        parts.append("--coin")
    for pair in learning.interactions:
        parts += ["--interactions", pair]
    return " ".join(parts)


def _exploration_args(exploration: Exploration) -> list[str]:
    """The arguments of VW's exploration in cb_explore_adf: each declared parameter is the
    VW option of the same name, in the order engine.learning.USES lists them."""
    algorithm = exploration.algorithm
    if algorithm == "regcbopt":  # costs are -reward: the range turns over
        low, high = exploration.reward_range()
        mellowness = repr(float(exploration.value("mellowness")))
        costs = ["--cb_min_cost", repr(0.0 - high), "--cb_max_cost", repr(0.0 - low)]
        return ["--regcbopt", "--mellowness", mellowness, *costs]
    args = [f"--{algorithm}"] if algorithm in ("squarecb", "softmax") else []
    for name in USES[algorithm]:
        value = exploration.value(name)
        shown = str(int(value)) if name in INTEGER_PARAMETERS else repr(float(value))
        args += [f"--{name}", shown]
    if algorithm == "cover":
        args.append("--nounif")
    return args


def cost_of(reward: float) -> float:
    """VW minimises cost; Loopwise maximises reward. The one place the sign flips."""
    return -reward


def action_body(action: Action) -> str:
    return action.vw_body or vwformat.action_body(action.features, action.id)


def _workspace(args: str, model: bytes) -> vowpalwabbit.Workspace:
    if not model:
        return vowpalwabbit.Workspace(args)
    fd, path = tempfile.mkstemp(prefix="loopwise-vw-", suffix=".model")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model)
        try:
            return vowpalwabbit.Workspace(f"{args} -i {path}")
        except RuntimeError as exc:
            raise CorruptCheckpoint(f"VW refused the saved model: {exc}") from exc
    finally:
        os.unlink(path)
