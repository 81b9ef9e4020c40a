"""Secure aggregation for federated learning (SecAgg / SecAgg+), from Python.

The server learns the (weighted) sum of many clients' float32 updates and nothing about
any single one, even when clients drop out mid-round. The protocol, its cryptography and
the vector work run in Rust (``secagg._native``); this package adds NumPy in and out,
dataclass results and, in :mod:`secagg.flower`, secure aggregation for Flower apps: the
Message API's ``SecAggPlus`` and a drop-in for Flower's legacy SecAgg+.

Three ways in:

* :func:`aggregate` runs a whole round in memory from NumPy arrays (the quick start);
* :class:`Client` and :class:`Server` are sans-IO: they take and return bytes in the same
  wire format as the TCP transport, so any transport can carry a round (a client that
  must be rebuilt between messages keeps its step counter in a :class:`StepStore`, or any
  mapping kept where its keys live, so that an old snapshot cannot be resumed);
* :func:`simulate` and :func:`plan` mirror ``secagg simulate`` and ``secagg plan``;
  :func:`plan_dp` its DP plan, and :class:`PrivacyEvent` a DP round's privacy cost
  (:mod:`secagg.dp`).

Every error is a subclass of :class:`SecaggError`; heavy calls release the GIL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from ._native import (
    Client,
    CodecError,
    ConfigError,
    EngineError,
    Identity,
    IdentityError,
    InputError,
    JournalError,
    PlanError,
    Policy,
    PolicyError,
    ProtocolError,
    RoundConfig,
    SecaggError,
    Server,
    StaleSnapshotError,
    __version__,
)
from ._native import plan as _plan
from ._native import simulate as _simulate
from .steps import StepStore
from .dp import DpPlan, DpSpec, PrivacyEvent, honest_survivors, plan_dp, privacy_spent
from .dp import __all__ as _dp_names

__all__ = [
    "Client",
    "Server",
    "RoundConfig",
    "Policy",
    "Identity",
    "StepStore",
    "Plan",
    "SimulationResult",
    "RoundResult",
    "plan",
    "simulate",
    "aggregate",
    "SecaggError",
    "ConfigError",
    "PlanError",
    "PolicyError",
    "ProtocolError",
    "CodecError",
    "InputError",
    "IdentityError",
    "EngineError",
    "JournalError",
    "StaleSnapshotError",
    "__version__",
    *(name for name in _dp_names if name != "INTEGER_ORDERS"),
]


@dataclass(frozen=True)
class Plan:
    """The planner's answer: neighbour count ``k`` and Shamir threshold ``t``."""

    clients: int
    neighbors: int
    threshold: int
    log2_insecurity: float
    log2_failure: float
    complete_graph: bool
    adversary: str


def plan(
    clients: int,
    *,
    dropout: float = 0.1,
    corrupt: float = 0.05,
    adversary: str = "semi-malicious",
    security_bits: int = 40,
    correctness_bits: int = 20,
    neighbors: Optional[int] = None,
    threshold: Optional[int] = None,
    colluders: Optional[int] = None,
) -> Plan:
    """SecAgg+ parameters for ``clients`` clients, as ``secagg plan`` chooses them.

    With ``neighbors`` and ``threshold`` given, checks that pair instead (raising
    :class:`PlanError` naming the bound it fails). ``adversary`` is ``"curious"`` or
    ``"semi-malicious"``. ``colluders`` is the absolute number of colluding clients the
    round must withstand (what a client's :class:`Policy` holds); without it,
    ``ceil(corrupt x clients)``. Raises :class:`ConfigError` for a malformed request and
    :class:`PlanError` when nothing meets it.
    """
    d = _plan(
        clients,
        dropout=dropout,
        corrupt=corrupt,
        colluders=colluders,
        adversary=adversary,
        security_bits=security_bits,
        correctness_bits=correctness_bits,
        neighbors=neighbors,
        threshold=threshold,
    )
    return Plan(**d)


@dataclass(frozen=True)
class StageFigures:
    """One stage of a simulated round."""

    stage: Optional[str]
    server_s: float
    slowest_client_s: float
    bytes_up: int
    bytes_down: int


@dataclass(frozen=True)
class SimulationResult:
    """What :func:`simulate` did; ``check_passed`` compares with the plaintext sum."""

    clients: int
    params: int
    neighbors: int
    threshold: int
    bits: int
    levels: int
    seed: int
    engine: str
    dropped: int
    wall_s: float
    completed: bool
    error: Optional[str]
    included: List[int]
    total_weight: int
    mean: Optional[np.ndarray]
    sum: Optional[np.ndarray]
    check_passed: bool
    max_error: Optional[float]
    error_bound: Optional[float]
    stages: List[StageFigures] = field(default_factory=list)


def simulate(
    clients: int = 100,
    params: int = 10_000,
    *,
    neighbors: Optional[int] = None,
    threshold: Optional[int] = None,
    dropout: float = 0.1,
    dropout_stage: str = "masked-input",
    silent: bool = False,
    corrupt: float = 0.05,
    adversary: str = "semi-malicious",
    unauthenticated: bool = False,
    backend: str = "cpu",
    prg: str = "chacha20",
    bits: int = 32,
    clip: float = 1.0,
    levels: Optional[int] = None,
    max_weight: int = 1,
    seed: Optional[int] = None,
) -> SimulationResult:
    """One in-memory round with random updates, as ``secagg simulate`` runs it.

    A fraction ``dropout`` of the clients leave before ``dropout_stage``; the server's sum
    is checked against the plaintext sum of the clients it includes. Arguments mean what
    the CLI flags of the same name mean.
    """
    d = _simulate(
        clients,
        params,
        neighbors=neighbors,
        threshold=threshold,
        dropout=dropout,
        dropout_stage=dropout_stage,
        silent=silent,
        corrupt=corrupt,
        adversary=adversary,
        unauthenticated=unauthenticated,
        backend=backend,
        prg=prg,
        bits=bits,
        clip=clip,
        levels=levels,
        max_weight=max_weight,
        seed=seed,
    )
    d["stages"] = [StageFigures(**s) for s in d["stages"]]
    return SimulationResult(**d)


@dataclass(frozen=True)
class RoundResult:
    """The outcome of a completed round."""

    mean: np.ndarray
    """Σ w·x / Σ w over the included clients (float32)."""
    sum: np.ndarray
    """Σ w·x over the included clients (float32)."""
    total_weight: int
    included: List[int]
    dropped: List[Dict[str, object]]


def _route(server: Server, clients: Dict[int, Client], gone: set) -> bool:
    """Delivers every queued frame once; returns whether anything moved."""
    moved = False
    for cid, client in clients.items():
        if cid in gone:
            continue
        while True:
            frame = client.poll_transmit()
            if frame is None:
                break
            server.handle(cid, frame)
            moved = True
    while True:
        out = server.poll_transmit()
        if out is None:
            break
        cid, frame = out
        moved = True
        if cid in gone or cid not in clients:
            continue
        try:
            clients[cid].handle(frame)
        except ProtocolError:
            pass  # the client ended its round; the server learns when it stops answering
    return moved


def aggregate(
    updates: Union[np.ndarray, Sequence[np.ndarray]],
    weights: Optional[Sequence[int]] = None,
    *,
    neighbors: Optional[int] = None,
    threshold: Optional[int] = None,
    clip: float = 1.0,
    bits: int = 32,
    levels: Optional[int] = None,
    drop: Sequence[int] = (),
    backend: str = "cpu",
) -> RoundResult:
    """Runs one real round in memory over the rows of ``updates`` (float32, one row per
    client) and returns the weighted mean and sum the server learns.

    Every client is a sans-IO :class:`Client` with a fresh self-asserted identity (the
    honest-but-curious protocol: this is a single-process demonstration, not a
    deployment); the :class:`Server` sees only their masked, packed vectors. Clients in
    ``drop`` leave after sending their keys, and the round recovers without them.
    Values outside ``[-clip, clip]`` are clipped.
    """
    rows = [np.ascontiguousarray(u, dtype=np.float32).reshape(-1) for u in updates]
    n = len(rows)
    if n < 3:
        raise ConfigError(f"a round needs at least 3 clients, got {n}")
    m = rows[0].size
    if any(r.size != m for r in rows):
        raise InputError("every update must have the same number of values")
    w = [1] * n if weights is None else [int(x) for x in weights]
    if len(w) != n:
        raise InputError(f"{len(w)} weights for {n} updates")
    if neighbors is None:
        neighbors = n - 1
    if threshold is None and neighbors >= n - 1:
        threshold = n // 2 + 1
    config = RoundConfig(
        n,
        m,
        neighbors=neighbors,
        threshold=threshold,
        bits=bits,
        clip=clip,
        levels=levels,
        max_weight=max(w),
    )
    server = Server(config, backend=backend, now=0.0)
    # Every client is the caller's own: no colluders to budget for.
    policy = Policy(adversary="curious", min_cohort=3, security_bits=0, colluders=0)
    welcome = server.welcome()
    clients = {i: Client(welcome, Identity.generate(i), policy) for i in range(n)}
    for i, client in clients.items():
        client.set_input(rows[i], w[i])
        server.join(i, now=0.0)
    gone: set = set()
    dropping = set(int(d) for d in drop)
    while server.status not in ("completed", "aborted"):
        moved = _route(server, clients, gone)
        for i in list(dropping):
            if clients[i].status not in ("advertise-keys", "share-keys"):
                gone.add(i)
                dropping.discard(i)
                server.disconnect(i, now=0.0)
                moved = True
        if not moved:
            deadline = server.poll_timeout()
            if deadline is None:
                break
            server.handle_timeout(now=deadline)
    _route(server, clients, gone)
    r = server.result()
    return RoundResult(
        mean=r["mean"],
        sum=r["sum"],
        total_weight=r["total_weight"],
        included=list(r["included"]),
        dropped=list(server.dropped),
    )
