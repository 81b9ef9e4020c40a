"""The DP bindings without Flower: the plan, the honest survivors, the privacy event, and
the client's policy refusing noise it cannot trust."""

import math

import pytest

import secagg
from secagg import ConfigError, DpSpec, PlanError, Policy, PolicyError, RoundConfig


def dp_round(n=8, k=7, t=4, honest=3, params=256, epsilon=2.0, rounds=1):
    plan = secagg.plan_dp(params, n, honest, epsilon=epsilon, delta=1e-6, rounds=rounds)
    config = RoundConfig(n, params, neighbors=k, threshold=t, bits=plan.bits, levels=2,
                         dp=plan.dp)
    return plan, config


def test_honest_survivors_are_t_minus_c_and_k_minus_t_plus_2_against_a_malicious_server():
    assert secagg.honest_survivors(8, 7, 4, colluders=1, adversary="curious") == 3
    assert secagg.honest_survivors(8, 7, 4, min_survivors=6, colluders=2,
                                   adversary="curious") == 4
    # k − t + 2 = 6 − 5 + 2 = 3 below T − c = 5 − 1: a semi-malicious server can isolate an
    # input with k − t + 1 other honest ones.
    assert secagg.honest_survivors(20, 6, 5, colluders=1, adversary="semi-malicious") == 3
    assert secagg.honest_survivors(20, 6, 5, colluders=1, adversary="curious") == 4
    with pytest.raises(PlanError, match="no honest input"):
        secagg.honest_survivors(8, 7, 4, colluders=4, adversary="curious")
    with pytest.raises(ConfigError):
        secagg.honest_survivors(8, 9, 4)


def test_plan_errors_are_typed():
    with pytest.raises(ConfigError, match="not both or neither"):
        secagg.plan_dp(100, 10, 5, epsilon=1.0, noise=1.0)
    with pytest.raises(ConfigError, match="honest survivors"):
        secagg.plan_dp(100, 10, 11, epsilon=1.0)
    with pytest.raises(PlanError, match="no scale fits"):
        secagg.plan_dp(100, 1000, 1, epsilon=0.01, bits=3)
    for bad in ({}, {"epsilon": 1.0, "noise": 1.0}, {"epsilon": -1.0}, {"noise": 1.0, "delta": 1.0},
                {"epsilon": 1.0, "rounds": 0}):
        with pytest.raises(ConfigError):
            DpSpec.of(bad)
    with pytest.raises(ConfigError, match="unknown fields"):
        DpSpec.of({"epsilon": 1.0, "sigma": 2.0})


def test_the_event_composes_to_the_plans_epsilon_and_its_gaussian_form_dominates():
    plan, config = dp_round(epsilon=3.0, rounds=4)
    assert config.dp == plan.dp and RoundConfig.from_welcome(config.welcome()).dp == plan.dp
    events = []
    for r in range(4):
        events.append(secagg.PrivacyEvent.of(config, delta=1e-6, server_round=r + 1,
                                             inputs_in_sum=7, total_weight=7,
                                             earlier=[config] * r, planned=plan))
    spent = [e.cumulative_epsilon for e in events]
    assert all(a < b for a, b in zip(spent, spent[1:])), spent
    assert abs(spent[-1] - plan.epsilon) < 1e-9 and plan.epsilon <= 3.0
    assert secagg.privacy_spent([config] * 4, delta=1e-6)[0] == spent[-1]
    e = events[0]
    assert e.honest_survivors == 3 and e.mechanism == "skellam"
    assert abs(e.central_variance - 3 * e.noise_per_client) < 1e-9 * e.central_variance
    # ε of one round from its RDP curve, converted here independently (Balle et al. 2020).
    eps = min(v + math.log((a - 1) / a) - (math.log(1e-6) + math.log(a)) / (a - 1)
              for a, v in e.rdp)
    assert abs(max(eps, 0.0) - e.epsilon) < 1e-9
    z = e.noise_multiplier()
    assert all(a / (2 * z * z) >= v * (1 - 1e-12) for a, v in e.rdp)
    assert 0.9 * math.sqrt(e.central_variance) / e.l2_sensitivity < z
    with pytest.raises(ConfigError, match="no differential privacy"):
        secagg.privacy_spent([RoundConfig(8, 256)], delta=1e-6)


def test_a_client_refuses_noise_sized_for_more_honest_survivors_than_it_guarantees():
    policy = Policy(adversary="curious", colluders=1, min_cohort=3)
    _, fair = dp_round(honest=3)
    assert policy.honest_survivors(fair) == 3
    policy.check(fair)
    _, greedy = dp_round(honest=4)
    with pytest.raises(PolicyError, match="sized for 4 honest survivors.*guarantees only 3"):
        policy.check(greedy)
    ident = secagg.Identity.generate(0)
    with pytest.raises(PolicyError, match="sized for 4"):
        secagg.Client(greedy.welcome(), ident, policy)
    # A privacy floor refuses a round costing more, and a round without DP.
    strict = Policy(adversary="curious", colluders=1, min_cohort=3, privacy=(0.01, 1e-6))
    assert strict.privacy == (0.01, 1e-6)
    with pytest.raises(PolicyError, match="floor"):
        strict.check(fair)
    with pytest.raises(PolicyError):
        strict.check(RoundConfig(8, 256, neighbors=7, threshold=4))
