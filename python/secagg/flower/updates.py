"""A node's update as a round reads it: the flat float32 vector and the exact weight of the
app's reply (a legacy FitRes, or a Message-API ArrayRecord with its weight metric), and the
model of the fit instructions flattened in the same order (a DP round masks the reply less
that model). The nodes read their replies with these, and the server the weights it keeps
and the model it adds a DP round's mean back on."""

from __future__ import annotations

import math
from typing import Tuple

import numpy as np
from flwr.app import RecordDict
from flwr.common import parameters_to_ndarrays
from flwr.compat.common import recorddict_compat as compat

from .errors import TrainReplyError
from .instructions import _FLOAT_SIZES, Layout
from .records import MESSAGE_API


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
