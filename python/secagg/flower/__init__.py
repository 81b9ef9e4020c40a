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

# Flower is an optional extra: say so here, before the modules below import from it.
try:
    import flwr.app  # noqa: F401
    import flwr.serverapp.strategy  # noqa: F401
except ImportError as e:  # pragma: no cover - exercised only without flwr
    raise ImportError(
        "secagg.flower needs Flower: pip install 'secagg[flower]' (flwr 1.42)"
    ) from e

from .records import (
    FLOWER_RECORD,
    LEGACY_API,
    MESSAGE_API,
    PROTOCOL,
    RECORD,
    STATE_RECORD,
    STEPS_RECORD,
    log,
)
from .errors import (
    FitInstructionsError,
    MismatchError,
    ModelLayoutError,
    RepeatedRoundError,
    TrainReplyError,
    UnguardedMessageError,
    UnsupportedStrategyError,
)
from .instructions import Layout, fit_digests, message_layout, round_context
from .client import (
    DEFAULT_COLLUDERS,
    IdentityFiles,
    Steps,
    make_secaggplus_mod,
    secaggplus_mod,
)
from .rounds import RoundStats
from .workflow import SecAggPlusWorkflow
from .strategy import SecAggPlus

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
