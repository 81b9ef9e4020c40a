"""secagg.flower under Flower's own simulation engine (flwr.simulation.run_simulation)."""

import numpy as np
import pytest

from conftest import flower_or_skip


@pytest.fixture(scope="module")
def fa():
    flower_or_skip()
    import flower_app

    return flower_app


def flat(parameters):
    from flwr.common import parameters_to_ndarrays

    return np.concatenate([a.reshape(-1) for a in parameters_to_ndarrays(parameters)])


def test_ten_nodes_one_drops_at_masked_input(fa, monkeypatch):
    # No live clients kept between messages: every node is rebuilt from its snapshot in
    # its Context for every message, as on a SuperNode that starts a process per message.
    monkeypatch.setenv("SECAGG_FLOWER_LIVE_CLIENTS", "0")
    cap = fa.run("secagg", 10, fail=3)
    assert cap["results"] == 9 and cap["failures"] == 1
    got = flat(cap["parameters"])
    expected = fa.expected_mean(10, fail=3)
    stats = cap["workflow"].fit_workflow.last_round
    assert stats.included == 9
    # One quantization step of the round (clipping_range 8, the levels it used).
    step = 2 * 8.0 / (stats.levels - 1)
    assert np.max(np.abs(got - expected)) < step, (got, expected)
    # Uploads are packed at b bits: the masked-input frames hold about m·b/8 bytes each.
    per_client = stats.bytes_up["masked-input"] / 9
    assert per_client < 27 * 8, per_client  # Flower's int64 upload would be 27 x 8 bytes + 8


def test_same_app_matches_flowers_own_secaggplus(fa):
    ours = flat(fa.run("secagg", 10, fail=3)["parameters"])
    theirs = flat(fa.run("flower", 10, fail=3)["parameters"])
    expected = fa.expected_mean(10, fail=3)
    assert np.max(np.abs(theirs - expected)) < 1e-3
    assert np.max(np.abs(ours - theirs)) < 1e-3


def test_our_workflow_with_flowers_mod_fails_at_once(fa):
    from secagg.flower import MismatchError

    with pytest.raises(MismatchError, match="Flower's own secaggplus_mod"):
        fa.run("secagg-server-flower-client", 4)


def test_flowers_workflow_with_our_mod_yields_no_sum(fa):
    cap = fa.run("flower-server-secagg-client", 4)
    # Every node refused at setup with a MismatchError: no aggregate was ever produced.
    assert "parameters" not in cap


def test_our_workflow_with_no_mod_fails_at_once(fa):
    from secagg.flower import MismatchError

    with pytest.raises(MismatchError, match="SecAggPlusWorkflow, but node .* runs no secagg mod"):
        fa.run("secagg-server-no-mod", 4)


def secagg_bin():
    import os
    import shutil

    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.environ.get("SECAGG_BIN"),
        os.path.join(here, "..", "..", "target", "release", "secagg"),
        shutil.which("secagg"),
    ):
        if candidate and os.path.exists(candidate):
            return candidate
    pytest.fail("no secagg binary (cargo build --release, or set SECAGG_BIN)")


def test_enrolled_nodes_run_the_malicious_server_protocol(fa, tmp_path, monkeypatch):
    make_pki(tmp_path, monkeypatch, "0..10")
    cap = fa.run("secagg-enrolled", 10, fail=7)
    assert cap["results"] == 9 and cap["failures"] == 1
    stats = cap["workflow"].fit_workflow.last_round
    got = flat(cap["parameters"])
    step = 2 * 8.0 / (stats.levels - 1)
    assert np.max(np.abs(got - fa.expected_mean(10, fail=7))) < step


def test_a_node_whose_snapshot_is_rolled_back_refuses(fa, monkeypatch):
    # Every node rebuilds its client from the snapshot in its Context. On one node the
    # snapshot record is put back to the one it held after setup when the masked-input
    # request arrives: the node's step store (a record of its own) says it acted since,
    # so it refuses to resume, and the round completes without it.
    monkeypatch.setenv("SECAGG_FLOWER_LIVE_CLIENTS", "0")
    cap = fa.run("secagg", 8, wrap_mod=fa.roll_back_snapshot(2, "masked-input"))
    stats = cap["workflow"].fit_workflow.last_round
    assert [f["stage"] for f in stats.failed] == ["masked-input"], stats.failed
    assert "already acted at step" in stats.failed[0]["reason"], stats.failed
    assert cap["partitions"] == [0, 1, 3, 4, 5, 6, 7]
    step = 2 * 8.0 / (stats.levels - 1)
    expected = fa.expected_mean(8, only=cap["partitions"])
    assert np.max(np.abs(flat(cap["parameters"]) - expected)) < step


@pytest.mark.parametrize("what, named", [("arrays", "model arrays"), ("config", "config")])
def test_a_node_sent_other_fit_instructions_refuses_to_train(fa, what, named):
    # A server that sends one node another model or config than the rest (to make every
    # other update known and solve the sum for one) is refused by that node, which names
    # what differs; the round completes for the others.
    grids = []

    def tampering(grid):
        grids.append(fa.TamperingGrid(grid, what))
        return grids[-1]

    cap = fa.run("secagg", 8, wrap_grid=tampering)
    assert len(grids[0].targeted) == 1
    stats = cap["workflow"].fit_workflow.last_round
    assert [(f["node"], f["stage"]) for f in stats.failed] == [
        (grids[0].targeted[0], "masked-input")
    ], stats.failed
    reason = stats.failed[0]["reason"]
    assert "FitInstructionsError" in reason and f"the {named} this node received" in reason, reason
    assert len(cap["partitions"]) == 7
    step = 2 * 8.0 / (stats.levels - 1)
    expected = fa.expected_mean(8, only=cap["partitions"])
    assert np.max(np.abs(flat(cap["parameters"]) - expected)) < step


def test_fit_digests_bind_arrays_in_order_and_typed_config(rng):
    flower_or_skip()
    from flwr.app import ArrayRecord, ConfigRecord, RecordDict

    from secagg.flower import fit_digests, round_context

    a = rng.normal(size=(3, 4)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)

    def content(arrays, config):
        return RecordDict({"fitins.parameters": ArrayRecord(arrays),
                           "fitins.config": ConfigRecord(config)})

    base = fit_digests(content([a, b], {"lr": 0.1, "epochs": 1}))
    # Same instructions, config keys in another order: the same digests.
    assert fit_digests(content([a, b], {"epochs": 1, "lr": 0.1})) == base
    # Every change is seen by the part it belongs to, and only by it.
    for arrays, config, changed in [
        ([b, a], {"lr": 0.1, "epochs": 1}, 0),            # tensor order
        ([a * 0, b], {"lr": 0.1, "epochs": 1}, 0),        # a value
        ([a.reshape(4, 3), b], {"lr": 0.1, "epochs": 1}, 0),  # a shape
        ([a, b], {"lr": 0.1, "epochs": 0}, 1),            # a config value
        ([a, b], {"lr": 0.1, "epochs": True}, 1),         # a config type (1 against True)
        ([a, b], {"lr": 0.1, "epochs": 1, "x": ""}, 1),   # a config key
    ]:
        d = fit_digests(content(arrays, config))
        assert d[changed] != base[changed] and d[1 - changed] == base[1 - changed]
    assert round_context(1, 2, *base) != round_context(1, 3, *base)
    assert round_context(1, 2, *base) != round_context(2, 2, *base)


def test_a_second_session_over_one_fit_result_is_refused(fa):
    # The server runs secure aggregation twice over the same fit instructions: every node
    # masked an update for that round context in the first session and refuses the second.
    cap = fa.run("secagg", 6, wrap_fit=fa.TwoSessions)
    first, second = cap["workflow"].fit_workflow.rounds
    assert first.included == 6 and cap["partitions"] == list(range(6))
    step = 2 * 8.0 / (first.levels - 1)
    assert np.max(np.abs(flat(cap["parameters"]) - fa.expected_mean(6))) < step
    assert second.included == 0
    assert len(second.failed) == 6, second.failed
    for f in second.failed:
        assert f["stage"] == "setup", f
        assert "RepeatedRoundError" in f["reason"] and "already masked" in f["reason"], f


def test_a_second_session_runs_when_the_node_opts_in(fa):
    cap = fa.run("secagg", 6, wrap_fit=fa.TwoSessions, mod_kwargs={"allow_remask": True})
    first, second = cap["workflow"].fit_workflow.rounds
    assert first.included == second.included == 6 and not second.failed
    step = 2 * 8.0 / (second.levels - 1)
    assert np.max(np.abs(flat(cap["parameters"]) - fa.expected_mean(6))) < step


def node_message(content, node=5, message_type="train", run_id=1):
    """A message as a node receives it (for calling a mod in this process)."""
    import time

    from flwr.app import Message
    from flwr.app.metadata import Metadata

    return Message(content=content, metadata=Metadata(
        run_id=run_id, message_id="m", src_node_id=0, dst_node_id=node, reply_to_message_id="",
        group_id="1", created_at=time.time(), ttl=3600.0, message_type=message_type,
    ))


def node_context(node=5, run_id=1):
    from flwr.app import Context, RecordDict

    return Context(run_id=run_id, node_id=node, node_config={}, state=RecordDict(), run_config={})


def test_the_curious_default_is_a_warning_on_nodes_and_server(fa, caplog, monkeypatch):
    import logging

    import secagg
    import secagg.flower as sf
    from flwr.app import ConfigRecord, RecordDict
    from secagg.flower import client as flower_client

    monkeypatch.setattr(flower_client, "_warned_curious", False)  # the mod warns once a process
    welcome = secagg.Server(secagg.RoundConfig(4, 27)).welcome()
    setup = RecordDict({sf.RECORD: ConfigRecord(
        {"protocol": sf.PROTOCOL, "stage": "setup", "welcome": welcome, "client_id": 0})})

    def no_training(msg, ctxt):
        pytest.fail("the setup stage does not train")

    with caplog.at_level(logging.INFO, logger="secagg.flower"):
        reply = sf.secaggplus_mod(node_message(setup), node_context(), no_training)
        cap = fa.run("secagg", 4)
    assert reply.content.config_records[sf.RECORD]["frames"]  # the node advertised its keys
    stats = cap["workflow"].fit_workflow.last_round
    step = 2 * 8.0 / (stats.levels - 1)
    assert np.max(np.abs(flat(cap["parameters"]) - fa.expected_mean(4))) < step
    warned = {
        who: [r for r in caplog.records if r.name == "secagg.flower" and text in r.getMessage()]
        for who, text in [("node", "this node runs the honest-but-curious protocol"),
                          ("server", "running the honest-but-curious protocol")]
    }
    for who, records in warned.items():
        assert records, f"no {who} warning"
        assert all(r.levelno == logging.WARNING for r in records), (who, records)


def test_train_action_messages_do_not_bypass_the_mod(fa):
    # In a Message-API app, "train.<action>" messages reach @app.train("<action>")
    # functions through the same mods; with secagg's mod active they are refused, so no
    # update leaves a node in the clear. Evaluate messages pass through as before.
    cap = fa.run("message-api", 3)
    for kind, why in [("train.custom", "UnguardedMessageError"), ("train", "MismatchError")]:
        replies = cap[kind]
        assert len(replies) == 3, (kind, replies)
        for r in replies:
            assert r["error"] is not None and why in r["error"], (kind, r)
            assert not r["arrays"], (kind, r)
    assert "@app.train('custom')" in cap["train.custom"][0]["error"]
    assert [r["error"] for r in cap["evaluate"]] == [None, None, None], cap["evaluate"]


def make_pki(tmp_path, monkeypatch, ids):
    import subprocess

    bin = secagg_bin()
    subprocess.run([bin, "ca", "new", "--out", str(tmp_path / "ca")], check=True, capture_output=True)
    subprocess.run(
        [bin, "enroll", "--ca-key", str(tmp_path / "ca" / "ca.key"), "--id", ids,
         "--out", str(tmp_path / "clients")],
        check=True, capture_output=True,
    )
    monkeypatch.setenv("SECAGG_TEST_PKI", str(tmp_path))


def test_a_node_cannot_take_another_nodes_certificate_id(fa, tmp_path, monkeypatch):
    # Node 4 presents node 6's certificate and id, and the network delivers its answer
    # first. Ids are not first come: it holds no key for that certificate, so it is
    # refused, and node 6 takes part under its own id; the round completes for all but 4.
    make_pki(tmp_path, monkeypatch, "0..9")
    cap = fa.run("secagg-enrolled", 9, wrap_mod=fa.impersonate(4, 6), wrap_grid=fa.RogueFirst)
    stats = cap["workflow"].fit_workflow.last_round
    assert [f["stage"] for f in stats.failed] == ["setup"], stats.failed
    assert "does not verify under the key of client 6's certificate" in stats.failed[0]["reason"]
    assert cap["partitions"] == [0, 1, 2, 3, 5, 6, 7, 8]
    assert stats.included == 8
    step = 2 * 8.0 / (stats.levels - 1)
    expected = fa.expected_mean(9, only=cap["partitions"])
    assert np.max(np.abs(flat(cap["parameters"]) - expected)) < step


def test_node_binding_checks_certificate_key_node_and_round(tmp_path, monkeypatch, rng):
    import secagg

    make_pki(tmp_path, monkeypatch, "0..3")
    ca = str(tmp_path / "ca" / "ca.pub")
    ids = [secagg.Identity.load(tmp_path / "clients" / f"client-{i}.key",
                                tmp_path / "clients" / f"client-{i}.cert", ca) for i in range(3)]
    server = secagg.Server(secagg.RoundConfig(3, 10), ca=ca)
    other = secagg.Server(secagg.RoundConfig(3, 10), ca=ca)  # another round (another id)
    node = int(rng.integers(0, 2**63))
    welcome = server.welcome()
    assert server.admit_node(node, ids[1].certificate, ids[1].bind_node(welcome, node)) == 1
    refused = [
        (ids[2].certificate, ids[1].bind_node(welcome, node)),          # another's certificate
        (ids[1].certificate, ids[1].bind_node(welcome, node + 1)),      # made for another node
        (ids[1].certificate, ids[1].bind_node(other.welcome(), node)),  # for another round
        (ids[1].certificate, bytes(rng.integers(0, 256, 64, dtype=np.uint8))),
        (ids[1].certificate, b""),
        (bytes(rng.integers(0, 256, 100, dtype=np.uint8)), ids[1].bind_node(welcome, node)),
    ]
    for certificate, signature in refused:
        with pytest.raises(secagg.IdentityError):
            server.admit_node(node, certificate, signature)
    # A certificate of another CA is refused, however well bound.
    make_pki(tmp_path / "other", monkeypatch, "1..2")
    stranger = secagg.Identity.load(tmp_path / "other" / "clients" / "client-1.key",
                                    tmp_path / "other" / "clients" / "client-1.cert",
                                    tmp_path / "other" / "ca" / "ca.pub")
    with pytest.raises(secagg.IdentityError, match="not signed by this deployment's CA"):
        server.admit_node(node, stranger.certificate, stranger.bind_node(welcome, node))
    with pytest.raises(secagg.ConfigError):
        secagg.Server(secagg.RoundConfig(3, 10)).admit_node(node, ids[1].certificate, b"")
    with pytest.raises(secagg.IdentityError):
        secagg.Identity.generate(0).bind_node(welcome, node)


@pytest.mark.parametrize("stage, how, named", [
    ("masked-input", "frames", "frames that are not bytes"),
    ("share-keys", "record", "without secagg's record"),
    ("masked-input", "fitres", "a malformed reply: KeyError"),
    ("masked-input", "weight", "a malformed reply: TrainReplyError"),
])
def test_a_malformed_reply_drops_its_node_not_the_round(fa, stage, how, named):
    cap = fa.run("secagg", 6, wrap_mod=fa.malformed_reply(1, stage, how))
    stats = cap["workflow"].fit_workflow.last_round
    assert [f["stage"] for f in stats.failed] == [stage], stats.failed
    assert named in stats.failed[0]["reason"], stats.failed
    assert cap["partitions"] == [0, 2, 3, 4, 5]
    step = 2 * 8.0 / (stats.levels - 1)
    expected = fa.expected_mean(6, only=cap["partitions"])
    assert np.max(np.abs(flat(cap["parameters"]) - expected)) < step


# --------------------------------------------------------------------------------------
# The modulus: the planner's b up to 64, modulus_range, the nodes' policy bits
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("n, kwargs, want", [
    # Flower's defaults (quantization_range 2^22, max_weight 1000) at the 100
    # clients: 100 x (2^22 - 1) x 1000 needs 39 bits, and the 2^22 levels are kept.
    (100, {}, (39, 2**22, 1000)),
    (10, {}, (36, 2**22, 1000)),
    # A sum that fits 32 bits runs at 32, as before.
    (10, {"max_weight": 150.0, "quantization_range": 2**16}, (32, 2**16, 150)),
    # An explicit modulus_range is the modulus: the levels are lowered to fit it.
    (100, {"modulus_range": 2**32}, (32, 2**15, 1000)),
    (100, {"modulus_range": 2**48}, (48, 2**22, 1000)),
    # Beyond 64 bits even for the planner: the levels are lowered to fit 2^64.
    (1000, {"quantization_range": 2**31, "max_weight": 2.0**32 - 1}, (64, 2**22, 2**32 - 1)),
])
def test_the_modulus_is_the_planners_unless_modulus_range_is_given(fa, caplog, n, kwargs, want):
    from secagg import ConfigError, RoundConfig
    from secagg.flower import SecAggPlusWorkflow

    workflow = SecAggPlusWorkflow(None, None, **kwargs)
    with caplog.at_level("WARNING", logger="secagg.flower"):
        bits, levels, w = workflow._quantization(n)
    assert (bits, levels, w) == want
    lowered = [r.getMessage() for r in caplog.records if "quantizing to" in r.getMessage()]
    assert bool(lowered) == (levels != kwargs.get("quantization_range", 2**22)), lowered
    # The host agrees, independently: the sum fits 2^b, and (where the planner chose b
    # above the 32-bit floor and kept the levels) not one bit fewer.
    RoundConfig(n, 8, bits=bits, levels=levels, max_weight=w, clip=8.0)
    if "modulus_range" not in kwargs and 32 < bits < 64:
        with pytest.raises(ConfigError, match="overflow"):
            RoundConfig(n, 8, bits=bits - 1, levels=levels, max_weight=w, clip=8.0)


@pytest.mark.parametrize("modulus_range", [2**65, 3 * 2**20, 1, True, 2.0**32])
def test_modulus_range_is_a_power_of_two_up_to_2_to_the_64(fa, modulus_range):
    from secagg.flower import SecAggPlusWorkflow

    with pytest.raises(ValueError, match=r"modulus_range must be a power of two between 2 and "
                                         r"2\*\*64, or None"):
        SecAggPlusWorkflow(None, None, modulus_range=modulus_range)
    assert SecAggPlusWorkflow(None, None, modulus_range=2**64).modulus_range == 2**64


def test_a_node_whose_policy_caps_bits_below_the_planners_b_refuses(fa):
    # Flower's defaults over 6 nodes need b = 35 (6 x (2^22 - 1) x 1000 < 2^35); every
    # node's policy allows 32 bits at most, so each refuses at setup with a PolicyError that
    # says where b comes from, and nothing is summed.
    cap = fa.run("secagg", 6, mod_kwargs={"bits": (1, 32)})
    assert "parameters" not in cap
    stats = cap["workflow"].fit_workflow.last_round
    assert (stats.bits, stats.levels, stats.included) == (35, 2**22, 0)
    assert len(stats.failed) == 6 and {f["stage"] for f in stats.failed} == {"setup"}
    for f in stats.failed:
        reason = f["reason"]
        assert "PolicyError" in reason and "b = 35" in reason, reason
        assert "policy bits=(1, 32)" in reason and "modulus_range" in reason, reason
        assert "PanicException" not in reason


def test_a_modulus_range_the_nodes_allow_runs_with_fewer_levels(fa):
    # The same nodes (at most 32 bits) with the server's modulus_range = 2^32: the round
    # runs at b = 32 with the levels lowered to 2^19 (6 x (2^19 - 1) x 1000 < 2^32), and
    # the mean is within one step of those levels. (In this process: flower_app.LocalGrid.)
    server_app, client_app = fa.make_apps("secagg", 6, fail=2, mod_kwargs={"bits": (1, 32)},
                                          modulus_range=2**32)
    cap = fa.run_local(server_app, fa.local_grid(client_app, 6))
    stats = cap["workflow"].fit_workflow.last_round
    assert (stats.bits, stats.levels, stats.included) == (32, 2**19, 5)
    step = 2 * 8.0 / (stats.levels - 1)
    assert np.max(np.abs(flat(cap["parameters"]) - fa.expected_mean(6, fail=2))) < step
