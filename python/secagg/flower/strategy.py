"""Server side, Message API: :class:`SecAggPlus`, a wrapper around a
:mod:`flwr.serverapp.strategy` strategy whose aggregation is a weighted mean of the nodes'
arrays, each of whose training rounds runs as secure aggregation (through
:class:`SecAggPlusWorkflow`'s round); and the check that refuses other strategies."""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Union, cast

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
from flwr.app.message_type import MessageType
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

from ..dp import PrivacyEvent
from .errors import UnsupportedStrategyError
from .instructions import message_layout
from .records import MESSAGE_API, RECORD, log
from .rounds import RoundStats, _Reading
from .updates import _weight
from .workflow import SecAggPlusWorkflow

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
