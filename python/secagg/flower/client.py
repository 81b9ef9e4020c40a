"""Client side: secagg's mod for Flower nodes (:func:`make_secaggplus_mod`, and
:data:`secaggplus_mod` with the default policy), which runs the round's stages around the
app's training, checks its instructions against the round context and masks its reply."""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Dict, List, MutableMapping, Tuple, Union, cast

import numpy as np
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.app.message_type import MessageType

from .. import (
    Client,
    Identity,
    Policy,
    PolicyError,
    ProtocolError,
    RoundConfig,
    StepStore,
    __version__,
)
from .errors import (
    FitInstructionsError,
    MismatchError,
    RepeatedRoundError,
    TrainReplyError,
    UnguardedMessageError,
)
from .instructions import fit_digests, message_layout, round_context
from .records import (
    FLOWER_RECORD,
    LEGACY_API,
    MESSAGE_API,
    PROTOCOL,
    RECORD,
    STATE_RECORD,
    STEPS_RECORD,
    _bytes_field,
    _frames,
    log,
)
from .updates import _instructions_flat, _legacy_update, _message_update


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


#: The drop-in for :func:`flwr.client.mod.secaggplus_mod` (default policy).
secaggplus_mod = make_secaggplus_mod()
