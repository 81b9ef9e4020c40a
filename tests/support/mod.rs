//! Setup shared by the integration tests: a test deployment (its CA and every client's
//! enrolled identity, all derived from a seed), a policy that checks every certificate,
//! signature, commitment and list but sets no floor on the round's parameters, client
//! construction, and the `secagg ca new` / `secagg enroll` commands for the CLI tests.
//!
//! Each test file includes it with `mod support;` and uses what it needs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg::engine::CpuEngine;
use secagg::host::identity::{CaKey, CaPublicKey, IdentityKey};
use secagg::host::sim::parameter_free_policy;
use secagg::host::transport::ServeOptions;
use secagg::host::{Client, ClientId, ClientIdentity, ClientPolicy, RoundConfig, Trust};

/// The `secagg` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_secagg");

/// A deployment: one CA, and an identity key for every client id, all from one seed.
pub struct Deployment {
    ca: CaKey,
    seed: u64,
}

impl Deployment {
    /// The deployment of `seed` (the same seed gives the same CA and identities).
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xca);
        Self {
            ca: CaKey::generate(&mut rng),
            seed,
        }
    }

    /// The CA's public key, as the operator hands it to the server and the clients.
    pub fn ca(&self) -> CaPublicKey {
        self.ca.public()
    }

    /// Client `id`'s long-term identity key.
    fn key(&self, id: u32) -> IdentityKey {
        let mut rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x1d);
        rng.set_stream(u64::from(id) + 1);
        IdentityKey::generate(&mut rng)
    }

    /// Client `id` enrolled by this deployment's CA.
    pub fn identity(&self, id: u32) -> ClientIdentity {
        let key = self.key(id);
        let cert = self.ca.issue(ClientId(id), &key.public());
        ClientIdentity::enrolled(key, cert).unwrap()
    }

    /// Client `id` with the same key, but asserting it itself (no certificate).
    pub fn self_asserted(&self, id: u32) -> ClientIdentity {
        ClientIdentity::self_asserted(ClientId(id), self.key(id))
    }

    /// The permissive policy ([`parameter_free_policy`]) trusting this deployment's CA: every
    /// certificate, signature and list is checked, but any (n, k, t) of three or more clients
    /// is accepted, so that small test rounds can run.
    pub fn policy(&self) -> ClientPolicy {
        ClientPolicy {
            trust: Trust::Enrolled(self.ca()),
            ..parameter_free_policy()
        }
    }

    /// Serve options that admit only this deployment's clients.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            ca: Some(self.ca()),
            ..ServeOptions::default()
        }
    }

    /// Client `id` of `config`, enrolled, under [`Deployment::policy`], with its RNG from
    /// `rng_seed`.
    pub fn client(
        &self,
        config: &RoundConfig,
        id: u32,
        rng_seed: u64,
    ) -> Client<CpuEngine, ChaCha20Rng> {
        Client::new(
            self.identity(id),
            config.clone(),
            self.policy(),
            CpuEngine::new(),
            ChaCha20Rng::seed_from_u64(rng_seed),
        )
        .unwrap_or_else(|e| panic!("client {id}: {e}"))
    }
}

/// Runs `secagg ARGS`, panicking with its stderr if it fails.
fn secagg_ok(args: &[&str]) {
    let out = Command::new(BIN).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "secagg {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A deployment made through the CLI: `secagg ca new` in `dir`, then `secagg enroll` for
/// `ids`.
pub struct CliDeployment {
    /// The directory holding ca.key, ca.pub and the clients' files.
    pub dir: PathBuf,
}

impl CliDeployment {
    /// Runs `secagg ca new --out DIR` and `secagg enroll --id A..B --out DIR`.
    pub fn create(dir: &Path, ids: std::ops::Range<u32>) -> Self {
        let d = dir.to_str().unwrap();
        secagg_ok(&["ca", "new", "--out", d]);
        let ca_key = dir.join("ca.key");
        secagg_ok(&[
            "enroll",
            "--ca-key",
            ca_key.to_str().unwrap(),
            "--id",
            &format!("{}..{}", ids.start, ids.end),
            "--out",
            d,
        ]);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA's public key file.
    pub fn ca_pub(&self) -> PathBuf {
        self.dir.join("ca.pub")
    }

    /// `--ca ca.pub --key client-ID.key --cert client-ID.cert` for client `id`.
    pub fn client_args(&self, id: u32) -> Vec<String> {
        vec![
            "--ca".into(),
            self.ca_pub().display().to_string(),
            "--key".into(),
            self.dir
                .join(format!("client-{id}.key"))
                .display()
                .to_string(),
            "--cert".into(),
            self.dir
                .join(format!("client-{id}.cert"))
                .display()
                .to_string(),
        ]
    }
}
