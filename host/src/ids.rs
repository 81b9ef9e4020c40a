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
    /// Each client commits to a fresh nonce; the server answers with the cohort.
    Join,
    /// Each client sends its two round keys, its nonce and its certificate, signed.
    AdvertiseKeys,
    /// Each client deals both secrets: public share points, and encrypted shares for its
    /// neighbours.
    ShareKeys,
    /// Each client checks the shares it received and reports dealers that cheated.
    ShareCheck,
    /// Each client sends its masked input.
    MaskedInput,
    /// Each survivor signs the survivor list.
    Consistency,
    /// Survivors reveal the shares the server needs to remove the masks.
    Unmasking,
}

impl Stage {
    /// Every stage, in protocol order.
    pub const ALL: [Stage; 7] = [
        Stage::Join,
        Stage::AdvertiseKeys,
        Stage::ShareKeys,
        Stage::ShareCheck,
        Stage::MaskedInput,
        Stage::Consistency,
        Stage::Unmasking,
    ];

    /// The kebab-case name used on the command line and in summaries.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Join => "join",
            Stage::AdvertiseKeys => "advertise-keys",
            Stage::ShareKeys => "share-keys",
            Stage::ShareCheck => "share-check",
            Stage::MaskedInput => "masked-input",
            Stage::Consistency => "consistency",
            Stage::Unmasking => "unmasking",
        }
    }

    /// The stage's index, 0..=6.
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
                let names: Vec<&str> = Stage::ALL.iter().map(|st| st.name()).collect();
                format!("unknown stage {s:?}: expected one of {}", names.join(", "))
            })
    }
}
