//! The parameters of one round, validated once so that no state machine has to re-check them.

use std::time::Duration;

use secagg_engine::{Modulus, Prg};

use crate::dp::DpConfig;
use crate::error::ConfigError;
use crate::selection::Selection;

/// Largest vector (model parameters) a round accepts: 2^30 elements (4 GiB of `u32`).
pub const MAX_PARAMS: usize = 1 << 30;
/// Largest number of clients a round accepts.
pub const MAX_CLIENTS: usize = 1 << 20;

/// How `f32` updates become integers mod 2^b, and back.
///
/// Each value is clipped to `[-clip, clip]`, mapped linearly onto `0 ..= levels - 1`, and
/// rounded stochastically (unbiased); the client multiplies by its integer weight (at most
/// `max_weight`). The sum of n clients then stays below `n (levels - 1) max_weight`, which the
/// configuration requires to be below 2^b so that the sum never wraps.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantization {
    /// Clip range c: inputs are clipped to [−c, c].
    pub clip: f32,
    /// Number of levels q (≥ 2).
    pub levels: u32,
    /// Largest integer weight w a client may carry (1 for a plain sum).
    pub max_weight: u32,
}

impl Default for Quantization {
    fn default() -> Self {
        Self {
            clip: 1.0,
            levels: 1 << 16,
            max_weight: 1,
        }
    }
}

/// A validated round configuration. Build it with [`RoundConfig::builder`].
///
/// Once built it cannot be made invalid: every state machine of the round reads it without
/// checking again.
///
/// ```
/// use secagg_host::RoundConfig;
/// # fn main() -> Result<(), secagg_host::ConfigError> {
/// // 100 clients, vectors of 10,000 parameters, each client joined to 20 others (SecAgg+).
/// let config = RoundConfig::builder(100, 10_000)
///     .neighbors(20)
///     .threshold(12)
///     .bits(24)
///     .build()?;
///
/// assert_eq!((config.clients(), config.params()), (100, 10_000));
/// assert_eq!((config.neighbors(), config.threshold()), (20, 12));
/// assert!(!config.is_complete_graph());
/// assert_eq!(config.min_survivors(), 12); // defaults to t
/// assert_eq!(config.modulus().bits(), 24);
/// assert_eq!(config.vector_len(), 10_001); // the parameters and the weight
/// assert_eq!(config.quantization().levels, 1 << 16); // 100 × (2^16 − 1) < 2^24
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct RoundConfig {
    round_id: u64,
    clients: usize,
    threshold: usize,
    min_survivors: usize,
    neighbors: usize,
    modulus: Modulus,
    prg: Prg,
    params: usize,
    quantization: Quantization,
    stage_timeout: Duration,
    context: [u8; 32],
    selection: Option<Selection>,
    dp: Option<DpConfig>,
}

impl RoundConfig {
    /// Starts a configuration for `clients` clients and vectors of `params` model parameters.
    ///
    /// Defaults: SecAgg's complete graph (`neighbors = clients − 1`) with a majority
    /// threshold; for a smaller `neighbors`, the threshold [`crate::plan::threshold_for`]
    /// picks (10 % dropout, 5 % corrupted clients). b = 32, ChaCha20, the largest
    /// quantization (at most 2^16 levels on [−1, 1]) that cannot overflow, weight 1, round
    /// id 0, 30 s per stage.
    ///
    /// ```
    /// use secagg_host::RoundConfig;
    /// # fn main() -> Result<(), secagg_host::ConfigError> {
    /// let config = RoundConfig::builder(10, 100).build()?;
    /// assert_eq!(config.neighbors(), 9); // the complete graph: SecAgg
    /// assert!(config.is_complete_graph());
    /// assert_eq!(config.threshold(), 6); // a majority of 10
    /// assert_eq!(config.modulus().bits(), 32);
    /// assert_eq!(config.stage_timeout().as_secs(), 30);
    /// # Ok(())
    /// # }
    /// ```
    pub fn builder(clients: usize, params: usize) -> RoundConfigBuilder {
        RoundConfigBuilder {
            clients,
            params,
            threshold: None,
            min_survivors: None,
            neighbors: None,
            bits: 32,
            prg: Prg::ChaCha20,
            quantization: None,
            round_id: 0,
            stage_timeout: Duration::from_secs(30),
            context: [0; 32],
            selection: None,
            dp: None,
        }
    }

    /// The round id: every message carries it; messages for other rounds are rejected.
    pub fn round_id(&self) -> u64 {
        self.round_id
    }
    /// n: the number of clients expected.
    pub fn clients(&self) -> usize {
        self.clients
    }
    /// t: the Shamir threshold per neighbourhood: shares needed to rebuild a client's secret.
    pub fn threshold(&self) -> usize {
        self.threshold
    }
    /// T: the fewest clients a stage may end with before the round aborts (at least t).
    pub fn min_survivors(&self) -> usize {
        self.min_survivors
    }
    /// k: neighbours per client (n − 1 for SecAgg's complete graph).
    pub fn neighbors(&self) -> usize {
        self.neighbors
    }
    /// Whether this is classic SecAgg (complete graph) rather than SecAgg+.
    pub fn is_complete_graph(&self) -> bool {
        self.neighbors + 1 >= self.clients
    }
    /// The modulus 2^b.
    pub fn modulus(&self) -> Modulus {
        self.modulus
    }
    /// The mask PRG.
    pub fn prg(&self) -> Prg {
        self.prg
    }
    /// m: model parameters per client.
    pub fn params(&self) -> usize {
        self.params
    }
    /// Elements of a masked vector: the m parameters and one trailing weight element, so that
    /// the total weight is aggregated as securely as the values.
    pub fn vector_len(&self) -> usize {
        self.params + 1
    }
    /// The quantization scheme.
    pub fn quantization(&self) -> Quantization {
        self.quantization
    }
    /// How long the server waits for each stage before treating missing clients as dropped.
    pub fn stage_timeout(&self) -> Duration {
        self.stage_timeout
    }
    /// The round context: 32 bytes the caller binds the round to (for example the SHA-256 of
    /// the global model the clients trained on). It enters the session id, so clients given
    /// different contexts cannot complete a round together. Zero unless set.
    pub fn context(&self) -> &[u8; 32] {
        &self.context
    }
    /// The round's verifiable self-selection (see [`crate::selection`]), if members must prove
    /// they are eligible: the epoch and the rate. `None` by default.
    pub fn selection(&self) -> Option<&Selection> {
        self.selection.as_ref()
    }
    /// The round's distributed differential privacy (see [`crate::dp`]), if any: clients clip,
    /// rotate, round and add Skellam noise under the masks. `None` by default.
    pub fn dp(&self) -> Option<DpConfig> {
        self.dp
    }
    /// The same round with another context.
    pub fn with_context(&self, context: [u8; 32]) -> RoundConfig {
        RoundConfig {
            context,
            ..self.clone()
        }
    }

    /// The same round for vectors of `params` parameters (validated again).
    ///
    /// ```
    /// use secagg_host::{ConfigError, RoundConfig};
    /// # fn main() -> Result<(), ConfigError> {
    /// let config = RoundConfig::builder(10, 100).round_id(7).build()?;
    /// let bigger = config.with_params(1000)?;
    /// assert_eq!((bigger.params(), bigger.round_id()), (1000, 7));
    /// assert!(matches!(config.with_params(0), Err(ConfigError::Params { m: 0, .. })));
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_params(&self, params: usize) -> Result<RoundConfig, ConfigError> {
        RoundConfig::builder(self.clients, params)
            .threshold(self.threshold)
            .min_survivors(self.min_survivors)
            .neighbors(self.neighbors)
            .bits(self.modulus.bits())
            .prg(self.prg)
            .quantization(self.quantization)
            .round_id(self.round_id)
            .stage_timeout(self.stage_timeout)
            .context(self.context)
            .selection(self.selection)
            .dp(self.dp)
            .build()
    }
}

/// Builder for [`RoundConfig`]; [`build`](RoundConfigBuilder::build) validates everything.
#[derive(Clone, Debug)]
pub struct RoundConfigBuilder {
    clients: usize,
    params: usize,
    threshold: Option<usize>,
    min_survivors: Option<usize>,
    neighbors: Option<usize>,
    bits: u32,
    prg: Prg,
    quantization: Option<Quantization>,
    round_id: u64,
    stage_timeout: Duration,
    context: [u8; 32],
    selection: Option<Selection>,
    dp: Option<DpConfig>,
}

impl RoundConfigBuilder {
    /// Sets t, the per-neighbourhood Shamir threshold (2..=k). Default: a majority of n in
    /// the complete graph, [`crate::plan::threshold_for`] otherwise.
    pub fn threshold(mut self, t: usize) -> Self {
        self.threshold = Some(t);
        self
    }
    /// Sets T, the fewest survivors a stage may end with (default: t).
    pub fn min_survivors(mut self, min: usize) -> Self {
        self.min_survivors = Some(min);
        self
    }
    /// Sets k, the neighbours per client (2..=n − 1). Default: `clients − 1`, SecAgg's
    /// complete graph; anything smaller is SecAgg+.
    pub fn neighbors(mut self, k: usize) -> Self {
        self.neighbors = Some(k);
        self
    }
    /// Sets b, the modulus exponent (1..=64; default 32). Above 32 every element travels and
    /// is summed as 64 bits (`u64` lanes; see [`secagg_engine::Modulus::lane_kind`]).
    pub fn bits(mut self, b: u32) -> Self {
        self.bits = b;
        self
    }
    /// Sets the mask PRG.
    pub fn prg(mut self, prg: Prg) -> Self {
        self.prg = prg;
        self
    }
    /// Sets the quantization. Without it, the levels are the largest power of two (at most
    /// 2^16) for which n (q − 1) w < 2^b holds.
    pub fn quantization(mut self, q: Quantization) -> Self {
        self.quantization = Some(q);
        self
    }
    /// Sets the round id.
    pub fn round_id(mut self, id: u64) -> Self {
        self.round_id = id;
        self
    }
    /// Sets the per-stage deadline.
    pub fn stage_timeout(mut self, d: Duration) -> Self {
        self.stage_timeout = d;
        self
    }
    /// Sets the round context (see [`RoundConfig::context`]).
    pub fn context(mut self, context: [u8; 32]) -> Self {
        self.context = context;
        self
    }

    /// Sets the round's verifiable self-selection (see [`crate::selection`]): members must
    /// carry a ticket showing they are eligible in its epoch at its rate.
    pub fn selection(mut self, selection: Option<Selection>) -> Self {
        self.selection = selection;
        self
    }

    /// Sets the round's distributed differential privacy (see [`crate::dp`]). A DP round's
    /// sum wraps mod 2^b by design (the planner sizes b and the scale so that it rarely
    /// does), so the quantization's overflow check does not apply; only its `max_weight`
    /// is used.
    pub fn dp(mut self, dp: Option<DpConfig>) -> Self {
        self.dp = dp;
        self
    }

    /// Validates and returns the configuration, or says what is wrong and what would work.
    ///
    /// Each check has its own [`ConfigError`] variant:
    ///
    /// ```
    /// use secagg_host::{ConfigError, Quantization, RoundConfig};
    ///
    /// // A client masks only when t of its k neighbours can help rebuild its secrets: t ≤ k.
    /// let err = RoundConfig::builder(10, 100).neighbors(4).threshold(5).build().unwrap_err();
    /// assert_eq!(err, ConfigError::Threshold { t: 5, k: 4 });
    ///
    /// // 1000 clients × (2^16 − 1) levels can wrap around 2^20; the error says what fits.
    /// let q = Quantization { clip: 1.0, levels: 1 << 16, max_weight: 1 };
    /// let err = RoundConfig::builder(1000, 10).bits(20).quantization(q).build().unwrap_err();
    /// assert!(matches!(err, ConfigError::Overflow { bits: 20, .. }));
    /// assert!(err.to_string().contains("raise bits to 26"));
    /// ```
    pub fn build(self) -> Result<RoundConfig, ConfigError> {
        let n = self.clients;
        if !(3..=MAX_CLIENTS).contains(&n) {
            return Err(ConfigError::Clients {
                n,
                max: MAX_CLIENTS,
            });
        }
        if !(1..=MAX_PARAMS).contains(&self.params) {
            return Err(ConfigError::Params {
                m: self.params,
                max: MAX_PARAMS,
            });
        }
        let k = self.neighbors.unwrap_or(n - 1);
        if k < 2 || k > n - 1 {
            return Err(ConfigError::Neighbors { k, n });
        }
        let t = match self.threshold {
            Some(t) => t,
            None if k == n - 1 => (n / 2 + 1).min(k),
            None => crate::plan::threshold_for(n, k, 0.1, 0.05).threshold,
        };
        // Each client shares among its k neighbours and itself, but masks its input only when
        // at least t neighbours completed share keys (the round-2 check): t ≤ k.
        if t < 2 || t > k {
            return Err(ConfigError::Threshold { t, k });
        }
        let min_survivors = self.min_survivors.unwrap_or(t);
        if min_survivors < t || min_survivors > n {
            return Err(ConfigError::MinSurvivors {
                min: min_survivors,
                t,
                n,
            });
        }
        let modulus = Modulus::new(self.bits).map_err(|_| ConfigError::Bits { b: self.bits })?;
        let quantization = match self.quantization {
            Some(q) => q,
            // Unused under DP but for the weight bound.
            None if self.dp.is_some() => Quantization {
                levels: 2,
                ..Quantization::default()
            },
            None => Quantization {
                levels: default_levels(n, 1, self.bits).ok_or(ConfigError::Overflow {
                    n,
                    levels: 2,
                    max_weight: 1,
                    bits: self.bits,
                    hint: format!(
                        "even two levels overflow 2^{}: use at least {} bits",
                        self.bits,
                        bits_needed(n, 2, 1)
                    ),
                })?,
                ..Quantization::default()
            },
        };
        match &self.dp {
            Some(dp) => {
                check_quantization_fields(&quantization)?;
                dp.check(self.params, self.bits, quantization.max_weight)?;
            }
            None => check_quantization(n, &quantization, self.bits)?,
        }
        if self.stage_timeout.is_zero() {
            return Err(ConfigError::Timeout);
        }
        Ok(RoundConfig {
            round_id: self.round_id,
            clients: n,
            threshold: t,
            min_survivors,
            neighbors: k,
            modulus,
            prg: self.prg,
            params: self.params,
            quantization,
            stage_timeout: self.stage_timeout,
            context: self.context,
            selection: self.selection,
            dp: self.dp,
        })
    }
}

/// The fewest bits b with n (q − 1) w < 2^b: the smallest modulus 2^b in which the sum of
/// `n` clients' inputs, quantized to `levels` levels and weighted by at most `max_weight`,
/// cannot wrap.
///
/// ```
/// use secagg_host::config::bits_needed;
///
/// assert_eq!(bits_needed(1024, 1 << 16, 1), 26); // 1024 × 65535 < 2^26
/// assert_eq!(bits_needed(1000, 256, 10), 22);
/// ```
pub fn bits_needed(n: usize, levels: u32, max_weight: u32) -> u32 {
    let max_sum = n as u128 * u128::from(levels.saturating_sub(1)) * u128::from(max_weight);
    128 - max_sum.leading_zeros()
}

/// The largest power-of-two level count, at most 2^16, that cannot overflow 2^b.
fn default_levels(n: usize, w: u32, bits: u32) -> Option<u32> {
    (1..=16)
        .rev()
        .map(|e| 1u32 << e)
        .find(|&q| bits_needed(n, q, w) <= bits)
}

/// A positive clip, at least two levels, a positive weight bound.
fn check_quantization_fields(q: &Quantization) -> Result<(), ConfigError> {
    if !(q.clip.is_finite() && q.clip > 0.0) {
        return Err(ConfigError::Clip { clip: q.clip });
    }
    if q.levels < 2 {
        return Err(ConfigError::Levels { levels: q.levels });
    }
    if q.max_weight == 0 {
        return Err(ConfigError::Weight);
    }
    Ok(())
}

fn check_quantization(n: usize, q: &Quantization, bits: u32) -> Result<(), ConfigError> {
    check_quantization_fields(q)?;
    let need = bits_needed(n, q.levels, q.max_weight);
    if need > bits {
        let budget = (1u128 << bits) - 1;
        let per_client = budget / (n as u128 * u128::from(q.max_weight));
        let hint = if need <= Modulus::MAX_BITS {
            format!(
                "raise bits to {need}, or lower levels to at most {}",
                per_client + 1
            )
        } else {
            format!(
                "lower levels to at most {} or the maximum weight, since 64 bits cannot hold it",
                per_client + 1
            )
        };
        return Err(ConfigError::Overflow {
            n,
            levels: q.levels,
            max_weight: q.max_weight,
            bits,
            hint,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_secagg_with_majority_threshold() {
        let c = RoundConfig::builder(10, 100).build().unwrap();
        assert_eq!(c.neighbors(), 9);
        assert_eq!(c.threshold(), 6);
        assert_eq!(c.min_survivors(), 6);
        assert!(c.is_complete_graph());
        assert_eq!(c.vector_len(), 101);
        // 10 clients x (2^16 - 1) fits in 32 bits.
        assert_eq!(c.quantization().levels, 1 << 16);
    }

    #[test]
    fn overflow_is_rejected_with_a_hint() {
        let e = RoundConfig::builder(1000, 10)
            .bits(20)
            .quantization(Quantization {
                clip: 1.0,
                levels: 1 << 16,
                max_weight: 1,
            })
            .build()
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("raise bits to 26"), "{text}");
        // 2^20 - 1 = 1048575; / 1000 = 1048 -> at most 1049 levels.
        assert!(text.contains("at most 1049"), "{text}");
    }

    #[test]
    fn default_levels_shrink_to_fit_the_modulus() {
        let c = RoundConfig::builder(1000, 10).bits(20).build().unwrap();
        let q = c.quantization().levels;
        assert!(1000 * u64::from(q - 1) < 1 << 20);
        assert!(
            1000 * u64::from(2 * q - 1) >= 1 << 20,
            "not the largest power of two: {q}"
        );
    }

    #[test]
    fn thresholds_and_neighbours_are_bounded() {
        assert!(RoundConfig::builder(10, 1).threshold(1).build().is_err());
        // A client masks only with at least t of its nine neighbours: t = 9 is the most.
        assert!(RoundConfig::builder(10, 1).threshold(10).build().is_err());
        assert!(RoundConfig::builder(10, 1).threshold(9).build().is_ok());
        assert!(
            RoundConfig::builder(100, 1)
                .neighbors(20)
                .threshold(22)
                .build()
                .is_err()
        );
        assert!(RoundConfig::builder(10, 1).neighbors(10).build().is_err());
        assert!(RoundConfig::builder(10, 1).neighbors(1).build().is_err());
        assert!(RoundConfig::builder(2, 1).build().is_err());
        assert!(RoundConfig::builder(10, 0).build().is_err());
        assert!(
            RoundConfig::builder(10, 1)
                .threshold(4)
                .min_survivors(3)
                .build()
                .is_err()
        );
        assert!(
            RoundConfig::builder(10, 1)
                .threshold(4)
                .min_survivors(11)
                .build()
                .is_err()
        );
        let c = RoundConfig::builder(1000, 1).neighbors(21).build().unwrap();
        assert!(!c.is_complete_graph());
        // The planner's balance point for Flower's default shape is near half the neighbours.
        assert!((8..=12).contains(&c.threshold()), "t = {}", c.threshold());
    }

    #[test]
    fn a_dp_round_is_checked_by_its_own_rules() {
        let dp = crate::dp::DpConfig {
            clip: 1.0,
            scale: 50.0,
            noise: 5e4,
            honest: 40,
            beta: 0.0,
        };
        // 1000 clients at 8 bits: no quantization fits, but a DP round wraps by design.
        assert!(RoundConfig::builder(1000, 100).bits(8).build().is_err());
        let c = RoundConfig::builder(1000, 100)
            .bits(8)
            .dp(Some(dp))
            .build()
            .unwrap();
        assert_eq!(c.dp(), Some(dp));
        assert_eq!(c.with_params(200).unwrap().dp(), Some(dp));
        // The DP setting's own checks: c s w must fit below 2^(b-1).
        let err = RoundConfig::builder(1000, 100)
            .bits(6)
            .dp(Some(dp))
            .build()
            .unwrap_err();
        assert!(
            matches!(err, ConfigError::Dp { field: "scale", .. }),
            "{err}"
        );
        let q = Quantization {
            max_weight: 3,
            ..Quantization::default()
        };
        assert!(
            RoundConfig::builder(1000, 100)
                .bits(8)
                .quantization(q)
                .dp(Some(dp))
                .build()
                .is_err()
        );
    }

    #[test]
    fn bits_needed_matches_powers_of_two() {
        assert_eq!(bits_needed(1, 2, 1), 1);
        assert_eq!(bits_needed(1024, 1 << 16, 1), 26);
        assert_eq!(bits_needed(1, 1 << 16, 1), 16);
    }
}
