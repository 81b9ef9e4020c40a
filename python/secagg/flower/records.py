"""The record secagg's workflow and mod exchange in Flower's messages: its names, the
drop-in's protocol version and the APIs an update is read by, how either side reads the
record's frames and bytes fields, and the logger every part of :mod:`secagg.flower` writes
to."""

from __future__ import annotations

import logging
from typing import List

from flwr.app import ConfigRecord

from .. import ProtocolError

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
