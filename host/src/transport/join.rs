//! [`Join`]: a client's round over TCP, set up by name rather than by position: the one way
//! to run a TCP client.

use std::time::Duration;

use secagg_engine::{Backend, CpuEngine};
use tokio::net::ToSocketAddrs;

use super::TransportError;
use super::client::{ClientInput, ClientOptions, ClientOutcome, run_client};
use super::tls::TlsConnector;
use crate::{ClientIdentity, ClientPolicy, RoundRng, Stage};

/// One client's part in a round over TCP: who it is, what it accepts, then
/// [`run`](Join::run) with the server's address and the update. The client's id is its
/// identity's. Until set: the CPU engine, a fresh [`crate::round_rng`], weight 1, 10 s to
/// reach the server, and no transport at all — [`tls`](Join::tls), or
/// [`insecure_plaintext`](Join::insecure_plaintext) on purpose, or the client refuses to
/// connect ([`TransportError::NoTls`]).
///
/// ```no_run
/// use secagg_host::transport::{Join, tls};
/// use secagg_host::{ClientIdentity, ClientPolicy};
///
/// # async fn job(identity: ClientIdentity, policy: ClientPolicy, update: Vec<f32>)
/// # -> Result<(), Box<dyn std::error::Error>> {
/// let connector = tls::client_config("tls/ca.pem".as_ref())?;
/// let outcome = Join::new(identity, policy, [0; 32])
///     .tls(connector, tls::server_name("aggregator.example")?)
///     .weight(12)
///     .run("aggregator.example:7000", &update)
///     .await?;
/// println!("{outcome:?}");
/// # Ok(())
/// # }
/// ```
pub struct Join<E = CpuEngine> {
    options: ClientOptions,
    identity: ClientIdentity,
    policy: ClientPolicy,
    engine: E,
    rng: Option<RoundRng>,
}

impl Join<CpuEngine> {
    /// `identity` joins under its own `policy`, sending an update of the model whose layout
    /// digest is `layout` ([`crate::codec::layout_digest`]).
    pub fn new(identity: ClientIdentity, policy: ClientPolicy, layout: [u8; 32]) -> Self {
        Self {
            options: ClientOptions::new(layout),
            identity,
            policy,
            engine: CpuEngine::new(),
            rng: None,
        }
    }
}

impl<E: Backend> Join<E> {
    /// TLS to the server: `connector` trusts the deployment's TLS CA, `name` is the name
    /// the server's certificate must carry.
    pub fn tls(
        mut self,
        connector: TlsConnector,
        name: rustls::pki_types::ServerName<'static>,
    ) -> Self {
        self.options.tls = Some((connector, name));
        self
    }

    /// Plaintext TCP to the server, on purpose: anyone on the path can read and rewrite every
    /// frame (local experiments and tests only). Without this or [`tls`](Self::tls) the
    /// client refuses to connect:
    ///
    /// ```
    /// use secagg_host::identity::IdentityKey;
    /// use secagg_host::transport::{Join, TransportError};
    /// use secagg_host::{ClientId, ClientIdentity, ClientPolicy, round_rng};
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let key = IdentityKey::generate(&mut round_rng()?);
    /// let me = ClientIdentity::self_asserted(ClientId(7), key);
    /// let join = Join::new(me, ClientPolicy::curious_unauthenticated(), [0; 32]);
    /// // Neither TLS nor plaintext asked for: refused before anything is sent.
    /// let refused = join.run("127.0.0.1:9", &vec![0.5; 10]).await;
    /// assert!(matches!(refused, Err(TransportError::NoTls)));
    /// # Ok(())
    /// # }
    /// ```
    pub fn insecure_plaintext(mut self) -> Self {
        self.options.insecure_plaintext = true;
        self
    }

    /// The update's integer weight (1 otherwise).
    pub fn weight(mut self, weight: u32) -> Self {
        self.options.weight = Some(weight);
        self
    }

    /// How long to keep retrying the connection (10 s otherwise).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout;
        self
    }

    /// Leave right after completing `stage` (demonstrations of dropout recovery).
    pub fn drop_after(mut self, stage: Stage) -> Self {
        self.options.drop_after = Some(stage);
        self
    }

    /// Break the transport's rules as `how` says: a client for tests of the server's
    /// defences, never a real one (feature `testing`).
    #[cfg(feature = "testing")]
    pub fn misbehave(mut self, how: super::Misbehaviour) -> Self {
        self.options.misbehave = Some(how);
        self
    }

    /// The generator for the round's secrets (a fresh [`crate::round_rng`] otherwise).
    pub fn rng(mut self, rng: RoundRng) -> Self {
        self.rng = Some(rng);
        self
    }

    /// The engine that masks the update (the CPU engine otherwise).
    pub fn engine<F: Backend>(self, engine: F) -> Join<F> {
        Join {
            options: self.options,
            identity: self.identity,
            policy: self.policy,
            engine,
            rng: self.rng,
        }
    }

    /// Joins the round at `addr` with `update` (a slice, a `&Vec<f32>` or a
    /// [`ClientInput::Stream`]) and runs it to the end. The round the server announces is
    /// checked against the policy before anything else is sent; a round the policy refuses
    /// ends with [`TransportError::Refused`].
    pub async fn run<'u, A>(
        self,
        addr: A,
        update: impl Into<ClientInput<'u>>,
    ) -> Result<ClientOutcome, TransportError>
    where
        A: ToSocketAddrs + Clone,
        E: 'u,
    {
        let rng = match self.rng {
            Some(rng) => rng,
            None => super::system_rng()?,
        };
        run_client(
            addr,
            self.options,
            self.identity,
            self.policy,
            update,
            self.engine,
            rng,
        )
        .await
    }
}
