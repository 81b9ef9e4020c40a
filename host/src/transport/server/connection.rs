//! One connection: TLS, challenge and hello under one short timeout, then protocol frames and
//! staged uploads.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::Refusal;
use super::staging::{Staged, Staging};
use crate::ClientId;
use crate::codec::{self, Challenge, HELLO_DOMAIN, HELLO_MAX, Hello, Limits, tag};
use crate::error::CodecError;
use crate::identity::CaPublicKey;
use crate::messages::{ClientMessage, Envelope};
use crate::transport::tls::{TlsAcceptor, channel_binding};
use crate::transport::{Io, frame_codec, write_frame};

/// What every connection task needs to know, fixed for the round.
pub(super) struct Shared {
    pub(super) round: u64,
    pub(super) params: usize,
    pub(super) layout: Option<[u8; 32]>,
    pub(super) ca: Option<CaPublicKey>,
    pub(super) tls: Option<TlsAcceptor>,
    pub(super) hello_timeout: Duration,
    pub(super) upload_deadline: Duration,
    pub(super) uploads: Arc<Semaphore>,
    /// The permits in `uploads`.
    pub(super) upload_permits: usize,
    /// What the driver last knew of the masked-input stage, for fair upload slices.
    pub(super) upload_clock: UploadClock,
    pub(super) max_staged_in_memory: usize,
    pub(super) spill_dir: std::path::PathBuf,
    pub(super) limits: Limits,
    pub(super) events: mpsc::Sender<Event>,
}

/// The masked-input stage as the driver last saw it: when it ends and how many inputs it still
/// awaits. Read by connection tasks when an upload gets its permit.
pub(super) struct UploadClock {
    /// When the driver started (the server's clock is time since then).
    pub(super) started: Instant,
    /// The stage deadline, in milliseconds on the server's clock (`u64::MAX`: none).
    pub(super) deadline_ms: AtomicU64,
    /// Masked inputs the stage still awaits (uploads in progress included).
    pub(super) awaited: AtomicUsize,
}

impl UploadClock {
    /// How long an upload that takes its permit now may last: its fair share of what is left
    /// of the stage, `remaining × permits / awaited`, capped at `cap` and at least
    /// [`MIN_UPLOAD_SLICE`]. However many members stall their uploads, each holds a permit
    /// for its share only, so the honest uploads still waiting get theirs within the stage.
    pub(super) fn slice(&self, permits: usize, cap: Duration) -> Duration {
        let deadline = self.deadline_ms.load(Ordering::Relaxed);
        if deadline == u64::MAX {
            return cap;
        }
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let remaining = Duration::from_millis(deadline.saturating_sub(now));
        let awaited = self.awaited.load(Ordering::Relaxed).max(1);
        let share = remaining.saturating_mul(u32::try_from(permits).unwrap_or(u32::MAX))
            / u32::try_from(awaited).unwrap_or(u32::MAX);
        share.clamp(MIN_UPLOAD_SLICE, cap.max(MIN_UPLOAD_SLICE))
    }
}

/// The shortest time an upload is given once it holds a permit.
pub(super) const MIN_UPLOAD_SLICE: Duration = Duration::from_millis(250);

/// A client whose hello checked out: who it is and what it sends.
pub(super) struct Admission {
    pub(super) client: ClientId,
    pub(super) weighted: bool,
}

/// What a connection task tells the driver. `Refused`, `Bad` and `Closed` are terminal: each
/// task sends exactly one of them, last.
// A protocol message (an advertisement is a few hundred bytes) is the largest variant;
// boxing it would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
pub(super) enum Event {
    /// A verified hello: the driver decides whether the client joins, and answers on
    /// `admitted` (after queueing the welcome or the refusal on `writer`).
    Hello {
        conn: u64,
        hello: Admission,
        writer: mpsc::Sender<Bytes>,
        bytes: usize,
        admitted: oneshot::Sender<bool>,
    },
    /// A protocol message from an admitted client.
    Message {
        conn: u64,
        message: Envelope<ClientMessage>,
        bytes: usize,
    },
    /// An admitted client started an upload: may it take an upload permit?
    UploadRequest {
        conn: u64,
        reply: oneshot::Sender<bool>,
    },
    /// A whole masked vector.
    Masked {
        conn: u64,
        round: u64,
        message: Staged,
        bytes: usize,
        /// Released once the vector is in the accumulator.
        _permit: OwnedSemaphorePermit,
    },
    /// Refused before joining.
    Refused {
        conn: u64,
        client: Option<ClientId>,
        kind: Refusal,
        detail: String,
    },
    /// An admitted client broke the transport's rules.
    Bad {
        conn: u64,
        kind: Refusal,
        error: CodecError,
    },
    /// The connection ended.
    Closed { conn: u64 },
}

/// A refusal during the handshake.
struct Refused {
    client: Option<ClientId>,
    kind: Refusal,
    detail: String,
}

impl Refused {
    fn new(client: Option<ClientId>, kind: Refusal, detail: impl Into<String>) -> Self {
        Self {
            client,
            kind,
            detail: detail.into(),
        }
    }
}

type Reader = FramedRead<ReadHalf<Box<dyn Io>>, LengthDelimitedCodec>;

/// A connection that said a valid hello.
struct Handshake {
    reader: Reader,
    writer: WriteHalf<Box<dyn Io>>,
    hello: Admission,
    bytes: usize,
}

/// Runs one connection to its end and tells the driver how it ended.
pub(super) async fn connection(
    conn: u64,
    tcp: TcpStream,
    shared: Arc<Shared>,
    pending: OwnedSemaphorePermit,
) {
    let end = run(conn, tcp, &shared, pending).await;
    let _ = shared.events.send(end).await;
}

async fn run(conn: u64, tcp: TcpStream, shared: &Shared, pending: OwnedSemaphorePermit) -> Event {
    let hs = match tokio::time::timeout(shared.hello_timeout, handshake(tcp, shared)).await {
        Err(_) => {
            return Event::Refused {
                conn,
                client: None,
                kind: Refusal::HelloTimeout,
                detail: format!("no valid hello within {:?}", shared.hello_timeout),
            };
        }
        Ok(Err(r)) => {
            return Event::Refused {
                conn,
                client: r.client,
                kind: r.kind,
                detail: r.detail,
            };
        }
        Ok(Ok(hs)) => hs,
    };
    let Handshake {
        mut reader,
        writer,
        hello,
        bytes,
    } = hs;
    let (tx, outgoing) = mpsc::channel::<Bytes>(64);
    tokio::spawn(write_frames(writer, outgoing));
    let (admitted, verdict) = oneshot::channel();
    let hello_event = Event::Hello {
        conn,
        hello,
        writer: tx,
        bytes,
        admitted,
    };
    if shared.events.send(hello_event).await.is_err() || verdict.await != Ok(true) {
        // Refused by the driver (which queued the refusal and recorded why), or shutting down.
        return Event::Closed { conn };
    }
    // Admitted: it no longer counts against the connections waiting to say hello.
    drop(pending);
    reader
        .decoder_mut()
        .set_max_frame_length(shared.limits.max_client_frame());
    frames(conn, reader, shared).await
}

/// TLS, then the challenge, then one hello frame of at most [`HELLO_MAX`] bytes, checked.
async fn handshake(tcp: TcpStream, shared: &Shared) -> Result<Handshake, Refused> {
    let _ = tcp.set_nodelay(true);
    let (io, binding): (Box<dyn Io>, [u8; 32]) = match &shared.tls {
        Some(acceptor) => {
            let stream = acceptor
                .accept(tcp)
                .await
                .map_err(|e| Refused::new(None, Refusal::TlsHandshake, e.to_string()))?;
            let binding = channel_binding(stream.get_ref().1)
                .map_err(|e| Refused::new(None, Refusal::TlsHandshake, e.to_string()))?;
            (Box::new(stream), binding)
        }
        None => (Box::new(tcp), [0; 32]),
    };
    let (rd, mut wr) = tokio::io::split(io);
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|e| {
        Refused::new(
            None,
            Refusal::HelloTimeout,
            format!("no operating-system randomness for the challenge: {e}"),
        )
    })?;
    let challenge = Challenge {
        round: shared.round,
        nonce,
    };
    write_frame(&mut wr, &codec::encode_challenge(&challenge))
        .await
        .map_err(|e| Refused::new(None, Refusal::BadFrame, e.to_string()))?;
    // Until the client is admitted only a hello may arrive, and it is small: the buffer is
    // sized for it, and a longer length prefix is refused before anything is reserved.
    let mut reader = FramedRead::with_capacity(rd, frame_codec(HELLO_MAX), HELLO_MAX + 4);
    match read_hello(&mut reader, &challenge, &binding, shared).await {
        Ok((hello, bytes)) => Ok(Handshake {
            reader,
            writer: wr,
            hello,
            bytes,
        }),
        Err(r) => {
            let _ = write_frame(&mut wr, &codec::encode_reject(&r.detail)).await;
            let _ = wr.shutdown().await;
            Err(r)
        }
    }
}

async fn read_hello(
    reader: &mut Reader,
    challenge: &Challenge,
    binding: &[u8; 32],
    shared: &Shared,
) -> Result<(Admission, usize), Refused> {
    let frame = match reader.next().await {
        Some(Ok(f)) => f,
        Some(Err(e)) => {
            return Err(Refused::new(
                None,
                Refusal::BadFrame,
                format!("instead of a hello: {e}"),
            ));
        }
        None => {
            return Err(Refused::new(
                None,
                Refusal::HelloTimeout,
                "closed the connection before its hello",
            ));
        }
    };
    let hello = codec::decode_hello(&frame)
        .map_err(|e| Refused::new(None, Refusal::BadFrame, format!("malformed hello: {e}")))?;
    check_hello(&hello, challenge, binding, shared)?;
    Ok((
        Admission {
            client: hello.client,
            weighted: hello.weighted,
        },
        frame.len() + 4,
    ))
}

/// The hello answers this connection's challenge, for this round's shape, signed by the key
/// its credential names; with a CA, the credential is a certificate from it for this id.
fn check_hello(
    hello: &Hello,
    challenge: &Challenge,
    binding: &[u8; 32],
    shared: &Shared,
) -> Result<(), Refused> {
    let who = Some(hello.client);
    if hello.round != challenge.round {
        return Err(Refused::new(
            who,
            Refusal::WrongRound,
            format!(
                "its hello is for round {}, this is round {}",
                hello.round, challenge.round
            ),
        ));
    }
    if hello.params as usize != shared.params {
        return Err(Refused::new(
            who,
            Refusal::WrongShape,
            format!(
                "its model has {} parameters; this round aggregates {}",
                hello.params, shared.params
            ),
        ));
    }
    if shared.layout.is_some_and(|l| l != hello.layout) {
        return Err(Refused::new(
            who,
            Refusal::WrongShape,
            "its model layout (tensor names, shapes or order) differs from the server's model",
        ));
    }
    let key = match &shared.ca {
        Some(ca) => {
            let cert = match hello.credential.parse_certificate() {
                None => {
                    return Err(Refused::new(
                        who,
                        Refusal::NotEnrolled,
                        "no certificate: this round admits only clients enrolled by its CA",
                    ));
                }
                Some(Err(e)) => {
                    return Err(Refused::new(
                        who,
                        Refusal::NotEnrolled,
                        format!("unreadable certificate: {e}"),
                    ));
                }
                Some(Ok(c)) => c,
            };
            if cert.verify(ca).is_err() {
                return Err(Refused::new(
                    who,
                    Refusal::NotEnrolled,
                    format!(
                        "its certificate was not issued by this round's CA ({})",
                        ca.fingerprint()
                    ),
                ));
            }
            if cert.id != hello.client {
                return Err(Refused::new(
                    who,
                    Refusal::WrongIdentity,
                    format!(
                        "it claims to be client {} with the certificate of client {}",
                        hello.client, cert.id
                    ),
                ));
            }
            cert.key
        }
        None => hello
            .credential
            .key()
            .map_err(|e| Refused::new(who, Refusal::BadSignature, format!("unusable key: {e}")))?,
    };
    key.verify(
        HELLO_DOMAIN,
        &hello.signed_message(&challenge.nonce, binding),
        &hello.signature,
    )
    .map_err(|_| {
        Refused::new(
            who,
            Refusal::BadSignature,
            "its hello signature does not verify for this connection (forged, or replayed from another)",
        )
    })
}

/// Writes frames from the channel until it closes, then shuts the stream down. Frames are
/// written straight from their (often shared) buffers: a key list sent to a thousand
/// clients is one allocation, not a thousand copies.
async fn write_frames(mut wr: WriteHalf<Box<dyn Io>>, mut outgoing: mpsc::Receiver<Bytes>) {
    while let Some(frame) = outgoing.recv().await {
        if write_frame(&mut wr, &frame).await.is_err() {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

/// After admission: protocol frames, and masked uploads staged under a permit.
async fn frames(conn: u64, mut reader: Reader, shared: &Shared) -> Event {
    let bad = |kind: Refusal, field: &'static str, why: String| Event::Bad {
        conn,
        kind,
        error: CodecError::Invalid { field, why },
    };
    loop {
        let frame = match reader.next().await {
            Some(Ok(f)) => f,
            Some(Err(e)) => return bad(Refusal::BadFrame, "frame", e.to_string()),
            None => return Event::Closed { conn },
        };
        let event = match codec::frame_tag(&frame) {
            Err(e) => {
                return Event::Bad {
                    conn,
                    kind: Refusal::BadFrame,
                    error: e,
                };
            }
            Ok(tag::CHUNK) => match upload(conn, &mut reader, frame, shared).await {
                Ok(Some(event)) => event,
                Ok(None) => return Event::Closed { conn },
                Err(end) => return end,
            },
            Ok(0x05) => {
                return bad(
                    Refusal::BadUpload,
                    "masked input",
                    "a masked vector must be sent in chunks (tag 0x13)".into(),
                );
            }
            Ok(tag::HELLO) => {
                return bad(Refusal::BadFrame, "hello", "a second hello".into());
            }
            Ok(_) => match codec::decode_client(&frame, &shared.limits) {
                Ok(message) => Event::Message {
                    conn,
                    message,
                    bytes: frame.len() + 4,
                },
                Err(error) => {
                    return Event::Bad {
                        conn,
                        kind: Refusal::BadFrame,
                        error,
                    };
                }
            },
        };
        if shared.events.send(event).await.is_err() {
            return Event::Closed { conn };
        }
    }
}

/// One masked upload, starting with its first chunk: the driver must expect it; then it
/// takes an upload permit and must finish within the upload deadline, in chunks of at least
/// [`codec::MIN_CHUNK_ELEMS`] elements but the last. `Ok(None)`: the driver said no (and
/// deals with the client); `Err`: the connection's terminal event.
async fn upload(
    conn: u64,
    reader: &mut Reader,
    first: bytes::BytesMut,
    shared: &Shared,
) -> Result<Option<Event>, Event> {
    let bad = |kind: Refusal, error: CodecError| Event::Bad { conn, kind, error };
    let (reply, granted) = oneshot::channel();
    if shared
        .events
        .send(Event::UploadRequest { conn, reply })
        .await
        .is_err()
        || granted.await != Ok(true)
    {
        return Ok(None);
    }
    let Ok(permit) = Arc::clone(&shared.uploads).acquire_owned().await else {
        return Ok(None);
    };
    // Permits are granted in arrival order (the semaphore is fair), and each for a fair
    // share of what is left of the stage.
    let slice = shared
        .upload_clock
        .slice(shared.upload_permits, shared.upload_deadline);
    let deadline = tokio::time::Instant::now() + slice;
    let limits = &shared.limits;
    // The upload stays packed (b/32 of its unpacked size): the server adds it as it is, once
    // it is whole.
    let spill_failed = |e: std::io::Error| {
        log::error!(
            "staging connection {conn}'s upload in {}: {e}",
            shared.spill_dir.display()
        );
        Event::Closed { conn }
    };
    let mut runs = Staging::new(limits, shared.max_staged_in_memory, &shared.spill_dir, conn)
        .map_err(spill_failed)?;
    let mut bytes = first.len() + 4;
    let (mut placed, run) =
        codec::decode_chunk_packed(&first, limits, 0).map_err(|e| bad(Refusal::BadUpload, e))?;
    runs.push(run).map_err(spill_failed)?;
    let round = placed.round;
    let mut at = placed.offset + placed.count;
    while at < limits.vector_len {
        let frame = match tokio::time::timeout_at(deadline, reader.next()).await {
            Err(_) => {
                return Err(bad(
                    Refusal::UploadDeadline,
                    CodecError::Invalid {
                        field: "masked input",
                        why: format!(
                            "upload not finished within its {slice:?} share of the stage ({at} of {} elements)",
                            limits.vector_len
                        ),
                    },
                ));
            }
            Ok(Some(Ok(f))) => f,
            Ok(Some(Err(e))) => {
                return Err(bad(
                    Refusal::BadFrame,
                    CodecError::Invalid {
                        field: "frame",
                        why: e.to_string(),
                    },
                ));
            }
            Ok(None) => return Err(Event::Closed { conn }),
        };
        bytes += frame.len() + 4;
        let run;
        (placed, run) = codec::decode_chunk_packed(&frame, limits, at).map_err(|e| {
            let e = match e {
                CodecError::UnknownTag(t) => CodecError::Invalid {
                    field: "masked input",
                    why: format!("frame tag {t:#04x} in the middle of a chunked upload"),
                },
                e => e,
            };
            bad(Refusal::BadUpload, e)
        })?;
        runs.push(run).map_err(spill_failed)?;
        if placed.round != round {
            return Err(bad(
                Refusal::BadUpload,
                CodecError::Invalid {
                    field: "round",
                    why: "chunks of one upload carry different round ids".into(),
                },
            ));
        }
        at += placed.count;
    }
    let message = runs
        .finish(limits)
        .map_err(|e| bad(Refusal::BadUpload, e))?;
    Ok(Some(Event::Masked {
        conn,
        round,
        message,
        bytes,
        _permit: permit,
    }))
}
