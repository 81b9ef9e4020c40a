//! The TCP server.
//!
//! * [`connection`]: one task per connection. It runs the TLS handshake, sends the
//!   challenge, checks the hello (its certificate, its signature, the round's shape) and only
//!   then hands the client to the driver; afterwards it reads frames and stages uploads.
//! * [`driver`]: one [`driver::Driver`] owns the sans-IO [`Server`](crate::Server), the
//!   admitted peers and the report, with one method per event; `serve` is its loop.
//!
//! What a connection can cost before it has proved an enrolled identity is bounded by
//! constants, not by n or m: at most [`ServeOptions::max_pending`] such connections exist at
//! once (the listener stops accepting when they are all taken), each for at most
//! [`ServeOptions::hello_timeout`], holding a TLS session and a hello buffer of
//! [`codec::HELLO_MAX`](crate::codec::HELLO_MAX) bytes.

mod connection;
mod driver;
mod staging;

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::net::TcpListener;

use super::TransportError;
use super::tls::TlsAcceptor;
use crate::Stage;
use crate::config::RoundConfig;
use crate::identity::CaPublicKey;
use crate::server::RoundOutput;

/// How the server runs a round. The round's shape (n, m, b, …) is the [`RoundConfig`]'s;
/// nothing a client sends changes it.
#[derive(Clone)]
pub struct ServeOptions {
    /// Masked uploads staged at once; the rest wait in their sockets. An upload enters the
    /// sum only once it is whole (a partial input could not be taken out again), so each
    /// one in flight is staged: in memory up to [`ServeOptions::max_staged_in_memory`]
    /// bytes, otherwise in a temporary file.
    pub max_concurrent_uploads: usize,
    /// The largest packed upload staged in memory (default 16 MiB). Larger ones go to an
    /// unlinked temporary file in [`ServeOptions::spill_dir`] and are read back a chunk at
    /// a time as they are added: the server's memory is then the accumulator plus a few
    /// chunks whatever m and n are, and the disk holds at most `max_concurrent_uploads`
    /// packed uploads.
    pub max_staged_in_memory: usize,
    /// Where large uploads are staged; `None` is the system's temporary directory.
    pub spill_dir: Option<std::path::PathBuf>,
    /// The digest ([`codec::layout_digest`](crate::codec::layout_digest)) of the model
    /// layout every client must send; `None` accepts any layout with the configured number
    /// of parameters.
    pub layout: Option<[u8; 32]>,
    /// The deployment CA: when set, only clients with a certificate from it are admitted.
    pub ca: Option<CaPublicKey>,
    /// TLS. Without it the server refuses to start ([`TransportError::NoTls`]) unless
    /// `insecure_plaintext` is set.
    pub tls: Option<TlsAcceptor>,
    /// How long a connection has to complete TLS and send a valid hello.
    pub hello_timeout: Duration,
    /// Most connections that have not been admitted yet; while that many are open the
    /// server accepts no new ones (they wait in the kernel's queue).
    pub max_pending: usize,
    /// The longest one client's whole masked upload may take once it holds an upload permit;
    /// `None` is a quarter of the stage deadline (at least one second). Each upload gets at
    /// most its fair share of what is left of the stage, `remaining × max_concurrent_uploads
    /// / inputs still awaited` (at least 250 ms), so that members who stall their uploads hold
    /// permits only that long and the others still upload within the stage.
    pub upload_deadline: Option<Duration>,
    /// Serve plaintext TCP when `tls` is `None`: anyone on the path can read and rewrite
    /// every frame. Local experiments and tests only; a warning is logged.
    pub insecure_plaintext: bool,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_concurrent_uploads: 4,
            max_staged_in_memory: 16 << 20,
            spill_dir: None,
            layout: None,
            ca: None,
            tls: None,
            hello_timeout: Duration::from_secs(5),
            max_pending: 256,
            upload_deadline: None,
            insecure_plaintext: false,
        }
    }
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("max_concurrent_uploads", &self.max_concurrent_uploads)
            .field("max_staged_in_memory", &self.max_staged_in_memory)
            .field("spill_dir", &self.spill_dir)
            .field("layout", &self.layout.is_some())
            .field("ca", &self.ca)
            .field("tls", &self.tls.is_some())
            .field("hello_timeout", &self.hello_timeout)
            .field("max_pending", &self.max_pending)
            .field("upload_deadline", &self.upload_deadline)
            .field("insecure_plaintext", &self.insecure_plaintext)
            .finish()
    }
}

/// When a stage ran, measured from the server's start.
#[derive(Clone, Debug, PartialEq)]
pub struct StageTiming {
    /// The stage.
    pub stage: Stage,
    /// When it started.
    pub started: Duration,
    /// When it ended.
    pub ended: Duration,
    /// Clients that completed it.
    pub clients: usize,
}

/// Why the transport refused a connection or cut off a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The TLS handshake failed (not TLS, or a client that does not trust our certificate).
    TlsHandshake,
    /// No valid hello within the hello timeout.
    HelloTimeout,
    /// An undecodable or oversized frame.
    BadFrame,
    /// A hello for another round.
    WrongRound,
    /// No certificate from the deployment CA.
    NotEnrolled,
    /// A certificate for another client id.
    WrongIdentity,
    /// The hello's signature does not verify (forged, or replayed from another connection).
    BadSignature,
    /// The id has already joined.
    DuplicateId,
    /// All n places are taken.
    RoundFull,
    /// The round is past its join stage.
    RoundStarted,
    /// The client's model has another number of parameters or another layout.
    WrongShape,
    /// An upload not finished within the upload deadline.
    UploadDeadline,
    /// A malformed upload (a chunk below the minimum size, out of order, or another frame in
    /// the middle).
    BadUpload,
    /// A second upload from a client.
    DuplicateUpload,
    /// An upload from a client the round does not expect one from now.
    UnexpectedUpload,
}

impl Refusal {
    /// A short stable label (the summary's key).
    pub fn label(self) -> &'static str {
        match self {
            Refusal::TlsHandshake => "tls-handshake",
            Refusal::HelloTimeout => "hello-timeout",
            Refusal::BadFrame => "bad-frame",
            Refusal::WrongRound => "wrong-round",
            Refusal::NotEnrolled => "not-enrolled",
            Refusal::WrongIdentity => "wrong-identity",
            Refusal::BadSignature => "bad-signature",
            Refusal::DuplicateId => "duplicate-id",
            Refusal::RoundFull => "round-full",
            Refusal::RoundStarted => "round-started",
            Refusal::WrongShape => "wrong-shape",
            Refusal::UploadDeadline => "upload-deadline",
            Refusal::BadUpload => "bad-upload",
            Refusal::DuplicateUpload => "duplicate-upload",
            Refusal::UnexpectedUpload => "unexpected-upload",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Refusal details kept in a report; beyond this only the counts grow.
pub const MAX_REFUSAL_DETAILS: usize = 256;

/// What a served round did.
#[derive(Clone, Debug)]
pub struct RoundReport {
    /// The aggregate, or why the round aborted.
    pub outcome: Result<RoundOutput, crate::error::AbortReason>,
    /// Whether any admitted client carried an explicit weight.
    pub weighted: bool,
    /// Stage timings, in order.
    pub stages: Vec<StageTiming>,
    /// Frame bytes received, length prefixes included.
    pub bytes_received: u64,
    /// Frame bytes sent, length prefixes included.
    pub bytes_sent: u64,
    /// Connections accepted.
    pub connections: usize,
    /// Most connections waiting to be admitted at once (at most
    /// [`ServeOptions::max_pending`]).
    pub peak_pending: usize,
    /// Connections refused before joining, and clients cut off by the transport, by reason.
    pub refusals: BTreeMap<Refusal, u64>,
    /// The first [`MAX_REFUSAL_DETAILS`] of those, in words.
    pub refused: Vec<String>,
    /// From listening to the end of the round.
    pub elapsed: Duration,
    /// Uploads that were staged in a temporary file (larger than
    /// [`ServeOptions::max_staged_in_memory`]) before they were added.
    pub staged_on_disk: u64,
}

impl RoundReport {
    /// All refusals and cut-offs.
    pub fn refusal_count(&self) -> u64 {
        self.refusals.values().sum()
    }
}

/// Runs one round on `listener` and returns when it completes or aborts.
pub async fn serve<E: secagg_engine::Accumulate>(
    listener: TcpListener,
    config: RoundConfig,
    engine: E,
    options: ServeOptions,
) -> Result<RoundReport, TransportError> {
    if options.tls.is_none() {
        if !options.insecure_plaintext {
            return Err(TransportError::NoTls);
        }
        log::warn!(
            "serving plaintext TCP (insecure_plaintext): every frame crosses the network unencrypted and unauthenticated"
        );
    }
    driver::run(listener, config, engine, options).await
}
