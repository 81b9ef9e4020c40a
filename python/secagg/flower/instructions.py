"""The round context: what every client of a round signs and derives its keys under.

The digests of a round's fit instructions (:func:`fit_digests`), the context that binds
them with the run, the round number and how every node reads its update
(:func:`round_context`), and the model a Message-API round aggregates
(:func:`message_layout`). Server and nodes compute each with the one function here.
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import List, Tuple

import numpy as np
from flwr.app import RecordDict

from .errors import ModelLayoutError
from .records import LEGACY_API, RECORD

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
