//! The TCP client: TLS, the server's challenge, a signed hello, the welcome, then the sans-IO
//! [`Client`] driven frame by frame.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand_core::CryptoRng;
use rustls::pki_types::ServerName;
use secagg_engine::Backend;
use tokio::io::ReadHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::tls::{TlsConnector, channel_binding};
use super::{Io, TransportError, frame_codec};
use crate::codec::{self, CHALLENGE_LEN, Hello, Limits, WELCOME_MAX, tag};
use crate::messages::ClientMessage;
use crate::quantize::InputError;
use crate::{Client, ClientError, ClientIdentity, ClientPolicy, ClientStatus, Stage};

/// How a client takes part, as [`super::Join`] set it up: everything but who it is and what
/// it accepts (the identity, whose id is the client's, and the policy).
#[derive(Clone)]
pub(crate) struct ClientOptions {
    /// Its integer weight, if one was given (1 otherwise).
    pub(crate) weight: Option<u32>,
    /// The digest of its model layout ([`codec::layout_digest`]).
    pub(crate) layout: [u8; 32],
    /// Close the connection right after completing this stage (demonstrations and tests
    /// of dropout recovery).
    pub(crate) drop_after: Option<Stage>,
    /// How long to keep retrying the connection (the server may start later).
    pub(crate) connect_timeout: Duration,
    /// TLS: the connector (trusting the deployment's CA) and the name the server's
    /// certificate must carry. Without it the client refuses to connect
    /// ([`TransportError::NoTls`]) unless `insecure_plaintext` is set.
    pub(crate) tls: Option<(TlsConnector, ServerName<'static>)>,
    /// Connect over plaintext TCP when `tls` is `None`: anyone on the path can read and
    /// rewrite every frame. Local experiments and tests only; a warning is logged.
    pub(crate) insecure_plaintext: bool,
    /// Break the transport's rules on purpose (tests of the server's defences); `None` for
    /// every real client.
    #[cfg(feature = "testing")]
    pub(crate) misbehave: Option<super::Misbehaviour>,
}

impl ClientOptions {
    /// Options for an update of the model whose layout digest is `layout`: no weight, no TLS
    /// yet (with neither TLS nor `insecure_plaintext` the client refuses to connect), 10 s to
    /// reach the server, nothing broken on purpose.
    pub(crate) fn new(layout: [u8; 32]) -> Self {
        Self {
            weight: None,
            layout,
            drop_after: None,
            connect_timeout: Duration::from_secs(10),
            tls: None,
            insecure_plaintext: false,
            #[cfg(feature = "testing")]
            misbehave: None,
        }
    }
}

/// Reads an update's next values into the slice given (see [`ClientInput::Stream`]).
pub type ReadUpdate =
    Box<dyn FnMut(&mut [f32]) -> Result<(), crate::quantize::InputError> + Send + Sync>;

/// A client's update: in memory, or read in order while it is masked and sent (a large
/// model: the client then holds about 4 MiB of it at once, see
/// [`Client::set_input_source`]).
pub enum ClientInput<'a> {
    /// The whole update.
    Values(&'a [f32]),
    /// `params` values, read a piece at a time by `read` (which fills its slice with the
    /// next values, or fails).
    Stream {
        /// Parameters in the update.
        params: usize,
        /// Reads the next values.
        read: ReadUpdate,
    },
}

impl ClientInput<'_> {
    /// Parameters in the update.
    pub fn params(&self) -> usize {
        match self {
            ClientInput::Values(v) => v.len(),
            ClientInput::Stream { params, .. } => *params,
        }
    }
}

impl<'a> From<&'a [f32]> for ClientInput<'a> {
    fn from(values: &'a [f32]) -> Self {
        ClientInput::Values(values)
    }
}

impl<'a> From<&'a Vec<f32>> for ClientInput<'a> {
    fn from(values: &'a Vec<f32>) -> Self {
        ClientInput::Values(values)
    }
}

/// How a client's round ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    /// The server confirmed the round completed, with this many inputs in the sum.
    Completed {
        /// Inputs in the sum.
        included: u32,
    },
    /// It left after this stage, as asked.
    Dropped {
        /// The last stage it completed.
        after: Stage,
    },
}

async fn connect<A: ToSocketAddrs + Clone>(
    addr: A,
    within: Duration,
) -> Result<TcpStream, TransportError> {
    let start = Instant::now();
    loop {
        match TcpStream::connect(addr.clone()).await {
            Ok(s) => return Ok(s),
            Err(e) if start.elapsed() >= within => return Err(e.into()),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

type Reader = FramedRead<ReadHalf<Box<dyn Io>>, LengthDelimitedCodec>;

/// Joins the round at `addr` as `identity` with `update` and runs it to the end: what
/// [`super::Join::run`] does. The round the server announces is checked against `policy`
/// before anything else is sent; a round the policy refuses ends with
/// [`TransportError::Refused`].
pub(crate) async fn run_client<'u, A, E, R>(
    addr: A,
    options: ClientOptions,
    identity: ClientIdentity,
    policy: ClientPolicy,
    update: impl Into<ClientInput<'u>>,
    engine: E,
    rng: R,
) -> Result<ClientOutcome, TransportError>
where
    A: ToSocketAddrs + Clone,
    E: Backend + 'u,
    R: CryptoRng + 'u,
{
    let update = update.into();
    let params = u32::try_from(update.params()).map_err(|_| {
        TransportError::Input(ClientError::Input(InputError::Length {
            got: update.params(),
            want: u32::MAX as usize,
        }))
    })?;
    if options.tls.is_none() {
        if !options.insecure_plaintext {
            return Err(TransportError::NoTls);
        }
        log::warn!(
            "client {}: plaintext TCP (insecure_plaintext): every frame crosses the network unencrypted and unauthenticated",
            identity.id()
        );
    }
    let socket = connect(addr, options.connect_timeout).await?;
    let _ = socket.set_nodelay(true);
    let (io, binding): (Box<dyn Io>, [u8; 32]) = match &options.tls {
        Some((connector, name)) => {
            let stream = connector
                .connect(name.clone(), socket)
                .await
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            let binding = channel_binding(stream.get_ref().1)
                .map_err(|e| TransportError::Tls(e.to_string()))?;
            (Box::new(stream), binding)
        }
        None => (Box::new(socket), [0; 32]),
    };
    let (rd, wr) = tokio::io::split(io);
    // Before the welcome only small frames are expected; what we send is bounded by us.
    let mut framed = FramedRead::new(
        rd,
        frame_codec(
            WELCOME_MAX
                .max(CHALLENGE_LEN)
                .max(codec::HEADER_LEN + 2 + codec::MAX_REASON),
        ),
    );
    let mut sink = FramedWrite::new(wr, frame_codec(usize::MAX >> 1));
    let wait = options.connect_timeout.max(Duration::from_secs(30));
    let first = next_frame(&mut framed, wait, "the server's challenge").await?;
    let challenge = match codec::frame_tag(&first)? {
        tag::CHALLENGE => codec::decode_challenge(&first)?,
        tag::REJECT => return Err(TransportError::Rejected(codec::decode_reject(&first)?)),
        t => return Err(crate::error::CodecError::UnknownTag(t).into()),
    };
    let hello = Hello::signed(
        &identity,
        challenge.round,
        options.weight.is_some(),
        params,
        options.layout,
        &challenge.nonce,
        &binding,
    );
    sink.send(Bytes::from(codec::encode_hello(&hello))).await?;
    let answer = next_frame(&mut framed, wait, "the server's welcome").await?;
    let config = match codec::frame_tag(&answer)? {
        tag::WELCOME => codec::decode_welcome(&answer)?,
        tag::REJECT => return Err(TransportError::Rejected(codec::decode_reject(&answer)?)),
        t => return Err(crate::error::CodecError::UnknownTag(t).into()),
    };
    if config.round_id() != challenge.round {
        return Err(TransportError::WrongRound {
            challenge: challenge.round,
            welcome: config.round_id(),
        });
    }
    let limits = Limits::for_config(&config);
    framed
        .decoder_mut()
        .set_max_frame_length(limits.max_server_frame());
    if update.params() != config.params() {
        return Err(TransportError::Input(ClientError::Input(
            InputError::Length {
                got: update.params(),
                want: config.params(),
            },
        )));
    }
    let weight = options.weight.unwrap_or(1);
    let quantization = config.quantization();
    let vector_len = config.vector_len();
    let bits = config.modulus().bits();
    let idle = config.stage_timeout() * 4 + Duration::from_secs(30);
    // A self-selected round's epoch is checked against this machine's clock, unless the
    // caller gave its own.
    let policy = if policy.now.is_none() {
        policy.at_system_time()
    } else {
        policy
    };
    let dp = config.dp().is_some();
    let mut client =
        Client::new(identity, config, policy, engine, rng).map_err(TransportError::Refused)?;
    match update {
        ClientInput::Values(values) => client.set_input(values, weight),
        // A DP input is rotated as a whole: read it all, then encode it.
        ClientInput::Stream { params, mut read } if dp => {
            let mut all = vec![0f32; params];
            let set = read(&mut all)
                .map_err(Into::into)
                .and_then(|()| client.set_input(&all, weight));
            zeroize::Zeroize::zeroize(&mut all);
            set
        }
        ClientInput::Stream { params, read } => {
            // Stochastic rounding draws from its own generator, seeded by the system.
            let rounding = super::system_rng()?;
            crate::quantize::QuantizingSource::new(read, params, &quantization, weight, rounding)
                .map_err(Into::into)
                .and_then(|source| client.set_input_source(Box::new(source)))
        }
    }
    .map_err(TransportError::Input)?;
    loop {
        while let Some(env) = client.poll_transmit() {
            let stage = env.message.stage();
            // A stage is done when its message is sent: for a streamed input, its last piece.
            let completes = match &env.message {
                ClientMessage::MaskedChunk(run) => run.offset + run.count == vector_len,
                _ => true,
            };
            match &env.message {
                ClientMessage::MaskedInput(values) => {
                    upload(&mut sink, env.round, values, bits, &options).await?;
                }
                // Packed already (b > 32): each run is a chunk frame's worth.
                ClientMessage::PackedInput(packed) => {
                    for run in packed.runs() {
                        sink.feed(Bytes::from(codec::encode_piece(env.round, run)))
                            .await?;
                    }
                }
                // A streamed input: each piece is already a chunk frame's worth.
                ClientMessage::MaskedChunk(_) => {
                    sink.feed(Bytes::from(codec::encode_client(&env, bits)))
                        .await?;
                }
                _ => {
                    sink.send(Bytes::from(codec::encode_client(&env, bits)))
                        .await?
                }
            }
            if completes && options.drop_after == Some(stage) {
                let _ = SinkExt::<Bytes>::close(&mut sink).await;
                return Ok(ClientOutcome::Dropped { after: stage });
            }
        }
        SinkExt::<Bytes>::flush(&mut sink).await?;
        match client.status() {
            ClientStatus::Completed { included } => {
                return Ok(ClientOutcome::Completed { included });
            }
            ClientStatus::Aborted(e) => return Err(e.into()),
            ClientStatus::Running(_) => {}
        }
        let frame = next_frame(&mut framed, idle, "the server").await?;
        if codec::frame_tag(&frame)? == tag::REJECT {
            return Err(TransportError::Rejected(codec::decode_reject(&frame)?));
        }
        let env = codec::decode_server(&frame, &limits)?;
        client.handle_message(env).map_err(TransportError::Input)?;
    }
}

/// Sends a masked vector in chunks (or, for tests, in one of the ways a server must not
/// accept).
#[cfg_attr(not(feature = "testing"), allow(unused_variables))]
async fn upload<S>(
    sink: &mut S,
    round: u64,
    values: &[u32],
    bits: u32,
    options: &ClientOptions,
) -> Result<(), TransportError>
where
    S: futures_util::Sink<Bytes, Error = std::io::Error> + Unpin,
{
    #[cfg(feature = "testing")]
    if let Some(how) = options.misbehave {
        return super::misbehave::upload(sink, round, values, bits, how).await;
    }
    send_chunks(sink, codec::encode_masked_chunks(round, values, bits)).await
}

/// Sends chunk frames in order, then flushes.
pub(super) async fn send_chunks<S>(sink: &mut S, chunks: Vec<Vec<u8>>) -> Result<(), TransportError>
where
    S: futures_util::Sink<Bytes, Error = std::io::Error> + Unpin,
{
    for chunk in chunks {
        sink.feed(Bytes::from(chunk)).await?;
    }
    sink.flush().await?;
    Ok(())
}

async fn next_frame(
    framed: &mut Reader,
    within: Duration,
    what: &'static str,
) -> Result<bytes::BytesMut, TransportError> {
    match tokio::time::timeout(within, framed.next()).await {
        Ok(Some(Ok(f))) => Ok(f),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err(TransportError::Closed(what)),
        Err(_) => Err(TransportError::Timeout(within, what)),
    }
}
