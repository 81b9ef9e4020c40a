"""Small Flower apps for the tests and the side-by-side benchmark.

* A legacy app (a NumPyClient with FedAvg), runnable with Flower's own SecAgg+ or with
  secagg's drop-in: the two imports are the only difference (`make_apps`).
* A Message-API app (`@app.train()`, `flwr.serverapp.strategy.FedAvg` and FedAdam), run
  with and without `secagg.flower.SecAggPlus` (`make_message_apps`).

Each node's update and weight are a pure function of its partition id (and, in the
Message-API app, of a seed, the round and the model it receives), so a test can compute
the plain weighted mean of the survivors independently. Some partitions may be told to fail
in training (they drop out at the masked-input stage).

`LocalGrid` runs either app in one process, through Flower's protobuf serialisation, for
tests that need no simulation engine and for the benchmark.
"""

from __future__ import annotations

import os
from typing import Dict, FrozenSet, Iterable, List, Union

import numpy as np
from flwr.client import ClientApp, NumPyClient
from flwr.common import ConfigRecord, Context, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server import ServerApp, ServerConfig
from flwr.server.compat import LegacyContext
from flwr.server.strategy import FedAvg
from flwr.server.workflow import DefaultWorkflow
from flwr.serverapp.grid import Grid

#: What the last run's strategy aggregated (the ServerApp runs in this process).
CAPTURED: Dict[str, object] = {}

SHAPES = [(4, 5), (7,)]


def shapes(params: int) -> List[tuple]:
    """A model of `params` values in two tensors."""
    if params == 27:
        return SHAPES
    return [(params - params // 4,), (params // 4,)]


def update_of(partition: int, params: int) -> List[np.ndarray]:
    rng = np.random.default_rng(1000 + partition)
    return [rng.uniform(-1.0, 1.0, size=s).astype(np.float32) for s in shapes(params)]


def examples_of(partition: int) -> int:
    return 10 + (7 * partition) % 141  # at most 150, below max_weight


class Node(NumPyClient):
    def __init__(self, partition: int, params: int, fail: FrozenSet[int]):
        self.partition = partition
        self.params = params
        self.fail = fail

    def fit(self, parameters, config):
        if self.partition in self.fail:
            raise RuntimeError(f"partition {self.partition} drops out at the masked-input stage")
        return update_of(self.partition, self.params), examples_of(self.partition), {}


class Capturing(FedAvg):
    def aggregate_fit(self, server_round, results, failures):
        out = super().aggregate_fit(server_round, results, failures)
        CAPTURED["parameters"] = out[0]
        CAPTURED["results"] = len(results)
        CAPTURED["failures"] = len(failures)
        # num_examples tells the partitions apart (examples_of is one-to-one below 141).
        CAPTURED["partitions"] = sorted(partition_of(fitres.num_examples) for _, fitres in results)
        return out


def partition_of(num_examples: int) -> int:
    """The partition below 141 whose num_examples this is (larger apps, such as the
    benchmark's, share counts: the tests that read partitions have fewer nodes)."""
    return next(p for p in range(141) if examples_of(p) == num_examples)


def failing(fail: Union[None, int, Iterable[int]]) -> FrozenSet[int]:
    if fail is None:
        return frozenset()
    if isinstance(fail, int):
        return frozenset([fail])
    return frozenset(fail)


def enrolled_files(context: Context):
    """The node's enrollment files, from the directory in SECAGG_TEST_PKI (one client per
    partition, made by `secagg enroll`)."""
    pki = os.environ["SECAGG_TEST_PKI"]
    p = int(context.node_config["partition-id"])
    return (f"{pki}/clients/client-{p}.key", f"{pki}/clients/client-{p}.cert", f"{pki}/ca/ca.pub")


def make_apps(kind: str, nodes: int, params: int = 27, fail=None,
              num_shares=None, threshold=None, wrap_mod=None, wrap_grid=None,
              wrap_fit=None, mod_kwargs=None, **workflow_kwargs):
    """(server_app, client_app) using `kind` = "secagg" or "flower" SecAgg+.

    `wrap_mod(mod)` returns the client mod that nodes run instead (an attack on the node's
    side); `wrap_grid(grid)` the grid the server's workflow talks through (a server that
    lies in its messages, or a network that delivers them in an order of its choice);
    `wrap_fit(workflow)` the fit workflow the server runs instead. `mod_kwargs` go to
    make_secaggplus_mod (kind "secagg")."""
    if kind == "secagg":
        from secagg.flower import SecAggPlusWorkflow, make_secaggplus_mod, secaggplus_mod

        if mod_kwargs:
            secaggplus_mod = make_secaggplus_mod(**mod_kwargs)
    elif kind == "flower":
        from flwr.client.mod import secaggplus_mod
        from flwr.server.workflow import SecAggPlusWorkflow
    elif kind == "secagg-server-flower-client":
        from flwr.client.mod import secaggplus_mod
        from secagg.flower import SecAggPlusWorkflow
    elif kind == "secagg-enrolled":
        from secagg.flower import SecAggPlusWorkflow, make_secaggplus_mod

        pki = os.environ["SECAGG_TEST_PKI"]
        secaggplus_mod = make_secaggplus_mod(
            identity=enrolled_files, ca=f"{pki}/ca/ca.pub", min_cohort=5
        )
        workflow_kwargs = {"ca": f"{pki}/ca/ca.pub", **workflow_kwargs}
    elif kind == "secagg-server-no-mod":
        from secagg.flower import SecAggPlusWorkflow

        secaggplus_mod = None
    elif kind == "flower-server-secagg-client":
        from flwr.server.workflow import SecAggPlusWorkflow
        from secagg.flower import secaggplus_mod
    else:
        raise ValueError(kind)

    def client_fn(context: Context):
        partition = int(context.node_config["partition-id"])
        return Node(partition, params, failing(fail)).to_client()

    if wrap_mod is not None:
        secaggplus_mod = wrap_mod(secaggplus_mod)
    client_app = ClientApp(client_fn=client_fn, mods=[secaggplus_mod] if secaggplus_mod else [])
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context: Context) -> None:
        initial = [np.zeros(s, dtype=np.float32) for s in shapes(params)]
        strategy = Capturing(
            fraction_fit=1.0,
            min_fit_clients=nodes,
            min_available_clients=nodes,
            fraction_evaluate=0.0,
            min_evaluate_clients=0,
            initial_parameters=ndarrays_to_parameters(initial),
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=1), strategy=strategy)
        fit = SecAggPlusWorkflow(
            num_shares=num_shares if num_shares is not None else nodes - 1,
            reconstruction_threshold=threshold if threshold is not None else max(2, nodes // 2),
            **workflow_kwargs,
        )
        workflow = DefaultWorkflow(fit_workflow=wrap_fit(fit) if wrap_fit is not None else fit)
        workflow(wrap_grid(grid) if wrap_grid is not None else grid, legacy)
        CAPTURED["workflow"] = workflow

    return server_app, client_app


def expected_mean(nodes: int, params: int = 27, fail=None, only=None) -> np.ndarray:
    """The plain weighted mean of the survivors' float32 updates, flattened (of the
    partitions in `only`, when given)."""
    total = np.zeros(params, dtype=np.float64)
    weight = 0
    for p in range(nodes):
        if p in failing(fail) or (only is not None and p not in only):
            continue
        flat = np.concatenate([a.reshape(-1) for a in update_of(p, params)]).astype(np.float64)
        total += examples_of(p) * flat
        weight += examples_of(p)
    return total / weight


def stage_of(msg) -> str:
    """The secagg stage a train message is for ("" for any other message)."""
    rec = msg.content.config_records.get("secagg")
    return str(rec.get("stage", "")) if rec is not None else ""


def roll_back_snapshot(partition: int, stage: str):
    """A node-side attack: on `partition`, the client's snapshot record is put back to the
    one it held after the setup stage when the `stage` message arrives (the step store,
    a record of its own, is left alone)."""

    def wrap(mod):
        def rolled_back(msg, ctxt, call_next):
            if int(ctxt.node_config["partition-id"]) == partition:
                records = ctxt.state.config_records
                current = stage_of(msg)
                if current not in ("", "setup") and "saved_state" not in records:
                    records["saved_state"] = ConfigRecord(dict(records["secagg_state"]))
                if current == stage:
                    records["secagg_state"] = ConfigRecord(dict(records["saved_state"]))
            return mod(msg, ctxt, call_next)

        return rolled_back

    return wrap


class TamperingGrid:
    """A server that lies in its messages: at the masked-input stage it sends the node with
    the smallest id other fit instructions than the rest — `what` = "arrays": another
    model (all ones), "config": another config (zero local epochs), "weight_key": another
    metric to weigh its update by (Message API) — and leaves the rest as it is. Everything
    else goes to Flower's grid unchanged."""

    def __init__(self, grid, what: str):
        self._grid = grid
        self.what = what
        self.targeted = []

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):
        messages = list(messages)
        asked = [m for m in messages if stage_of(m) == "masked-input"]
        if asked:
            target = min(asked, key=lambda m: m.metadata.dst_node_id)
            self.targeted.append(target.metadata.dst_node_id)
            content = target.content
            if "fitins.parameters" not in content:  # a Message-API round
                from flwr.app import Array, ArrayRecord

                [(name, record)] = content.array_records.items()
                [(config_name, _)] = [(n, r) for n, r in content.config_records.items()
                                      if n != "secagg"]
                if self.what == "arrays":
                    content[name] = ArrayRecord({k: Array(np.ones_like(a.numpy()))
                                                 for k, a in record.items()})
                elif self.what == "config":
                    content[config_name] = ConfigRecord({"server-round": 1, "local-epochs": 0})
                else:
                    content.config_records["secagg"]["weight_key"] = "loss"
            elif self.what == "arrays":
                model = compat.arrayrecord_to_parameters(
                    content.array_records["fitins.parameters"], keep_input=True
                )
                ones = [np.ones_like(a) for a in parameters_to_ndarrays(model)]
                content.array_records["fitins.parameters"] = compat.parameters_to_arrayrecord(
                    ndarrays_to_parameters(ones), keep_input=True
                )
            else:
                content.config_records["fitins.config"] = ConfigRecord({"local-epochs": 0})
        return self._grid.send_and_receive(messages, *args, **kwargs)


def certificate_bytes(path: str) -> bytes:
    """A certificate's bytes (id, key, CA signature) read from its public file."""
    fields = {}
    for line in open(path):
        if "=" in line and not line.startswith("#"):
            name, value = (x.strip() for x in line.split("=", 1))
            fields[name] = value
    return (int(fields["id"]).to_bytes(4, "little") + bytes.fromhex(fields["key"])
            + bytes.fromhex(fields["signature"]))


def impersonate(rogue: int, victim: int):
    """A node-side attack (enrolled rounds): partition `rogue` answers the setup stage with
    partition `victim`'s certificate and id — public data — beside a node binding made with
    its own key (it does not hold the victim's), and marks its reply for RogueFirst."""

    def wrap(mod):
        def impersonating(msg, ctxt, call_next):
            reply = mod(msg, ctxt, call_next)
            if int(ctxt.node_config["partition-id"]) == rogue and stage_of(msg) == "setup":
                pki = os.environ["SECAGG_TEST_PKI"]
                rec = reply.content.config_records["secagg"]
                rec["client_id"] = victim
                rec["certificate"] = certificate_bytes(f"{pki}/clients/client-{victim}.cert")
                rec["rogue"] = True
            return reply

        return impersonating

    return wrap


def malformed_reply(partition: int, stage: str, how: str):
    """A node-side attack: on `partition`, the reply to the `stage` message is spoiled —
    `how` = "frames": its frames are strings, "record": secagg's record is gone,
    "fitres": the fit result is gone, "weight": its num_examples is negative."""

    def wrap(mod):
        def spoiled(msg, ctxt, call_next):
            reply = mod(msg, ctxt, call_next)
            if int(ctxt.node_config["partition-id"]) == partition and stage_of(msg) == stage:
                records = reply.content.config_records
                if how == "frames":
                    records["secagg"]["frames"] = ["not", "bytes"]
                elif how == "record":
                    del records["secagg"]
                elif how == "weight":
                    reply.content.metric_records["fitres.num_examples"]["num_examples"] = -1000
                else:
                    for name in [n for n in reply.content if n.startswith("fitres.")]:
                        del reply.content[name]
            return reply

        return spoiled

    return wrap


class RogueFirst:
    """A network that delivers the replies marked by `impersonate` before the others."""

    def __init__(self, grid):
        self._grid = grid

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):
        replies = list(self._grid.send_and_receive(messages, *args, **kwargs))

        def rogue(reply):
            if reply.has_error():
                return False
            rec = reply.content.config_records.get("secagg")
            return rec is not None and rec.get("rogue", False)

        return sorted(replies, key=lambda r: not rogue(r))


class TwoSessions:
    """A server that runs secure aggregation twice over one round's fit instructions (to
    difference the two sums); `rounds` holds each session's RoundStats."""

    def __init__(self, workflow):
        self.workflow = workflow
        self.rounds = []

    def __call__(self, grid, context):
        from flwr.server.workflow.constant import MAIN_PARAMS_RECORD

        model = context.state.array_records[MAIN_PARAMS_RECORD]
        for _ in range(2):
            context.state.array_records[MAIN_PARAMS_RECORD] = model
            self.workflow(grid, context)
            self.rounds.append(self.workflow.last_round)


def make_message_api_apps(nodes: int, action: str = "custom"):
    """A Message-API app (decorated functions) whose ClientApp runs secagg's mod. Its
    @app.train(action) function returns the node's update in the clear; the server sends
    every node a `train.<action>` message, a plain `train` message and an `evaluate`
    message, and keeps what came back in CAPTURED."""
    from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp as MessageClientApp

    from secagg.flower import secaggplus_mod

    client_app = MessageClientApp(mods=[secaggplus_mod])

    def update(msg, context):
        p = int(context.node_config["partition-id"])
        return Message(RecordDict({
            "arrays": ArrayRecord(update_of(p, 27)),
            "metrics": MetricRecord({"num-examples": examples_of(p)}),
        }), reply_to=msg)

    client_app.train(action)(update)
    client_app.train()(update)

    @client_app.evaluate()
    def evaluate(msg, context):
        return Message(RecordDict({"metrics": MetricRecord({"loss": 0.5})}), reply_to=msg)

    server_app = ServerApp()

    @server_app.main()
    def main(grid, context: Context) -> None:
        import time

        deadline = time.monotonic() + 60
        while len(ids := list(grid.get_node_ids())) < nodes and time.monotonic() < deadline:
            time.sleep(0.2)
        model = [np.zeros(s, dtype=np.float32) for s in SHAPES]
        for kind in (f"train.{action}", "train", "evaluate"):
            msgs = [Message(RecordDict({"arrays": ArrayRecord(model),
                                        "config": ConfigRecord({"server-round": 1})}),
                            dst_node_id=nid, message_type=kind) for nid in ids]
            CAPTURED[kind] = [
                {"error": str(r.error.reason) if r.has_error() else None,
                 "arrays": [] if r.has_error() else list(r.content.array_records)}
                for r in grid.send_and_receive(msgs)
            ]

    return server_app, client_app


# --------------------------------------------------------------------------------------
# The Message-API app: @app.train() / @app.evaluate() and flwr.serverapp strategies
# --------------------------------------------------------------------------------------

#: The Message-API app's model: every float dtype, several shapes.
MODEL = [("conv.weight", (4, 3, 3), "float32"), ("conv.bias", (4,), "float32"),
         ("fc.weight", (5, 6), "float64"), ("fc.bias", (5,), "float16")]


def message_model(params=None):
    """The model's layout: MODEL, or `params` float32 values in two arrays."""
    if params is None:
        return MODEL
    return [("w", (params - params // 4,), "float32"), ("b", (params // 4,), "float32")]


def initial_model(layout) -> Dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {k: rng.uniform(-0.5, 0.5, shape).astype(dtype) for k, shape, dtype in layout}


def message_weight(seed: int, partition: int) -> int:
    """A node's num-examples (1..150)."""
    return int(np.random.default_rng([seed, partition]).integers(1, 151))


def message_loss(seed: int, partition: int, phase: int, server_round: int) -> float:
    return float(np.random.default_rng([seed, partition, phase, server_round, 1]).uniform(0, 2))


def message_update(seed: int, partition: int, phase: int, server_round: int,
                   model: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """What node `partition` returns after training on `model`: the model plus a random step
    in [-1, 1] per value, in each array's dtype."""
    rng = np.random.default_rng([seed, partition, phase, server_round])
    return {k: (a.astype(np.float64) + rng.uniform(-1.0, 1.0, a.shape)).astype(a.dtype)
            for k, a in model.items()}


def message_mean(seed: int, partitions, phase: int, server_round: int,
                 model: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The plain weighted mean (float64, NumPy) of the updates of `partitions` trained on
    `model`: the independent reference."""
    total = {k: np.zeros(a.shape) for k, a in model.items()}
    weight = 0
    for p in partitions:
        w = message_weight(seed, p)
        for k, a in message_update(seed, p, phase, server_round, model).items():
            total[k] += w * a.astype(np.float64)
        weight += w
    return {k: t / weight for k, t in total.items()}


def to_numpy(record) -> Dict[str, np.ndarray]:
    return {k: a.numpy() for k, a in record.items()}


def make_message_client(seed: int, fail=None, mod: Union[None, str] = "secagg",
                        mod_at: str = "train", mod_kwargs=None, wrap_mod=None, spoil=None,
                        weight_key: str = "num-examples"):
    """The Message-API ClientApp: `@app.train()` trains (`message_update`) and
    `@app.evaluate()` reports a loss. `mod` = "secagg" (secagg's mod, with `mod_kwargs`),
    "enrolled" (with the node's enrollment files) or None (a plain app); `mod_at` = "train"
    (`@app.train(mods=[mod])`) or "app" (`ClientApp(mods=[mod])`). `spoil(partition,
    content)` may change a node's reply before the mod sees it (an app that returns what
    the round cannot take). The weight goes in the metric `weight_key`."""
    from flwr.app import Array, ArrayRecord, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp as MessageClientApp

    fail = failing(fail)
    chosen = None
    if mod == "secagg":
        from secagg.flower import make_secaggplus_mod, secaggplus_mod

        chosen = make_secaggplus_mod(**mod_kwargs) if mod_kwargs else secaggplus_mod
    elif mod == "enrolled":
        from secagg.flower import make_secaggplus_mod

        pki = os.environ["SECAGG_TEST_PKI"]
        chosen = make_secaggplus_mod(identity=enrolled_files, ca=f"{pki}/ca/ca.pub",
                                     min_cohort=5)
    elif mod is not None:
        raise ValueError(mod)
    if chosen is not None and wrap_mod is not None:
        chosen = wrap_mod(chosen)
    mods = [chosen] if chosen is not None else []
    app = MessageClientApp(mods=mods if mod_at == "app" else None)

    @app.train(mods=mods if mod_at == "train" else None)
    def train(msg, context):
        p = int(context.node_config["partition-id"])
        if p in fail:
            raise RuntimeError(f"partition {p} fails in train")
        model = to_numpy(msg.content["arrays"])
        config = msg.content["config"]
        phase, server_round = int(config.get("phase", 0)), int(config["server-round"])
        arrays = message_update(seed, p, phase, server_round, model)
        content = RecordDict({
            "arrays": ArrayRecord({k: Array(a) for k, a in arrays.items()}),
            "metrics": MetricRecord({weight_key: message_weight(seed, p),
                                     "loss": message_loss(seed, p, phase, server_round)}),
        })
        if spoil is not None:
            spoil(p, content)
        return Message(content, reply_to=msg)

    @app.evaluate()
    def evaluate(msg, context):
        p = int(context.node_config["partition-id"])
        return Message(RecordDict({"metrics": MetricRecord({
            weight_key: message_weight(seed, p), "eval-loss": float(p)})}), reply_to=msg)

    return app


def make_strategy(name: str, nodes: int, evaluate: bool = True, **kwargs):
    """A flwr.serverapp strategy that samples every one of `nodes` nodes."""
    import flwr.serverapp.strategy as strategies

    common = dict(fraction_train=1.0, fraction_evaluate=1.0 if evaluate else 0.0,
                  min_train_nodes=nodes, min_evaluate_nodes=nodes if evaluate else 0,
                  min_available_nodes=nodes)
    return getattr(strategies, name)(**common, **kwargs)


def make_message_server(nodes: int, phases=(("FedAvg", 3, {}),), secure: bool = True,
                        params=None, wrap_grid=None, evaluate: bool = True, **secagg_kwargs):
    """The Message-API ServerApp: for each (strategy name, rounds, strategy kwargs) in
    `phases`, `strategy.start(...)` (wrapped in SecAggPlus when `secure`) from the arrays the
    previous phase ended with, with `{"phase": i}` as its train config. CAPTURED gets each
    phase's Result ("results"), each round's model sent and result ("rounds", from
    `evaluate_fn`, with the round's RoundStats), and the last SecAggPlus ("secure")."""
    from flwr.app import Array, ArrayRecord
    from flwr.serverapp import ServerApp as MessageServerApp

    app = MessageServerApp()

    @app.main()
    def main(grid, context: Context) -> None:
        from secagg.flower import SecAggPlus

        arrays = ArrayRecord({k: Array(a)
                              for k, a in initial_model(message_model(params)).items()})
        CAPTURED["rounds"], CAPTURED["results"] = [], []
        g = wrap_grid(grid) if wrap_grid is not None else grid
        for phase, (name, num_rounds, kwargs) in enumerate(phases):
            strategy = make_strategy(name, nodes, evaluate, **kwargs)
            run = SecAggPlus(strategy, **secagg_kwargs) if secure else strategy
            CAPTURED["secure"] = run
            sent = {"model": to_numpy(arrays)}

            def capture(server_round, current, phase=phase, run=run, sent=sent):
                if server_round > 0:
                    CAPTURED["rounds"].append({
                        "phase": phase, "round": server_round, "sent": sent["model"],
                        "result": to_numpy(current),
                        "stats": getattr(run, "last_round", None)})
                    sent["model"] = to_numpy(current)
                return None

            result = run.start(grid=g, initial_arrays=arrays, num_rounds=num_rounds,
                               train_config=ConfigRecord({"phase": phase}), evaluate_fn=capture)
            CAPTURED["results"].append(result)
            if len(result.arrays):
                arrays = result.arrays

    return app


class RecordingGrid:
    """Flower's grid, keeping every reply to a train message in CAPTURED["train_replies"]
    ({"error": reason or None, "arrays": names of array records})."""

    def __init__(self, grid):
        self._grid = grid

    def __getattr__(self, name):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *args, **kwargs):
        messages = list(messages)
        replies = list(self._grid.send_and_receive(messages, *args, **kwargs))
        if messages and messages[0].metadata.message_type.startswith("train"):
            CAPTURED.setdefault("train_replies", []).extend(
                {"error": str(r.error.reason) if r.has_error() else None,
                 "arrays": [] if r.has_error() else list(r.content.array_records)}
                for r in replies)
        return replies


def message_protocol(version: str, direction: str):
    """A node-side version mismatch: the node's mod sees the server's messages as if they
    spoke `version` (direction "in": the node's mod is of another version than the
    server), or the server sees the node's replies so (direction "out")."""

    def wrap(mod):
        def other_version(msg, ctxt, call_next):
            rec = msg.content.config_records.get("secagg")
            if direction == "in" and rec is not None:
                rec["protocol"] = version
            reply = mod(msg, ctxt, call_next)
            if direction == "out" and not reply.has_error():
                reply.content.config_records["secagg"]["protocol"] = version
            return reply

        return other_version

    return wrap


def lying_weight(partitions, stated):
    """A node-side attack: the nodes of `partitions` state `stated` as their weight in the
    clear, after their mod masked their update with their true weight."""

    def wrap(mod):
        def lie(msg, ctxt, call_next):
            reply = mod(msg, ctxt, call_next)
            if int(ctxt.node_config["partition-id"]) in partitions and not reply.has_error():
                for record in reply.content.metric_records.values():
                    record["num-examples"] = stated
            return reply

        return lie

    return wrap


# --------------------------------------------------------------------------------------
# One process: a Grid that hands every Message to its node's ClientApp
# --------------------------------------------------------------------------------------


def wire(msg):
    """`msg` after Flower's protobuf serialisation both ways, and its size in bytes."""
    from flwr.common.serde import message_from_proto, message_to_proto
    from flwr.proto.message_pb2 import Message as ProtoMessage

    raw = message_to_proto(msg).SerializeToString()
    back = ProtoMessage()
    back.ParseFromString(raw)
    return message_from_proto(back), len(raw)


def local_grid(client_app, nodes: int, run_id: int = 1):
    """A LocalGrid over `nodes` nodes (one Context each, partition ids 0..nodes-1), with
    Flower's task identity set as in a ServerApp process."""
    from flwr.app import RecordDict
    from flwr.common.constant import SUPERLINK_NODE_ID
    from flwr.supercore.run import Run
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.task_id = 1
    TaskIdentity.run_id = run_id
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    contexts = {}
    for i in range(nodes):
        nid = 1_000_003 * (i + 1)
        contexts[nid] = Context(run_id=run_id, node_id=nid,
                                node_config={"partition-id": i, "num-partitions": nodes},
                                state=RecordDict(), run_config={})
    return LocalGrid(client_app, contexts, Run.create_empty(run_id=run_id))


def run_local(server_app, grid):
    """Runs `server_app` on `grid` in this process; returns CAPTURED."""
    from flwr.app import RecordDict

    CAPTURED.clear()
    server_app(grid, Context(run_id=grid.run.run_id, node_id=0, node_config={},
                             state=RecordDict(), run_config={}))
    return CAPTURED


class LocalGrid(Grid):
    """Delivers every message to its node's ClientApp in this process, synchronously,
    each way through Flower's protobuf serialisation; a ClientApp that raises answers
    with an error reply, as Flower's workers do. `up` counts each node's reply bytes,
    `client_s` the seconds spent in ClientApps."""

    def __init__(self, client_app, contexts, run):
        self.app = client_app
        self.contexts = contexts
        self._run = run
        self._replies = {}
        self.up = {nid: 0 for nid in contexts}
        self.client_s = 0.0

    def set_run(self, run):
        self._run = run

    @property
    def run(self):
        return self._run

    def create_message(self, content, message_type, dst_node_id, group_id, ttl=None):
        from flwr.app import Message

        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
        import time
        from uuid import uuid4

        from flwr.app import Error, Message
        from flwr.common.constant import ErrorCode

        ids = []
        for msg in messages:
            msg.metadata.__dict__["_message_id"] = str(uuid4())
            msg.metadata.__dict__["_run_id"] = self._run.run_id
            inbound, _ = wire(msg)
            inbound.metadata.__dict__["_message_id"] = msg.metadata.message_id
            t0 = time.perf_counter()
            try:
                reply = self.app(inbound, self.contexts[msg.metadata.dst_node_id])
            except Exception as ex:  # what Flower's workers do with a raising ClientApp
                reply = Message(
                    Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=repr(ex)),
                    reply_to=inbound,
                )
            self.client_s += time.perf_counter() - t0
            reply.metadata.__dict__["_message_id"] = str(uuid4())
            back, size = wire(reply)
            self.up[msg.metadata.dst_node_id] += size
            self._replies[msg.metadata.message_id] = back
            ids.append(msg.metadata.message_id)
        return ids

    def pull_messages(self, message_ids):
        return [self._replies.pop(i) for i in list(message_ids) if i in self._replies]

    def send_and_receive(self, messages, *, timeout=None):
        return self.pull_messages(self.push_messages(messages))




def simulate(server_app, client_app, nodes: int):
    """Runs the apps under Flower's simulation engine (Ray) with `nodes` supernodes;
    returns CAPTURED."""
    from flwr.simulation import run_simulation

    CAPTURED.clear()
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=nodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": int(os.environ.get("SECAGG_RAY_CPUS", "2"))}},
    )
    return CAPTURED


def run(kind: str, nodes: int, **kwargs):
    if kind == "message-api":
        server_app, client_app = make_message_api_apps(nodes, **kwargs)
    else:
        server_app, client_app = make_apps(kind, nodes, **kwargs)
    return simulate(server_app, client_app, nodes)


# --------------------------------------------------------------------------------------
# Distributed DP (dp=): nodes whose model update is a fixed function of their partition
# --------------------------------------------------------------------------------------


def dp_delta(seed: int, partition: int, params: int) -> np.ndarray:
    """Node `partition`'s model update in a DP run: a random direction whose L2 norm is
    0.5 to 2 (about half the nodes above a clip of 1)."""
    rng = np.random.default_rng([seed, partition, 77])
    v = rng.normal(size=params)
    return (v / np.linalg.norm(v) * rng.uniform(0.5, 2.0)).astype(np.float32)


def clipped(v: np.ndarray, clip: float) -> np.ndarray:
    """`v` scaled to L2 norm at most `clip` (float64): the independent reference."""
    v = np.asarray(v, dtype=np.float64)
    norm = float(np.linalg.norm(v))
    return v if norm <= clip else v * (clip / norm)


class DpNode(NumPyClient):
    """Returns the model it was sent plus its fixed update (`dp_delta`)."""

    def __init__(self, seed: int, partition: int, params: int):
        self.seed, self.partition, self.params = seed, partition, params

    def fit(self, parameters, config):
        flat = np.concatenate([a.reshape(-1) for a in parameters]).astype(np.float32)
        new = flat + dp_delta(self.seed, self.partition, self.params)
        out, offset = [], 0
        for a in parameters:
            out.append(new[offset: offset + a.size].reshape(a.shape))
            offset += a.size
        return out, examples_of(self.partition), {}


class DpCapturing(FedAvg):
    """Records every round's aggregate (`CAPTURED["rounds"]`: round, parameters sent,
    parameters aggregated, results)."""

    def configure_fit(self, server_round, parameters, client_manager):
        CAPTURED.setdefault("sent", {})[server_round] = parameters
        return super().configure_fit(server_round, parameters, client_manager)

    def aggregate_fit(self, server_round, results, failures):
        out = super().aggregate_fit(server_round, results, failures)
        CAPTURED.setdefault("rounds", []).append({
            "round": server_round, "sent": CAPTURED["sent"][server_round],
            "parameters": out[0], "results": len(results)})
        return out


def make_dp_apps(nodes: int, params: int, rounds: int, seed: int, dp, mod_kwargs=None,
                 num_shares=None, threshold=None, **workflow_kwargs):
    """A legacy app over `rounds` rounds with secagg's workflow under `dp`; each event the
    workflow hands the app (`on_privacy`) goes to CAPTURED["events"]."""
    from secagg.flower import SecAggPlusWorkflow, make_secaggplus_mod, secaggplus_mod

    mod = make_secaggplus_mod(**mod_kwargs) if mod_kwargs else secaggplus_mod

    def client_fn(context: Context):
        return DpNode(seed, int(context.node_config["partition-id"]), params).to_client()

    client_app = ClientApp(client_fn=client_fn, mods=[mod])
    server_app = ServerApp()

    @server_app.main()
    def main(grid, context: Context) -> None:
        initial = [np.zeros(s, dtype=np.float32) for s in shapes(params)]
        strategy = DpCapturing(
            fraction_fit=1.0, min_fit_clients=nodes, min_available_clients=nodes,
            fraction_evaluate=0.0, min_evaluate_clients=0,
            initial_parameters=ndarrays_to_parameters(initial),
        )
        legacy = LegacyContext(context=context, config=ServerConfig(num_rounds=rounds),
                               strategy=strategy)
        CAPTURED["events"] = []
        fit = SecAggPlusWorkflow(
            num_shares=num_shares or nodes - 1,
            reconstruction_threshold=threshold or max(2, nodes // 2), dp=dp,
            on_privacy=CAPTURED["events"].append, **workflow_kwargs,
        )
        CAPTURED["workflow"] = fit
        DefaultWorkflow(fit_workflow=fit)(grid, legacy)

    return server_app, client_app
