"""Secure aggregation for Flower apps: the Message API, and a drop-in for Flower's SecAgg+.

Message API (``@app.train()`` functions and a :mod:`flwr.serverapp.strategy` strategy),
two changes::

    from secagg.flower import SecAggPlus, secaggplus_mod

    @app.train(mods=[secaggplus_mod])                    # the ClientApp's train function
    def train(msg: Message, context: Context) -> Message: ...

    result = SecAggPlus(FedAvg(...)).start(grid=grid, initial_arrays=arrays, num_rounds=3)

:class:`SecAggPlus` wraps any strategy whose aggregation is a weighted mean of the nodes'
arrays (FedAvg, FedAdam, FedYogi, FedAdagrad, FedAvgM, FedProx) and returns the Result the
strategy would; the mod runs the round's stages around the train function and masks the
ArrayRecord it returns. Both sides run the rounds of the legacy drop-in below (one
implementation of the stages, the same defences).

Legacy apps (a ``client_fn`` ClientApp and ``DefaultWorkflow``): change two imports.
Server side, instead of ``from flwr.server.workflow import SecAggPlusWorkflow``::

    from secagg.flower import SecAggPlusWorkflow

Client side, instead of ``from flwr.client.mod import secaggplus_mod``::

    from secagg.flower import secaggplus_mod

The workflow takes Flower's keyword arguments with their meaning (``num_shares``,
``reconstruction_threshold``, ``max_weight``, ``clipping_range``, ``quantization_range``,
``modulus_range``, ``timeout``) plus our own (``prg``, ``backend``, ``dropout``,
``corrupt``). What changes for the app:

* masks come from ChaCha20 keyed by X25519 agreement (Flower's come from NumPy's Mersenne
  Twister seeded with a 32-bit fold), with Shamir shares checked against public share
  points;
* masked vectors travel packed at b bits, as bytes in Flower's records, not as int64
  arrays: b = ``log2(modulus_range)`` when given, else the planner's, up to 64 — the
  fewest (at least 32) in which ``quantization_range`` levels times ``max_weight`` over
  the clients sampled cannot wrap;
* the server's unmasking is one fused Rust pass (optionally on a GPU) over O(m) memory;
* the weight of each client is its ``num_examples`` as an exact integer (at most
  ``max_weight``, which a client refuses to exceed, loudly), and values outside
  ``[-clipping_range, clipping_range]`` are clipped with a warning that says how many;
* parameters a client policy finds insecure (too few shares for the clients sampled) are
  raised to the planner's choice, with a warning;
* the round context that every client signs binds the round's fit instructions (the
  model arrays and the config, with the run and round number: :func:`round_context`), and
  each node checks what it is asked to train on against it before training, refusing
  other instructions with :class:`FitInstructionsError` — a server cannot send one node a
  model or config of its own to single out another node's update;
* with enrollment files from ``secagg enroll`` (``SecAggPlusWorkflow(ca=...)`` and
  ``make_secaggplus_mod(identity=...)``) it runs the protocol that withstands a
  semi-malicious server, each node under its certificate's id (bound to its Flower node
  id by a signature of its key, so that no node takes another's id); without them (Flower's
  nodes have no enrolled identities) it runs the honest-but-curious protocol — the server
  is trusted to follow the protocol, not to see any single update — and warns that it
  does, on the server and on every node (a ``logging`` WARNING).

Both take ``dp=`` (a :class:`secagg.DpSpec`): distributed differential privacy under the
masks. Each node clips its model update (its reply less the model it was sent), rotates,
rounds and adds Skellam noise sized so that the round's honest survivors alone (T − c, at
most k − t + 2 against a semi-malicious server) meet the target, and refuses noise sized
for more than its policy guarantees; each released round's :class:`secagg.PrivacyEvent`
goes to ``privacy_events`` and ``on_privacy`` (``event.to_flower()``: a Gaussian event for
Flower's accountant that bounds it).

A mismatch — our workflow or wrapper with Flower's mod or with no mod, Flower's workflow or
an unwrapped strategy with our mod, two secagg versions — fails at the first stage with an
error that says which side runs what; it never yields a sum, and a node that runs the mod
never sends an update unmasked.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable, Dict, List, MutableMapping, Optional, Tuple, Union, cast

import numpy as np

from . import (
    Client,
    Identity,
    IdentityError,
    PlanError,
    Policy,
    PolicyError,
    ProtocolError,
    RoundConfig,
    SecaggError,
    Server,
    StepStore,
    __version__,
)
from . import plan as _plan
from . import __all__ as _package_names
from .dp import DpPlan, DpSpec, PrivacyEvent
from .dp import honest_survivors as _honest_survivors
from .dp import plan_dp as _plan_dp

try:  # Flower is an optional extra: pip install "secagg[flower]"
    from flwr.app import (
        Array,
        ArrayRecord,
        ConfigRecord,
        Context,
        Error,
        Message,
        MetricRecord,
        RecordDict,
    )
    from flwr.app.message_type import MessageType
    from flwr.common import (
        FitRes,
        ndarrays_to_parameters,
        parameters_to_ndarrays,
    )
    from flwr.common.constant import ErrorCode
    from flwr.serverapp.strategy import (
        Bulyan,
        FedAdagrad,
        FedAdam,
        FedAvg,
        FedAvgM,
        FedMedian,
        FedTrimmedAvg,
        FedXgbBagging,
        FedXgbCyclic,
        FedYogi,
        MultiKrum,
        QFedAvg,
        Result,
        Strategy,
    )
    from flwr.compat.common import recorddict_compat as compat
    from flwr.server.compat.legacy_context import LegacyContext
    from flwr.server.client_proxy import ClientProxy
    from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
    from flwr.server.workflow.constant import Key as WorkflowKey
except ImportError as e:  # pragma: no cover - exercised only without flwr
    raise ImportError(
        "secagg.flower needs Flower: pip install 'secagg[flower]' (flwr 1.42)"
    ) from e

__all__ = [
    "SecAggPlus",
    "SecAggPlusWorkflow",
    "secaggplus_mod",
    "make_secaggplus_mod",
    "MismatchError",
    "UnguardedMessageError",
    "FitInstructionsError",
    "RepeatedRoundError",
    "TrainReplyError",
    "ModelLayoutError",
    "UnsupportedStrategyError",
    "message_layout",
    "RoundStats",
    "fit_digests",
    "round_context",
]

log = logging.getLogger("secagg.flower")

#: The ConfigRecord our workflow and mod exchange (Flower's is "secaggplus_configs").
RECORD = "secagg"
#: The client's state between messages, in its Context.
STATE_RECORD = "secagg_state"
#: The node's step store when the mod is given none (a record of its Context, apart from
#: the snapshot in STATE_RECORD).
STEPS_RECORD = "secagg_steps"
#: Wire protocol of the drop-in; both sides must agree. (2: the round context binds the fit
#: instructions, which nodes check; 3: and how the update is read, for Flower's legacy
#: records or the Message API; 4: secagg's wire v5, whose lists travel as commitments with
#: openings, and whose config may carry b up to 64.)
PROTOCOL = "secagg-flower/4"
#: The update is a legacy FitRes (SecAggPlusWorkflow with a client_fn ClientApp).
LEGACY_API = "legacy"
#: The update is the ArrayRecord and weight metric of a Message-API train reply
#: (SecAggPlus around a flwr.serverapp strategy, @app.train() functions).
MESSAGE_API = "message"
#: The record Flower's own SecAgg+ uses.
FLOWER_RECORD = "secaggplus_configs"


class MismatchError(RuntimeError):
    """One side runs secagg's drop-in and the other Flower's SecAgg+ (or none)."""


class UnguardedMessageError(MismatchError):
    """A ``train.<action>`` message reached a node whose secagg mod is active: it would run
    the app's ``@app.train("<action>")`` function and send its reply unmasked, so the mod
    refuses it. Only ``train`` messages from :class:`SecAggPlusWorkflow` are trained on."""


class RepeatedRoundError(SecaggError):
    """A second session for a round context this node already masked an update in: the
    node refuses it, since two sums over one update (with and without it, or with other
    cohorts) give the update away as their difference. ``make_secaggplus_mod(
    allow_remask=True)`` lifts this (a node that trusts its server to rerun a round only
    when the first run failed)."""


class FitInstructionsError(SecaggError):
    """The fit instructions a node was sent (model arrays, config) are not those bound to
    the round context that every client of the round signs: the node refuses to train on
    them. A server that sends one node other instructions than the rest (a model that
    kills its gradients, zero local epochs) to solve the sum for another node's update
    meets this error on every node it singles out."""


class TrainReplyError(SecaggError, ValueError):
    """The app's training returned a reply that the node's mod cannot mask as the round
    asks: an ArrayRecord whose keys, shapes or dtypes are not those of the model it was sent
    (a Message-API reply), more than one ArrayRecord or MetricRecord, or a weight that is
    missing, not a whole number, or outside ``[0, max_weight]``. The node leaves the round
    and its update never leaves it."""


class ModelLayoutError(SecaggError, ValueError):
    """The model a Message-API round would aggregate cannot be summed securely: the train
    instructions do not hold exactly one ArrayRecord, or it holds an array that is not a
    float array (float16, float32, float64), or no values at all."""


class UnsupportedStrategyError(TypeError):
    """:class:`SecAggPlus` was given a strategy whose aggregation is not a weighted mean of
    the nodes' arrays: under secure aggregation the server learns only that mean, so a
    strategy that needs individual updates (Krum, Bulyan, FedMedian, FedTrimmedAvg, ...)
    would silently compute something else."""


# --------------------------------------------------------------------------------------
# The round context: what every client of a round signs and derives its keys under
# --------------------------------------------------------------------------------------

_ARRAYS_LABEL = b"secagg-flower/v1/fit-arrays"
_CONFIG_LABEL = b"secagg-flower/v1/fit-config"
_CONTEXT_LABEL = b"secagg-flower/v1/round-context"


def _put(h, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def _put_value(h, value: object) -> None:
    if isinstance(value, bool):
        h.update(b"b1" if value else b"b0")
    elif isinstance(value, int):
        h.update(b"i")
        _put(h, str(value).encode("ascii"))
    elif isinstance(value, float):
        h.update(b"f" + struct.pack("<d", value))
    elif isinstance(value, str):
        h.update(b"s")
        _put(h, value.encode("utf-8"))
    elif isinstance(value, (bytes, bytearray)):
        h.update(b"y")
        _put(h, bytes(value))
    elif isinstance(value, list):
        h.update(b"l" + len(value).to_bytes(8, "little"))
        for v in value:
            _put_value(h, v)
    else:
        raise TypeError(f"a record value of type {type(value).__name__}")


def fit_digests(content: RecordDict) -> Tuple[bytes, bytes]:
    """SHA-256 digests of the fit instructions in a train message: every array record (its
    arrays in order: name, dtype, shape, stype, bytes) and every config and metric record but
    secagg's own (keys sorted, values typed). Server and nodes compute them with this one
    function."""
    arrays = hashlib.sha256(_ARRAYS_LABEL)
    names = sorted(content.array_records)
    arrays.update(len(names).to_bytes(8, "little"))
    for name in names:
        record = content.array_records[name]
        _put(arrays, name.encode("utf-8"))
        arrays.update(len(record).to_bytes(8, "little"))
        for key, array in record.items():
            _put(arrays, key.encode("utf-8"))
            _put(arrays, str(array.dtype).encode("utf-8"))
            shape = [int(d) for d in array.shape]
            arrays.update(len(shape).to_bytes(8, "little"))
            for d in shape:
                arrays.update(d.to_bytes(8, "little", signed=True))
            _put(arrays, str(array.stype).encode("utf-8"))
            _put(arrays, bytes(array.data))
    config = hashlib.sha256(_CONFIG_LABEL)
    for kind, records in ((b"config", content.config_records), (b"metric", content.metric_records)):
        names = sorted(n for n in records if not (kind == b"config" and n == RECORD))
        config.update(kind + len(names).to_bytes(8, "little"))
        for name in names:
            record = records[name]
            _put(config, name.encode("utf-8"))
            keys = sorted(record)
            config.update(len(keys).to_bytes(8, "little"))
            for key in keys:
                _put(config, key.encode("utf-8"))
                _put_value(config, record[key])
    return arrays.digest(), config.digest()


def round_context(
    run_id: int,
    server_round: int,
    arrays: bytes,
    config: bytes,
    api: str = LEGACY_API,
    weight_key: str = "",
) -> bytes:
    """The 32-byte round context of a Flower round: its run, its number, the digests of
    its fit instructions (:func:`fit_digests`) and how every node reads its update from the
    app's reply (``api``: :data:`LEGACY_API`, Flower's FitRes records, or
    :data:`MESSAGE_API`, the one ArrayRecord and the weight metric ``weight_key`` of a
    Message-API reply). It enters the round digest that every client signs and derives its
    keys under, so nodes given other instructions than the round announced cannot complete
    it with the others, and each node checks what it is asked to train on, and which metric
    it is told to weigh its update by, against it."""
    h = hashlib.sha256(_CONTEXT_LABEL)
    h.update(int(run_id).to_bytes(8, "little"))
    h.update(int(server_round).to_bytes(8, "little", signed=True))
    h.update(arrays)
    h.update(config)
    _put(h, api.encode("utf-8"))
    _put(h, weight_key.encode("utf-8"))
    return h.digest()


#: A Message-API model's layout: (key, shape, dtype) of each array, in the record's order.
Layout = List[Tuple[str, Tuple[int, ...], str]]

_FLOAT_SIZES = (2, 4, 8)


def message_layout(content: RecordDict) -> Tuple[str, Layout]:
    """The model a Message-API round aggregates: the one ArrayRecord of its train
    instructions, as ``(record name, [(key, shape, dtype), ...])`` in the record's order.
    Server and nodes compute it with this one function, from instructions that are bound to
    the round context; each node masks the arrays its app returns in this order, and the
    server rebuilds the mean in it. Raises :class:`ModelLayoutError` unless the instructions
    hold exactly one ArrayRecord of float arrays (float16, float32, float64) with at least
    one value."""
    records = list(content.array_records.items())
    if len(records) != 1:
        raise ModelLayoutError(
            f"secagg: the train instructions hold {len(records)} ArrayRecords; a Message-API "
            "round aggregates exactly one (the model's arrays, the strategy's arrayrecord_key)"
        )
    name, record = records[0]
    layout: Layout = []
    total = 0
    for key, array in record.items():
        try:
            dtype = np.dtype(array.dtype)
        except Exception:  # any string a server sends: numpy raises several kinds
            raise ModelLayoutError(
                f"secagg: array {key!r} of the model has no NumPy dtype ({array.dtype!r})"
            ) from None
        if dtype.kind != "f" or dtype.itemsize not in _FLOAT_SIZES:
            raise ModelLayoutError(
                f"secagg: array {key!r} of the model is {dtype}: secure aggregation sums "
                "float arrays (float16, float32, float64); keep integer buffers (a "
                "BatchNorm layer's num_batches_tracked, say) out of the ArrayRecord the "
                "strategy aggregates"
            )
        shape = tuple(array.shape)
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            raise ModelLayoutError(f"secagg: array {key!r} of the model has shape {shape!r}")
        total += math.prod(shape)
        layout.append((key, shape, dtype.str))
    if total == 0:
        raise ModelLayoutError("secagg: the model's ArrayRecord holds no values to aggregate")
    return name, layout


# --------------------------------------------------------------------------------------
# Client side
# --------------------------------------------------------------------------------------


#: The colluder budget a node holds unless given ``colluders``: one enrolled identity working
#: with the server. The workflow plans for at least ceil(corrupt x n) (5% of the nodes by
#: default, never fewer than one), so its rounds pass this default; a deployment sets its own
#: c on both sides (``make_secaggplus_mod(colluders=c)``, ``SecAggPlusWorkflow(colluders=c)``).
DEFAULT_COLLUDERS = 1

_DEFAULT_POLICY = {"adversary": "curious", "min_cohort": 3, "colluders": DEFAULT_COLLUDERS}

#: Live clients of this process, by the token stored beside their snapshot. When a node's
#: next message runs in the same process (Flower's simulation engine often does that), the
#: client is taken from here instead of being rebuilt from its snapshot, which replays every
#: frame it handled. The snapshot in the Context stays the truth: an unknown token (another
#: process, an evicted entry) means a rebuild. Bounded by SECAGG_FLOWER_LIVE_CLIENTS.
_LIVE: "OrderedDict[bytes, Client]" = OrderedDict()


def _keep_live(token: bytes, client: Client) -> None:
    limit = int(os.environ.get("SECAGG_FLOWER_LIVE_CLIENTS", "1024"))
    if limit <= 0:
        return
    _LIVE[token] = client
    while len(_LIVE) > limit:
        _LIVE.popitem(last=False)


IdentityFiles = Tuple[str, str, str]


Steps = Union[None, str, "os.PathLike[str]", MutableMapping[str, int]]


def _steps_of(steps: Union[Steps, Callable[[Context], Steps]], ctxt: Context) -> MutableMapping[str, int]:
    """The node's step store: the mod's ``steps`` argument, or a record of its Context."""
    if callable(steps) and not isinstance(steps, MutableMapping):
        steps = steps(ctxt)
    if steps is None:
        records = ctxt.state.config_records
        if STEPS_RECORD not in records:
            records[STEPS_RECORD] = ConfigRecord()
        return cast(MutableMapping[str, int], records[STEPS_RECORD])
    if isinstance(steps, (str, os.PathLike)):
        return StepStore(steps)
    return steps


def make_secaggplus_mod(
    identity: Union[None, IdentityFiles, Callable[[Context], IdentityFiles]] = None,
    *,
    steps: Union[Steps, Callable[[Context], Steps]] = None,
    allow_remask: bool = False,
    **policy,
):
    """A client mod with its own policy: the keyword arguments of :class:`secagg.Policy`.

    Without ``identity`` the node runs the honest-but-curious protocol under an
    unauthenticated identity (default policy: an honest-but-curious server, at least 3
    clients per round, the planner's security bound at 2^-40 with 5% colluding clients).

    With ``identity = (key_file, certificate_file, ca_file)`` — the files ``secagg enroll``
    writes and the deployment CA's public key — the node takes part under its enrolled id
    and the policy defaults to a semi-malicious server with identities from that CA; the
    server must then be given the same CA (``SecAggPlus(strategy, ca=...)``, or
    ``SecAggPlusWorkflow(ca=...)``).
    ``identity`` may also be a function of the node's Context returning those paths (one
    ClientApp for many nodes, each with its own files, e.g. from ``context.node_config``);
    the policy's ``ca`` must then be given.

    The policy is the client's: every round's parameters are checked against it before
    the client sends anything. (It is kept as arguments, not as a Policy object, so that
    Flower's simulation engine can ship the mod to its workers.)

    ``steps`` is the node's step store: where its client records the last step it acted on,
    so that an older snapshot of it is never resumed (``secagg.StaleSnapshotError``). Give a
    directory (a :class:`secagg.StepStore` there), a mutable mapping from str to int, or a
    function of the node's Context returning either; keep it where the node's keys live,
    on storage that is not rolled back with the node's state. Without it, the steps live
    in a record of the node's Context beside (not inside) the snapshot: that refuses a
    snapshot put back on its own, not a Context restored whole from a backup.

    The step store also remembers every round context the node masked an update in, and a
    second session for one of them is refused (:class:`RepeatedRoundError`): at most one
    masked update per round context (run, round number, fit instructions). Pass
    ``allow_remask=True`` to take part again anyway.
    """
    kwargs = dict(_DEFAULT_POLICY)
    files: Union[None, Tuple[str, ...], Callable[[Context], IdentityFiles]] = None
    if callable(identity):
        if "ca" not in policy:
            raise ValueError("with identity given as a function, give the policy's ca too")
        files = identity
        kwargs = {"adversary": "semi-malicious", "colluders": DEFAULT_COLLUDERS}
    elif identity is not None:
        files = tuple(str(f) for f in identity)
        if len(files) != 3:
            raise ValueError("identity is (key_file, certificate_file, ca_file)")
        kwargs = {"adversary": "semi-malicious", "ca": files[2], "colluders": DEFAULT_COLLUDERS}
        Identity.load(*files)  # fail here on unusable files
    kwargs.update(policy)
    Policy(**kwargs)  # fail here, not at the first message, on a bad policy

    def secaggplus_mod(msg: Message, ctxt: Context, call_next) -> Message:
        return _client_step(msg, ctxt, call_next, Policy(**kwargs), files, steps, allow_remask)

    secaggplus_mod.__doc__ = _MOD_DOC
    return secaggplus_mod


_MOD_DOC = """Secure aggregation for this node's training replies (secagg's SecAgg+).

Signature of :func:`flwr.client.mod.secaggplus_mod`: ``(msg, ctxt, call_next) -> Message``.

* Message API: ``@app.train(mods=[secaggplus_mod])`` (or ``ClientApp(mods=[...])``), with
  the server's strategy wrapped in :class:`secagg.flower.SecAggPlus`. The mod runs the
  round's stages around the app's train function, calls it once on the round's (checked)
  instructions, masks every array of the ArrayRecord it returns, weighted by its weight
  metric (the strategy's ``weighted_by_key``, ``"num-examples"`` by default), and passes
  the other metrics through in the clear.
* Legacy: ``ClientApp(client_fn=..., mods=[secaggplus_mod])`` with
  :class:`secagg.flower.SecAggPlusWorkflow` on the server.

Train messages must come from one of the two; any other train message is refused: one
without secagg's record (a plain strategy: nothing is trained), and ``train.<action>``
messages, which would run an ``@app.train("<action>")`` function and send its reply
unmasked. Evaluate and query messages pass through.
"""

_warned_curious = False


def _client_step(
    msg: Message,
    ctxt: Context,
    call_next,
    policy: Policy,
    identity_files=None,
    steps: Union[Steps, Callable[[Context], Steps]] = None,
    allow_remask: bool = False,
) -> Message:
    global _warned_curious
    kind = msg.metadata.message_type
    if kind.split(".", 1)[0] != MessageType.TRAIN:
        return call_next(msg, ctxt)  # evaluate, query: no update leaves through them here
    if kind != MessageType.TRAIN:
        raise UnguardedMessageError(
            f"secagg: refusing a {kind!r} message: this node's secagg mod is active, and the "
            f"message would run the app's @app.train({kind.split('.', 1)[1]!r}) function and "
            "send its reply unmasked; the mod trains only on 'train' messages of "
            "secagg.flower.SecAggPlus or SecAggPlusWorkflow (send other work as 'query' or "
            "'evaluate')"
        )
    records = msg.content.config_records
    if FLOWER_RECORD in records:
        raise MismatchError(
            "this node runs secagg.flower.secaggplus_mod, but the server runs Flower's own "
            "SecAggPlusWorkflow: use secagg.flower.SecAggPlusWorkflow on the server, or "
            "flwr.client.mod.secaggplus_mod here"
        )
    if RECORD not in records:
        raise MismatchError(
            "this node runs secagg.flower.secaggplus_mod, but the server's train message "
            "carries no secagg record: the server runs its strategy without secure "
            "aggregation (wrap it: secagg.flower.SecAggPlus(strategy); legacy apps: "
            "secagg.flower.SecAggPlusWorkflow); refusing to train and send an unmasked update"
        )
    cfg = records[RECORD]
    if cfg.get("protocol") != PROTOCOL:
        raise MismatchError(
            f"secagg versions differ: the server speaks {cfg.get('protocol')!r}, this node "
            f"{PROTOCOL!r} (secagg {__version__}); upgrade both to the same secagg version"
        )
    frames = _frames(cfg, "the server's")
    store = _steps_of(steps, ctxt)
    out_content = RecordDict()
    binding: Dict[str, object] = {}
    if cfg.get("stage") == "setup":
        if not policy.enrolled and identity_files is None and not _warned_curious:
            log.warning(
                "secagg: this node runs the honest-but-curious protocol (no enrolled "
                "identity): a server that deviates from the protocol is not defended "
                "against; enroll the node (make_secaggplus_mod(identity=(key, cert, ca))) for "
                "the protocol that withstands a semi-malicious server"
            )
            _warned_curious = True
        welcome = _bytes_field(cfg, "welcome", "the server's setup")
        if identity_files is not None:
            paths = identity_files(ctxt) if callable(identity_files) else identity_files
            identity = Identity.load(*(str(p) for p in paths))
        elif "client_id" in cfg:
            cid = cfg["client_id"]
            if not isinstance(cid, int) or isinstance(cid, bool) or not 0 <= cid < 2**32:
                raise ProtocolError(f"secagg: the server's setup names client id {cid!r}")
            identity = Identity.generate(cid)
        else:
            raise MismatchError(
                "the server runs an enrolled round (SecAggPlus(strategy, ca=...) or "
                "SecAggPlusWorkflow(ca=...)) but this node has no enrolled identity: "
                "make_secaggplus_mod(identity=(key, cert, ca))"
            )
        who = f"c{identity.client_id}" if identity_files is not None else f"n{ctxt.node_id}"
        offered = RoundConfig.from_welcome(welcome)
        _check_bits(offered, policy)
        if not allow_remask:
            _refuse_repeat(store, offered.context, who)
        client = Client(welcome, identity, policy, steps=store)
        if identity.enrolled:
            # Binds this Flower node to the certificate's id for this round: the server
            # admits no node under an id whose key it does not hold.
            binding = {
                "certificate": identity.certificate,
                "binding": identity.bind_node(welcome, int(msg.metadata.dst_node_id)),
            }
    else:
        state = ctxt.state.config_records.get(STATE_RECORD)
        if state is None or "snapshot" not in state:
            raise ProtocolError(
                "secagg: a round message arrived but this node holds no round state "
                "(it missed the setup stage, or its state was lost)"
            )
        client = _LIVE.pop(bytes(cast(bytes, state.get("token", b""))), None)
        if client is not None:
            client.steps = store  # StaleSnapshotError if another copy acted since
        else:
            client = Client.restore(bytes(cast(bytes, state["snapshot"])), policy, store)
        who = str(state.get("who", f"n{ctxt.node_id}"))
        if client.status == "masked-input" and frames:
            out_content = _train_and_set_input(
                msg, ctxt, call_next, client, _Masking(store, who, allow_remask)
            )
    for frame in frames:
        client.handle(frame)  # ProtocolError: the round ended for this node
    out: List[bytes] = []
    while True:
        f = client.poll_transmit()
        if f is None:
            break
        out.append(f)
    if client.status in ("completed", "aborted"):
        if STATE_RECORD in ctxt.state.config_records:
            del ctxt.state.config_records[STATE_RECORD]
    else:
        token = os.urandom(16)
        ctxt.state.config_records[STATE_RECORD] = ConfigRecord(
            {"snapshot": client.snapshot(), "token": token, "who": who}
        )
        _keep_live(token, client)
    reply: Dict[str, object] = {"protocol": PROTOCOL, "client_id": client.client_id, **binding}
    if out:
        reply["frames"] = out
    out_content.config_records[RECORD] = ConfigRecord(reply)  # type: ignore[arg-type]
    return Message(out_content, reply_to=msg)


def _check_bits(config: RoundConfig, policy: Policy) -> None:
    """PolicyError, before anything is sent, when the round's modulus 2^b lies outside the
    node's policy ``bits`` — saying where the server's b comes from and what to change (the
    client's own check would refuse too, without the why)."""
    low, high = policy.bits
    b = config.bits
    if low <= b <= high:
        return
    if config.dp is not None:
        why = "the server's DP plan chose it (dp.bits on the server fixes it)"
    else:
        why = (
            "the server's planner takes b above 32 (up to 64) to keep its "
            f"quantization_range levels for max_weight over the clients sampled "
            f"({config.levels} levels, max_weight {config.max_weight}, {config.clients} "
            "clients here), unless the server gives modulus_range (which lowers the levels "
            "instead)"
        )
    raise PolicyError(
        f"secagg: the server's round runs at b = {b} (sums mod 2^{b}), outside this node's "
        f"policy bits=({low}, {high}): {why}; allow b in this node's policy "
        "(make_secaggplus_mod(bits=...)) or change the server's choice"
    )


def _frames(record: ConfigRecord, whose: str) -> List[bytes]:
    """The protocol frames a record carries; ProtocolError unless a list of bytes."""
    frames = record.get("frames", [])
    if not isinstance(frames, list) or not all(isinstance(f, bytes) for f in frames):
        raise ProtocolError(f"secagg: {whose} record carries frames that are not bytes")
    return list(frames)


def _bytes_field(record: ConfigRecord, name: str, whose: str) -> bytes:
    """A bytes field of a record; ProtocolError when it is missing or not bytes."""
    value = record.get(name)
    if not isinstance(value, bytes):
        raise ProtocolError(f"secagg: {whose} record has no {name} (bytes)")
    return value


def _masked_key(context: bytes, who: str) -> str:
    return f"secagg-masked-{who}-{context.hex()}"


def _refuse_repeat(store: MutableMapping[str, int], context: bytes, who: str) -> None:
    if _masked_key(context, who) in store:
        raise RepeatedRoundError(
            "secagg: this node already masked an update for this round context (the same "
            "run, round number and fit instructions): refusing a second session for it, "
            "since two sums over one update give it away (make_secaggplus_mod("
            "allow_remask=True) to take part again)"
        )


@dataclass
class _Masking:
    """Where a node records the round contexts it masked in, and whether it may again."""

    store: MutableMapping[str, int]
    who: str
    allow_remask: bool


def _check_instructions(msg: Message, cfg: ConfigRecord, client: Client) -> Tuple[str, str]:
    """Raises FitInstructionsError unless the fit instructions in ``msg``, and how the update
    is to be read (``api`` and ``weight_key`` of secagg's record), are those the round
    context binds (the context is in the welcome every client of the round signs); returns
    ``(api, weight_key)``."""
    arrays, config = fit_digests(msg.content)
    server_round = cfg.get("round")
    if (
        not isinstance(server_round, int)
        or isinstance(server_round, bool)
        or not -(2**63) <= server_round < 2**63
    ):
        server_round = -1
    api, weight_key = cfg.get("api"), cfg.get("weight_key", "")
    if not isinstance(api, str) or not isinstance(weight_key, str):
        raise ProtocolError("secagg: the server's masked-input record has no api and weight_key")
    run_id = int(msg.metadata.run_id)
    want = client.config.context
    if round_context(run_id, server_round, arrays, config, api, weight_key) == want:
        if api not in (LEGACY_API, MESSAGE_API):
            raise ProtocolError(f"secagg: the round reads updates by an unknown api {api!r}")
        return api, weight_key
    stated_arrays, stated_config = cfg.get("arrays_digest"), cfg.get("config_digest")
    if (
        isinstance(stated_arrays, bytes)
        and isinstance(stated_config, bytes)
        and round_context(run_id, server_round, stated_arrays, stated_config, api, weight_key)
        == want
    ):
        # The server's stated digests are the round's: they tell which part differs.
        what = " and ".join(
            part
            for part, same in (("model arrays", stated_arrays == arrays), ("config", stated_config == config))
            if not same
        )
    else:
        what = (
            "fit instructions (model arrays, config, the weight metric, round number or run)"
        )
    raise FitInstructionsError(
        f"secagg: refusing to train: the {what} this node received for round {server_round} "
        "differ from those bound to the round context that every client of the round signs "
        "(the server sent this node other instructions than it announced for the round)"
    )


def _weight(value: object, max_weight: int, what: str) -> int:
    """A node's weight: a whole number in [0, max_weight] (TrainReplyError otherwise)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(
        value, (int, float, np.integer, np.floating)
    ):
        raise TrainReplyError(
            f"secagg: the weight {what} is {value!r}: it must be a whole number of examples"
        )
    if isinstance(value, (float, np.floating)) and not (
        math.isfinite(value) and float(value).is_integer()
    ):
        raise TrainReplyError(
            f"secagg: the weight {what} = {value!r} is not a whole number; secure "
            "aggregation weighs updates by exact integers"
        )
    weight = int(value)
    if weight < 0 or weight > max_weight:
        raise TrainReplyError(
            f"secagg: the weight {what} = {weight} is outside [0, max_weight = {max_weight}]; "
            "raise max_weight on the server (SecAggPlus or SecAggPlusWorkflow); this node "
            "leaves the round rather than overflow the sum"
        )
    return weight


def _legacy_update(content: RecordDict, max_weight: int) -> Tuple[np.ndarray, int]:
    """The flat float32 update and weight of a legacy FitRes reply."""
    fitres = compat.recorddict_to_fitres(content, keep_input=True)
    arrays = parameters_to_ndarrays(fitres.parameters)
    flat = (
        np.concatenate([np.asarray(a, dtype=np.float32).reshape(-1) for a in arrays])
        if arrays
        else np.zeros(0, dtype=np.float32)
    )
    return flat, _weight(fitres.num_examples, max_weight, "num_examples")


def _message_update(
    content: RecordDict, layout: Layout, weight_key: str, max_weight: int
) -> Tuple[np.ndarray, int]:
    """The flat float32 update and weight of a Message-API train reply: its one ArrayRecord,
    with the model's keys and shapes (any order) and float arrays, flattened in the model's
    order (float16 exactly; float64 rounded to float32, a relative error of at most 2^-24,
    well below a quantization step), and the whole-number metric ``weight_key`` of its one
    MetricRecord."""
    records = list(content.array_records.values())
    if len(records) != 1:
        raise TrainReplyError(
            f"secagg: the app's train reply carries {len(records)} ArrayRecords; secure "
            "aggregation masks exactly one (the model's arrays)"
        )
    record = records[0]
    keys = [key for key, _, _ in layout]
    if set(record.keys()) != set(keys):
        missing = [k for k in keys if k not in record]
        extra = [k for k in record.keys() if k not in set(keys)]
        raise TrainReplyError(
            "secagg: the app's ArrayRecord does not hold the model's arrays: "
            f"missing {missing[:5]!r}, not in the model {extra[:5]!r}"
        )
    parts = []
    for key, shape, _ in layout:
        try:
            x = record[key].numpy()
        except (TypeError, ValueError) as why:
            raise TrainReplyError(f"secagg: the app's array {key!r}: {why}") from None
        if x.dtype.kind != "f" or x.dtype.itemsize not in _FLOAT_SIZES:
            raise TrainReplyError(
                f"secagg: the app's array {key!r} is {x.dtype}: secure aggregation sums float "
                "arrays (float16, float32, float64)"
            )
        if tuple(x.shape) != tuple(shape):
            raise TrainReplyError(
                f"secagg: the app's array {key!r} has shape {tuple(x.shape)}, the model's "
                f"{tuple(shape)}"
            )
        parts.append(x.astype(np.float32, copy=False).reshape(-1))
    metrics = list(content.metric_records.values())
    if len(metrics) != 1:
        raise TrainReplyError(
            f"secagg: the app's train reply carries {len(metrics)} MetricRecords; the "
            f"strategy reads the weight {weight_key!r} from exactly one"
        )
    if weight_key not in metrics[0]:
        raise TrainReplyError(
            f"secagg: the app's MetricRecord has no {weight_key!r}, the weight the strategy "
            "averages by (its weighted_by_key)"
        )
    weight = _weight(metrics[0][weight_key], max_weight, f"metric {weight_key!r}")
    return np.concatenate(parts), weight


def _train_and_set_input(
    msg: Message, ctxt: Context, call_next, client: Client, masking: _Masking
) -> RecordDict:
    """Runs the app's training on the round's fit instructions, once they are checked
    against the round context, and sets the client's input (once per round context, which
    is recorded first); returns the reply content with every array cleared (only counts
    and metrics travel in clear, as with Flower's mod)."""
    ours = msg.content.config_records[RECORD]
    api, weight_key = _check_instructions(msg, ours, client)
    layout = message_layout(msg.content)[1] if api == MESSAGE_API else []
    config = client.config
    dp = config.dp
    # A DP round clips and noises the model update: the reply less the model sent.
    model = _instructions_flat(msg.content, api, layout) if dp is not None else None
    del msg.content[RECORD]  # the app sees the strategy's instructions, nothing of ours
    try:
        out_msg = call_next(msg, ctxt)
    finally:
        msg.content[RECORD] = ours  # as it came, for the mods around this one
    if out_msg.has_error():
        raise RuntimeError(f"secagg: the app's training failed: {out_msg.error.reason}")
    content = out_msg.content
    # An unweighted DP round (max_weight 1) masks weight 1 whatever the app counts.
    unweighted = dp is not None and config.max_weight == 1
    bound = _ANY_WEIGHT if unweighted else config.max_weight
    if api == MESSAGE_API:
        flat, weight = _message_update(content, layout, weight_key, bound)
    else:
        flat, weight = _legacy_update(content, bound)
    if flat.size != config.params:
        raise ProtocolError(
            f"secagg: the app returned {flat.size} parameters, the round aggregates "
            f"{config.params}"
        )
    if not np.all(np.isfinite(flat)):
        raise TrainReplyError("secagg: the app's update holds NaN or infinite values")
    if model is not None:
        if model.size != flat.size:
            raise ProtocolError(
                f"secagg: the model sent holds {model.size} values, the app returned {flat.size}"
            )
        flat = flat - model
        if unweighted:
            weight = 1
    context = client.config.context
    if not masking.allow_remask:
        _refuse_repeat(masking.store, context, masking.who)
    masking.store[_masked_key(context, masking.who)] = 1
    clipped = client.set_input(np.ascontiguousarray(flat, dtype=np.float32), weight)
    if dp is not None:
        if clipped:
            log.info(
                "secagg: this node's model update has L2 norm %g, above the DP clip %g: "
                "scaled down to it before the noise",
                float(np.linalg.norm(flat)),
                dp["clip"],
            )
    elif clipped:
        log.warning(
            "secagg: %d of %d values lie outside the clipping range [-%g, %g] (largest "
            "|x| = %g) and were clipped; raise clipping_range on the server if that is "
            "not intended",
            clipped,
            flat.size,
            config.clip,
            config.clip,
            float(np.max(np.abs(flat))),
        )
    for record in content.array_records.values():
        record.clear()
    return content


#: The weight bound of an unweighted DP round's replies (their counts are not masked).
_ANY_WEIGHT = 2**32 - 1


def _instructions_flat(content: RecordDict, api: str, layout: Layout) -> np.ndarray:
    """The model in a round's fit instructions as one float32 vector, in the order the
    node flattens its reply (the legacy FitIns parameters, or the Message-API ArrayRecord
    in ``layout``'s order)."""
    if api == MESSAGE_API:
        [record] = list(content.array_records.values())
        parts = [
            np.asarray(record[key].numpy(), dtype=np.float32).reshape(-1) for key, _, _ in layout
        ]
    else:
        fitins = compat.recorddict_to_fitins(content, keep_input=True)
        parts = [
            np.asarray(a, dtype=np.float32).reshape(-1)
            for a in parameters_to_ndarrays(fitins.parameters)
        ]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)


#: The drop-in for :func:`flwr.client.mod.secaggplus_mod` (default policy).
secaggplus_mod = make_secaggplus_mod()


# --------------------------------------------------------------------------------------
# Server side
# --------------------------------------------------------------------------------------


@dataclass
class RoundStats:
    """Figures of the last round a workflow ran (for benchmarks and logs)."""

    clients: int = 0
    params: int = 0
    neighbors: int = 0
    threshold: int = 0
    bits: int = 0
    levels: int = 0
    included: int = 0
    stage_s: Dict[str, float] = field(default_factory=dict)
    """Server-side seconds per stage: its own work on the replies (not waiting)."""
    exchange_s: Dict[str, float] = field(default_factory=dict)
    """Seconds per stage spent in grid.send_and_receive (clients' work and transport)."""
    bytes_up: Dict[str, int] = field(default_factory=dict)
    """Frame bytes the clients sent, per stage."""
    bytes_down: Dict[str, int] = field(default_factory=dict)
    """Frame bytes the server sent, per stage."""
    wall_s: float = 0.0
    dropped: List[Dict[str, object]] = field(default_factory=list)
    """Clients the server dropped: client, stage, reason."""
    failed: List[Dict[str, object]] = field(default_factory=list)
    """Nodes that answered a stage with an error, or were refused: node, stage, reason."""
    privacy: Optional[PrivacyEvent] = None
    """A released DP round's privacy event (``dp=``), else None."""


#: The modulus bits of a round when its sum fits in fewer (Flower's default modulus_range).
_DEFAULT_BITS = 32
#: The widest modulus a round can take: 2^64.
_MAX_BITS = 64


def _bits_needed(n: int, levels: int, max_weight: int) -> int:
    """The fewest bits b with n (levels − 1) max_weight < 2^b (the host's bits_needed)."""
    return (n * (levels - 1) * max_weight).bit_length()


class SecAggPlusWorkflow:
    """secagg's SecAgg+ as a Flower fit workflow.

    Same keyword arguments and meaning as :class:`flwr.server.workflow.SecAggPlusWorkflow`:

    num_shares
        Shares of each client's secrets, counting its own (an int, or a float: that
        fraction of the sampled clients). Each client has ``num_shares - 1`` neighbours.
    reconstruction_threshold
        Shares needed to rebuild a secret (an int, or a float: that fraction of
        ``num_shares``). Both None: the planner's choice for the clients sampled.
    max_weight
        The largest ``num_examples`` a client may carry; its weight is that exact integer.
    clipping_range
        Updates are clipped to ``[-clipping_range, clipping_range]``.
    quantization_range
        Quantization levels per value: each value becomes an integer in
        ``[0, quantization_range - 1]`` (lowered, with a warning, when
        ``clients x max_weight x (levels - 1)`` would not fit the modulus).
    modulus_range
        Sums are taken modulo this power of two, at most 2^64; uploads are packed at
        ``log2(modulus_range)`` bits per value. None (the default): the planner's
        modulus for the clients sampled, as ``secagg simulate`` picks it: 2^b with b the
        larger of 32 and the fewest bits that hold ``clients x max_weight x
        (quantization_range - 1)``, at most 64 — so the levels asked for are kept (Flower's
        2^22 at 100 clients and ``max_weight`` 1000: b = 39). Nodes whose policy allows
        fewer bits (``make_secaggplus_mod(bits=(lo, hi))``) refuse the round at setup.
    timeout
        Seconds to wait for replies at each stage (None: wait for all).

    Our own: ``prg`` ("chacha20", "chacha12", "chacha8"), ``backend`` ("cpu", "gpu",
    "gpu:N", "auto", or a comma-separated list such as "gpu:0,gpu:1" that splits the sum by
    coordinate range across those engines) for the server's vector work, ``dropout``, the rate the planner assumes, and
    ``colluders``, the most enrolled nodes that may collude with the server (absolute, what
    the nodes' policies hold; by default ``ceil(corrupt x n)`` with ``corrupt`` = 5% of the
    nodes sampled, at least one): the parameters are checked, and an insecure
    ``num_shares`` raised, for that many colluders in the round.

    ``dp`` (a :class:`secagg.DpSpec`, or a dict of its fields) runs distributed
    differential privacy under the masks: each round, the server plans the noise for the
    round's n, k, t and colluders — sized so that the honest survivors alone (T − c, and
    at most k − t + 2 against a semi-malicious server) meet the target, never the
    expected n — and every node clips its model update (its reply less the model it was
    sent) to ``dp.clip`` in L2, rotates, rounds and adds its Skellam noise before masking;
    a node whose policy guarantees fewer honest survivors than the noise assumes refuses
    the round (``PolicyError``). The strategy receives the model plus the noisy mean of the
    clipped updates (unweighted unless ``dp.weighted``; then the weights are exact and the
    noise is sized for ``max_weight``). ``clipping_range``, ``quantization_range`` and
    ``modulus_range`` do not apply (the plan chooses the modulus unless ``dp.bits``).
    Each released round's :class:`secagg.PrivacyEvent` (ε of the round and composed over
    the released rounds, the noise, the sensitivities, the RDP curve; ``to_flower()`` for
    Flower's accountant) is appended to :attr:`privacy_events`, set on
    ``last_round.privacy`` and passed to ``on_privacy(event)`` when given. A round that
    is not released spends nothing and records no event.
    """

    def __init__(
        self,
        num_shares: Union[int, float, None],
        reconstruction_threshold: Union[int, float, None],
        *,
        max_weight: float = 1000.0,
        clipping_range: float = 8.0,
        quantization_range: int = 4194304,
        modulus_range: Optional[int] = None,
        timeout: Optional[float] = None,
        prg: str = "chacha20",
        backend: str = "cpu",
        dropout: float = 0.1,
        corrupt: float = 0.05,
        colluders: Optional[int] = None,
        ca: Optional[str] = None,
        dp: Union[DpSpec, Dict[str, object], None] = None,
        on_privacy: Optional[Callable[[PrivacyEvent], None]] = None,
    ) -> None:
        # Flower reads an int 1 as the fraction 1.0 (all clients).
        if num_shares == 1 and isinstance(num_shares, int):
            num_shares = 1.0
        if reconstruction_threshold == 1 and isinstance(reconstruction_threshold, int):
            reconstruction_threshold = 1.0
        if num_shares is not None and (
            not isinstance(num_shares, (int, float)) or isinstance(num_shares, bool)
        ):
            raise TypeError("num_shares must be an int, a float or None")
        if reconstruction_threshold is not None and (
            not isinstance(reconstruction_threshold, (int, float))
            or isinstance(reconstruction_threshold, bool)
        ):
            raise TypeError("reconstruction_threshold must be an int, a float or None")
        if (num_shares is None) != (reconstruction_threshold is None):
            raise ValueError(
                "give both num_shares and reconstruction_threshold, or neither (the "
                "planner's choice for the clients sampled)"
            )
        if isinstance(num_shares, float) and not 0 < num_shares <= 1:
            raise ValueError("num_shares as a float must lie in (0, 1]")
        if isinstance(num_shares, int) and num_shares < 2:
            raise ValueError("num_shares as an int must be at least 2")
        if isinstance(reconstruction_threshold, float) and not 0 < reconstruction_threshold <= 1:
            raise ValueError("reconstruction_threshold as a float must lie in (0, 1]")
        if isinstance(reconstruction_threshold, int) and reconstruction_threshold < 2:
            raise ValueError("reconstruction_threshold as an int must be at least 2")
        if not max_weight >= 1:
            raise ValueError("max_weight must be at least 1")
        if not (clipping_range > 0 and np.isfinite(clipping_range)):
            raise ValueError(
                f"clipping_range must be a positive finite number, not {clipping_range}"
            )
        if (
            not isinstance(quantization_range, int)
            or isinstance(quantization_range, bool)
            or not 2 <= quantization_range < 2**32
        ):
            raise ValueError("quantization_range must be an integer in [2, 2**32)")
        if modulus_range is not None and (
            not isinstance(modulus_range, int)
            or isinstance(modulus_range, bool)
            or modulus_range < 2
            or modulus_range > 2**_MAX_BITS
            or modulus_range & (modulus_range - 1)
        ):
            raise ValueError(
                f"modulus_range must be a power of two between 2 and 2**{_MAX_BITS}, or None "
                "(the planner's choice for the clients sampled)"
            )
        if timeout is not None and not timeout > 0:
            raise ValueError("timeout must be positive (or None)")
        self.num_shares = num_shares
        self.reconstruction_threshold = reconstruction_threshold
        self.max_weight = max_weight
        self.clipping_range = clipping_range
        self.quantization_range = quantization_range
        self.modulus_range = modulus_range
        self.timeout = timeout
        self.prg = prg
        self.backend = backend
        self.dropout = dropout
        self.corrupt = corrupt
        if colluders is not None and (not isinstance(colluders, int) or colluders < 0):
            raise ValueError("colluders must be a non-negative integer (or None)")
        self.colluders = colluders
        self.ca = None if ca is None else str(ca)
        self.adversary = "curious" if ca is None else "semi-malicious"
        self.last_round: Optional[RoundStats] = None
        self.dp = DpSpec.of(dp)
        if on_privacy is not None and not callable(on_privacy):
            raise TypeError("on_privacy must be a function of a secagg.PrivacyEvent")
        self.on_privacy = on_privacy
        #: Each released DP round's privacy event, in order.
        self.privacy_events: List[PrivacyEvent] = []
        #: The configurations of the released DP rounds (their RDP composes).
        self._released: List[RoundConfig] = []
        self._warned_curious = False
        #: Enrolled rounds: the client id each node proved, for the workflow's life.
        self._client_of_node: Dict[int, int] = {}

    # -- parameters --------------------------------------------------------------------

    def _graph(self, n: int) -> Tuple[int, int]:
        colluders = self._colluders(n)
        chosen_t = 0
        if self.num_shares is None:
            try:
                chosen = _plan(
                    n, adversary=self.adversary, dropout=self.dropout, colluders=colluders
                )
                shares, chosen_t = chosen.neighbors + 1, chosen.threshold
            except PlanError:
                # Too few nodes for the planner's bounds at this dropout: the complete graph
                # and a majority threshold, checked below like any given pair.
                shares, chosen_t = n, n // 2 + 1
        elif isinstance(self.num_shares, float):
            shares = round(self.num_shares * n)
            if shares < n and shares % 2 == 0:
                shares += 1
            if shares <= 2:
                shares = n
        else:
            shares = self.num_shares
        k = max(2, min(shares - 1, n - 1))
        if self.reconstruction_threshold is None:
            t = chosen_t
        elif isinstance(self.reconstruction_threshold, float):
            t = max(2, round(self.reconstruction_threshold * shares))
        else:
            t = self.reconstruction_threshold
        t = min(t, k)
        try:
            _plan(
                n,
                neighbors=k,
                threshold=t,
                adversary=self.adversary,
                dropout=self.dropout,
                colluders=colluders,
            )
        except PlanError as why:
            p = _plan(n, adversary=self.adversary, dropout=self.dropout, colluders=colluders)
            log.warning(
                "secagg: num_shares=%s, reconstruction_threshold=%s (k = %d, t = %d) fail "
                "for %d clients: %s; using the planner's k = %d, t = %d",
                self.num_shares,
                self.reconstruction_threshold,
                k,
                t,
                n,
                why,
                p.neighbors,
                p.threshold,
            )
            k, t = p.neighbors, p.threshold
        return k, t

    def _colluders(self, n: int) -> int:
        """The colluders a round of ``n`` nodes is planned for: ``colluders``, or at least
        one and ``ceil(corrupt x n)``."""
        if self.colluders is not None:
            return self.colluders
        return max(DEFAULT_COLLUDERS, math.ceil(self.corrupt * n - 1e-6))

    def _quantization(self, n: int) -> Tuple[int, int, int]:
        """(b, levels, max_weight) of a round of ``n`` clients: ``modulus_range``'s b, or
        the planner's (see the class); the levels lowered, with a warning, when the sum
        would not fit 2^b."""
        w = int(self.max_weight)
        levels = self.quantization_range
        if self.modulus_range is None:
            bits = min(_MAX_BITS, max(_DEFAULT_BITS, _bits_needed(n, levels, w)))
            room = "the widest modulus, 2^%d" % _MAX_BITS
        else:
            bits = self.modulus_range.bit_length() - 1
            room = (
                "modulus_range 2^%d (leave modulus_range unset for the planner to widen b "
                "up to %d bits instead)" % (bits, _MAX_BITS)
            )
        if _bits_needed(n, levels, w) > bits:
            fit = levels
            while fit > 2 and _bits_needed(n, fit, w) > bits:
                fit //= 2
            if _bits_needed(n, fit, w) > bits:
                raise ValueError(
                    f"{n} clients x max_weight {w} overflow 2^{bits} even at 2 levels: "
                    "lower max_weight"
                    + ("" if self.modulus_range is None else " or raise modulus_range")
                )
            log.warning(
                "secagg: quantization_range %d x max_weight %d x %d clients would overflow "
                "%s; quantizing to %d levels instead (step %.3g)",
                levels,
                w,
                n,
                room,
                fit,
                2 * self.clipping_range / (fit - 1),
            )
            levels = fit
        return bits, levels, w

    def _plan_privacy(self, n: int, k: int, t: int, params: int) -> Tuple[DpPlan, int]:
        """The DP plan of a round of ``n`` nodes with graph (k, t), its noise resting on
        the honest survivors alone, and the round's weight bound."""
        spec = cast(DpSpec, self.dp)
        honest = _honest_survivors(
            n, k, t, colluders=self._colluders(n), adversary=self.adversary
        )
        w = int(self.max_weight) if spec.weighted else 1
        plan = _plan_dp(
            params,
            n,
            honest,
            epsilon=spec.epsilon,
            noise=spec.noise,
            delta=spec.delta,
            rounds=spec.rounds,
            clip=spec.clip,
            beta=spec.beta,
            bits=spec.bits,
            max_weight=w,
            survivors=max(1, n - math.ceil(self.dropout * n)),
        )
        return plan, w

    @property
    def privacy_spent(self) -> float:
        """ε at ``dp.delta`` over every released round so far (0 before any)."""
        return self.privacy_events[-1].cumulative_epsilon if self.privacy_events else 0.0

    # -- enrolled nodes ----------------------------------------------------------------

    def _admit(
        self, server: Server, nid: int, rec: ConfigRecord, enrolled: Dict[int, int]
    ) -> Tuple[Optional[int], str]:
        """The client id node ``nid`` joins this round under (its certificate's, once the
        certificate verifies under the CA and the node's binding signature under the
        certificate's key), or None and why not. A node keeps one id for the workflow's
        life, and an id is one node's in a round."""
        certificate, signature = rec.get("certificate"), rec.get("binding")
        if not isinstance(certificate, bytes) or not isinstance(signature, bytes):
            return None, "no certificate and node binding (an enrolled round needs both)"
        try:
            cid = server.admit_node(nid, certificate, signature)
        except IdentityError as why:
            return None, str(why)
        earlier = self._client_of_node.get(nid)
        if earlier is not None and earlier != cid:
            return None, (
                f"node {nid} took part as client {earlier} before, and now presents the "
                f"certificate of client {cid}"
            )
        if cid in enrolled:
            return None, f"client {cid} is already in this round as node {enrolled[cid]}"
        return cid, ""

    # -- the round ---------------------------------------------------------------------

    def __call__(self, grid, context: Context) -> None:
        """Runs one round of secure aggregation for the strategy's fit."""
        if not isinstance(context, LegacyContext):
            raise TypeError(f"Expect a LegacyContext, but get {type(context).__name__}.")
        cfg = context.state.config_records[MAIN_CONFIGS_RECORD]
        current_round = cast(int, cfg[WorkflowKey.CURRENT_ROUND])
        parameters = compat.arrayrecord_to_parameters(
            context.state.array_records[MAIN_PARAMS_RECORD], keep_input=True
        )
        proxy_fitins = context.strategy.configure_fit(
            current_round, parameters, context.client_manager
        )
        if not proxy_fitins:
            log.info("configure_fit: no clients selected, cancel")
            return
        # One RecordDict per FitIns object (a strategy usually gives every node the same).
        records: Dict[int, RecordDict] = {}
        nid_to_fitins: Dict[int, RecordDict] = {}
        for proxy, fitins in proxy_fitins:
            if id(fitins) not in records:
                records[id(fitins)] = compat.fitins_to_recorddict(fitins, True)
            nid_to_fitins[proxy.node_id] = records[id(fitins)]
        nid_to_proxy: Dict[int, ClientProxy] = {proxy.node_id: proxy for proxy, _ in proxy_fitins}
        shapes = [a.shape for a in parameters_to_ndarrays(parameters)]
        m = int(sum(int(np.prod(s)) for s in shapes))
        reading = _Reading(
            api=LEGACY_API,
            weight_key="",
            server="secagg.flower.SecAggPlusWorkflow",
            parse=lambda content: _fitres(content, int(self.max_weight)),
        )
        outcome = self._secure_round(
            grid, context.run_id, current_round, nid_to_fitins, m, reading, self.timeout
        )
        if outcome is None or outcome.result is None:
            return
        mean = cast(np.ndarray, outcome.result["mean"])
        arrays = []
        offset = 0
        for shape in shapes:
            size = int(np.prod(shape))
            arrays.append(mean[offset : offset + size].reshape(shape))
            offset += size
        aggregated = ndarrays_to_parameters(arrays)
        results = []
        for nid in outcome.included:
            if nid not in outcome.kept:
                continue
            fitres = cast(FitRes, outcome.kept[nid][1])
            fitres.parameters = aggregated
            results.append((nid_to_proxy[nid], fitres))
        log.info(
            "aggregate_fit: received %s results and %s failures",
            len(results),
            len(outcome.failures),
        )
        parameters_aggregated, metrics_aggregated = context.strategy.aggregate_fit(
            current_round, results, outcome.failures  # type: ignore[arg-type]
        )
        if parameters_aggregated:
            context.state.array_records[MAIN_PARAMS_RECORD] = compat.parameters_to_arrayrecord(
                parameters_aggregated, True
            )
            context.history.add_metrics_distributed_fit(
                server_round=current_round, metrics=metrics_aggregated
            )

    def _secure_round(
        self,
        grid,
        run_id: int,
        current_round: int,
        instructions_of: Dict[int, RecordDict],
        params: int,
        reading: "_Reading",
        timeout: Optional[float],
    ) -> Optional["_Outcome"]:
        """One round of secure aggregation over the nodes in ``instructions_of``, each of
        which trains on its instructions (the same for all) at the masked-input stage:
        the four stages through ``grid``, one ``send_and_receive`` each, and the
        completion notice. None when the round cannot start (fewer than 3 nodes); else the
        outcome, with the server's result when the round completed. Both the legacy
        workflow and :class:`SecAggPlus` run their rounds here."""
        started = time.perf_counter()
        nodes = sorted(instructions_of)
        n = len(nodes)
        if n < 3:
            log.error("secagg: a round needs at least 3 sampled clients, got %d", n)
            return None
        k, t = self._graph(n)
        planned: Optional[DpPlan] = None
        if self.dp is None:
            bits, levels, w = self._quantization(n)
        else:
            planned, w = self._plan_privacy(n, k, t, params)
            bits, levels = planned.bits, 2
        # Every node trains on the same instructions, and the round context binds them: a
        # node sent others refuses to train (FitInstructionsError).
        digests_of: Dict[int, Tuple[bytes, bytes]] = {}
        for content in instructions_of.values():
            if id(content) not in digests_of:
                digests_of[id(content)] = fit_digests(content)
        if len(set(digests_of.values())) != 1:
            raise ValueError(
                "secagg: the strategy gave the sampled nodes different fit instructions "
                "(arrays or config); secure aggregation sums updates trained on the same "
                "instructions, which every node checks against the round context"
            )
        arrays_digest, config_digest = next(iter(digests_of.values()))
        digest = round_context(
            run_id, current_round, arrays_digest, config_digest, reading.api, reading.weight_key
        )
        config = RoundConfig(
            n,
            params,
            neighbors=k,
            threshold=t,
            bits=bits,
            prg=self.prg,
            clip=float(self.clipping_range if self.dp is None else self.dp.clip),
            levels=levels,
            max_weight=w,
            stage_timeout=float(timeout) if timeout else 3600.0,
            context=digest,
            dp=None if planned is None else planned.dp,
        )
        server = Server(config, backend=self.backend, ca=self.ca)
        stats = RoundStats(
            clients=n, params=params, neighbors=k, threshold=t, bits=bits, levels=levels
        )
        outcome = _Outcome(stats=stats, nodes=nodes)
        if self.ca is None and not self._warned_curious:
            log.warning(
                "secagg: running the honest-but-curious protocol: Flower nodes have no "
                "enrolled identities, so the clients trust this server to follow the "
                "protocol; give %s(ca=...) and enroll the nodes "
                "(make_secaggplus_mod(identity=...)) for the protocol that withstands a "
                "semi-malicious server",
                reading.server.rsplit(".", 1)[-1],
            )
            self._warned_curious = True
        log.info(
            "secagg: round %d, %d clients x %d parameters, k = %d, t = %d, b = %d, %d levels, "
            "engine %s (%s)",
            current_round,
            n,
            params,
            k,
            t,
            bits,
            levels,
            server.engine,
            "honest-but-curious protocol: Flower nodes have no enrolled identities"
            if self.ca is None
            else "semi-malicious server protocol: clients enrolled by the given CA",
        )
        if planned is not None:
            log.info(
                "secagg: round %d under distributed DP: noise sized for %d honest survivors "
                "alone (colluders %d), σ = %.4g on the sum, s = %.4g, b = %d; ε %.4g at δ = %g "
                "over %d rounds as planned",
                current_round,
                int(planned.dp["honest"]),
                self._colluders(n),
                planned.noise_std,
                planned.dp["scale"],
                planned.bits,
                planned.epsilon,
                planned.delta,
                planned.rounds,
            )
        node_of = {i: nid for i, nid in enumerate(nodes)}
        id_of = {nid: i for i, nid in node_of.items()}
        welcome = server.welcome()
        group = str(current_round)

        def message(nid: int, record: Dict[str, object], content: Optional[RecordDict] = None) -> Message:
            # A record of its own for every node, around the (shared) instructions.
            body = RecordDict(dict(content.items())) if content is not None else RecordDict()
            body.config_records[RECORD] = ConfigRecord(record)  # type: ignore[arg-type]
            msg = Message(
                content=body,
                dst_node_id=nid,
                message_type=MessageType.TRAIN,
                group_id=group,
            )
            outcome.sent[nid] = msg
            return msg

        def exchange(stage: str, outgoing: Dict[int, List[bytes]], first: bool = False) -> None:
            msgs = []
            down = 0
            for i, frames in outgoing.items():
                rec: Dict[str, object] = {"protocol": PROTOCOL, "stage": stage}
                if first:
                    rec["welcome"] = welcome
                    if self.ca is None:
                        rec["client_id"] = i  # enrolled clients use their own ids
                if frames:
                    rec["frames"] = frames
                    down += sum(len(f) for f in frames)
                content = None
                if stage == "masked-input":
                    content = instructions_of.get(node_of[i])
                    rec["round"] = current_round
                    rec["arrays_digest"] = arrays_digest
                    rec["config_digest"] = config_digest
                    rec["api"] = reading.api
                    rec["weight_key"] = reading.weight_key
                msgs.append(message(node_of[i], rec, content))
            stats.bytes_down[stage] = stats.bytes_down.get(stage, 0) + down
            t0 = time.perf_counter()
            replies = list(grid.send_and_receive(msgs, timeout=timeout))
            stats.exchange_s[stage] = stats.exchange_s.get(stage, 0.0) + time.perf_counter() - t0
            t0 = time.perf_counter()
            answered = set()
            mismatched: Dict[int, str] = {}  # node -> what it runs instead
            up = 0

            def refuse(nid: int, why: str) -> None:
                outcome.failures.append(Exception(f"node {nid}: {why}"))
                outcome.why.setdefault(nid, f"{stage}: {why}")
                stats.failed.append({"node": nid, "stage": stage, "reason": why})
                log.warning("secagg: node %d refused at %s: %s", nid, stage, why)

            for reply in replies:
                nid = reply.metadata.src_node_id
                i = id_of.get(nid)
                if i is None or i not in outgoing:
                    continue
                if reply.has_error():
                    reason = str(reply.error.reason)
                    if first:
                        instead = _runs_instead(reason)
                        if instead is not None:
                            mismatched[nid] = instead
                    outcome.failures.append(Exception(reason))
                    outcome.why.setdefault(nid, f"{stage}: {reason}")
                    stats.failed.append({"node": nid, "stage": stage, "reason": reason})
                    log.warning("secagg: node %d failed at %s: %s", nid, stage, reason)
                    continue
                rec = reply.content.config_records.get(RECORD)
                if rec is None or rec.get("protocol") != PROTOCOL:
                    if rec is None:
                        mismatched[nid] = "no secagg mod (it answered without secagg's record)"
                        refuse(nid, "answered without secagg's record (it does not run "
                                    "secagg.flower.secaggplus_mod)")
                    else:
                        theirs = rec.get("protocol")
                        mismatched[nid] = f"secagg's mod of another version ({theirs!r})"
                        refuse(nid, f"answered in {theirs!r}, this server speaks {PROTOCOL!r} "
                                    "(secagg versions differ)")
                    continue
                try:  # nothing a node sends stops the round for the others
                    frames = _frames(rec, "the node's")
                    kept = reading.parse(reply.content) if stage == "masked-input" else None
                except (ProtocolError, KeyError, TypeError, ValueError) as why:
                    refuse(nid, f"a malformed reply: {type(why).__name__}: {why}")
                    continue
                target = i
                if first and self.ca is not None:
                    # An enrolled node joins under its certificate's id, once it proves it
                    # holds that certificate's key (a signature binding its node id and
                    # this round's welcome); ids are not first come.
                    cid, why = self._admit(server, nid, rec, enrolled)
                    if cid is None:
                        refuse(nid, why)
                        continue
                    self._client_of_node[nid] = cid
                    enrolled[cid] = nid
                    server.join(cid)
                    target = cid
                answered.add(i)
                for f in frames:
                    up += len(f)
                    server.handle(target, f)
                if stage == "masked-input":
                    outcome.kept[nid] = (reply, kept)
            if first and replies and len(mismatched) == len(replies):
                nid, what = sorted(mismatched.items())[0]
                raise MismatchError(
                    f"this server runs {reading.server}, but node {nid} runs {what}: "
                    "stopping at the setup stage, before any update is requested (every "
                    "node's train function must run secagg.flower.secaggplus_mod of this "
                    f"version, {PROTOCOL})"
                )
            stats.bytes_up[stage] = stats.bytes_up.get(stage, 0) + up
            if first and self.ca is not None:
                node_of.clear()
                node_of.update(enrolled)
                id_of.clear()
                id_of.update({nid: cid for cid, nid in enrolled.items()})
                return
            for i in outgoing:
                if i not in answered:
                    server.disconnect(i)
                    outcome.why.setdefault(node_of[i], f"{stage}: no reply")
            stats.stage_s[stage] = stats.stage_s.get(stage, 0.0) + time.perf_counter() - t0

        enrolled: Dict[int, int] = {}
        if self.ca is None:
            for i in range(n):
                server.join(i)
        exchange("setup", {i: [] for i in range(n)}, first=True)
        if len(outcome.why) == n:
            log.error(
                "secagg: no node joined round %d: %s",
                current_round,
                "; ".join(sorted(set(outcome.why.values()))[:3]),
            )
        while server.status not in ("completed", "aborted"):
            outgoing: Dict[int, List[bytes]] = {}
            while True:
                out = server.poll_transmit()
                if out is None:
                    break
                outgoing.setdefault(out[0], []).append(bytes(out[1]))
            if not outgoing:
                deadline = server.poll_timeout()
                if deadline is None:
                    break
                server.handle_timeout(deadline)
                continue
            exchange(server.status, outgoing)
        # Tell the clients how the round ended (the completion notice).
        final: Dict[int, List[bytes]] = {}
        while True:
            out = server.poll_transmit()
            if out is None:
                break
            final.setdefault(out[0], []).append(bytes(out[1]))
        if final:
            exchange("completed", final)
        stats.wall_s = time.perf_counter() - started
        stats.dropped = list(server.dropped)
        self.last_round = stats
        if server.status != "completed":
            log.error("secagg: round %d aborted: %s", current_round, server.error)
            outcome.error = str(server.error)
            return outcome
        outcome.result = server.result()
        outcome.included = sorted(node_of[i] for i in outcome.result["included"])
        stats.included = len(outcome.included)
        if planned is not None:
            self._released_round(config, planned, current_round, outcome, instructions_of, reading)
        return outcome

    def _released_round(
        self,
        config: RoundConfig,
        planned: DpPlan,
        current_round: int,
        outcome: "_Outcome",
        instructions_of: Dict[int, RecordDict],
        reading: "_Reading",
    ) -> None:
        """A DP round's sum was released: its mean (of the model updates) goes back on the
        model sent, and its privacy event is recorded and handed to the app."""
        result = cast(Dict[str, object], outcome.result)
        content = next(iter(instructions_of.values()))
        layout = message_layout(content)[1] if reading.api == MESSAGE_API else []
        model = _instructions_flat(content, reading.api, layout)
        result["mean"] = (cast(np.ndarray, result["mean"]) + model).astype(np.float32)
        spec = cast(DpSpec, self.dp)
        event = PrivacyEvent.of(
            config,
            delta=spec.delta,
            server_round=current_round,
            inputs_in_sum=len(cast(list, result["included"])),
            total_weight=int(cast(int, result["total_weight"])),
            earlier=self._released,
            planned=planned,
        )
        self._released.append(config)
        self.privacy_events.append(event)
        outcome.stats.privacy = event
        log.info(
            "secagg: round %d released under DP: ε %.4g this round, %.4g over %d released "
            "rounds at δ = %g",
            current_round,
            event.epsilon,
            event.cumulative_epsilon,
            event.rounds_released,
            event.delta,
        )
        if self.on_privacy is not None:
            self.on_privacy(event)


def _fitres(content: RecordDict, max_weight: int) -> FitRes:
    """What the server keeps of a node's legacy masked-input reply: its FitRes, whose
    num_examples (the strategy's weight) must be a whole number in [0, max_weight], as the
    node's mod ensures (ValueError otherwise)."""
    fitres = compat.recorddict_to_fitres(content, True)
    _weight(fitres.num_examples, max_weight, "num_examples")
    return fitres


#: The names of the errors secagg's mod raises (a node's error reply that names none of
#: them comes from an app without the mod: at the setup stage the mod calls no app code):
#: the package's own and this module's.
_OUR_ERRORS = tuple(
    sorted(
        {name for name in _package_names if name.endswith("Error")}
        | {name for name in __all__ if name.endswith("Error")}
    )
)


def _runs_instead(reason: str) -> Optional[str]:
    """What a node that answered the setup stage with the error ``reason`` runs instead of
    secagg's mod of this version; None when the error is the mod's own refusal (a policy,
    a repeated round), which is no mismatch."""
    if FLOWER_RECORD in reason:
        return "Flower's own secaggplus_mod"
    if "secagg versions differ" in reason:
        return f"secagg's mod of another version (it says: {_last_line(reason)})"
    if not any(name in reason for name in _OUR_ERRORS):
        return (
            "no secagg mod (its app's train function ran on the setup message and failed: "
            f"{_last_line(reason)})"
        )
    return None


def _last_line(reason: str, limit: int = 400) -> str:
    """The last line of a node's error reason (Flower's simulation sends a traceback)."""
    lines = [line.strip() for line in reason.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else reason
    return last if len(last) <= limit else last[: limit - 3] + "..."


@dataclass
class _Reading:
    """How a round's updates are read: on the nodes, from the app's reply (``api``,
    ``weight_key``: bound to the round context), and on the server, from a node's
    masked-input reply (``parse``: what the caller keeps, or an error that refuses the
    node). ``server`` names the server side in errors."""

    api: str
    weight_key: str
    server: str
    parse: Callable[[RecordDict], object]


@dataclass
class _Outcome:
    """What one secure round did, by Flower node id."""

    stats: RoundStats
    nodes: List[int]
    result: Optional[Dict[str, object]] = None
    """The server's result, when the round completed."""
    included: List[int] = field(default_factory=list)
    """Nodes whose update is in the sum."""
    kept: Dict[int, Tuple[Message, object]] = field(default_factory=dict)
    """Each node's masked-input reply, and what the reading kept of it."""
    sent: Dict[int, Message] = field(default_factory=dict)
    """The last message sent to each node."""
    why: Dict[int, str] = field(default_factory=dict)
    """Why a node left the round (stage: reason), for nodes that did."""
    failures: List[BaseException] = field(default_factory=list)
    error: Optional[str] = None
    """Why the round aborted, when it did."""


# --------------------------------------------------------------------------------------
# Server side, Message API: a wrapper around a flwr.serverapp strategy
# --------------------------------------------------------------------------------------

#: Classes whose aggregate_train is a weighted mean of the replies' arrays (FedOpt and
#: FedProx define none of their own: FedAvg's applies).
_WEIGHTED_MEAN = (FedAvg, FedAvgM, FedAdam, FedYogi, FedAdagrad)

#: Strategies that need each node's own update, and why.
_NEEDS_INDIVIDUAL_UPDATES = (
    (Bulyan, "Bulyan selects updates by their distances to each other, then trims them"),
    (MultiKrum, "Krum and MultiKrum score each update by its distance to the others"),
    (FedMedian, "FedMedian takes the coordinate-wise median of the updates"),
    (FedTrimmedAvg, "FedTrimmedAvg drops each coordinate's largest and smallest updates"),
    (QFedAvg, "QFedAvg reweights each update by its own loss (q-FFL)"),
    (FedXgbBagging, "FedXgbBagging merges each node's trees (bytes, not float arrays)"),
    (FedXgbCyclic, "FedXgbCyclic trains on one node at a time and keeps its model"),
)

_FAMILY = (
    "FedAvg or a descendant that averages the same way (FedAdam, FedYogi, FedAdagrad, "
    "FedAvgM, FedProx)"
)


def _check_strategy(strategy: object, assume_weighted_mean: bool) -> None:
    """Raises UnsupportedStrategyError unless ``strategy``'s aggregation is a weighted
    mean of the nodes' arrays."""
    name = type(strategy).__name__
    for cls, why in _NEEDS_INDIVIDUAL_UPDATES:
        if isinstance(strategy, cls):
            raise UnsupportedStrategyError(
                f"secagg: SecAggPlus cannot wrap {name}: {why}, and under secure aggregation "
                "the server learns only the weighted mean of the updates, never one of them; "
                f"wrap {_FAMILY}"
            )
    if not isinstance(strategy, FedAvg):
        raise UnsupportedStrategyError(
            f"secagg: SecAggPlus cannot wrap {name}: it is not a FedAvg, and SecAggPlus "
            "wraps strategies whose aggregation is a weighted mean of the nodes' arrays, "
            f"the one thing the server learns under secure aggregation: {_FAMILY}"
        )
    owner = next(c for c in type(strategy).__mro__ if "aggregate_train" in vars(c))
    if owner not in _WEIGHTED_MEAN and not assume_weighted_mean:
        raise UnsupportedStrategyError(
            f"secagg: SecAggPlus cannot tell whether {name} aggregates a weighted mean: "
            f"{owner.__qualname__} overrides aggregate_train. Under SecAggPlus every reply "
            "it receives carries the secure weighted mean of the round as its arrays, never "
            "a node's own update; if its aggregate_train builds on FedAvg's (super()), wrap "
            "it as SecAggPlus(strategy, assume_weighted_mean=True)"
        )


class _TrainRequest(list):
    """The train messages of one round, as SecAggPlus.configure_train gives them to
    Strategy.start, which hands them to the grid: marked, so that the grid runs them as a
    secure round."""

    def __init__(self, messages, server_round: int) -> None:
        super().__init__(messages)
        self.server_round = server_round


class _SecureGrid:
    """The grid a SecAggPlus runs Flower's Strategy.start on: the train messages of its
    configure_train become a secure round; every other call goes to Flower's grid."""

    def __init__(self, grid, secure: "SecAggPlus") -> None:
        self._grid = grid
        self._secure = secure

    def __getattr__(self, name: str):
        return getattr(self._grid, name)

    def send_and_receive(self, messages, *, timeout: Optional[float] = None):
        if isinstance(messages, _TrainRequest):
            return self._secure._train(self._grid, messages, timeout)
        return self._grid.send_and_receive(messages, timeout=timeout)


def _clear_weight(content: RecordDict, weight_key: str, max_weight: int) -> int:
    """What the server keeps of a node's Message-API masked-input reply: the weight it
    states in the clear, which the strategy averages by (ValueError unless the reply has
    one empty ArrayRecord, its arrays having gone masked, and one MetricRecord holding a
    whole-number weight in [0, max_weight], the rule the node's mod follows: a weight the
    strategy would divide by, negative, infinite or huge, would spoil its average of the
    replies' identical arrays)."""
    arrays = list(content.array_records.values())
    if len(arrays) != 1 or len(arrays[0]) != 0:
        raise ValueError(
            "a Message-API train reply carries one empty ArrayRecord (its arrays go masked), "
            f"not {[len(a) for a in arrays]} arrays in {len(arrays)} records"
        )
    metrics = list(content.metric_records.values())
    if len(metrics) != 1:
        raise ValueError(f"{len(metrics)} MetricRecords, not one")
    return _weight(metrics[0].get(weight_key), max_weight, f"metric {weight_key!r}")


def _with_mean(content: RecordDict, mean: "ArrayRecord") -> RecordDict:
    """A node's reply content as the strategy reads it: its records, with the round's
    secure mean as its ArrayRecord and without secagg's record."""
    out = RecordDict()
    for name, record in content.items():
        if name == RECORD:
            continue
        out[name] = mean if isinstance(record, ArrayRecord) else record
    return out


class SecAggPlus(Strategy):
    """Secure aggregation for a Message-API strategy: ``SecAggPlus(FedAvg(...))``.

    Wraps a :mod:`flwr.serverapp.strategy` strategy whose aggregation is a weighted mean of
    the nodes' arrays (FedAvg and its descendants FedAdam, FedYogi, FedAdagrad, FedAvgM,
    FedProx) and runs it as Flower would — ``SecAggPlus(strategy).start(grid=...,
    initial_arrays=..., num_rounds=...)`` returns the :class:`flwr.serverapp.strategy.Result`
    the strategy's own ``start`` returns —, except that each training round is a round of
    secure aggregation: the nodes, whose train function runs
    :data:`secagg.flower.secaggplus_mod`, train on the strategy's instructions and send
    their ArrayRecord masked, and the strategy's ``aggregate_train`` receives one reply per
    node in the sum whose arrays are the round's secure weighted mean (cast to the model's
    dtypes) and whose metrics are the node's own, in the clear. The weight is the
    strategy's ``weighted_by_key`` metric (``"num-examples"``), a whole number of at most
    ``max_weight``. Evaluation is the strategy's, unchanged.

    A strategy that needs individual updates (Krum, MultiKrum, Bulyan, FedMedian,
    FedTrimmedAvg, QFedAvg, the XGBoost strategies) is refused here with
    :class:`UnsupportedStrategyError`, and so is a subclass whose own ``aggregate_train``
    cannot be told to be a weighted mean, unless ``assume_weighted_mean=True``.

    Keyword arguments: those of :class:`SecAggPlusWorkflow` (Flower's ``num_shares``,
    ``reconstruction_threshold``, ``max_weight``, ``clipping_range``,
    ``quantization_range``, ``modulus_range``, ``timeout``; ours ``prg``, ``backend``,
    ``dropout``, ``corrupt``, ``colluders``, ``ca``, ``dp``, ``on_privacy``), with the same
    meaning (``dp=``: distributed DP, each released round's event in
    :attr:`privacy_events`); without
    ``num_shares`` and ``reconstruction_threshold`` the planner chooses them for the nodes
    sampled. With ``ca`` the nodes run enrolled (``make_secaggplus_mod(identity=...)``).
    """

    def __init__(
        self,
        strategy: FedAvg,
        num_shares: Union[int, float, None] = None,
        reconstruction_threshold: Union[int, float, None] = None,
        *,
        assume_weighted_mean: bool = False,
        **kwargs,
    ) -> None:
        _check_strategy(strategy, assume_weighted_mean)
        self.strategy = strategy
        #: The rounds' engine: the legacy workflow's, with its parameters.
        self.workflow = SecAggPlusWorkflow(num_shares, reconstruction_threshold, **kwargs)

    @property
    def last_round(self) -> Optional[RoundStats]:
        """Figures of the last training round."""
        return self.workflow.last_round

    @property
    def privacy_events(self) -> List[PrivacyEvent]:
        """Each released DP training round's privacy event (``dp=``), in order."""
        return self.workflow.privacy_events

    @property
    def privacy_spent(self) -> float:
        """ε at ``dp.delta`` over every released training round so far."""
        return self.workflow.privacy_spent

    def summary(self) -> None:
        w = self.workflow
        log.info(
            "secagg: SecAggPlus around %s: num_shares %s, reconstruction_threshold %s, "
            "clipping_range %g, max_weight %g, modulus_range %s, %s protocol",
            type(self.strategy).__name__,
            "(planner)" if w.num_shares is None else w.num_shares,
            "(planner)" if w.reconstruction_threshold is None else w.reconstruction_threshold,
            w.clipping_range,
            w.max_weight,
            "(planner)"
            if w.modulus_range is None
            else "2^%d" % (w.modulus_range.bit_length() - 1),
            "honest-but-curious" if w.ca is None else "semi-malicious server (enrolled nodes)",
        )
        self.strategy.summary()

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid):
        return _TrainRequest(
            self.strategy.configure_train(server_round, arrays, config, grid), server_round
        )

    def aggregate_train(self, server_round: int, replies):
        return self.strategy.aggregate_train(server_round, replies)

    def configure_evaluate(
        self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid
    ):
        return self.strategy.configure_evaluate(server_round, arrays, config, grid)

    def aggregate_evaluate(self, server_round: int, replies):
        return self.strategy.aggregate_evaluate(server_round, replies)

    def start(
        self,
        grid,
        initial_arrays: ArrayRecord,
        num_rounds: int = 3,
        timeout: float = 3600,
        train_config: Optional[ConfigRecord] = None,
        evaluate_config: Optional[ConfigRecord] = None,
        evaluate_fn: Optional[Callable[[int, ArrayRecord], Optional[MetricRecord]]] = None,
    ) -> Result:
        """Flower's ``Strategy.start``, each training round run as secure aggregation."""
        return super().start(
            grid=_SecureGrid(grid, self),
            initial_arrays=initial_arrays,
            num_rounds=num_rounds,
            timeout=timeout,
            train_config=train_config,
            evaluate_config=evaluate_config,
            evaluate_fn=evaluate_fn,
        )

    def _train(self, grid, request: _TrainRequest, timeout: Optional[float]) -> List[Message]:
        """One training round as secure aggregation: the replies aggregate_train gets."""
        messages = list(request)
        if not messages:
            return []
        instructions_of: Dict[int, RecordDict] = {}
        for msg in messages:
            if msg.metadata.message_type != MessageType.TRAIN:
                raise ValueError(
                    f"secagg: {type(self.strategy).__name__}.configure_train gave a "
                    f"{msg.metadata.message_type!r} message; SecAggPlus runs 'train' messages"
                )
            nid = msg.metadata.dst_node_id
            if nid in instructions_of:
                raise ValueError(f"secagg: configure_train sent node {nid} two messages")
            instructions_of[nid] = msg.content
        # Every node's instructions are the same (the round checks): one layout.
        _, layout = message_layout(messages[0].content)
        params = sum(math.prod(shape) for _, shape, _ in layout)
        weight_key = str(self.strategy.weighted_by_key)
        reading = _Reading(
            api=MESSAGE_API,
            weight_key=weight_key,
            server="secagg.flower.SecAggPlus",
            parse=lambda content: _clear_weight(
                content, weight_key, int(self.workflow.max_weight)
            ),
        )
        outcome = self.workflow._secure_round(
            grid,
            int(messages[0].metadata.run_id),
            request.server_round,
            instructions_of,
            params,
            reading,
            self.workflow.timeout or timeout,
        )
        first_of = {msg.metadata.dst_node_id: msg for msg in messages}
        if outcome is None:
            return [
                Message(
                    Error(ErrorCode.UNKNOWN, "secagg: a round needs at least 3 sampled nodes"),
                    reply_to=msg,
                )
                for msg in messages
            ]
        mean: Optional[ArrayRecord] = None
        if outcome.result is not None:
            flat = cast(np.ndarray, outcome.result["mean"])
            arrays: Dict[str, Array] = {}
            offset = 0
            for key, shape, dtype in layout:
                size = math.prod(shape)
                value = flat[offset : offset + size].reshape(shape).astype(np.dtype(dtype))
                arrays[key] = Array(np.ascontiguousarray(value))
                offset += size
            mean = ArrayRecord(arrays)
            stated = sum(outcome.kept[nid][1] for nid in outcome.included)  # type: ignore[misc]
            if stated == 0:
                # The strategy would divide by zero: no result this round.
                log.error(
                    "secagg: the nodes in round %d's sum state weights (%r) that add up to 0",
                    request.server_round,
                    weight_key,
                )
                mean = None
                outcome.error = f"the nodes' stated weights ({weight_key!r}) add up to 0"
            elif stated != outcome.result["total_weight"] and (
                self.workflow.dp is None or self.workflow.dp.weighted
            ):
                log.warning(
                    "secagg: the nodes in the sum state weights (%r) that add up to %s, but "
                    "their masked weights add up to %s: the strategy's metrics are "
                    "averaged by the stated ones",
                    weight_key,
                    stated,
                    outcome.result["total_weight"],
                )
        replies: List[Message] = []
        included = set(outcome.included)
        for nid in outcome.nodes:
            if mean is not None and nid in included:
                reply = outcome.kept[nid][0]
                reply.content = _with_mean(reply.content, mean)
                replies.append(reply)
                continue
            why = outcome.why.get(nid) or (
                f"the round failed: {outcome.error}" if outcome.error else "not in the sum"
            )
            replies.append(
                Message(
                    Error(
                        ErrorCode.UNKNOWN,
                        f"secagg: node {nid} is not in round {request.server_round}'s "
                        f"secure sum: {why}",
                    ),
                    reply_to=outcome.sent.get(nid, first_of[nid]),
                )
            )
        return replies
