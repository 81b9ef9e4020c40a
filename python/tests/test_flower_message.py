"""secagg.flower for Flower's Message API: `SecAggPlus(strategy)` on the server and
`secaggplus_mod` on `@app.train()`, checked against an independent NumPy weighted mean.

The first group runs under Flower's own simulation engine (`flwr.simulation.run_simulation`);
the second runs the same apps in this process through `flower_app.LocalGrid` (every
message through Flower's protobuf serialisation), which is fast enough to try every
strategy, every attack and every malformed reply."""

import logging

import numpy as np
import pytest

from conftest import flower_or_skip


@pytest.fixture(scope="module")
def fa():
    flower_or_skip()
    import flower_app

    return flower_app


@pytest.fixture
def seed(rng):
    """The seed every node of the app draws its updates and weights from (printed by rng)."""
    return int(rng.integers(0, 2**31))


def step_of(stats, clip=8.0):
    """One quantization step of a round: the most a secure mean may differ from the exact
    one, beside the rounding to the model's dtype."""
    return 2 * clip / (stats.levels - 1)


def assert_close(got, want, tol, what="", terms=1, rounded=None):
    """Every array of `got` (any float dtype) within `tol` of `want` (float64), plus
    `terms` roundings to its dtype: FedAvg sums the replies' (identical) arrays, weighted,
    in the arrays' dtype, one rounding a reply (in float16 they add up to a few 1e-4).
    `rounded` (arrays by key, `rounded_in_round`): the values whose roundings, in their
    own dtypes, count instead — what the strategy rounds, where the result may be far
    smaller, or in another dtype (FedAdam and its kin compute in float64 from the mean
    they are handed in the model's dtypes, and move by less than that mean does)."""
    assert set(got) == set(want), (what, sorted(got), sorted(want))
    for k in want:
        g = got[k].astype(np.float64)
        assert g.shape == want[k].shape, (what, k, g.shape, want[k].shape)
        r = want[k] if rounded is None else rounded[k]
        eps = np.finfo((got if rounded is None else rounded)[k].dtype).eps
        bound = tol + terms * eps * np.abs(r.astype(np.float64))
        worst = float(np.max(np.abs(g - want[k]) - bound))
        assert worst <= 0, (what, k, worst, float(np.max(np.abs(g - want[k]))), tol)


def rounded_in_round(fa, seed, partitions, phase, server_round, model):
    """What a strategy rounds in a round, in the model's dtypes, by magnitude: per value,
    the largest of the model sent, the replies it sums and their mean (a rounding in
    float16 moves a value by up to eps·|value|, however small the result)."""
    values = [fa.message_update(seed, p, phase, server_round, model) for p in partitions]
    values += [model, fa.message_mean(seed, partitions, phase, server_round, model)]
    return {k: np.max([np.abs(v[k].astype(np.float64)) for v in values], axis=0)
            .astype(a.dtype) for k, a in model.items()}


def rounds_terms(stats):
    """Roundings to the model's dtype in a round's result: one per reply FedAvg sums, one
    for the cast of the secure mean."""
    return stats.included + 1


def adam_step(current, mean, server_round, eta, tau, beta_1=0.9, beta_2=0.99):
    """FedAdam's first step, written out in float64 (the reference for its round 1)."""
    out = {}
    for k, x in current.items():
        x = x.astype(np.float64)
        delta = mean[k] - x
        m = (1 - beta_1) * delta
        v = (1 - beta_2) * delta**2
        t = server_round + 1.0
        eta_norm = eta * np.sqrt(1 - beta_2**t) / (1 - beta_1**t)
        out[k] = x + eta_norm * m / (np.sqrt(v) + tau)
    return out


def weighted(values, weights):
    w = np.array(weights, dtype=np.float64)
    return float(np.dot(np.array(values, dtype=np.float64), w) / w.sum())


# --------------------------------------------------------------------------------------
# Under Flower's simulation engine
# --------------------------------------------------------------------------------------


def simulate(fa, nodes, server_app, client_app):
    return fa.simulate(server_app, client_app, nodes)


def test_ten_nodes_three_rounds_of_fedavg_and_one_of_fedadam(fa, seed):
    # A Message-API app of 10 nodes, one of which fails in train every round: three rounds
    # of FedAvg, then one of FedAdam from FedAvg's model, each wrapped in SecAggPlus; the
    # nodes' train function runs secaggplus_mod. Each round's model is checked against the
    # NumPy weighted mean of the nine survivors' updates of the model they were sent.
    nodes, fail = 10, 3
    adam = {"eta": 0.1, "tau": 0.1}
    cap = simulate(
        fa, nodes,
        fa.make_message_server(nodes, phases=(("FedAvg", 3, {}), ("FedAdam", 1, adam))),
        fa.make_message_client(seed, fail=fail, mod_at="train"),
    )
    survivors = [p for p in range(nodes) if p != fail]
    weights = [fa.message_weight(seed, p) for p in survivors]
    assert [(r["phase"], r["round"]) for r in cap["rounds"]] == [(0, 1), (0, 2), (0, 3), (1, 1)]
    for r in cap["rounds"]:
        stats = r["stats"]
        assert stats.included == 9 and stats.clients == 10, stats
        assert [f["stage"] for f in stats.failed] == ["masked-input"], stats.failed
        mean = fa.message_mean(seed, survivors, r["phase"], r["round"], r["sent"])
        if r["phase"] == 0:
            # FedAvg keeps the model's dtypes and shapes (float32, float64, float16).
            assert {k: (a.dtype.name, a.shape) for k, a in r["result"].items()} == {
                k: (dtype, shape) for k, shape, dtype in fa.MODEL}
            assert_close(r["result"], mean, step_of(stats), r["round"], rounds_terms(stats))
        else:
            # FedAdam moves at most eta_norm·(1 − β1)/tau < 1 times the mean's error: one
            # step, and the roundings of the mean it is handed in the model's dtypes (it
            # computes in float64, so those are the roundings that count).
            want = adam_step(r["sent"], mean, r["round"], **adam)
            assert_close(r["result"], want, step_of(stats), "FedAdam", rounds_terms(stats),
                         rounded=rounded_in_round(fa, seed, survivors, 1, 1, r["sent"]))
    fedavg, fedadam = cap["results"]
    # Train metrics are the survivors' own, averaged by the strategy; evaluation is plain.
    for phase, result, rounds in ((0, fedavg, 3), (1, fedadam, 1)):
        assert sorted(result.train_metrics_clientapp) == list(range(1, rounds + 1))
        for r in range(1, rounds + 1):
            loss = weighted([fa.message_loss(seed, p, phase, r) for p in survivors], weights)
            assert np.isclose(result.train_metrics_clientapp[r]["loss"], loss, rtol=1e-9)
            evaluated = weighted(list(range(nodes)),
                                 [fa.message_weight(seed, p) for p in range(nodes)])
            assert np.isclose(result.evaluate_metrics_clientapp[r]["eval-loss"], evaluated)
    assert_close(fa.to_numpy(fedadam.arrays), {k: a.astype(np.float64) for k, a in
                                               cap["rounds"][-1]["result"].items()}, 0.0)


def test_enrolled_nodes_run_a_message_api_round(fa, seed, tmp_path, monkeypatch):
    # Enrolled nodes (certificates bound to their node ids) and the mod on the whole
    # ClientApp (ClientApp(mods=[...])): the protocol that withstands a semi-malicious
    # server, one node failing in train.
    from test_flower import make_pki

    make_pki(tmp_path, monkeypatch, "0..8")
    nodes, fail = 8, 5
    ca = str(tmp_path / "ca" / "ca.pub")
    cap = simulate(
        fa, nodes,
        fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),), evaluate=False, ca=ca),
        fa.make_message_client(seed, fail=fail, mod="enrolled", mod_at="app"),
    )
    [r] = cap["rounds"]
    stats = r["stats"]
    survivors = [p for p in range(nodes) if p != fail]
    assert stats.included == 7, stats
    assert cap["secure"].workflow.adversary == "semi-malicious"
    # Each node took part under its certificate's id: partition p holds client-p's files.
    assert sorted(cap["secure"].workflow._client_of_node.values()) == list(range(nodes))
    assert_close(r["result"], fa.message_mean(seed, survivors, 0, 1, r["sent"]), step_of(stats),
                 terms=rounds_terms(stats))


def test_the_planner_widens_b_to_keep_the_levels_asked_for(fa, seed):
    # Flower's defaults (clipping_range 8, quantization_range 2^22, max_weight 1000) over
    # 10 nodes: 10 x (2^22 - 1) x 1000 needs 36 bits, so the round runs at b = 36 with
    # the 2^22 levels kept (a 2^32 modulus would lower them to 2^18, a step 16 times
    # larger). The mean of the 9 survivors is within one step of 2^22 levels of the NumPy
    # weighted mean, and the masked inputs travel packed at 36 bits a value.
    nodes, fail, params = 10, 3, 4000
    cap = simulate(
        fa, nodes,
        fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),), params=params,
                               evaluate=False),
        fa.make_message_client(seed, fail=fail),
    )
    [r] = cap["rounds"]
    stats = r["stats"]
    assert (stats.bits, stats.levels, stats.included) == (36, 2**22, 9), stats
    survivors = [p for p in range(nodes) if p != fail]
    assert_close(r["result"], fa.message_mean(seed, survivors, 0, 1, r["sent"]),
                 step_of(stats), terms=rounds_terms(stats))
    packed = -(-(params + 1) * 36 // 8)  # the values and the weight, at 36 bits
    per_client = stats.bytes_up["masked-input"] / 9
    assert packed <= per_client < packed + 512, (per_client, packed)


def test_the_wrapper_with_a_plain_client_app_stops_at_setup(fa, seed):
    from secagg.flower import MismatchError

    with pytest.raises(MismatchError, match=r"this server runs secagg\.flower\.SecAggPlus, but "
                                            r"node \d+ runs no secagg mod") as e:
        simulate(fa, 4, fa.make_message_server(4), fa.make_message_client(seed, mod=None))
    assert "stopping at the setup stage" in str(e.value)


def test_the_mod_with_an_unwrapped_strategy_yields_no_model(fa, seed):
    cap = simulate(
        fa, 4,
        fa.make_message_server(4, phases=(("FedAvg", 1, {}),), secure=False,
                               wrap_grid=fa.RecordingGrid),
        fa.make_message_client(seed),
    )
    [result] = cap["results"]
    assert len(result.arrays) == 0 and result.train_metrics_clientapp == {}, result
    replies = cap["train_replies"]
    assert len(replies) == 4
    for r in replies:
        assert r["error"] is not None and not r["arrays"], r
        assert "MismatchError" in r["error"] and "this node runs secagg.flower.secaggplus_mod" in \
            r["error"] and "wrap it: secagg.flower.SecAggPlus(strategy)" in r["error"], r


@pytest.mark.parametrize("direction, named", [
    ("in", r"secagg's mod of another version \(it says: .*server speaks 'secagg-flower/9', "
           r"this node 'secagg-flower/4'"),
    ("out", r"secagg's mod of another version \('secagg-flower/2'\)"),
])
def test_different_versions_stop_at_setup(fa, seed, direction, named):
    # "in": the nodes' mod is of another version than the server's, and says so (under
    # Flower's simulation engine); "out": a node answers in another version, and the
    # server says so (in this process).
    from secagg.flower import MismatchError

    apps = (fa.make_message_server(4), fa.make_message_client(
        seed, wrap_mod=fa.message_protocol(
            "secagg-flower/9" if direction == "in" else "secagg-flower/2", direction)))
    with pytest.raises(MismatchError, match="this server runs secagg.flower.SecAggPlus, but node "
                                            r"\d+ runs " + named):
        if direction == "in":
            simulate(fa, 4, *apps)
        else:
            local(fa, 4, *apps)


# --------------------------------------------------------------------------------------
# In this process (flower_app.LocalGrid)
# --------------------------------------------------------------------------------------


def local(fa, nodes, server_app, client_app):
    return fa.run_local(server_app, fa.local_grid(client_app, nodes))


STRATEGIES = [
    ("FedAvg", {}),
    ("FedProx", {"proximal_mu": 0.1}),
    ("FedAvgM", {"server_learning_rate": 0.7, "server_momentum": 0.5}),
    ("FedAdam", {"eta": 0.1, "tau": 0.1}),
    ("FedYogi", {"eta": 0.1, "tau": 0.1}),
    ("FedAdagrad", {"eta": 0.1, "tau": 0.1}),
]


@pytest.mark.parametrize("name, kwargs", STRATEGIES, ids=[s for s, _ in STRATEGIES])
def test_the_result_is_the_strategys_own(fa, seed, name, kwargs):
    # The same app with and without secure aggregation: SecAggPlus(strategy).start returns
    # the Result the strategy's own start returns, up to the quantization of the mean
    # (each of these strategies moves at most once the mean's error, with these settings).
    nodes, phases = 6, ((name, 2, kwargs),)
    plain = local(fa, nodes, fa.make_message_server(nodes, phases=phases, secure=False),
                  fa.make_message_client(seed, fail=4, mod=None))
    plain_rounds, [plain_result] = list(plain["rounds"]), plain["results"]
    secure = local(fa, nodes, fa.make_message_server(nodes, phases=phases),
                   fa.make_message_client(seed, fail=4))
    [secure_result] = secure["results"]
    assert type(secure_result) is type(plain_result)
    # Both sides round (FedAvg sums in the arrays' dtypes, float16 included), and round 2
    # starts from round 1's slightly different models: allow a few errors per round.
    assert len(secure["rounds"]) == len(plain_rounds) == 2
    # The roundings count at the magnitude of what is rounded (the float16 replies and
    # models), which the result may be far below: where the two means of a round fall on
    # neighbouring float16 values, the next round carries that difference, in the dtypes
    # of the first round's model even where the strategy's result is float64 (FedAdam).
    survivors = [p for p in range(nodes) if p != 4]
    carried = {}
    for r, (p, s) in enumerate(zip(plain_rounds, secure["rounds"]), start=1):
        want = {k: a.astype(np.float64) for k, a in p["result"].items()}
        now = rounded_in_round(fa, seed, survivors, 0, r, p["sent"])
        carried = {k: np.maximum(np.abs(now[k].astype(np.float64)),
                                 carried[k].astype(np.float64) if carried else 0.0)
                   .astype((carried or now)[k].dtype) for k in now}
        assert_close(s["result"], want, 3 * r * step_of(s["stats"]), (name, r),
                     terms=3 * r * rounds_terms(s["stats"]), rounded=carried)
    # The metrics are the same numbers (summed in another order: the replies come sorted).
    for kind in ("train_metrics_clientapp", "evaluate_metrics_clientapp"):
        mine, theirs = getattr(secure_result, kind), getattr(plain_result, kind)
        assert mine.keys() == theirs.keys() and len(mine) == 2, (kind, mine, theirs)
        for r, metrics in theirs.items():
            assert mine[r].keys() == metrics.keys()
            for key, value in metrics.items():
                assert np.isclose(mine[r][key], value, rtol=1e-12), (kind, r, key)


def test_the_weight_is_the_strategys_weighted_by_key(fa, seed):
    # FedAvg(weighted_by_key="samples"): the nodes mask their update weighted by the metric
    # "samples", as FedAvg would average it; the key is bound to the round context (see
    # test_a_node_sent_other_instructions_refuses_to_train).
    nodes = 5
    cap = local(fa, nodes, fa.make_message_server(
        nodes, phases=(("FedAvg", 1, {"weighted_by_key": "samples"}),), evaluate=False),
        fa.make_message_client(seed, fail=0, weight_key="samples"))
    [r] = cap["rounds"]
    assert r["stats"].included == 4
    assert_close(r["result"], fa.message_mean(seed, [1, 2, 3, 4], 0, 1, r["sent"]),
                 step_of(r["stats"]), terms=rounds_terms(r["stats"]))
    # Nodes whose weight is under another key leave the round, named.
    cap = local(fa, nodes, fa.make_message_server(
        nodes, phases=(("FedAvg", 1, {"weighted_by_key": "samples"}),), evaluate=False),
        fa.make_message_client(seed))
    [r] = cap["rounds"]
    assert r["stats"].included == 0
    assert all("has no 'samples'" in f["reason"] for f in r["stats"].failed), r["stats"].failed


def test_strategies_that_need_individual_updates_are_refused(fa):
    import flwr.serverapp.strategy as strategies

    from secagg.flower import SecAggPlus, UnsupportedStrategyError

    for name, why in [("Krum", "distance to the others"), ("MultiKrum", "distance to the others"),
                      ("Bulyan", "distances to each other"), ("FedMedian", "median"),
                      ("FedTrimmedAvg", "largest and smallest"), ("QFedAvg", "its own loss"),
                      ("FedXgbBagging", "trees"), ("FedXgbCyclic", "one node at a time")]:
        with pytest.raises(UnsupportedStrategyError, match=why) as e:
            SecAggPlus(getattr(strategies, name)(
                **({"client_learning_rate": 0.1} if name == "QFedAvg" else {})))
        assert f"cannot wrap {name}" in str(e.value) and "weighted mean" in str(e.value)
    dp = strategies.DifferentialPrivacyServerSideFixedClipping(
        strategies.FedAvg(), noise_multiplier=1.0, clipping_norm=1.0, num_sampled_clients=3)
    with pytest.raises(UnsupportedStrategyError, match="it is not a FedAvg"):
        SecAggPlus(dp)
    for name, _ in STRATEGIES:
        assert SecAggPlus(getattr(strategies, name)()).strategy is not None


def test_a_subclass_that_overrides_aggregate_train_needs_consent(fa, seed):
    from flwr.serverapp.strategy import FedAvg

    from secagg.flower import SecAggPlus, UnsupportedStrategyError

    class Logging(FedAvg):
        def aggregate_train(self, server_round, replies):
            replies = list(replies)
            self.seen = [r.has_error() for r in replies]
            return super().aggregate_train(server_round, replies)

    with pytest.raises(UnsupportedStrategyError, match="Logging overrides aggregate_train"):
        SecAggPlus(Logging())
    strategy = Logging(fraction_evaluate=0.0, min_available_nodes=5, min_train_nodes=5)
    secure = SecAggPlus(strategy, assume_weighted_mean=True)
    grid = fa.local_grid(fa.make_message_client(seed, fail=1), 5)
    initial = fa.initial_model(fa.MODEL)
    from flwr.app import Array, ArrayRecord

    result = secure.start(grid=grid, initial_arrays=ArrayRecord(
        {k: Array(a) for k, a in initial.items()}), num_rounds=1)
    # Four replies carry the secure mean; the failing node's is an error reply.
    assert sorted(strategy.seen) == [False, False, False, False, True]
    mean = fa.message_mean(seed, [0, 2, 3, 4], 0, 1, initial)
    assert_close(fa.to_numpy(result.arrays), mean, step_of(secure.last_round),
                 terms=rounds_terms(secure.last_round))


@pytest.mark.parametrize("what, named", [
    ("arrays", "the model arrays this node received"),
    ("config", "the config this node received"),
    ("weight_key", "the weight metric"),
])
def test_a_node_sent_other_instructions_refuses_to_train(fa, seed, what, named):
    # At the masked-input stage the server sends one node another model, another config,
    # or another metric to weigh its update by (one that would make it weigh 0 while the
    # others weigh their examples, say): that node refuses; the round completes without it.
    grids = []

    def tampering(grid):
        grids.append(fa.TamperingGrid(grid, what))
        return grids[-1]

    nodes = 6
    cap = local(fa, nodes, fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                  wrap_grid=tampering, evaluate=False),
                fa.make_message_client(seed))
    [r] = cap["rounds"]
    stats = r["stats"]
    [target] = grids[0].targeted
    assert [(f["node"], f["stage"]) for f in stats.failed] == [(target, "masked-input")]
    reason = stats.failed[0]["reason"]
    assert "FitInstructionsError" in reason and named in reason, reason
    survivors = [p for p in range(nodes) if 1_000_003 * (p + 1) != target]
    assert stats.included == 5
    assert_close(r["result"], fa.message_mean(seed, survivors, 0, 1, r["sent"]), step_of(stats),
                 terms=rounds_terms(stats))


def spoilers():
    """Ways an app's train reply can be unfit for the round, and the error that names it."""
    from flwr.app import Array, ArrayRecord, MetricRecord

    def drop_key(c):
        del c["arrays"]["fc.bias"]

    def extra_key(c):
        c["arrays"]["extra"] = Array(np.zeros(3, dtype=np.float32))

    def reshape(c):
        c["arrays"]["conv.weight"] = Array(c["arrays"]["conv.weight"].numpy().reshape(4, 9))

    def integer(c):
        c["arrays"]["conv.bias"] = Array(np.arange(4, dtype=np.int64))

    def two_records(c):
        c["more"] = ArrayRecord({"x": Array(np.zeros(2, dtype=np.float32))})

    def nan(c):
        a = c["arrays"]["fc.weight"].numpy().copy()
        a[1, 2] = np.nan
        c["arrays"]["fc.weight"] = Array(a)

    def fractional_weight(c):
        c["metrics"]["num-examples"] = 12.5

    def no_weight(c):
        del c["metrics"]["num-examples"]

    def heavy(c):
        c["metrics"]["num-examples"] = 5000

    def two_metrics(c):
        c["other"] = MetricRecord({"num-examples": 3})

    return [
        (drop_key, "missing ['fc.bias']"),
        (extra_key, "not in the model ['extra']"),
        (reshape, "has shape (4, 9), the model's (4, 3, 3)"),
        (integer, "is int64: secure aggregation sums float arrays"),
        (two_records, "carries 2 ArrayRecords"),
        (nan, "NaN or infinite"),
        (fractional_weight, "= 12.5 is not a whole number"),
        (no_weight, "has no 'num-examples'"),
        (heavy, "= 5000 is outside [0, max_weight = 1000]"),
        (two_metrics, "carries 2 MetricRecords"),
    ]


@pytest.mark.parametrize("spoil, named", spoilers(), ids=[s.__name__ for s, _ in spoilers()])
def test_an_unfit_train_reply_stays_on_its_node(fa, seed, spoil, named):
    # One node's app returns what the round cannot mask: its mod refuses with a
    # TrainReplyError that names what is wrong, nothing of the update leaves the node, and
    # the round completes for the others.
    nodes, bad = 5, 2

    def spoiled(partition, content):
        if partition == bad:
            spoil(content)

    cap = local(fa, nodes, fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                  evaluate=False, wrap_grid=fa.RecordingGrid),
                fa.make_message_client(seed, spoil=spoiled))
    [r] = cap["rounds"]
    stats = r["stats"]
    assert [(f["node"], f["stage"]) for f in stats.failed] == [(1_000_003 * 3, "masked-input")]
    reason = stats.failed[0]["reason"]
    assert "TrainReplyError" in reason and named in reason, reason
    # Every reply that carried content carried no array (all went masked).
    assert all(not reply["arrays"] or reply["arrays"] == ["arrays"]
               for reply in cap["train_replies"] if reply["error"] is None)
    survivors = [p for p in range(nodes) if p != bad]
    assert stats.included == 4
    assert_close(r["result"], fa.message_mean(seed, survivors, 0, 1, r["sent"]), step_of(stats),
                 terms=rounds_terms(stats))


def test_a_reply_with_arrays_in_the_clear_is_refused_by_the_server(fa, seed):
    # A node whose reply carries its arrays (a broken or hostile mod) is refused by the
    # server: the strategy never sees a node's own update.
    from flwr.app import Array, ArrayRecord

    def leaky(mod):
        def leak(msg, ctxt, call_next):
            stage = fa.stage_of(msg)
            reply = mod(msg, ctxt, call_next)
            if int(ctxt.node_config["partition-id"]) == 1 and stage == "masked-input" and \
                    not reply.has_error():
                reply.content["arrays"] = ArrayRecord({"w": Array(np.ones(3, dtype=np.float32))})
            return reply

        return leak

    nodes = 5
    cap = local(fa, nodes, fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                  evaluate=False),
                fa.make_message_client(seed, wrap_mod=leaky))
    [r] = cap["rounds"]
    stats = r["stats"]
    assert [f["stage"] for f in stats.failed] == ["masked-input"], stats.failed
    assert "one empty ArrayRecord" in stats.failed[0]["reason"]
    assert stats.included == 4
    assert_close(r["result"], fa.message_mean(seed, [0, 2, 3, 4], 0, 1, r["sent"]),
                 step_of(stats), terms=rounds_terms(stats))


@pytest.mark.parametrize("stated, refused", [
    (1000, False), (0, False), (-1000, True), (10**12, True), (float("inf"), True),
    (2.5, True),
])
def test_a_node_that_states_another_weight_cannot_spoil_the_mean(fa, seed, caplog, stated,
                                                                 refused):
    # A node states another weight in the clear than it masked with. A whole number within
    # [0, max_weight] cannot move the secure mean (the server weighs by the masked weights,
    # and the strategy averages identical arrays): the server warns. Anything else (one
    # that would make the strategy's weighted average of the replies blow up) is refused,
    # and the node leaves the round before its masked input counts.
    nodes = 5
    with caplog.at_level(logging.WARNING, logger="secagg.flower"):
        cap = local(fa, nodes, fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                      evaluate=False),
                    fa.make_message_client(seed, wrap_mod=fa.lying_weight({0}, stated)))
    [r] = cap["rounds"]
    stats = r["stats"]
    survivors = range(1, nodes) if refused else range(nodes)
    assert stats.included == len(survivors), stats
    assert_close(r["result"], fa.message_mean(seed, survivors, 0, 1, r["sent"]),
                 step_of(stats), terms=rounds_terms(stats))
    if refused:
        assert [(f["stage"], "TrainReplyError" in f["reason"]) for f in stats.failed] == [
            ("masked-input", True)], stats.failed
    else:
        assert any("their masked weights add up to" in rec.getMessage()
                   for rec in caplog.records)


def test_stated_weights_that_add_up_to_zero_give_no_result(fa, seed):
    # Every node states 0: the strategy would divide by zero; the round gives no result
    # (every reply an error that says why) instead of a crash.
    nodes = 4
    cap = local(fa, nodes, fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                  evaluate=False, wrap_grid=fa.RecordingGrid),
                fa.make_message_client(seed, wrap_mod=fa.lying_weight(set(range(nodes)), 0)))
    [result] = cap["results"]
    assert result.train_metrics_clientapp == {} and len(result.arrays) == 0
    assert cap["secure"].last_round.included == nodes


def test_an_integer_array_in_the_model_is_refused_before_any_round(fa, seed):
    from flwr.app import Array, ArrayRecord

    from secagg.flower import ModelLayoutError, SecAggPlus

    grid = fa.local_grid(fa.make_message_client(seed), 4)
    secure = SecAggPlus(fa.make_strategy("FedAvg", 4, evaluate=False))
    model = {k: Array(a) for k, a in fa.initial_model(fa.MODEL).items()}
    model["bn.num_batches_tracked"] = Array(np.array([3], dtype=np.int64))
    with pytest.raises(ModelLayoutError, match="'bn.num_batches_tracked' of the model is int64"):
        secure.start(grid=grid, initial_arrays=ArrayRecord(model), num_rounds=1)
    assert secure.last_round is None


@pytest.mark.parametrize("allow_remask", [False, True])
def test_a_second_start_over_the_same_model_is_refused(fa, seed, allow_remask):
    # The server starts the strategy twice from the same model and config in one run: the
    # round contexts repeat, and every node that masked an update in the first refuses the
    # second (two sums over one update give it away), unless its mod allows it.
    nodes = 4
    client = fa.make_message_client(seed, mod_kwargs={"allow_remask": allow_remask})
    grid = fa.local_grid(client, nodes)
    first = fa.run_local(fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                evaluate=False), grid)
    [r1] = first["rounds"]
    assert r1["stats"].included == nodes
    second = fa.run_local(fa.make_message_server(nodes, phases=(("FedAvg", 1, {}),),
                                                 evaluate=False), grid)
    [r2] = second["rounds"]
    if allow_remask:
        assert r2["stats"].included == nodes
        assert_close(r2["result"], fa.message_mean(seed, range(nodes), 0, 1, r2["sent"]),
                     step_of(r2["stats"]), terms=rounds_terms(r2["stats"]))
    else:
        assert r2["stats"].included == 0
        assert [f["stage"] for f in r2["stats"].failed] == ["setup"] * nodes
        assert all("RepeatedRoundError" in f["reason"] for f in r2["stats"].failed)
        [result] = second["results"]
        assert result.train_metrics_clientapp == {} and len(result.arrays) == 0


def test_the_curious_default_warns_on_the_server_and_the_nodes(fa, seed, caplog, monkeypatch):
    from secagg.flower import client as flower_client

    monkeypatch.setattr(flower_client, "_warned_curious", False)  # the mod warns once a process
    with caplog.at_level(logging.WARNING, logger="secagg.flower"):
        cap = local(fa, 4, fa.make_message_server(4, phases=(("FedAvg", 1, {}),), evaluate=False),
                    fa.make_message_client(seed))
    assert cap["rounds"][0]["stats"].included == 4
    texts = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("running the honest-but-curious protocol" in t and "give SecAggPlus(ca=...)" in t
               for t in texts), texts
    assert any("this node runs the honest-but-curious protocol" in t for t in texts), texts


def test_fewer_than_three_nodes_get_no_round(fa, seed):
    cap = local(fa, 2, fa.make_message_server(2, phases=(("FedAvg", 1, {}),), evaluate=False,
                                              wrap_grid=fa.RecordingGrid),
                fa.make_message_client(seed))
    [result] = cap["results"]
    assert result.train_metrics_clientapp == {} and len(result.arrays) == 0
    assert cap.get("train_replies", []) == []  # no message was sent to any node
