"""Server side, legacy apps: :class:`SecAggPlusWorkflow`, secagg's SecAgg+ as a Flower fit
workflow (the drop-in for :class:`flwr.server.workflow.SecAggPlusWorkflow`): its
parameters, checked and planned for the clients sampled, the enrolled nodes it admits, and
the fit round over a LegacyContext, which runs as :mod:`secagg.flower.rounds` drives it."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Tuple, Union, cast

import numpy as np
from flwr.app import ConfigRecord, Context, RecordDict
from flwr.common import FitRes, ndarrays_to_parameters, parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat
from flwr.server.client_proxy import ClientProxy
from flwr.server.compat.legacy_context import LegacyContext
from flwr.server.workflow.constant import MAIN_CONFIGS_RECORD, MAIN_PARAMS_RECORD
from flwr.server.workflow.constant import Key as WorkflowKey

from .. import IdentityError, PlanError, RoundConfig, Server
from .. import plan as _plan
from ..dp import DpPlan, DpSpec, PrivacyEvent
from ..dp import honest_survivors as _honest_survivors
from ..dp import plan_dp as _plan_dp
from .client import DEFAULT_COLLUDERS
from .records import LEGACY_API, log
from .rounds import RoundStats, _Reading, _SecureRounds
from .updates import _weight


#: The modulus bits of a round when its sum fits in fewer (Flower's default modulus_range).
_DEFAULT_BITS = 32
#: The widest modulus a round can take: 2^64.
_MAX_BITS = 64


def _bits_needed(n: int, levels: int, max_weight: int) -> int:
    """The fewest bits b with n (levels − 1) max_weight < 2^b (the host's bits_needed)."""
    return (n * (levels - 1) * max_weight).bit_length()


class SecAggPlusWorkflow(_SecureRounds):
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


def _fitres(content: RecordDict, max_weight: int) -> FitRes:
    """What the server keeps of a node's legacy masked-input reply: its FitRes, whose
    num_examples (the strategy's weight) must be a whole number in [0, max_weight], as the
    node's mod ensures (ValueError otherwise)."""
    fitres = compat.recorddict_to_fitres(content, True)
    _weight(fitres.num_examples, max_weight, "num_examples")
    return fitres
