"""Distributed differential privacy under the masks, from Python.

Each client clips its update to an L2 norm, rotates it, rounds it to integers and adds
Skellam noise before masking it, so the server only ever sees the noisy sum (the README's
"Differential privacy under the masks"). The noise is sized so that the honest survivors
alone meet the target — ``T − c`` of them, and at most ``k − t + 2`` against a
semi-malicious server — and each client refuses a round whose noise assumes more honest
survivors than its own :class:`secagg.Policy` guarantees.

* :class:`DpSpec` is what an app asks for (ε or a noise multiplier, δ, the clip, the
  rounds, β);
* :func:`plan_dp` is ``secagg plan --epsilon/--noise``: the scale, noise and modulus;
* :class:`PrivacyEvent` is one released round's privacy cost, as the server's summary
  states it, with :meth:`PrivacyEvent.to_flower` for Flower's accountant;
* :func:`privacy_spent` composes rounds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union, cast

from ._native import ConfigError, RoundConfig
from ._native import honest_survivors as _honest_survivors
from ._native import plan_dp as _plan_dp
from ._native import privacy_event as _privacy_event
from ._native import privacy_spent as _privacy_spent

__all__ = [
    "DpSpec",
    "DpPlan",
    "PrivacyEvent",
    "plan_dp",
    "honest_survivors",
    "privacy_spent",
    "INTEGER_ORDERS",
]

#: Rényi orders at which the Skellam bound is proved (integers, as the event's curve):
#: compose :meth:`PrivacyEvent.to_flower` events in Flower's ``RdpAccountant`` made with
#: ``orders=INTEGER_ORDERS`` (its default orders include fractional ones below 2, where
#: the Gaussian equivalent is not shown to dominate).
INTEGER_ORDERS: Tuple[float, ...] = tuple(float(a) for a in range(2, 257)) + tuple(
    float(a) for a in (300, 400, 512, 768, 1024, 2048, 4096)
)


@dataclass(frozen=True)
class DpSpec:
    """What a DP round must meet: ``epsilon`` at ``delta`` over ``rounds`` rounds, or a
    noise multiplier ``noise`` (the central noise's standard deviation over the clip, as
    Flower's DP wrappers take it); ``clip``, each update's L2 norm bound; ``beta``,
    conditional rounding's failure probability (None: e^-0.5; 0: plain stochastic
    rounding); ``bits``, the modulus 2^b (None: the plan's choice); ``weighted``: weigh
    updates by their exact integer weights (noise sized for the largest weight), else
    every update weighs 1 (the unweighted mean of the clipped updates)."""

    epsilon: Optional[float] = None
    noise: Optional[float] = None
    delta: float = 1e-6
    clip: float = 1.0
    rounds: int = 1
    beta: Optional[float] = None
    bits: Optional[int] = None
    weighted: bool = False

    def __post_init__(self) -> None:
        if (self.epsilon is None) == (self.noise is None):
            raise ConfigError(
                "give epsilon (the target over the rounds) or noise (the noise multiplier), "
                "not both or neither"
            )
        for name in ("epsilon", "noise", "clip"):
            value = getattr(self, name)
            if value is not None and not (
                isinstance(value, (int, float)) and math.isfinite(value) and value > 0
            ):
                raise ConfigError(f"{name} must be a positive number, not {value!r}")
        if not 0 < self.delta < 1:
            raise ConfigError(f"delta must lie in (0, 1), not {self.delta!r}")
        if not isinstance(self.rounds, int) or isinstance(self.rounds, bool) or self.rounds < 1:
            raise ConfigError(f"rounds must be a positive integer, not {self.rounds!r}")

    @staticmethod
    def of(spec: Union["DpSpec", Mapping[str, object], None]) -> Optional["DpSpec"]:
        """``spec`` as a DpSpec: a DpSpec, a mapping of its fields, or None."""
        if spec is None or isinstance(spec, DpSpec):
            return spec
        if isinstance(spec, Mapping):
            unknown = set(spec) - set(DpSpec.__dataclass_fields__)
            if unknown:
                raise ConfigError(f"dp has unknown fields {sorted(unknown)}")
            return DpSpec(**spec)  # type: ignore[arg-type]
        raise TypeError(f"dp must be a secagg.DpSpec or a dict of its fields, not {type(spec).__name__}")


@dataclass(frozen=True)
class DpPlan:
    """A DP plan (``secagg plan --epsilon/--noise``). ``dp`` is the round's setting (clip,
    scale s, per-client noise variance μ_c in integer units, honest survivors h, β), to
    pass as ``RoundConfig(..., bits=plan.bits, dp=plan.dp)``; ``epsilon`` the ε spent over
    ``rounds`` at ``delta`` with that noise; ``noise_std`` the central noise's standard
    deviation (value units) the guarantee rests on; ``mean_error`` the expected error of
    one coordinate of the mean at the expected survivors."""

    bits: int
    dp: Dict[str, float]
    epsilon: float
    order: int
    delta: float
    rounds: int
    l2_sensitivity: float
    l1_sensitivity: float
    sampler_delta: float
    noise_std: float
    ideal_std: float
    ideal_epsilon: float
    central_error: float
    mean_error: float
    wrap_probability: float
    within_slack: bool


def plan_dp(
    params: int,
    clients: int,
    honest: int,
    *,
    epsilon: Optional[float] = None,
    noise: Optional[float] = None,
    delta: float = 1e-6,
    rounds: int = 1,
    clip: float = 1.0,
    beta: Optional[float] = None,
    bits: Optional[int] = None,
    max_weight: int = 1,
    survivors: Optional[int] = None,
    wrap_probability: float = 1e-6,
) -> DpPlan:
    """The DP plan for ``params`` parameters over ``clients`` clients whose noise rests on
    ``honest`` of them (see :func:`honest_survivors`), as ``secagg plan`` computes it.
    Raises :class:`secagg.ConfigError` for a request out of range and
    :class:`secagg.PlanError` when no scale fits the modulus."""
    d = _plan_dp(
        params,
        clients,
        honest,
        epsilon=epsilon,
        noise=noise,
        delta=delta,
        rounds=rounds,
        clip=clip,
        beta=beta,
        bits=bits,
        max_weight=max_weight,
        survivors=survivors,
        wrap_probability=wrap_probability,
    )
    return DpPlan(**d)  # type: ignore[arg-type]


def honest_survivors(
    clients: int,
    neighbors: int,
    threshold: int,
    *,
    min_survivors: Optional[int] = None,
    colluders: int = 1,
    adversary: str = "semi-malicious",
) -> int:
    """The honest inputs every released sum of a round holds at least: ``T − c`` (``T``
    the round's ``min_survivors``, by default the threshold t), and against a
    semi-malicious server at most ``k − t + 2``. What a client's policy with ``colluders``
    guarantees; raises :class:`secagg.PlanError` when that is none."""
    return _honest_survivors(
        clients,
        neighbors,
        threshold,
        min_survivors=min_survivors,
        colluders=colluders,
        adversary=adversary,
    )


@dataclass(frozen=True)
class PrivacyEvent:
    """One released DP round's privacy cost (the server's summary's ``privacy``).

    The mechanism is the Skellam mechanism on the integer grid: each coordinate of the
    released sum carries the Skellam noise of every client in it, and the guarantee rests
    on the ``honest_survivors`` alone (central variance ``central_variance`` =
    h × ``noise_per_client``, integer units; ``noise_std`` = its square root over the
    ``scale``, value units). ``l2_sensitivity`` and ``l1_sensitivity`` bound one client's
    rounded, weighted vector (integer units, rounding's inflation included). ``epsilon``
    is this round's alone at ``delta`` (RDP of Agarwal, Kairouz and Liu 2021, converted);
    ``rdp`` its curve, ``(order, ε(order))`` at integer orders, to compose by adding;
    ``cumulative_epsilon`` the ε at ``delta`` of every released round so far of the app
    (``rounds_released`` of them), composed. ``sampler_delta`` is what the noise sampler's
    distance from exact adds to δ in this round. The adjacency is per client, with the
    client still taking part (its update replaced by zero); the total weight is public.

    ``mean_noise_std`` is the expected standard deviation of one coordinate of the
    released mean around the clipped updates' mean: every included client's noise and
    rounding, ``sqrt(S (μ_c + w²/4)) / (s W)`` for S inputs of total weight W and largest
    weight w.
    """

    round: int
    mechanism: str
    epsilon: float
    delta: float
    sampler_delta: float
    cumulative_epsilon: float
    rounds_released: int
    planned_epsilon: float
    planned_rounds: int
    honest_survivors: int
    inputs_in_sum: int
    total_weight: int
    clients: int
    noise_per_client: float
    central_variance: float
    noise_std: float
    mean_noise_std: float
    scale: float
    clip: float
    beta: float
    max_weight: int
    l2_sensitivity: float
    l1_sensitivity: float
    rdp: Tuple[Tuple[int, float], ...] = field(repr=False)

    @staticmethod
    def of(
        config: RoundConfig,
        *,
        delta: float,
        server_round: int,
        inputs_in_sum: int,
        total_weight: int,
        earlier: Sequence[RoundConfig] = (),
        planned: Optional[DpPlan] = None,
    ) -> "PrivacyEvent":
        """The event of ``config``'s released round (``inputs_in_sum`` inputs of total
        weight ``total_weight``), composed after the rounds ``earlier``."""
        d = _privacy_event(config, delta=delta)
        dp = cast(Dict[str, float], d["dp"])
        cumulative, _ = _privacy_spent([*earlier, config], delta=delta)
        s, mu, w = float(dp["scale"]), float(dp["noise"]), int(d["max_weight"])  # type: ignore[arg-type]
        mean_std = math.sqrt(inputs_in_sum * (mu + w * w / 4.0)) / (s * max(total_weight, 1))
        return PrivacyEvent(
            round=server_round,
            mechanism=str(d["mechanism"]),
            epsilon=float(d["epsilon"]),  # type: ignore[arg-type]
            delta=delta,
            sampler_delta=float(d["sampler_delta"]),  # type: ignore[arg-type]
            cumulative_epsilon=cumulative,
            rounds_released=len(earlier) + 1,
            planned_epsilon=planned.epsilon if planned is not None else float("nan"),
            planned_rounds=planned.rounds if planned is not None else 0,
            honest_survivors=int(dp["honest"]),
            inputs_in_sum=inputs_in_sum,
            total_weight=total_weight,
            clients=config.clients,
            noise_per_client=mu,
            central_variance=float(d["central_variance"]),  # type: ignore[arg-type]
            noise_std=float(d["noise_std"]),  # type: ignore[arg-type]
            mean_noise_std=mean_std,
            scale=s,
            clip=float(dp["clip"]),
            beta=float(dp["beta"]),
            max_weight=w,
            l2_sensitivity=float(d["l2_sensitivity"]),  # type: ignore[arg-type]
            l1_sensitivity=float(d["l1_sensitivity"]),  # type: ignore[arg-type]
            rdp=tuple((int(a), float(e)) for a, e in d["rdp"]),  # type: ignore[union-attr]
        )

    def noise_multiplier(self) -> float:
        """The noise multiplier z of a Gaussian mechanism (sensitivity 1) whose RDP,
        α / (2 z²), is at least this round's Skellam bound at every integer order α ≥ 2.

        The Skellam bound is the Gaussian's ``α Δ2² / (2μ)`` plus a discrete term
        ``min(((2α − 1) Δ2² + 6 Δ1) / (4μ²), 3 Δ1 / (2μ))``. Over α ≥ 2 that term divided
        by α is at most ``min(max((3 Δ2² + 6 Δ1) / (8μ²), Δ2² / (2μ²)), 3 Δ1 / (4μ))`` (the
        first part is monotone in α, so its largest value is at α = 2 or in the limit; the
        second falls with α), so ``1 / (2 z²)`` = ``Δ2² / (2μ)`` plus that bound. z is a
        little below ``√μ / Δ2``, the Gaussian with the same variance: reporting that one
        would understate the cost."""
        l2, l1, mu = self.l2_sensitivity, self.l1_sensitivity, self.central_variance
        discrete = min(
            max((3 * l2 * l2 + 6 * l1) / (8 * mu * mu), l2 * l2 / (2 * mu * mu)),
            3 * l1 / (4 * mu),
        )
        rate = l2 * l2 / (2 * mu) + discrete
        return 1.0 / math.sqrt(2.0 * rate)

    def to_flower(self, population_size: Optional[int] = None):
        """This round as Flower's ``GaussianPrivacyEvent`` (``flwr.supercore.
        privacy_accounting``), whose RDP bounds this Skellam round's at every integer
        order (:meth:`noise_multiplier`): compose it in Flower's ``RdpAccountant`` with
        ``orders=INTEGER_ORDERS`` and a ``PrivacyConfig`` with
        ``sampling_method=NO_AMPLIFICATION`` (the server picks the nodes, so no
        amplification by sampling may be claimed) and
        ``neighboring_relation=ADD_OR_REMOVE_ONE`` (for a Gaussian without amplification
        Flower's accountant uses the same curve as for this event's zero-out adjacency).
        ``sample_size`` is the inputs in the sum, ``population_size`` (the accountant's)
        defaults to the round's clients."""
        from flwr.supercore.privacy_accounting import GaussianPrivacyEvent

        population = self.clients if population_size is None else population_size
        return GaussianPrivacyEvent(
            noise_multiplier=self.noise_multiplier(),
            sample_size=min(self.inputs_in_sum, population),
            population_size=population,
        )


def privacy_spent(configs: Sequence[RoundConfig], *, delta: float) -> Tuple[float, int]:
    """ε at ``delta`` of the DP rounds ``configs`` together (RDP added, then converted),
    and the Rényi order that gives it."""
    return _privacy_spent(list(configs), delta=delta)
