"""The secure round that both server sides run, :class:`SecAggPlusWorkflow` for legacy apps
and :class:`SecAggPlus` for the Message API: its stages through Flower's grid, one
``send_and_receive`` each, and the completion notice; the figures it records
(:class:`RoundStats`); a released DP round's mean and privacy event; and how it tells that a
node runs something other than secagg's mod of this version."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Tuple, cast

import numpy as np
from flwr.app import ConfigRecord, Message, RecordDict
from flwr.app.message_type import MessageType

from .. import ProtocolError, RoundConfig, Server
from .. import __all__ as _package_names
from ..dp import DpPlan, DpSpec, PrivacyEvent
from .errors import MismatchError
from .errors import __all__ as _error_names
from .instructions import fit_digests, message_layout, round_context
from .records import FLOWER_RECORD, MESSAGE_API, PROTOCOL, RECORD, _frames, log
from .updates import _instructions_flat


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


class _SecureRounds:
    """The round driver of :class:`~secagg.flower.SecAggPlusWorkflow` (one of its bases),
    which :class:`~secagg.flower.SecAggPlus` runs its rounds through too: it reads the
    workflow's parameters, plans (``_graph``, ``_quantization``, ``_plan_privacy``,
    ``_colluders``) and enrolled nodes (``_admit``), and records its rounds on it."""

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
            outgoing = _drain(server)
            if not outgoing:
                deadline = server.poll_timeout()
                if deadline is None:
                    break
                server.handle_timeout(deadline)
                continue
            exchange(server.status, outgoing)
        # Tell the clients how the round ended (the completion notice).
        final = _drain(server)
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


#: The names of the errors secagg's mod raises (a node's error reply that names none of
#: them comes from an app without the mod: at the setup stage the mod calls no app code):
#: the package's own and secagg.flower's (its errors module's).
_OUR_ERRORS = tuple(
    sorted(
        {name for name in _package_names if name.endswith("Error")}
        | {name for name in _error_names if name.endswith("Error")}
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


def _drain(server) -> Dict[int, List[bytes]]:
    """Every frame the server has to send now, grouped by recipient, in order."""
    out: Dict[int, List[bytes]] = {}
    while True:
        frame = server.poll_transmit()
        if frame is None:
            return out
        out.setdefault(frame[0], []).append(bytes(frame[1]))
