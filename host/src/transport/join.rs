//! [`Join`]: a client's round over TCP, set up by name rather than by position.

use std::time::Duration;

use secagg_engine::{Backend, CpuEngine};
use tokio::net::ToSocketAddrs;

use super::TransportError;
use super::client::{ClientInput, ClientOptions, ClientOutcome, run_client};
use super::tls::TlsConnector;
use crate::{ClientIdentity, ClientPolicy, RoundRng, Stage};

/// One client's part in a round over TCP: who it is, what it accepts, then
/// [`run`](Join::run) with the server's address and the update. The CPU engine and a
/// fresh [`crate::round_rng`] are used unless given; everything else is
/// [`ClientOptions::new`]'s default until set. [`run_client`] is the same with every
/// argument spelled out.
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
            options: ClientOptions::new(identity.id(), layout),
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
    /// client refuses to connect.
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

    /// The options as set so far.
    pub fn options(&self) -> &ClientOptions {
        &self.options
    }

    /// Joins the round at `addr` with `update` (a slice, a `&Vec<f32>` or a
    /// [`ClientInput::Stream`]) and runs it to the end, as [`run_client`] does.
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
