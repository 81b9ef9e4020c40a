"""Distributed DP (dp=) through secagg.flower, under Flower's own simulation engine: the
legacy workflow and the Message API's SecAggPlus."""

import math
import os
import re
import subprocess

import numpy as np
import pytest

from conftest import flower_or_skip


@pytest.fixture(scope="module")
def fa():
    flower_or_skip()
    import flower_app

    return flower_app


def seed_of(name: str) -> int:
    seed = int(os.environ.get("SECAGG_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
    print(f"{name}: seed {seed} (rerun with SECAGG_TEST_SEED={seed})")
    return seed


def flat(parameters):
    from flwr.common import parameters_to_ndarrays

    return np.concatenate([a.reshape(-1) for a in parameters_to_ndarrays(parameters)])


def check_noise(errors, references, events, d):
    """The released means' errors against the noise the events report: the mean square
    error per coordinate, pooled over the rounds, lies within 5 sampling standard
    deviations of the band the events give (every included node's noise, plus its
    rounding, between 0 and w²/4 per coordinate). The rotation is orthogonal (d a power
    of two), so the error's squared norm is the integer noise's over (s W)², and the noise
    is isotropic: the released mean's coefficient along the clipped mean (1 when the
    decoding is right) is off by at most 5 standard deviations of the noise along it."""
    hi = np.mean([e.mean_noise_std ** 2 for e in events])
    coef = [float(np.dot(e + r, r) / np.dot(r, r)) for e, r in zip(errors, references)]
    sd = math.sqrt(np.mean([hi / np.dot(r, r) for r in references]) / len(references))
    print(f"coefficient along the clipped mean {np.mean(coef):.4f} (sd {sd:.3g})")
    assert abs(np.mean(coef) - 1.0) <= 5 * sd, (coef, sd)
    mse = float(np.mean([np.mean(np.square(e)) for e in errors]))
    lo = np.mean([e.inputs_in_sum * e.noise_per_client / (e.scale * e.total_weight) ** 2
                  for e in events])
    spread = math.sqrt(2.0 / (d * len(errors)))
    print(f"mse {mse:.6g}, band [{lo:.6g}, {hi:.6g}], relative sd {spread:.3g}")
    assert lo * (1 - 5 * spread) <= mse <= hi * (1 + 5 * spread), (mse, lo, hi)


def cli_plan(**kw):
    """What `secagg plan` prints for a DP request: (ε spent, μ_c, s, h)."""
    from test_flower import secagg_bin

    args = [secagg_bin(), "plan"]
    for k, v in kw.items():
        args += [f"--{k.replace('_', '-')}", str(v)]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    eps = float(re.search(r"ε spent: ([0-9.]+) at", out).group(1))
    mu = float(re.search(r"μ_c = ([0-9.]+)", out).group(1))
    scale = float(re.search(r"scale s = ([0-9.]+)", out).group(1))
    # "h = T - c = 4 - 1 = 3" (or "h = k - t + 2 = ..."), worded around in either order.
    h = int(re.search(r"h = (?:T - c|k - t \+ 2) = [-+\d ]*?= (\d+)", out).group(1))
    return eps, mu, scale, h


def test_legacy_workflow_releases_noisy_means_and_accounts_every_round(fa):
    from secagg import DpSpec, plan_dp

    seed = seed_of("legacy dp")
    nodes, params, rounds, eps = 8, 256, 3, 8.0
    spec = DpSpec(epsilon=eps, delta=1e-5, clip=1.0, rounds=rounds)
    server_app, client_app = fa.make_dp_apps(nodes, params, rounds, seed, spec)
    cap = fa.simulate(server_app, client_app, nodes)
    events = cap["events"]
    workflow = cap["workflow"]
    # One event per released round, handed to the app and kept on the workflow.
    assert [e.round for e in events] == [1, 2, 3]
    assert workflow.privacy_events == events
    assert [r["round"] for r in cap["rounds"]] == [1, 2, 3]
    # ε grows over the rounds, and after the last equals what the plan spends over them:
    # the binding's plan and `secagg plan`, each asked independently (h = T − c = 4 − 1:
    # t = nodes // 2, one colluder by default, an honest-but-curious server).
    cumulative = [e.cumulative_epsilon for e in events]
    assert cumulative[0] < cumulative[1] < cumulative[2], cumulative
    assert all(abs(e.epsilon - events[0].epsilon) < 1e-12 for e in events)
    assert workflow.privacy_spent == cumulative[-1]
    plan = plan_dp(params, nodes, 3, epsilon=eps, delta=1e-5, rounds=rounds, clip=1.0,
                   survivors=nodes - math.ceil(0.1 * nodes))
    assert abs(cumulative[-1] - plan.epsilon) < 1e-9 and plan.epsilon <= eps
    assert events[0].planned_epsilon == plan.epsilon and events[0].planned_rounds == rounds
    one = plan_dp(params, nodes, 3, noise=plan.noise_std / 1.0, delta=1e-5, rounds=1,
                  clip=1.0, bits=plan.bits)
    assert abs(one.epsilon - events[0].epsilon) < 1e-3 * events[0].epsilon
    cli_eps, cli_mu, cli_scale, cli_h = cli_plan(
        clients=nodes, neighbors=nodes - 1, threshold=nodes // 2, colluders=1,
        adversary="curious", epsilon=eps, delta=1e-5, rounds=rounds, clip=1.0, params=params)
    assert cli_h == events[0].honest_survivors == 3
    assert abs(cli_eps - cumulative[-1]) <= 5e-5
    assert abs(cli_mu - events[0].noise_per_client) <= 1e-6 * cli_mu
    assert abs(cli_scale - events[0].scale) <= 1e-6 * cli_scale
    for e in events:
        assert e.mechanism == "skellam" and e.inputs_in_sum == nodes
        assert e.honest_survivors == 3 and e.clip == 1.0 and e.delta == 1e-5
        assert abs(e.central_variance - 3 * e.noise_per_client) < 1e-6 * e.central_variance
        assert len(e.rdp) > 200
    # Each aggregate is the model sent plus the mean of the clipped updates, within the
    # noise the events report.
    reference = np.mean([fa.clipped(fa.dp_delta(seed, p, params), 1.0) for p in range(nodes)],
                        axis=0)
    errors = [flat(r["parameters"]) - flat(r["sent"]) - reference for r in cap["rounds"]]
    check_noise(errors, [reference] * rounds, events, params)


def test_message_api_secaggplus_with_dp(fa):
    from secagg import PrivacyEvent
    from secagg.dp import INTEGER_ORDERS

    seed = seed_of("message api dp")
    nodes, params = 6, 2048
    server_app = fa.make_message_server(
        nodes, phases=(("FedAvg", 3, {}),), params=params, evaluate=False,
        dp={"noise": 0.02, "delta": 1e-6, "clip": 1.0, "rounds": 3})
    cap = fa.simulate(server_app, fa.make_message_client(seed), nodes)
    secure = cap["secure"]
    events = secure.privacy_events
    assert [e.round for e in events] == [1, 2, 3]
    cumulative = [e.cumulative_epsilon for e in events]
    assert cumulative[0] < cumulative[1] < cumulative[2], cumulative
    assert secure.privacy_spent == cumulative[-1]
    assert all(isinstance(e, PrivacyEvent) for e in events)
    for r, e in zip(cap["rounds"], events):
        assert r["stats"].privacy == e
    # The noise multiplier z asks for central σ = z c on the sum, from the honest alone.
    assert abs(events[0].noise_std - 0.02) < 0.1 * 0.02
    errors, references = [], []
    for r in cap["rounds"]:
        sent, result = r["sent"], r["result"]
        steps = []
        for p in range(nodes):
            update = fa.message_update(seed, p, 0, r["round"], sent)
            steps.append(fa.clipped(np.concatenate(
                [(update[k].astype(np.float32) - sent[k]).reshape(-1) for k in sent]), 1.0))
        got = np.concatenate([(result[k].astype(np.float64) - sent[k]).reshape(-1)
                              for k in sent])
        references.append(np.mean(steps, axis=0))
        errors.append(got - references[-1])
    check_noise(errors, references, events, params)
    # Flower's accountant form: a Gaussian event whose RDP bounds the round's at every
    # integer order it is composed at.
    flower = events[0].to_flower()
    z = flower.noise_multiplier
    assert flower.sample_size == nodes == flower.population_size
    curve = dict(events[0].rdp)
    for alpha, value in curve.items():
        assert alpha / (2 * z * z) >= value * (1 - 1e-12), (alpha, value, z)
    naive = math.sqrt(events[0].central_variance) / events[0].l2_sensitivity
    assert 0.9 * naive < z <= naive
    assert all(float(a).is_integer() and a >= 2 for a in INTEGER_ORDERS)


def test_a_node_refuses_noise_that_assumes_more_honest_survivors(fa):
    # The server assumes no colluder, so it sizes the noise for h = T = 4 honest
    # survivors; every node's policy allows one colluder (and 3 honest at least), so it
    # guarantees 3 and refuses at setup: no sum, no event, no panic.
    from secagg import DpSpec

    seed = seed_of("refusal")
    nodes, params = 8, 64
    server_app, client_app = fa.make_dp_apps(
        nodes, params, 1, seed, DpSpec(epsilon=4.0, clip=1.0), colluders=0)
    cap = fa.simulate(server_app, client_app, nodes)
    workflow = cap["workflow"]
    assert "rounds" not in cap  # the strategy aggregated nothing
    assert cap["events"] == [] and workflow.privacy_events == []
    failed = workflow.last_round.failed
    assert len(failed) == nodes and {f["stage"] for f in failed} == {"setup"}
    for f in failed:
        assert "PolicyError" in f["reason"] and "sized for 4" in f["reason"], f["reason"]
        assert "PanicException" not in f["reason"]


def test_enrolled_nodes_size_the_noise_for_k_minus_t_plus_2(fa, tmp_path, monkeypatch):
    # Against a semi-malicious server (enrolled nodes) a released sum may hold as few as
    # k − t + 2 honest inputs: with k = 6 and t = 5 that is 3, below T − c = 5 − 1, and the
    # noise is sized for 3; the nodes' policies (which guarantee 3) accept it.
    from test_flower import make_pki

    from secagg import DpSpec

    seed = seed_of("enrolled dp")
    make_pki(tmp_path, monkeypatch, "0..10")
    nodes, params = 10, 256
    ca = f"{tmp_path}/ca/ca.pub"
    server_app, client_app = fa.make_dp_apps(
        nodes, params, 1, seed, DpSpec(noise=0.05, clip=1.0), num_shares=7, threshold=5,
        mod_kwargs={"identity": fa.enrolled_files, "ca": ca, "min_cohort": 3}, ca=ca,
        colluders=1)
    cap = fa.simulate(server_app, client_app, nodes)
    stats = cap["workflow"].last_round
    assert (stats.neighbors, stats.threshold) == (6, 5), (stats.neighbors, stats.threshold)
    [event] = cap["events"]
    assert event.honest_survivors == min(5 - 1, 6 - 5 + 2) == 3
    assert event.inputs_in_sum == nodes == stats.included
    [r] = cap["rounds"]
    reference = np.mean([fa.clipped(fa.dp_delta(seed, p, params), 1.0) for p in range(nodes)],
                        axis=0)
    error = flat(r["parameters"]) - flat(r["sent"]) - reference
    check_noise([error], [reference], [event], params)
