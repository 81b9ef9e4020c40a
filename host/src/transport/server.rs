//! The TCP server: one driver owns the sans-IO [`Server`]; one task per connection reads and
//! decodes frames; one task per connection writes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use secagg_engine::Backend;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;

use super::{TransportError, frame_codec};
use crate::codec::{self, Hello, Limits, tag};
use crate::config::RoundConfig;
use crate::error::{CodecError, ProtocolError};
use crate::identity::CaPublicKey;
use crate::messages::{ClientMessage, Envelope, ServerMessage};
use crate::server::{DropReason, RoundOutput, Server, ServerEvent, ServerStatus};
use crate::{ClientId, Stage};

/// How the server runs a round.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Masked uploads staged at once; the rest wait in their sockets. Server memory for
    /// uploads is this many vectors of m + 1 elements, whatever n is.
    pub max_concurrent_uploads: usize,
    /// The model layout every client must send; `None` lets the first client set it.
    pub layout: Option<Vec<u8>>,
    /// The deployment CA: when set, only clients with a certificate from it take part.
    pub ca: Option<CaPublicKey>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            max_concurrent_uploads: 4,
            layout: None,
            ca: None,
        }
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

/// What a served round did.
#[derive(Clone, Debug)]
pub struct RoundReport {
    /// The aggregate, or why the round aborted.
    pub outcome: Result<RoundOutput, String>,
    /// The model layout the clients agreed on.
    pub layout: Option<Vec<u8>>,
    /// Whether any accepted client carried an explicit weight.
    pub weighted: bool,
    /// Stage timings, in order.
    pub stages: Vec<StageTiming>,
    /// Frame bytes received, length prefixes included.
    pub bytes_received: u64,
    /// Frame bytes sent, length prefixes included.
    pub bytes_sent: u64,
    /// Connections accepted.
    pub connections: usize,
    /// Connections refused before joining, with why.
    pub refused: Vec<String>,
    /// From listening to the end of the round.
    pub elapsed: Duration,
}

/// What a connection task tells the driver.
// A protocol message (an advertisement is a few hundred bytes) is the largest variant;
// boxing it would only add an allocation per message.
#[allow(clippy::large_enum_variant)]
enum Event {
    Hello {
        conn: u64,
        hello: Hello,
        writer: mpsc::Sender<Bytes>,
        bytes: usize,
        /// The round's frame limits if the client was admitted, `None` if refused.
        admitted: oneshot::Sender<Option<Limits>>,
    },
    Message {
        conn: u64,
        message: Envelope<ClientMessage>,
        bytes: usize,
    },
    Masked {
        conn: u64,
        round: u64,
        values: Vec<u32>,
        bytes: usize,
        /// Released once the vector is in the accumulator.
        _permit: OwnedSemaphorePermit,
    },
    Bad {
        conn: u64,
        error: CodecError,
    },
    Closed {
        conn: u64,
    },
}

struct Peer {
    conn: u64,
    writer: mpsc::Sender<Bytes>,
}

/// Runs one round on `listener` for vectors of `config.params()` parameters, and returns when
/// it completes or aborts.
pub async fn serve<E: Backend>(
    listener: TcpListener,
    config: RoundConfig,
    engine: E,
    options: ServeOptions,
) -> Result<RoundReport, TransportError> {
    let params = config.params();
    serve_with_layout(listener, config, engine, options, move |_| Ok(params)).await
}

/// Runs one round whose vector length comes from the clients: `params_of` turns the first
/// admitted client's layout into its parameter count, and `template` (whose own length is
/// ignored) is completed with it. Later clients must send the same layout.
pub async fn serve_with_layout<E: Backend>(
    listener: TcpListener,
    template: RoundConfig,
    engine: E,
    options: ServeOptions,
    params_of: impl Fn(&[u8]) -> Result<usize, String>,
) -> Result<RoundReport, TransportError> {
    let started = Instant::now();
    let uploads = Arc::new(Semaphore::new(options.max_concurrent_uploads.max(1)));
    let (events_tx, mut events) = mpsc::channel::<Event>(1024);
    // The sans-IO server exists once the vector length is known; its first deadline still
    // runs from the start (time zero).
    let mut engine = Some(engine);
    let mut server: Option<Server<E>> = None;
    let mut report = RoundReport {
        outcome: Err("not finished".into()),
        layout: options.layout.clone(),
        weighted: false,
        stages: Vec::new(),
        bytes_received: 0,
        bytes_sent: 0,
        connections: 0,
        refused: Vec::new(),
        elapsed: Duration::ZERO,
    };
    let mut peers: HashMap<ClientId, Peer> = HashMap::new();
    let mut by_conn: HashMap<u64, ClientId> = HashMap::new();
    let mut tasks: HashMap<u64, JoinHandle<()>> = HashMap::new();
    // Connections that have not said hello yet are capped, so a flood of idle sockets costs
    // a bounded amount of memory.
    let pending = Arc::new(Semaphore::new(2 * template.clients() + 64));
    let mut next_conn = 0u64;
    let mut stage_start = (Stage::Join, Duration::ZERO);
    let mut stage_clients = HashMap::new();
    let hello_timeout = template.stage_timeout().min(Duration::from_secs(10));
    // An upload holding a permit must keep moving: a frame at least every eighth of a stage
    // deadline, so a stalled client cannot keep the others from uploading in time.
    let upload_timeout = (template.stage_timeout() / 8).max(Duration::from_millis(250));

    loop {
        let now = started.elapsed();
        let deadline = match &server {
            Some(srv) => srv.poll_timeout(),
            None => Some(template.stage_timeout()),
        };
        let sleep = match deadline {
            Some(deadline) => deadline.saturating_sub(now),
            None => Duration::from_secs(3600),
        };
        tokio::select! {
            accepted = listener.accept() => {
                match accepted {
                    Ok((socket, addr)) => {
                        let Ok(permit) = Arc::clone(&pending).try_acquire_owned() else {
                            log::warn!("refusing a connection from {addr}: too many connections waiting to join");
                            report.refused.push(format!("{addr}: too many connections waiting to join"));
                            continue;
                        };
                        log::debug!("connection {next_conn} from {addr}");
                        report.connections += 1;
                        let _ = socket.set_nodelay(true);
                        tasks.insert(next_conn, tokio::spawn(connection(
                            next_conn,
                            socket,
                            events_tx.clone(),
                            Arc::clone(&uploads),
                            permit,
                            hello_timeout,
                            upload_timeout,
                        )));
                        next_conn += 1;
                    }
                    Err(e) => log::warn!("accept failed: {e}"),
                }
            }
            Some(event) = events.recv() => {
                let now = started.elapsed();
                match event {
                    Event::Hello { conn, hello, writer, bytes, admitted } => {
                        report.bytes_received += bytes as u64;
                        if server.is_none() && report.layout.as_ref().is_none_or(|l| *l == hello.layout) {
                            // The first client sizes the round.
                            let sized = params_of(&hello.layout)
                                .and_then(|m| template.with_params(m).map_err(|e| e.to_string()));
                            match (sized, engine.take()) {
                                (Ok(config), Some(e)) => {
                                    log::info!("round sized by client {}: {} parameters", hello.client, config.params());
                                    server = Some(match &options.ca {
                                        Some(ca) => Server::enrolled(config, *ca, e, Duration::ZERO),
                                        None => Server::new(config, e, Duration::ZERO),
                                    });
                                }
                                (Err(why), e) => {
                                    engine = e;
                                    let reason = format!("its model layout cannot be aggregated: {why}");
                                    refuse(&mut report, conn, &hello, &writer, admitted, reason);
                                    continue;
                                }
                                (Ok(_), None) => {}
                            }
                        }
                        let Some(srv) = server.as_mut() else {
                            refuse(&mut report, conn, &hello, &writer, admitted, "the round is not open".into());
                            continue;
                        };
                        match admit(srv, &hello, &peers, &mut report) {
                            Ok(()) => {
                                let welcome = Bytes::from(codec::encode_welcome(srv.config()));
                                report.bytes_sent += welcome.len() as u64 + 4;
                                if writer.try_send(welcome).is_ok() {
                                    report.weighted |= hello.weighted;
                                    log::info!("client {} joined (connection {conn})", hello.client);
                                    by_conn.insert(conn, hello.client);
                                    peers.insert(hello.client, Peer { conn, writer });
                                    srv.handle_join(hello.client, now);
                                    let _ = admitted.send(Some(Limits::for_config(srv.config())));
                                }
                            }
                            Err(reason) => refuse(&mut report, conn, &hello, &writer, admitted, reason),
                        }
                    }
                    Event::Message { conn, message, bytes } => {
                        report.bytes_received += bytes as u64;
                        if let (Some(&id), Some(srv)) = (by_conn.get(&conn), server.as_mut()) {
                            srv.handle_message(id, message, now);
                        }
                    }
                    Event::Masked { conn, round, values, bytes, _permit } => {
                        report.bytes_received += bytes as u64;
                        if let (Some(&id), Some(srv)) = (by_conn.get(&conn), server.as_mut()) {
                            let env = Envelope { round, message: ClientMessage::MaskedInput(values) };
                            srv.handle_message(id, env, now);
                        }
                    }
                    Event::Bad { conn, error } => {
                        if let Some(id) = by_conn.remove(&conn) {
                            log::warn!("client {id} sent a bad frame: {error}");
                            if let Some(srv) = server.as_mut() {
                                srv.misbehaved(id, ProtocolError::Codec(error), now);
                            }
                            peers.remove(&id);
                        } else {
                            log::warn!("connection {conn} sent a bad frame before joining: {error}");
                            report.refused.push(format!("connection {conn}: {error}"));
                        }
                    }
                    Event::Closed { conn } => {
                        if let Some(id) = by_conn.remove(&conn) {
                            log::info!("client {id} disconnected");
                            if let Some(srv) = server.as_mut() {
                                srv.handle_disconnect(id, now);
                            }
                            peers.remove(&id);
                        }
                    }
                }
            }
            () = tokio::time::sleep(sleep) => {
                match server.as_mut() {
                    Some(srv) => srv.handle_timeout(started.elapsed()),
                    None => {
                        report.outcome = Err(format!(
                            "no client joined before the first deadline ({:?})",
                            template.stage_timeout()
                        ));
                        break;
                    }
                }
            }
        }
        let Some(server) = server.as_mut() else {
            continue;
        };

        // Send what the server wants sent. Lists every client receives (the key list, the
        // survivor list) are shared values: encode each once and share the bytes.
        let mut shared_frame: Option<(usize, Bytes)> = None;
        while let Some((to, env)) = server.poll_transmit() {
            let Some(peer) = peers.get(&to) else { continue };
            let shared_ptr = match &env.message {
                ServerMessage::Cohort(c) => Some(Arc::as_ptr(c) as *const u8 as usize),
                ServerMessage::KeyList(k) => Some(Arc::as_ptr(k) as *const u8 as usize),
                ServerMessage::SurvivorList(u) => Some(Arc::as_ptr(u) as *const u8 as usize),
                _ => None,
            };
            let frame = match (shared_ptr, &shared_frame) {
                (Some(p), Some((q, bytes))) if p == *q => bytes.clone(),
                (Some(p), _) => {
                    let bytes = Bytes::from(codec::encode_server(&env));
                    shared_frame = Some((p, bytes.clone()));
                    bytes
                }
                (None, _) => Bytes::from(codec::encode_server(&env)),
            };
            report.bytes_sent += frame.len() as u64 + 4;
            if peer.writer.try_send(frame).is_err() {
                // Its writer is gone or hopelessly behind: treat it as disconnected.
                let conn = peer.conn;
                by_conn.remove(&conn);
                peers.remove(&to);
                server.handle_disconnect(to, started.elapsed());
            }
        }
        while let Some(e) = server.poll_event() {
            match e {
                ServerEvent::StageCompleted { stage, clients } => {
                    stage_clients.insert(stage, clients);
                }
                ServerEvent::ClientDropped(d) => {
                    log::info!("client {} dropped at {}: {}", d.client, d.stage, d.reason);
                    // Timed out or misbehaved: close its connection (and free anything it
                    // holds, such as an upload permit).
                    if d.reason != DropReason::Disconnected
                        && let Some(peer) = peers.remove(&d.client)
                    {
                        by_conn.remove(&peer.conn);
                        if let Some(t) = tasks.remove(&peer.conn) {
                            t.abort();
                        }
                    }
                }
                ServerEvent::MessageRejected { client, reason } => {
                    log::warn!("refused a message from client {client}: {reason}")
                }
                ServerEvent::Completed | ServerEvent::Aborted { .. } => {}
            }
        }
        let status = server.status();
        let current = match &status {
            ServerStatus::Running(s) => Some(*s),
            _ => None,
        };
        if current != Some(stage_start.0) {
            let now = started.elapsed();
            report.stages.push(StageTiming {
                stage: stage_start.0,
                started: stage_start.1,
                ended: now,
                clients: stage_clients.get(&stage_start.0).copied().unwrap_or(0),
            });
            if let Some(s) = current {
                stage_start = (s, now);
            }
        }
        match status {
            ServerStatus::Running(_) => {}
            ServerStatus::Completed => {
                report.outcome = server
                    .output()
                    .cloned()
                    .ok_or_else(|| "no output".to_string());
                break;
            }
            ServerStatus::Aborted(reason) => {
                report.outcome = Err(reason);
                break;
            }
        }
    }

    // Close every connection once its last frames are written.
    drop(peers);
    drop(events_tx);
    let grace = tokio::time::sleep(Duration::from_secs(5));
    tokio::pin!(grace);
    loop {
        tokio::select! {
            e = events.recv() => if e.is_none() { break },
            () = &mut grace => break,
        }
    }
    for t in tasks.into_values() {
        t.abort();
    }
    report.elapsed = started.elapsed();
    Ok(report)
}

/// Sends a refusal and records it.
fn refuse(
    report: &mut RoundReport,
    conn: u64,
    hello: &Hello,
    writer: &mpsc::Sender<Bytes>,
    admitted: oneshot::Sender<Option<Limits>>,
    reason: String,
) {
    log::warn!(
        "refused connection {conn} (client {}): {reason}",
        hello.client
    );
    let _ = writer.try_send(Bytes::from(codec::encode_reject(&reason)));
    let _ = admitted.send(None);
    report
        .refused
        .push(format!("client {}: {reason}", hello.client));
}

/// Whether a hello may join: the round is still collecting joins, the id is new, there is
/// room, and the layout matches.
fn admit<E: Backend>(
    server: &Server<E>,
    hello: &Hello,
    peers: &HashMap<ClientId, Peer>,
    report: &mut RoundReport,
) -> Result<(), String> {
    if server.status() != ServerStatus::Running(Stage::Join) {
        return Err("the round has already started".into());
    }
    if peers.contains_key(&hello.client)
        || server.dropped().iter().any(|d| d.client == hello.client)
    {
        return Err(format!("duplicate client id {}", hello.client));
    }
    if peers.len() >= server.config().clients() {
        return Err(format!(
            "the round is full ({} clients)",
            server.config().clients()
        ));
    }
    match &report.layout {
        Some(l) if *l != hello.layout => {
            return Err(
                "its model layout differs from the other clients' (tensor names or shapes)".into(),
            );
        }
        Some(_) => {}
        None => report.layout = Some(hello.layout.clone()),
    }
    Ok(())
}

/// Reads one connection: the hello, then protocol frames, with masked chunks unpacked into a
/// staging vector under an upload permit.
async fn connection(
    conn: u64,
    socket: TcpStream,
    events: mpsc::Sender<Event>,
    uploads: Arc<Semaphore>,
    pending: OwnedSemaphorePermit,
    hello_timeout: Duration,
    upload_timeout: Duration,
) {
    let (rd, wr) = socket.into_split();
    // Until the client is admitted only a hello may arrive.
    let mut reader = FramedRead::new(rd, frame_codec(codec::HEADER_LEN + 9 + codec::MAX_LAYOUT));
    let (writer, mut outgoing) = mpsc::channel::<Bytes>(64);
    let write_task = tokio::spawn(async move {
        // Frames are written straight from their (often shared) buffers: a key list sent to a
        // thousand clients is one allocation, not a thousand copies.
        let mut wr = wr;
        while let Some(frame) = outgoing.recv().await {
            let Ok(len) = u32::try_from(frame.len()) else {
                break;
            };
            if wr.write_all(&len.to_be_bytes()).await.is_err()
                || wr.write_all(&frame).await.is_err()
            {
                break;
            }
        }
        let _ = wr.shutdown().await;
    });

    let bad = |error: CodecError| Event::Bad { conn, error };
    // The hello comes first, within the stage deadline.
    let first = match tokio::time::timeout(hello_timeout, reader.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(Some(Err(e))) => {
            let _ = events.send(bad(frame_error(e))).await;
            return;
        }
        Ok(None) | Err(_) => {
            let _ = events.send(Event::Closed { conn }).await;
            return;
        }
    };
    let hello = match codec::decode_hello(&first) {
        Ok(h) => h,
        Err(e) => {
            let _ = events.send(bad(e)).await;
            return;
        }
    };
    let hello_bytes = first.len() + 4;
    let (admitted, verdict) = oneshot::channel();
    if events
        .send(Event::Hello {
            conn,
            hello,
            writer,
            bytes: hello_bytes,
            admitted,
        })
        .await
        .is_err()
    {
        return;
    }
    let limits = match verdict.await {
        Ok(Some(l)) => l,
        // Refused: the driver has queued the refusal; stop reading.
        _ => return,
    };
    // Admitted: it no longer counts against the connections waiting to say hello.
    drop(pending);
    reader
        .decoder_mut()
        .set_max_frame_length(limits.max_client_frame());

    let mut staging: Option<(Vec<u32>, usize, OwnedSemaphorePermit, usize)> = None;
    let mut upload_next = false;
    loop {
        if upload_next && staging.is_none() && reader.read_buffer().is_empty() {
            // Hold no permit while the client is silent: wait for its bytes first.
            if reader.get_ref().readable().await.is_err() {
                break;
            }
            match Arc::clone(&uploads).acquire_owned().await {
                Ok(permit) => staging = Some((vec![0; limits.vector_len], 0, permit, 0)),
                Err(_) => break,
            }
        }
        // An upload in progress holds a permit: it must keep moving or be cut off.
        let next = if staging.is_some() {
            match tokio::time::timeout(upload_timeout, reader.next()).await {
                Ok(next) => next,
                Err(_) => {
                    let stalled = CodecError::Invalid {
                        field: "masked input",
                        why: format!("upload stalled for {upload_timeout:?}"),
                    };
                    let _ = events.send(bad(stalled)).await;
                    return;
                }
            }
        } else {
            reader.next().await
        };
        let frame = match next {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                let _ = events.send(bad(frame_error(e))).await;
                return;
            }
            None => break,
        };
        let size = frame.len() + 4;
        let event = match codec::frame_tag(&frame) {
            Err(e) => bad(e),
            Ok(t) if t != tag::CHUNK && staging.as_ref().is_some_and(|s| s.1 > 0) => {
                bad(CodecError::Invalid {
                    field: "masked input",
                    why: format!("frame tag {t:#04x} in the middle of a chunked upload"),
                })
            }
            Ok(0x05) => bad(CodecError::Invalid {
                field: "masked input",
                why: "a masked vector must be sent in chunks (tag 0x13)".into(),
            }),
            Ok(tag::CHUNK) => {
                let (mut values, at, permit, bytes) = match staging.take() {
                    Some(s) => s,
                    None => match Arc::clone(&uploads).acquire_owned().await {
                        Ok(p) => (vec![0; limits.vector_len], 0, p, 0),
                        Err(_) => break,
                    },
                };
                match codec::decode_chunk_into(&frame, &limits, at, &mut values) {
                    Err(e) => bad(e),
                    Ok(p) if p.offset + p.count == limits.vector_len => {
                        upload_next = false;
                        Event::Masked {
                            conn,
                            round: p.round,
                            values,
                            bytes: bytes + size,
                            _permit: permit,
                        }
                    }
                    Ok(p) => {
                        staging = Some((values, p.offset + p.count, permit, bytes + size));
                        continue;
                    }
                }
            }
            Ok(tag::HELLO) => bad(CodecError::Invalid {
                field: "hello",
                why: "a second hello on one connection".into(),
            }),
            Ok(t) => {
                if t == 0x04 {
                    // After its share check a client uploads its masked vector.
                    upload_next = true;
                } else if staging.take().is_some() {
                    // A permit taken for an upload that did not come: give it back.
                    upload_next = false;
                }
                match codec::decode_client(&frame, &limits) {
                    Ok(message) => Event::Message {
                        conn,
                        message,
                        bytes: size,
                    },
                    Err(e) => bad(e),
                }
            }
        };
        let stop = matches!(event, Event::Bad { .. });
        if events.send(event).await.is_err() || stop {
            break;
        }
    }
    let _ = events.send(Event::Closed { conn }).await;
    drop(write_task);
}

/// A framing error (oversized length prefix, truncated frame, socket error) as a codec error.
fn frame_error(e: std::io::Error) -> CodecError {
    CodecError::Invalid {
        field: "frame",
        why: e.to_string(),
    }
}
