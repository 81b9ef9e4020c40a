//! Distributed differential privacy under the masks.
//!
//! * [`skellam`]: Skellam noise from the client's round RNG, with a stated distance from
//!   exact.

pub mod skellam;
