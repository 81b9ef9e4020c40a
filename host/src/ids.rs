//! Client identities and the stages of a round.

use std::fmt;

/// A client's identity within a round: any `u32` the deployment assigns.
///
/// The Shamir evaluation point of client `id` is `id + 1` (so that no client sits at 0, where
/// the secret lives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u32);

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl From<u32> for ClientId {
    fn from(v: u32) -> Self {
        ClientId(v)
    }
}

/// The stages of one round, in order. A client that drops "at" a stage never completed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Round 0: each client sends its two public keys.
    AdvertiseKeys,
    /// Round 1: each client sends encrypted Shamir shares to its neighbours.
    ShareKeys,
    /// Round 2: each client sends its masked input.
    MaskedInput,
    /// Round 3: survivors reveal the shares the server needs to remove the masks.
    Unmasking,
}

impl Stage {
    /// Every stage, in protocol order.
    pub const ALL: [Stage; 4] = [
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::MaskedInput,
        Stage::Unmasking,
    ];

    /// The kebab-case name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Stage::AdvertiseKeys => "advertise-keys",
            Stage::ShareKeys => "share-keys",
            Stage::MaskedInput => "masked-input",
            Stage::Unmasking => "unmasking",
        }
    }

    /// The stage's index, 0..=3.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Stage::ALL
            .into_iter()
            .find(|st| st.name() == s)
            .ok_or_else(|| {
                format!(
                    "unknown stage {s:?}: expected one of advertise-keys, share-keys, masked-input, unmasking"
                )
            })
    }
}
