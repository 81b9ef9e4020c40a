//! Setup shared by the integration tests: a test deployment (its CA and every client's
//! enrolled identity, all derived from a seed), a policy that checks every certificate,
//! signature, commitment and list but sets no floor on the round's parameters, client
//! construction, and the `secagg ca new` / `secagg enroll` commands for the CLI tests.
//!
//! Each test file includes it with `mod support;` and uses what it needs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg::engine::CpuEngine;
use secagg::host::codec::{self, Hello, tag};
use secagg::host::identity::{CaKey, CaPublicKey, IdentityKey};
use secagg::host::sim::parameter_free_policy;
use secagg::host::transport::tls::{self, TestPki, TlsConnector, TlsStream};
use secagg::host::transport::{ServeOptions, TransportError, frame_codec};
use secagg::host::{Client, ClientId, ClientIdentity, ClientPolicy, RoundConfig, Trust};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The `secagg` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_secagg");

/// A deployment: one CA, and an identity key for every client id, all from one seed; and a
/// TLS certificate for the server (fresh each time).
pub struct Deployment {
    ca: CaKey,
    seed: u64,
    pki: TestPki,
}

/// The layout digest the network tests' clients send (any will do when the server fixes only
/// the number of parameters).
pub const LAYOUT: [u8; 32] = [7; 32];

impl Deployment {
    /// The deployment of `seed` (the same seed gives the same CA and identities).
    pub fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0xca);
        Self {
            ca: CaKey::generate(&mut rng),
            seed,
            pki: TestPki::generate(&["127.0.0.1".into(), "localhost".into()], 1).unwrap(),
        }
    }

    /// What a client needs for TLS to this deployment's server at 127.0.0.1.
    pub fn client_tls(&self) -> (TlsConnector, tls::ServerNameOwned) {
        (
            self.pki.connector().unwrap(),
            tls::server_name("127.0.0.1").unwrap(),
        )
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

    /// Serve options that admit only this deployment's clients, over TLS.
    pub fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            ca: Some(self.ca()),
            tls: Some(self.pki.acceptor().unwrap()),
            ..ServeOptions::default()
        }
    }

    /// Connects over TLS, answers the challenge with `identity`'s signed hello for `params`
    /// parameters, and returns the framed stream with the round configuration of the
    /// welcome: what a hand-made client (one that breaks the rules later) starts from.
    pub async fn handshake(
        &self,
        addr: SocketAddr,
        identity: &ClientIdentity,
        params: usize,
    ) -> Result<
        (
            Framed<TlsStream<TcpStream>, LengthDelimitedCodec>,
            RoundConfig,
        ),
        TransportError,
    > {
        let (connector, name) = self.client_tls();
        let socket = TcpStream::connect(addr).await?;
        let stream = connector.connect(name, socket).await?;
        let binding = tls::channel_binding(stream.get_ref().1).unwrap();
        let mut framed = Framed::new(stream, frame_codec(1 << 24));
        let first = framed
            .next()
            .await
            .ok_or(TransportError::Closed("challenge"))??;
        let challenge = codec::decode_challenge(&first)?;
        let hello = Hello::signed(
            identity,
            challenge.round,
            false,
            params as u32,
            LAYOUT,
            &challenge.nonce,
            &binding,
        );
        framed
            .send(Bytes::from(codec::encode_hello(&hello)))
            .await?;
        let answer = framed
            .next()
            .await
            .ok_or(TransportError::Closed("welcome"))??;
        if codec::frame_tag(&answer)? == tag::REJECT {
            return Err(TransportError::Rejected(codec::decode_reject(&answer)?));
        }
        Ok((framed, codec::decode_welcome(&answer)?))
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
/// `ids`, and `secagg tls new` in DIR/tls.
pub struct CliDeployment {
    /// The directory holding ca.key, ca.pub and the clients' files.
    pub dir: PathBuf,
}

impl CliDeployment {
    /// Runs `secagg ca new --out DIR`, `secagg enroll --id A..B --out DIR` and
    /// `secagg tls new --out DIR/tls`.
    pub fn create(dir: &Path, ids: std::ops::Range<u32>) -> Self {
        let d = dir.to_str().unwrap();
        secagg_ok(&["ca", "new", "--out", d]);
        secagg_ok(&["tls", "new", "--out", dir.join("tls").to_str().unwrap()]);
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

    /// The server's `--tls-cert … --tls-key …`.
    pub fn server_tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.dir.join("tls/server.pem").display().to_string(),
            "--tls-key".into(),
            self.dir.join("tls/server.key").display().to_string(),
        ]
    }

    /// A client's `--tls-ca …`.
    pub fn client_tls_args(&self) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            self.dir.join("tls/ca.pem").display().to_string(),
        ]
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
