"""Heat = alpha*N_visit + beta*L_interaction + gamma*exp(-dt/mu), decaying continuously."""

from __future__ import annotations

import math

import pytest

from memoryos_core import MidTermConfig
from memoryos_core.policy.heat import HeatState, coldest, heat, is_hot, recency

PAPER = MidTermConfig()


@pytest.mark.parametrize(
    ("state", "now", "expected"),
    [
        (HeatState(0, 0, 100.0), 100.0, 1.0),  # only recency, no time passed
        (HeatState(3, 2, 100.0), 100.0, 6.0),
        (HeatState(0, 0, 0.0), 1e7, math.exp(-1)),  # one mu later
        (HeatState(2, 1, 0.0), 2e7, 3 + math.exp(-2)),
        (HeatState(0, 0, 500.0), 100.0, 1.0),  # a clock that stepped back counts as no time
    ],
)
def test_heat_matches_the_paper_formula(state: HeatState, now: float, expected: float) -> None:
    assert heat(state, now, PAPER) == pytest.approx(expected)


def test_weights_and_mu_are_configurable() -> None:
    config = MidTermConfig(heat_alpha=2.0, heat_beta=0.5, heat_gamma=3.0, recency_mu_s=10.0)
    assert heat(HeatState(1, 4, 0.0), 10.0, config) == pytest.approx(2 + 2 + 3 * math.exp(-1))


def test_recency_decays_between_events_not_only_at_them() -> None:
    state = HeatState(0, 0, 0.0)
    values = [heat(state, t, PAPER) for t in (0.0, 1e6, 5e6, 2e7)]
    assert values == sorted(values, reverse=True)
    assert len(set(values)) == 4
    assert recency(0.0, 1e7, 1e7) == pytest.approx(math.exp(-1))


def test_threshold_is_inclusive() -> None:
    config = MidTermConfig(heat_threshold=5.0)
    assert is_hot(HeatState(0, 4, 0.0), 0.0, config)  # 4 + recency 1.0 = 5.0
    assert not is_hot(HeatState(0, 4, 0.0), 1.0, MidTermConfig(heat_threshold=5.0, recency_mu_s=0.5))


def test_coldest_orders_by_heat_then_age() -> None:
    states = {
        "busy": HeatState(5, 0, 0.0),
        "old": HeatState(0, 1, 0.0),
        "new": HeatState(0, 1, 9e6),
        "fresh_but_empty": HeatState(0, 0, 1e7),
    }
    assert coldest(states, 1e7, PAPER, 2) == ["fresh_but_empty", "old"]  # heats 1.0 and 1 + e^-1
    assert coldest(states, 1e7, PAPER, 0) == []
