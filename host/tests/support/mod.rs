//! Setup shared by the protocol tests: a simulator configuration seeded from the test's
//! printed seed; and, for the tests over the network, a test deployment (its CA and every
//! client's enrolled identity, all derived from a seed, and a TLS certificate for the
//! server), the policy that checks every certificate, signature, commitment and list but sets
//! no floor on the round's parameters, client construction, and a hand-made handshake for
//! clients that break the rules later.
//!
//! Each test file includes it with `mod support;` and uses what it needs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use secagg_engine::{CpuEngine, testing};
use secagg_host::codec::{self, Hello, tag};
use secagg_host::config::RoundConfigBuilder;
use secagg_host::identity::{CaKey, CaPublicKey, IdentityKey};
use secagg_host::sim::{SimConfig, parameter_free_policy};
use secagg_host::transport::tls::{self, TestPki, TlsConnector, TlsStream};
use secagg_host::transport::{ServeOptions, TransportError, frame_codec};
use secagg_host::{Client, ClientId, ClientIdentity, ClientPolicy, RoundConfig, Trust};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// The simulator configuration of the round `round` builds, with its round id and the
/// simulator's seed both from `test`'s printed seed (`SECAGG_TEST_SEED` replays it).
pub fn seeded_config(test: &str, round: RoundConfigBuilder) -> SimConfig {
    let seed = testing::test_seed(test);
    let mut cfg = SimConfig::new(round.round_id(seed).build().unwrap());
    cfg.seed = seed;
    cfg
}

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
