"""A small Flower app (a legacy NumPyClient with FedAvg), runnable with Flower's own SecAgg+
or with secagg's drop-in: the two imports are the only difference.

Each node's update and num_examples are a pure function of its partition id, so a test can
compute the plain weighted mean of the survivors independently. One partition may be told
to fail in fit (it drops out at the masked-input stage).
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
        # num_examples tells the partitions apart (examples_of is one-to-one below 20).
        CAPTURED["partitions"] = sorted(partition_of(fitres.num_examples) for _, fitres in results)
        return out


def partition_of(num_examples: int) -> int:
    (p,) = [p for p in range(20) if examples_of(p) == num_examples]
    return p


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
    model (all ones), "config": another config (zero local epochs) — and leaves secagg's
    record as it is. Everything else goes to Flower's grid unchanged."""

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
            if self.what == "arrays":
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
    "fitres": the fit result is gone."""

    def wrap(mod):
        def spoiled(msg, ctxt, call_next):
            reply = mod(msg, ctxt, call_next)
            if int(ctxt.node_config["partition-id"]) == partition and stage_of(msg) == stage:
                records = reply.content.config_records
                if how == "frames":
                    records["secagg"]["frames"] = ["not", "bytes"]
                elif how == "record":
                    del records["secagg"]
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


def run(kind: str, nodes: int, **kwargs):
    from flwr.simulation import run_simulation

    CAPTURED.clear()
    if kind == "message-api":
        server_app, client_app = make_message_api_apps(nodes, **kwargs)
    else:
        server_app, client_app = make_apps(kind, nodes, **kwargs)
    run_simulation(
        server_app=server_app,
        client_app=client_app,
        num_supernodes=nodes,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
                        "init_args": {"num_cpus": int(os.environ.get("SECAGG_RAY_CPUS", "2"))}},
    )
    return CAPTURED
