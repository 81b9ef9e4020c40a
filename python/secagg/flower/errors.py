"""The errors of :mod:`secagg.flower` (beside the package's own, which it raises too)."""

from __future__ import annotations

from .. import SecaggError

__all__ = [
    "MismatchError",
    "UnguardedMessageError",
    "RepeatedRoundError",
    "FitInstructionsError",
    "TrainReplyError",
    "ModelLayoutError",
    "UnsupportedStrategyError",
]


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
