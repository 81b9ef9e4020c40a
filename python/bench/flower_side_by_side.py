#!/usr/bin/env python3
"""The same Flower app two ways, side by side.

Legacy apps: Flower's own SecAgg+ against secagg's drop-in.

    python python/bench/flower_side_by_side.py --kind secagg --n 100 --m 1000000 --d 0.1
    python python/bench/flower_side_by_side.py --kind flower --n 100 --m 1000000 --d 0.1

Message-API apps: plain FedAvg against SecAggPlus(FedAvg) (the overhead of secure
aggregation).

    python python/bench/flower_side_by_side.py --api message --kind plain --n 100 --m 1000000
    python python/bench/flower_side_by_side.py --api message --kind secagg --n 100 --m 1000000

Runs in one process: `flower_app.LocalGrid` hands each Message to the ClientApp of its node
(keeping one Context per node, as a SuperNode does) and back, each way through Flower's
protobuf serialisation (the bytes a real transport would carry, counted per node). The
apps are those of python/tests/flower_app.py: FedAvg over a NumPyClient (legacy; the two
imports are the only difference), or `@app.train()` with `flwr.serverapp.strategy.FedAvg`
(Message API; the mod on the train function and the wrapper around the strategy are the only
difference). A fraction d of the nodes fail in training, i.e. drop at the masked-input stage.

Prints one JSON object: round wall time (the workflow, or `strategy.start` for one round),
the seconds spent in the ClientApps, the server's unmask stage (its own work, not the
clients'), bytes uploaded per client, the process's peak RSS (server and all clients), and
the error against the plain weighted mean of the survivors.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import sys
import time

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

import flower_app  # noqa: E402


def flower_unmask_timer(stats):
    """Times Flower's unmask stage (it runs its clients inside the stage: subtract them)."""
    module = importlib.import_module("flwr.server.workflow.secure_aggregation.secaggplus_workflow")
    cls = module.SecAggPlusWorkflow
    original = cls.unmask_stage

    def timed(self, grid, context, state):
        c0 = grid.client_s
        t0 = time.perf_counter()
        ok = original(self, grid, context, state)
        stats["unmask_s"] = time.perf_counter() - t0 - (grid.client_s - c0)
        return ok

    cls.unmask_stage = timed


def legacy(a, fail, extra):
    """One round of the legacy app; (the round's grid, the error, figures)."""
    from flwr.common import parameters_to_ndarrays

    server_app, client_app = flower_app.make_apps(
        a.kind, a.n, params=a.m, fail=fail, num_shares=a.k, threshold=a.t, **extra
    )
    grid = flower_app.local_grid(client_app, a.n)
    stats = {}
    if a.kind == "flower":
        flower_unmask_timer(stats)
    t0 = time.perf_counter()
    cap = flower_app.run_local(server_app, grid)
    stats["wall_s"] = time.perf_counter() - t0
    got = np.concatenate([x.reshape(-1) for x in parameters_to_ndarrays(cap["parameters"])])
    expected = flower_app.expected_mean(a.n, params=a.m, fail=fail)
    if a.kind == "secagg":
        s = cap["workflow"].fit_workflow.last_round
        stats["unmask_s"] = s.stage_s.get("unmasking", 0.0)
        stats["neighbors"], stats["threshold"], stats["bits"] = s.neighbors, s.threshold, s.bits
        stats["levels"] = s.levels
    return grid, float(np.max(np.abs(got - expected))), stats


def message(a, fail, extra):
    """One round of FedAvg in the Message-API app; (the round's grid, the error, figures)."""
    secure = a.kind == "secagg"
    if secure:
        extra = dict(extra, num_shares=a.k, reconstruction_threshold=a.t)
    server_app = flower_app.make_message_server(
        a.n, phases=(("FedAvg", 1, {}),), secure=secure, params=a.m, evaluate=False,
        **(extra if secure else {}),
    )
    client_app = flower_app.make_message_client(a.seed, fail=fail,
                                                mod="secagg" if secure else None)
    grid = flower_app.local_grid(client_app, a.n)
    t0 = time.perf_counter()
    cap = flower_app.run_local(server_app, grid)
    wall = time.perf_counter() - t0
    [r] = cap["rounds"]
    survivors = [p for p in range(a.n) if p not in fail]
    expected = flower_app.message_mean(a.seed, survivors, 0, 1, r["sent"])
    error = max(float(np.max(np.abs(r["result"][k].astype(np.float64) - v)))
                for k, v in expected.items())
    stats = {"wall_s": wall}
    if secure:
        s = r["stats"]
        stats["unmask_s"] = s.stage_s.get("unmasking", 0.0)
        stats["neighbors"], stats["threshold"], stats["bits"] = s.neighbors, s.threshold, s.bits
        stats["levels"] = s.levels
    return grid, error, stats


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--api", choices=["legacy", "message"], default="legacy")
    ap.add_argument("--kind", choices=["secagg", "flower", "plain"], required=True,
                    help="legacy: secagg or flower; message: secagg or plain")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--m", type=int, default=1_000_000)
    ap.add_argument("--k", type=int, default=21, help="num_shares (Flower's meaning)")
    ap.add_argument("--t", type=int, default=10, help="reconstruction_threshold")
    ap.add_argument("--d", type=float, default=0.1, help="fraction dropping at masked input")
    ap.add_argument("--seed", type=int, default=1, help="the Message-API app's updates")
    ap.add_argument("--backend", default="cpu")
    ap.add_argument("--clipping-range", type=float, help="SecAggPlusWorkflow's clipping_range")
    ap.add_argument("--max-weight", type=float, help="... max_weight")
    ap.add_argument("--quantization-range", type=int, help="... quantization_range")
    ap.add_argument("--modulus-range", type=int, help="... modulus_range")
    ap.add_argument("--json", help="also write the result here")
    a = ap.parse_args()
    if (a.api, a.kind) in (("legacy", "plain"), ("message", "flower")):
        ap.error(f"--api {a.api} runs --kind " + ("secagg or flower" if a.api == "legacy"
                                                  else "secagg or plain"))

    fail = set(range(0, a.n, max(1, round(1 / a.d)))) if a.d > 0 else set()
    fail = set(list(fail)[: int(round(a.d * a.n))])
    extra = {"backend": a.backend} if a.kind == "secagg" else {}
    for name in ("clipping_range", "max_weight", "quantization_range", "modulus_range"):
        if getattr(a, name) is not None:
            extra[name] = getattr(a, name)
    grid, error, stats = (legacy if a.api == "legacy" else message)(a, fail, extra)
    survivors = [nid for i, nid in enumerate(grid.contexts) if i not in fail]
    out = {
        "api": a.api,
        "kind": a.kind,
        "n": a.n,
        "m": a.m,
        "num_shares": a.k,
        "threshold": a.t,
        "dropped": len(fail),
        "workflow_kwargs": {k: v for k, v in extra.items() if k != "backend"},
        "round_wall_s": stats["wall_s"],
        "clients_s": grid.client_s,
        "server_unmask_s": stats.get("unmask_s"),
        "bytes_up_per_client": float(np.mean([grid.up[nid] for nid in survivors])),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
        "max_error": error,
        **{k: v for k, v in stats.items() if k not in ("unmask_s", "wall_s")},
    }
    text = json.dumps(out, indent=2)
    print(text)
    if a.json:
        with open(a.json, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
