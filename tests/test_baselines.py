"""The same invariants over every policy: a pmf per eligible set, and frequencies that match it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from scipy import stats

from engine.actions import Action
from engine.features import Features
from engine.learning import Exploration, Learning
from engine.sampling import normalise, rng_for, sample
from policies.base import Example, Policy
from policies.linucb import LinUCB
from policies.thompson import Thompson
from policies.uniform import Uniform
from policies.vw import VWPolicy

ACTIONS = tuple(
    Action(f"a{i}", {"banner": {"theme": f"t{i % 3}", "discount": 0.1 * i}}) for i in range(5)
)
CONTEXT: Features = {"user": {"segment": "runner", "age": 31.0}, "context": {"page": "home"}}
FACTORIES: dict[str, Callable[[], Policy]] = {
    "uniform": Uniform,
    "vw": lambda: VWPolicy(Learning()),  # optimistic RegCB: greedy on optimistic estimates
    "vw-squarecb": lambda: VWPolicy(Learning(exploration=Exploration("squarecb"))),
    "thompson": Thompson,
    "linucb": LinUCB,
}
# RegCB puts its mass on the actions tied for the best optimistic estimate, equally; every
# other policy here keeps mass > 0 on each eligible action
GREEDY = {"vw:regcbopt"}


@pytest.fixture(params=sorted(FACTORIES))
def policy(request: pytest.FixtureRequest) -> Iterator[Policy]:
    p = FACTORIES[request.param]()
    _warm_up(p)
    yield p
    p.close()


def _warm_up(policy: Policy, n: int = 50) -> None:
    """Some learning first, so the pmf is not trivially uniform."""
    for i in range(n):
        chosen = i % len(ACTIONS)
        policy.learn(Example(CONTEXT, ACTIONS, chosen, 0.2, 1.0 if chosen == 2 else 0.0))


@pytest.mark.parametrize("eligible", [ACTIONS, ACTIONS[1:4], ACTIONS[3:4]])
def test_pmf_is_a_distribution_over_the_eligible_actions(
    policy: Policy, eligible: tuple[Action, ...]
) -> None:
    raw = policy.distribution(CONTEXT, eligible)
    assert raw.shape == (len(eligible),)
    # VW hands back float32 probabilities (sum off by ~1e-8); decide normalises before sampling
    assert abs(float(raw.sum()) - 1.0) <= (1e-6 if policy.name.startswith("vw") else 1e-9)
    pmf = normalise(raw)
    assert abs(float(pmf.sum()) - 1.0) <= 1e-9
    assert np.all(pmf >= 0.0)
    if policy.name in GREEDY:
        assert np.allclose(pmf[pmf > 0], 1.0 / np.count_nonzero(pmf)), pmf
    else:
        assert np.all(pmf > 0.0), pmf


def test_sampled_frequencies_match_the_pmf(policy: Policy) -> None:
    pmf = normalise(policy.distribution(CONTEXT, ACTIONS))
    n = 20_000
    draws = [sample(pmf, rng_for(f"chi-{i}"))[0] for i in range(n)]
    counts = np.bincount(draws, minlength=len(ACTIONS))
    expected = pmf * n
    big = expected >= 5  # chi-square needs expected counts >= 5; pool the small ones
    observed = np.append(counts[big], counts[~big].sum())
    wanted = np.append(expected[big], expected[~big].sum())
    if wanted[-1] == 0:
        observed, wanted = observed[:-1], wanted[:-1]
    if len(wanted) < 2:
        return
    chi2, pvalue = stats.chisquare(observed, wanted)
    assert pvalue > 1e-4, f"chi2={chi2:.1f} p={pvalue:.2g} counts={counts} pmf={pmf}"


@pytest.mark.parametrize("make", [Thompson, LinUCB], ids=["thompson", "linucb"])
def test_learns_a_two_arm_problem(make: Callable[[], Policy]) -> None:
    policy = make()
    arms = (Action("good", {}), Action("bad", {}))
    ctr = (0.7, 0.2)
    rng = np.random.default_rng(7)
    for i in range(500):
        pmf = normalise(policy.distribution(CONTEXT, arms))
        chosen, p = sample(pmf, rng_for(f"two-{i}"))
        reward = float(rng.random() < ctr[chosen])
        policy.learn(Example(CONTEXT, arms, chosen, p, reward))
    pmf = policy.distribution(CONTEXT, arms)
    assert pmf[0] > 0.8, pmf


def test_thompson_pmf_is_deterministic_for_the_same_request_and_model() -> None:
    policy = Thompson()
    _warm_up(policy)
    first = policy.distribution(CONTEXT, ACTIONS)
    assert np.array_equal(first, policy.distribution(CONTEXT, ACTIONS))


def test_linucb_puts_one_minus_epsilon_on_the_argmax() -> None:
    policy = LinUCB(epsilon=0.1)
    _warm_up(policy, 200)
    pmf = policy.distribution(CONTEXT, ACTIONS)
    assert sorted(np.round(pmf, 12))[:-1] == [0.02] * 4
    assert pmf.max() == pytest.approx(0.92)
