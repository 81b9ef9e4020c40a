"""The sans-IO Client and Server driven from Python, checked against NumPy."""

import threading
import time

import numpy as np
import pytest

import secagg


def run_round(server, clients, inputs, weights, drop_at=None, snapshots=False, policy=None,
              steps=None):
    """Routes frames in memory until the round ends. `drop_at` maps client id → the client
    status at which it disconnects. With `snapshots`, every client is rebuilt from its
    snapshot (and its step store `steps`) before each message, as the Flower mod does."""
    drop_at = drop_at or {}
    gone = set()
    snaps = {}
    for cid, c in clients.items():
        c.set_input(inputs[cid], weights[cid])
    for _ in range(1000):
        moved = False
        for cid in list(clients):
            if cid in gone:
                continue
            c = clients[cid]
            if drop_at.get(cid) == c.status:
                gone.add(cid)
                server.disconnect(cid, now=0.0)
                moved = True
                continue
            while (f := c.poll_transmit()) is not None:
                assert server.handle(cid, f, now=0.0)
                moved = True
            if snapshots:
                snaps[cid] = c.snapshot()
        while (out := server.poll_transmit()) is not None:
            cid, frame = out
            moved = True
            if cid in gone:
                continue
            if snapshots:
                c = secagg.Client.restore(snaps[cid], policy, steps)
                if c.status == "masked-input":
                    c.set_input(inputs[cid], weights[cid])
                clients[cid] = c
            clients[cid].handle(frame)
        if server.status in ("completed", "aborted"):
            break
        if not moved:
            server.handle_timeout(now=server.poll_timeout())
    return gone


def weighted_mean(inputs, weights, ids):
    w = np.array([weights[i] for i in ids], dtype=np.float64)
    x = np.stack([inputs[i].astype(np.float64) for i in ids])
    return (w[:, None] * x).sum(0) / w.sum()


@pytest.mark.parametrize("snapshots", [False, True])
def test_round_with_dropouts_matches_numpy(rng, snapshots):
    n, m = 12, 3000
    config = secagg.RoundConfig(n, m, neighbors=8, threshold=5, clip=2.0, levels=1 << 16, max_weight=50)
    server = secagg.Server(config, now=0.0)
    policy = secagg.Policy(adversary="curious", min_cohort=3, colluders=1)
    welcome = server.welcome()
    steps = {}
    clients = {}
    for i in range(n):
        clients[i] = secagg.Client(welcome, secagg.Identity.generate(i), policy, steps=steps)
        server.join(i, now=0.0)
    inputs = {i: rng.uniform(-2.0, 2.0, m).astype(np.float32) for i in range(n)}
    weights = {i: int(rng.integers(1, 51)) for i in range(n)}
    # One leaves after advertising keys, one before its masked input, one before unmasking.
    drop_at = {2: "share-keys", 5: "masked-input", 9: "unmasking"}
    gone = run_round(server, clients, inputs, weights, drop_at, snapshots, policy, steps)
    assert server.status == "completed", server.error
    r = server.result()
    included = sorted(r["included"])
    # Clients 2 and 5 never sent a masked input; 9 did, so its input is in the sum.
    assert included == [i for i in range(n) if i not in (2, 5)]
    assert gone == {2, 5, 9}
    assert r["total_weight"] == sum(weights[i] for i in included)
    expected = weighted_mean(inputs, weights, included)
    # Stochastic rounding: each value is off by less than one step, weighted.
    step = 2 * 2.0 / ((1 << 16) - 1)
    assert np.max(np.abs(r["mean"] - expected)) < step
    assert r["mean"].dtype == np.float32 and r["mean"].shape == (m,)
    for i in range(n):
        if i not in gone:
            assert clients[i].status == "completed"
            assert clients[i].included == len(included)


def test_an_old_snapshot_is_refused_after_the_client_moved_on(rng):
    # A client whose older snapshot could be resumed would act twice on one round: fed
    # another survivor list, the copy would sign it too. The step store refuses the copy.
    n, m = 7, 400
    config = secagg.RoundConfig(n, m, neighbors=6, threshold=4, clip=1.0, levels=1 << 12,
                                max_weight=20)
    server = secagg.Server(config, now=0.0)
    policy = secagg.Policy(adversary="curious", min_cohort=3, colluders=1)
    welcome = server.welcome()
    steps = {}
    clients = {i: secagg.Client(welcome, secagg.Identity.generate(i), policy, steps=steps)
               for i in range(n)}
    inputs = {i: rng.uniform(-1.0, 1.0, m).astype(np.float32) for i in range(n)}
    weights = {i: int(rng.integers(1, 21)) for i in range(n)}
    for i in range(n):
        server.join(i, now=0.0)
    history = []  # client 0's snapshots, taken once what it had to send was sent
    given = set()

    def send():
        for cid, c in clients.items():
            if c.status == "masked-input" and cid not in given:  # as the Flower mod does
                c.set_input(inputs[cid], weights[cid])
                given.add(cid)
            while (f := c.poll_transmit()) is not None:
                server.handle(cid, f, now=0.0)
        if not history or history[-1][0] != clients[0].step:
            history.append((clients[0].step, clients[0].snapshot()))

    def route_once():
        send()
        while (out := server.poll_transmit()) is not None:
            clients[out[0]].handle(out[1])

    for _ in range(50):
        if clients[0].status in ("consistency", "unmasking"):
            break
        assert server.status not in ("completed", "aborted"), server.error
        route_once()
    send()
    assert len(history) >= 3
    for step, old in history[:-1]:
        assert step < clients[0].step
        with pytest.raises(secagg.StaleSnapshotError, match="already acted at step"):
            secagg.Client.restore(old, policy, steps)
    # The latest snapshot resumes; the object it replaces is then a stale live copy.
    stale = clients[0]
    clients[0] = secagg.Client.restore(history[-1][1], policy, steps)
    assert clients[0].step == stale.step and clients[0].status == stale.status
    for _ in range(50):
        if server.status in ("completed", "aborted"):
            break
        route_once()
    route_once()  # the completion notices
    with pytest.raises(secagg.StaleSnapshotError):
        stale.steps = steps
    assert server.status == "completed", server.error
    r = server.result()
    assert sorted(r["included"]) == list(range(n))
    expected = weighted_mean(inputs, weights, range(n))
    assert np.max(np.abs(r["mean"] - expected)) < 2.0 / ((1 << 12) - 1)
    # Once the round is over, not even the last snapshot can be resumed.
    assert clients[0].status == "completed"
    with pytest.raises(secagg.StaleSnapshotError, match="round ended"):
        secagg.Client.restore(history[-1][1], policy, steps)
    assert not steps, steps  # every finished client removed its counter


def test_an_input_set_early_survives_a_restore(rng):
    # A client given its update before its keys were drawn, then rebuilt from a snapshot
    # (which holds no input) at the next message, replays with the keys it advertised: the
    # input's rounding does not draw from the stream its keys come from.
    n, m = 6, 200
    config = secagg.RoundConfig(n, m, neighbors=5, threshold=3, max_weight=9)
    server = secagg.Server(config, now=0.0)
    policy = secagg.Policy(adversary="curious", min_cohort=3, colluders=1)
    steps = {}
    clients = {i: secagg.Client(server.welcome(), secagg.Identity.generate(i), policy,
                                steps=steps)
               for i in range(n)}
    inputs = {i: rng.uniform(-1.0, 1.0, m).astype(np.float32) for i in range(n)}
    weights = {i: int(rng.integers(1, 10)) for i in range(n)}
    for i, c in clients.items():
        server.join(i, now=0.0)
        c.set_input(inputs[i], weights[i])
    first = set()  # clients that handled their first frame as the object given the input
    for _ in range(100):
        for i, c in clients.items():
            while (f := c.poll_transmit()) is not None:
                server.handle(i, f, now=0.0)
        snaps = {i: c.snapshot() for i, c in clients.items()}
        while (out := server.poll_transmit()) is not None:
            i, frame = out
            if i in first:
                clients[i] = secagg.Client.restore(snaps[i], policy, steps)
                if clients[i].status == "masked-input":
                    clients[i].set_input(inputs[i], weights[i])
            first.add(i)
            clients[i].handle(frame)  # before: ProtocolError("our keys were altered")
            snaps[i] = clients[i].snapshot()
        if server.status in ("completed", "aborted"):
            break
    assert server.status == "completed", server.error
    r = server.result()
    assert sorted(r["included"]) == list(range(n))
    expected = weighted_mean(inputs, weights, range(n))
    assert np.max(np.abs(r["mean"] - expected)) < 2.0 / ((1 << 16) - 1)


def test_step_store_on_disk(tmp_path, rng):
    store = secagg.StepStore(tmp_path / "steps")
    policy = secagg.Policy(adversary="curious", min_cohort=3, colluders=1)
    config = secagg.RoundConfig(5, 10)
    client = secagg.Client(config.welcome(), secagg.Identity.generate(0), policy, steps=store)
    (key,) = list(store)
    assert store[key] == 0 and client.step == 0
    snap = client.snapshot()
    # Another process opening the same directory sees the same counter.
    again = secagg.StepStore(tmp_path / "steps")
    assert secagg.Client.restore(snap, policy, again).step == 0
    garbage = bytes(rng.integers(0, 256, 40, dtype=np.uint8))
    with pytest.raises(secagg.CodecError):
        client.handle(garbage)  # a frame that does not decode is no step
    assert store[key] == 0
    store[key] = 3  # the client acted elsewhere since this snapshot
    with pytest.raises(secagg.StaleSnapshotError, match="already acted at step 3"):
        secagg.Client.restore(snap, policy, again)
    with pytest.raises(KeyError):
        store["../escape"]
    with pytest.raises(ValueError):
        store[key] = -1


def test_a_client_without_a_step_store_cannot_be_snapshotted():
    config = secagg.RoundConfig(5, 10)
    policy = secagg.Policy(adversary="curious", min_cohort=3, colluders=1)
    client = secagg.Client(config.welcome(), secagg.Identity.generate(0), policy)
    with pytest.raises(secagg.JournalError, match="without a step store"):
        client.snapshot()
    with pytest.raises(secagg.StaleSnapshotError, match="no step"):
        client.steps = {}


def test_aggregate_quick_start(rng):
    x = rng.normal(0, 0.3, size=(8, 1000)).astype(np.float32)
    w = [int(v) for v in rng.integers(1, 20, size=8)]
    res = secagg.aggregate(x, w, drop=[3])
    assert res.included == [0, 1, 2, 4, 5, 6, 7]
    expected = weighted_mean(dict(enumerate(np.clip(x, -1, 1))), dict(enumerate(w)), res.included)
    assert np.max(np.abs(res.mean - expected)) < 2 / 65535
    assert res.dropped[0]["client"] == 3


def test_simulate_and_plan():
    r = secagg.simulate(40, 2000, dropout=0.1, seed=7)
    assert r.completed and r.check_passed, r.error
    assert r.dropped == 4 and len(r.included) == 36
    assert r.max_error <= r.error_bound
    assert [s.stage for s in r.stages][:2] == ["join", "advertise-keys"]
    # Google's semi-malicious parameters at n = 1000, 5% dropout, 5% corrupt (k = 52, t = 37)
    # are what the planner gives (see README, "secagg plan").
    p = secagg.plan(1000, dropout=0.05, corrupt=0.05)
    assert (p.neighbors, p.threshold) == (52, 37)
    assert p.log2_insecurity <= -40 and p.log2_failure <= -20


def test_typed_errors(rng):
    with pytest.raises(secagg.ConfigError):
        secagg.RoundConfig(2, 10)
    with pytest.raises(secagg.ConfigError):
        secagg.RoundConfig(10, 10, bits=8, levels=1 << 16)  # overflows 2^8
    with pytest.raises(secagg.ConfigError):
        secagg.Policy(adversary="omniscient")
    with pytest.raises(secagg.PolicyError):
        secagg.Policy(adversary="semi-malicious")  # needs enrolled identities (a CA)
    with pytest.raises(secagg.PlanError):
        secagg.plan(10, neighbors=2, threshold=2)
    with pytest.raises(secagg.ConfigError):
        secagg.plan(1)
    with pytest.raises(secagg.ConfigError):
        secagg.Server(secagg.RoundConfig(5, 10), backend="tpu")
    policy = secagg.Policy(adversary="curious", min_cohort=3, colluders=1)
    with pytest.raises(secagg.CodecError):
        secagg.Client(b"not a welcome", secagg.Identity.generate(0), policy)
    # A server that announces a round below the client's floor gets nothing.
    small = secagg.RoundConfig(5, 10).welcome()
    with pytest.raises(secagg.PolicyError):
        secagg.Client(small, secagg.Identity.generate(0), secagg.Policy(adversary="curious", min_cohort=50))
    # The colluder budget is absolute: five clients of which three may collude leave two
    # honest ones, below the floor of three.
    with pytest.raises(secagg.PolicyError, match="3 colluders"):
        secagg.Client(small, secagg.Identity.generate(0),
                      secagg.Policy(adversary="curious", min_cohort=3, colluders=3))
    # An insecure graph for 100 clients (k = 2) is refused by the client.
    weak = secagg.RoundConfig(100, 10, neighbors=2, threshold=2).welcome()
    with pytest.raises(secagg.PolicyError):
        secagg.Client(weak, secagg.Identity.generate(0), policy)
    config = secagg.RoundConfig(5, 10)
    server = secagg.Server(config, now=0.0)
    client = secagg.Client(server.welcome(), secagg.Identity.generate(0), policy)
    with pytest.raises(secagg.InputError):
        client.set_input(np.zeros(9, dtype=np.float32))
    with pytest.raises(secagg.InputError):
        client.set_input(np.zeros(10, dtype=np.float64))
    with pytest.raises(secagg.InputError):
        client.set_input(np.zeros(20, dtype=np.float32)[::2])
    with pytest.raises(secagg.InputError):
        client.set_input([0.0] * 10)
    with pytest.raises(secagg.InputError):
        client.set_input(np.full(10, np.nan, dtype=np.float32))
    with pytest.raises(secagg.CodecError):
        client.handle(bytes(rng.integers(0, 256, 40, dtype=np.uint8)))
    with pytest.raises(secagg.CodecError):
        secagg.Client.restore(b"SAJ2" + bytes(10), policy, {})
    with pytest.raises(secagg.CodecError, match="older secagg"):
        secagg.Client.restore(b"SAJ1" + bytes(10), policy, {})
    with pytest.raises(secagg.ProtocolError):
        server.result()
    for e in (secagg.ConfigError, secagg.PlanError, secagg.PolicyError, secagg.ProtocolError,
              secagg.CodecError, secagg.InputError, secagg.IdentityError, secagg.EngineError,
              secagg.JournalError, secagg.StaleSnapshotError):
        assert issubclass(e, secagg.SecaggError)


def test_server_drops_a_client_that_sends_garbage(rng):
    config = secagg.RoundConfig(5, 10, threshold=3)
    server = secagg.Server(config, now=0.0)
    for i in range(5):
        server.join(i, now=0.0)
    garbage = bytes(rng.integers(0, 256, 64, dtype=np.uint8))
    assert server.handle(3, garbage, now=0.0) is False
    assert [d["client"] for d in server.dropped] == [3]
    # Nothing a client sends raises; the others go on.
    assert server.status == "join"


def test_heavy_calls_release_the_gil():
    ticks = 0
    done = threading.Event()

    def work():
        secagg.simulate(20, 300_000, neighbors=19, threshold=11, adversary="curious", unauthenticated=True, seed=3)
        done.set()

    t = threading.Thread(target=work)
    start = time.perf_counter()
    t.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    t.join()
    elapsed = time.perf_counter() - start
    # With the GIL held for the whole simulation this loop could not run at all.
    assert elapsed > 0.05
    assert ticks > elapsed / 0.001 * 0.2


def test_backend_lists_shard_the_sum_by_coordinate_range(rng):
    # "cpu,cpu": two CPU engines, each holding its own coordinate range of the server's sum.
    x = rng.normal(0, 0.3, size=(6, 3001)).astype(np.float32)
    w = [int(v) for v in rng.integers(1, 9, size=6)]
    res = secagg.aggregate(x, w, drop=[2], backend="cpu,cpu")
    expected = weighted_mean(dict(enumerate(np.clip(x, -1, 1))), dict(enumerate(w)), res.included)
    assert res.included == [0, 1, 3, 4, 5]
    assert np.max(np.abs(res.mean - expected)) < 2 / 65535
    r = secagg.simulate(40, 3000, dropout=0.1, seed=11, backend="cpu,cpu")
    assert r.completed and r.check_passed, r.error
    assert "shards" in r.engine, r.engine
    with pytest.raises(secagg.ConfigError, match="backend"):
        secagg.simulate(12, 100, backend="cpu,tpu")
