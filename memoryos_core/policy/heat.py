"""Segment heat: alpha*N_visit + beta*L_interaction + gamma*exp(-dt/mu), decaying continuously."""

from __future__ import annotations

import math
from dataclasses import dataclass

from memoryos_core._config import MidTermConfig


@dataclass(frozen=True)
class HeatState:
    """The counters heat is computed from; ``last_access_s`` is epoch seconds."""

    n_visit: int
    l_interaction: int
    last_access_s: float


def recency(last_access_s: float, now_s: float, mu_s: float) -> float:
    """exp(-dt/mu), with dt never negative (a clock that steps back counts as no time)."""
    return math.exp(-max(0.0, now_s - last_access_s) / mu_s)


def heat(state: HeatState, now_s: float, config: MidTermConfig) -> float:
    """Heat at ``now_s``: recency is computed at read time, so it decays between events too."""
    return (
        config.heat_alpha * state.n_visit
        + config.heat_beta * state.l_interaction
        + config.heat_gamma * recency(state.last_access_s, now_s, config.recency_mu_s)
    )


def is_hot(state: HeatState, now_s: float, config: MidTermConfig) -> bool:
    return heat(state, now_s, config) >= config.heat_threshold


def coldest(states: dict[str, HeatState], now_s: float, config: MidTermConfig, count: int) -> list[str]:
    """Ids of the ``count`` coldest segments (ties: least recently used first)."""
    ranked = sorted(states, key=lambda sid: (heat(states[sid], now_s, config), states[sid].last_access_s))
    return ranked[: max(0, count)]
