#!/usr/bin/env python3
"""The same Flower app, once with Flower's own SecAgg+ and once with secagg's drop-in.

    python python/bench/flower_side_by_side.py --kind secagg --n 100 --m 1000000 --d 0.1
    python python/bench/flower_side_by_side.py --kind flower --n 100 --m 1000000 --d 0.1

Runs in one process: a minimal Grid hands each Message to the ClientApp of its node
(keeping one Context per node, as a SuperNode does) and back, each way through Flower's
protobuf serialisation (the bytes a real transport would carry, counted per node). The
app is python/tests/flower_app.py (FedAvg over a NumPyClient; the two imports are the only
difference); a fraction d of the nodes fail in fit, i.e. drop at the masked-input stage.

Prints one JSON object: round wall time (the workflow), the server's unmask stage (its own
work, not the clients'), bytes uploaded per client, the process's peak RSS (server and all
clients), and the error against the plain weighted mean of the survivors.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from uuid import uuid4

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402
from flwr.app import Context, Error, Message, RecordDict  # noqa: E402
from flwr.common.constant import ErrorCode  # noqa: E402
from flwr.common.serde import message_from_proto, message_to_proto  # noqa: E402
from flwr.proto.message_pb2 import Message as ProtoMessage  # noqa: E402
from flwr.serverapp.grid import Grid  # noqa: E402
from flwr.common.constant import SUPERLINK_NODE_ID  # noqa: E402
from flwr.supercore.run import Run  # noqa: E402
from flwr.supercore.task_identity import TaskIdentity  # noqa: E402

import flower_app  # noqa: E402

import importlib  # noqa: E402

_flower_workflow = importlib.import_module(
    "flwr.server.workflow.secure_aggregation.secaggplus_workflow"
)


def wire(msg: Message) -> tuple:
    raw = message_to_proto(msg).SerializeToString()
    back = ProtoMessage()
    back.ParseFromString(raw)
    return message_from_proto(back), len(raw)


class LocalGrid(Grid):
    """Delivers every message to its node's ClientApp in this process, synchronously."""

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
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self):
        return list(self.contexts)

    def push_messages(self, messages):
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


def flower_unmask_timer(stats):
    """Times Flower's unmask stage (it runs its clients inside the stage: subtract them)."""
    cls = _flower_workflow.SecAggPlusWorkflow
    original = cls.unmask_stage

    def timed(self, grid, context, state):
        c0 = grid.client_s
        t0 = time.perf_counter()
        ok = original(self, grid, context, state)
        stats["unmask_s"] = time.perf_counter() - t0 - (grid.client_s - c0)
        return ok

    cls.unmask_stage = timed


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kind", choices=["secagg", "flower"], required=True)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--m", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=21, help="num_shares (Flower's meaning)")
    ap.add_argument("--t", type=int, default=10, help="reconstruction_threshold")
    ap.add_argument("--d", type=float, default=0.1, help="fraction dropping at masked input")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--clipping-range", type=float, help="SecAggPlusWorkflow's clipping_range")
    ap.add_argument("--max-weight", type=float, help="... max_weight")
    ap.add_argument("--quantization-range", type=int, help="... quantization_range")
    ap.add_argument("--modulus-range", type=int, help="... modulus_range")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()

    fail = set(range(0, a.n, max(1, round(1 / a.d)))) if a.d > 0 else set()
    fail = set(list(fail)[: int(round(a.d * a.n))])
    extra = {"backend": a.backend} if a.kind == "secagg" else {}
    for name in ("clipping_range", "max_weight", "quantization_range", "modulus_range"):
        if getattr(a, name) is not None:
            extra[name] = getattr(a, name)
    server_app, client_app = flower_app.make_apps(
        a.kind, a.n, params=a.m, fail=fail, num_shares=a.k, threshold=a.t, **extra
    )
    # Messages take their run and sender from the task identity, as in a ServerApp process.
    TaskIdentity.task_id = 1
    TaskIdentity.run_id = 1
    TaskIdentity.node_id = SUPERLINK_NODE_ID
    run = Run.create_empty(run_id=1)
    contexts = {}
    for i in range(a.n):
        nid = 1_000_003 * (i + 1)
        contexts[nid] = Context(
            run_id=1, node_id=nid, node_config={"partition-id": i, "num-partitions": a.n},
            state=RecordDict(), run_config={},
        )
    grid = LocalGrid(client_app, contexts, run)
    stats = {}
    if a.kind == "flower":
        flower_unmask_timer(stats)
    server_context = Context(run_id=1, node_id=0, node_config={}, state=RecordDict(), run_config={})
    t0 = time.perf_counter()
    server_app(grid, server_context)
    wall = time.perf_counter() - t0
    cap = flower_app.CAPTURED
    from flwr.common import parameters_to_ndarrays

    got = np.concatenate([x.reshape(-1) for x in parameters_to_ndarrays(cap["parameters"])])
    expected = flower_app.expected_mean(a.n, params=a.m, fail=fail)
    if a.kind == "secagg":
        s = cap["workflow"].fit_workflow.last_round
        stats["unmask_s"] = s.stage_s.get("unmasking", 0.0)
        stats["neighbors"], stats["threshold"], stats["bits"] = s.neighbors, s.threshold, s.bits
    survivors = [nid for i, nid in enumerate(contexts) if i not in fail]
    out = {
        "kind": a.kind,
        "n": a.n,
        "m": a.m,
        "num_shares": a.k,
        "threshold": a.t,
        "dropped": len(fail),
        "workflow_kwargs": {k: v for k, v in extra.items() if k != "backend"},
        "round_wall_s": wall,
        "clients_s": grid.client_s,
        "server_unmask_s": stats.get("unmask_s"),
        "bytes_up_per_client": float(np.mean([grid.up[nid] for nid in survivors])),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "max_error": float(np.max(np.abs(got - expected))),
        **{k: v for k, v in stats.items() if k != "unmask_s"},
    }
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
