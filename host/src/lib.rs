//! # secagg-host
//!
//! The SecAgg / SecAgg+ protocol: client and server state machines, cryptography, wire format
//! and transport. (Being built; see the project's issues.)

#![deny(missing_docs)]
