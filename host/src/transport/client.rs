//! The TCP client: hello, welcome, then the sans-IO [`Client`] driven frame by frame.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand_core::CryptoRng;
use secagg_engine::Backend;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{TransportError, frame_codec};
use crate::codec::{self, Hello, Limits, WELCOME_LEN, tag};
use crate::messages::ClientMessage;
use crate::{Client, ClientId, ClientIdentity, ClientPolicy, ClientStatus, Stage};

/// How a client takes part.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Its id.
    pub id: ClientId,
    /// Its integer weight, if one was given (1 otherwise).
    pub weight: Option<u32>,
    /// Its model layout, as [`crate::codec::Hello::layout`] carries it.
    pub layout: Vec<u8>,
    /// Close the connection right after completing this stage (demonstrations and tests
    /// of dropout recovery).
    pub drop_after: Option<Stage>,
    /// How long to keep retrying the connection (the server may start later).
    pub connect_timeout: Duration,
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

/// Joins the round at `addr` as `identity` with `update` and runs it to the end. The round the
/// server announces is checked against `policy` before anything else is sent; a round the
/// policy refuses ends with [`TransportError::Refused`].
pub async fn run_client<A, E, R>(
    addr: A,
    options: ClientOptions,
    identity: ClientIdentity,
    policy: ClientPolicy,
    update: &[f32],
    engine: E,
    rng: R,
) -> Result<ClientOutcome, TransportError>
where
    A: ToSocketAddrs + Clone,
    E: Backend,
    R: CryptoRng,
{
    let socket = connect(addr, options.connect_timeout).await?;
    let _ = socket.set_nodelay(true);
    let (rd, wr) = socket.into_split();
    // Before the welcome only small frames are expected; what we send is bounded by us.
    let mut framed = FramedRead::new(
        rd,
        frame_codec(WELCOME_LEN.max(codec::HEADER_LEN + 2 + codec::MAX_REASON)),
    );
    let mut sink = FramedWrite::new(wr, frame_codec(usize::MAX >> 1));
    if identity.id() != options.id {
        return Err(TransportError::Input(format!(
            "the identity is for client {}, not {}",
            identity.id(),
            options.id
        )));
    }
    let hello = Hello {
        client: options.id,
        weighted: options.weight.is_some(),
        layout: options.layout.clone(),
    };
    sink.send(Bytes::from(codec::encode_hello(&hello))).await?;
    let first = next_frame(
        &mut framed,
        options.connect_timeout.max(Duration::from_secs(30)),
        "the server's welcome",
    )
    .await?;
    let config = match codec::frame_tag(&first)? {
        tag::WELCOME => codec::decode_welcome(&first)?,
        tag::REJECT => return Err(TransportError::Rejected(codec::decode_reject(&first)?)),
        t => return Err(crate::error::CodecError::UnknownTag(t).into()),
    };
    let limits = Limits::for_config(&config);
    framed
        .decoder_mut()
        .set_max_frame_length(limits.max_server_frame());
    if update.len() != config.params() {
        return Err(TransportError::Input(format!(
            "the update has {} parameters, the round aggregates {}",
            update.len(),
            config.params()
        )));
    }
    let bits = config.modulus().bits();
    let idle = config.stage_timeout() * 4 + Duration::from_secs(30);
    let mut client = Client::new(identity, config, policy, engine, rng)
        .map_err(|e| TransportError::Refused(e.to_string()))?;
    client
        .set_input(update, options.weight.unwrap_or(1))
        .map_err(|e| TransportError::Input(e.to_string()))?;
    loop {
        while let Some(env) = client.poll_transmit() {
            let stage = env.message.stage();
            match &env.message {
                ClientMessage::MaskedInput(values) => {
                    for chunk in codec::encode_masked_chunks(env.round, values, bits) {
                        sink.feed(Bytes::from(chunk)).await?;
                    }
                    SinkExt::<Bytes>::flush(&mut sink).await?;
                }
                _ => {
                    sink.send(Bytes::from(codec::encode_client(&env, bits)))
                        .await?
                }
            }
            if options.drop_after == Some(stage) {
                let _ = SinkExt::<Bytes>::close(&mut sink).await;
                return Ok(ClientOutcome::Dropped { after: stage });
            }
        }
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
        client
            .handle_message(env)
            .map_err(|e| TransportError::Input(e.to_string()))?;
    }
}

async fn next_frame(
    framed: &mut FramedRead<OwnedReadHalf, tokio_util::codec::LengthDelimitedCodec>,
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
