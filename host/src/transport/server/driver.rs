//! The driver: one struct owns the sans-IO server, the admitted peers and the report, with one
//! method per event; [`run`] is the loop that feeds it.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;

use super::connection::{self, Admission, Event, Shared, UploadClock};
use super::staging::Staged;
use super::{MAX_REFUSAL_DETAILS, Refusal, RoundReport, ServeOptions, StageTiming};
use crate::codec::{self, Limits};
use crate::config::RoundConfig;
use crate::error::{AbortReason, CodecError, ProtocolError};
use crate::messages::{ClientMessage, Envelope};
use crate::server::{DropReason, Server, ServerEvent, ServerStatus};
use crate::transport::TransportError;
use crate::{ClientId, Stage};

/// An admitted client's connection.
struct Peer {
    conn: u64,
    writer: mpsc::Sender<Bytes>,
}

/// Everything the server side of a round holds between events.
pub(super) struct Driver<E: secagg_engine::Accumulate> {
    started: Instant,
    server: Server<E>,
    shared: Arc<Shared>,
    report: RoundReport,
    peers: HashMap<ClientId, Peer>,
    by_conn: HashMap<u64, ClientId>,
    tasks: HashMap<u64, JoinHandle<()>>,
    /// Clients granted an upload: a second request drops them.
    uploaded: HashSet<ClientId>,
    next_conn: u64,
    stage: (Stage, Duration),
    stage_clients: HashMap<Stage, usize>,
}

/// Runs a round: accept (while fewer than `max_pending` connections wait to join), handle
/// connection events and deadlines, until the round completes or aborts.
pub(super) async fn run<E: secagg_engine::Accumulate>(
    listener: TcpListener,
    config: RoundConfig,
    engine: E,
    options: ServeOptions,
) -> Result<RoundReport, TransportError> {
    let (events_tx, mut events) = mpsc::channel::<Event>(1024);
    let max_pending = options.max_pending.max(1);
    let pending = Arc::new(Semaphore::new(max_pending));
    let mut driver = Driver::new(config, engine, options, events_tx);
    loop {
        let sleep = driver.until_deadline();
        tokio::select! {
            (permit, accepted) = accept(&listener, &pending) => {
                let waiting = max_pending - pending.available_permits();
                driver.report.peak_pending = driver.report.peak_pending.max(waiting);
                driver.on_accept(permit, accepted)
            }
            Some(event) = events.recv() => driver.on_event(event),
            () = tokio::time::sleep(sleep) => driver.on_timeout(),
        }
        driver.flush();
        driver.publish_upload_clock();
        if driver.finished() {
            break;
        }
    }
    Ok(driver.close(events).await)
}

/// The next connection, once a place for an unadmitted connection is free.
async fn accept(
    listener: &TcpListener,
    pending: &Arc<Semaphore>,
) -> (
    OwnedSemaphorePermit,
    std::io::Result<(TcpStream, SocketAddr)>,
) {
    let Ok(permit) = Arc::clone(pending).acquire_owned().await else {
        // The semaphore is never closed.
        return std::future::pending().await;
    };
    (permit, listener.accept().await)
}

impl<E: secagg_engine::Accumulate> Driver<E> {
    fn new(
        config: RoundConfig,
        engine: E,
        options: ServeOptions,
        events: mpsc::Sender<Event>,
    ) -> Self {
        let upload_deadline = options
            .upload_deadline
            .unwrap_or_else(|| (config.stage_timeout() / 4).max(Duration::from_secs(1)));
        let started = Instant::now();
        let permits = options.max_concurrent_uploads.max(1);
        let shared = Arc::new(Shared {
            round: config.round_id(),
            params: config.params(),
            layout: options.layout,
            ca: options.ca,
            tls: options.tls,
            hello_timeout: options.hello_timeout,
            upload_deadline,
            uploads: Arc::new(Semaphore::new(permits)),
            upload_permits: permits,
            upload_clock: UploadClock {
                started,
                deadline_ms: AtomicU64::new(u64::MAX),
                awaited: AtomicUsize::new(0),
            },
            max_staged_in_memory: options.max_staged_in_memory,
            spill_dir: options.spill_dir.clone().unwrap_or_else(std::env::temp_dir),
            limits: Limits::for_config(&config),
            events,
        });
        let server = match &options.ca {
            Some(ca) => Server::enrolled(config, *ca, engine, Duration::ZERO),
            None => Server::new(config, engine, Duration::ZERO),
        };
        Self {
            started,
            server,
            shared,
            report: RoundReport {
                outcome: Err(AbortReason::StateLost("not finished")),
                weighted: false,
                stages: Vec::new(),
                bytes_received: 0,
                bytes_sent: 0,
                connections: 0,
                peak_pending: 0,
                refusals: Default::default(),
                refused: Vec::new(),
                elapsed: Duration::ZERO,
                staged_on_disk: 0,
            },
            peers: HashMap::new(),
            by_conn: HashMap::new(),
            tasks: HashMap::new(),
            uploaded: HashSet::new(),
            next_conn: 0,
            stage: (Stage::Join, Duration::ZERO),
            stage_clients: HashMap::new(),
        }
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Tells the connection tasks how long the masked-input stage has left and how many
    /// inputs it awaits (see [`UploadClock::slice`]).
    fn publish_upload_clock(&self) {
        let clock = &self.shared.upload_clock;
        let awaited = self.server.masked_inputs_awaited();
        let deadline = match (awaited, self.server.poll_timeout()) {
            (0, _) | (_, None) => u64::MAX,
            (_, Some(d)) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        };
        clock.awaited.store(awaited, Ordering::Relaxed);
        clock.deadline_ms.store(deadline, Ordering::Relaxed);
    }

    fn until_deadline(&self) -> Duration {
        match self.server.poll_timeout() {
            Some(deadline) => deadline.saturating_sub(self.now()),
            None => Duration::from_secs(3600),
        }
    }

    fn on_accept(
        &mut self,
        permit: OwnedSemaphorePermit,
        accepted: std::io::Result<(TcpStream, SocketAddr)>,
    ) {
        match accepted {
            Ok((socket, addr)) => {
                let conn = self.next_conn;
                self.next_conn += 1;
                log::debug!("connection {conn} from {addr}");
                self.report.connections += 1;
                let task = tokio::spawn(connection::connection(
                    conn,
                    socket,
                    Arc::clone(&self.shared),
                    permit,
                ));
                self.tasks.insert(conn, task);
            }
            Err(e) => log::warn!("accept failed: {e}"),
        }
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Hello {
                conn,
                hello,
                writer,
                bytes,
                admitted,
            } => self.on_hello(conn, hello, writer, bytes, admitted),
            Event::Message {
                conn,
                message,
                bytes,
            } => {
                self.report.bytes_received += bytes as u64;
                if let Some(&id) = self.by_conn.get(&conn) {
                    let now = self.now();
                    self.server.handle_message(id, message, now);
                }
            }
            Event::UploadRequest { conn, reply } => self.on_upload_request(conn, reply),
            Event::Masked {
                conn,
                round,
                message,
                bytes,
                _permit,
            } => {
                self.report.bytes_received += bytes as u64;
                if let Some(&id) = self.by_conn.get(&conn) {
                    let now = self.now();
                    match message {
                        Staged::Whole(message) => {
                            self.server
                                .handle_message(id, Envelope { round, message }, now);
                        }
                        // Read back and added piece by piece, with nothing in between: the
                        // sans-IO server sees the whole input arrive at once.
                        Staged::Spilled(spill) => {
                            self.report.staged_on_disk += 1;
                            let server = &mut self.server;
                            let replayed = spill.replay(|run| {
                                let message = ClientMessage::MaskedChunk(run);
                                server.handle_message(id, Envelope { round, message }, now);
                                server.awaits_masked_input(id)
                            });
                            if let Err(e) = replayed {
                                // Our disk failed, not the client: the partial input in the
                                // sum ends the round when the client is let go.
                                log::error!("reading back client {id}'s staged upload: {e}");
                                self.server.handle_disconnect(id, now);
                            }
                        }
                    }
                }
            }
            Event::Refused {
                conn,
                client,
                kind,
                detail,
            } => {
                self.tasks.remove(&conn);
                let who = match client {
                    Some(c) => format!("connection {conn} (client {c})"),
                    None => format!("connection {conn}"),
                };
                log::warn!("refused {who}: {kind}: {detail}");
                self.record(kind, format!("{who}: {detail}"));
            }
            Event::Bad { conn, kind, error } => {
                self.tasks.remove(&conn);
                if let Some(id) = self.by_conn.get(&conn).copied() {
                    log::warn!("client {id} cut off ({kind}): {error}");
                    self.record(kind, format!("client {id}: {error}"));
                    self.forget(id);
                    let now = self.now();
                    self.server.misbehaved(id, ProtocolError::Codec(error), now);
                }
            }
            Event::Closed { conn } => {
                self.tasks.remove(&conn);
                if let Some(id) = self.by_conn.get(&conn).copied() {
                    log::info!("client {id} disconnected");
                    self.forget(id);
                    let now = self.now();
                    self.server.handle_disconnect(id, now);
                }
            }
        }
    }

    /// A hello that checked out: the client joins if the round is still collecting joins,
    /// its id is new and there is room.
    fn on_hello(
        &mut self,
        conn: u64,
        hello: Admission,
        writer: mpsc::Sender<Bytes>,
        bytes: usize,
        admitted: oneshot::Sender<bool>,
    ) {
        self.report.bytes_received += bytes as u64;
        let id = hello.client;
        // A duplicate is named as such whenever it comes: that says more than "too late".
        let refusal = if self.peers.contains_key(&id)
            || self.server.dropped().iter().any(|d| d.client == id)
        {
            Some((
                Refusal::DuplicateId,
                format!("client {id} has already joined"),
            ))
        } else if self.server.status() != ServerStatus::Running(Stage::Join) {
            Some((
                Refusal::RoundStarted,
                "the round has already started".into(),
            ))
        } else if self.peers.len() >= self.server.config().clients() {
            Some((
                Refusal::RoundFull,
                format!(
                    "the round is full ({} clients)",
                    self.server.config().clients()
                ),
            ))
        } else {
            None
        };
        if let Some((kind, reason)) = refusal {
            log::warn!("refused connection {conn} (client {id}): {reason}");
            let _ = writer.try_send(Bytes::from(codec::encode_reject(&reason)));
            let _ = admitted.send(false);
            self.record(kind, format!("connection {conn} (client {id}): {reason}"));
            return;
        }
        let welcome = Bytes::from(codec::encode_welcome(self.server.config()));
        self.report.bytes_sent += welcome.len() as u64 + 4;
        if writer.try_send(welcome).is_ok() && admitted.send(true).is_ok() {
            self.report.weighted |= hello.weighted;
            log::info!("client {id} joined (connection {conn})");
            self.by_conn.insert(conn, id);
            self.peers.insert(id, Peer { conn, writer });
            let now = self.now();
            self.server.handle_join(id, now);
        }
    }

    /// An upload may take a permit only if the round is waiting for this client's masked
    /// input and it has not uploaded before; otherwise the client is cut off.
    fn on_upload_request(&mut self, conn: u64, reply: oneshot::Sender<bool>) {
        let Some(id) = self.by_conn.get(&conn).copied() else {
            let _ = reply.send(false);
            return;
        };
        let refusal = if self.uploaded.contains(&id) {
            Some((Refusal::DuplicateUpload, "a second masked upload"))
        } else if !self.server.awaits_masked_input(id) {
            Some((
                Refusal::UnexpectedUpload,
                "a masked upload the round is not waiting for",
            ))
        } else {
            None
        };
        match refusal {
            None => {
                self.uploaded.insert(id);
                let _ = reply.send(true);
            }
            Some((kind, why)) => {
                let _ = reply.send(false);
                log::warn!("client {id} cut off ({kind}): {why}");
                self.record(kind, format!("client {id}: {why}"));
                self.cut_off(id);
                let now = self.now();
                let error = CodecError::Invalid {
                    field: "masked input",
                    why: why.into(),
                };
                self.server.misbehaved(id, ProtocolError::Codec(error), now);
            }
        }
    }

    fn on_timeout(&mut self) {
        let now = self.now();
        self.server.handle_timeout(now);
    }

    fn record(&mut self, kind: Refusal, detail: String) {
        *self.report.refusals.entry(kind).or_insert(0) += 1;
        if self.report.refused.len() < MAX_REFUSAL_DETAILS {
            self.report.refused.push(format!("{kind}: {detail}"));
        }
    }

    /// Forgets a client's connection (its task has ended or is being ended).
    fn forget(&mut self, id: ClientId) {
        if let Some(peer) = self.peers.remove(&id) {
            self.by_conn.remove(&peer.conn);
        }
    }

    /// Forgets a client and ends its connection task, freeing what it holds (an upload
    /// permit, its buffers).
    fn cut_off(&mut self, id: ClientId) {
        if let Some(peer) = self.peers.remove(&id) {
            self.by_conn.remove(&peer.conn);
            if let Some(t) = self.tasks.remove(&peer.conn) {
                t.abort();
            }
        }
    }

    /// Sends what the server wants sent, acts on its events and tracks stage timings.
    fn flush(&mut self) {
        // Every round message is encoded for its one recipient: no list goes to all n (each
        // opens the round's committed lists around its recipient).
        while let Some((to, env)) = self.server.poll_transmit() {
            let Some(peer) = self.peers.get(&to) else {
                continue;
            };
            let frame = Bytes::from(codec::encode_server(&env));
            self.report.bytes_sent += frame.len() as u64 + 4;
            if peer.writer.try_send(frame).is_err() {
                // Its writer is gone or hopelessly behind: treat it as disconnected.
                self.cut_off(to);
                let now = self.now();
                self.server.handle_disconnect(to, now);
            }
        }
        while let Some(e) = self.server.poll_event() {
            match e {
                ServerEvent::StageCompleted { stage, clients } => {
                    self.stage_clients.insert(stage, clients);
                }
                ServerEvent::ClientDropped(d) => {
                    log::info!("client {} dropped at {}: {}", d.client, d.stage, d.reason);
                    // Timed out or misbehaved: close its connection.
                    if d.reason != DropReason::Disconnected {
                        self.cut_off(d.client);
                    }
                }
                ServerEvent::MessageRejected { client, reason } => {
                    log::warn!("refused a message from client {client}: {reason}")
                }
                ServerEvent::Completed | ServerEvent::Aborted { .. } => {}
            }
        }
        let current = match self.server.status() {
            ServerStatus::Running(s) => Some(s),
            _ => None,
        };
        if current != Some(self.stage.0) {
            let now = self.now();
            self.report.stages.push(StageTiming {
                stage: self.stage.0,
                started: self.stage.1,
                ended: now,
                clients: self.stage_clients.get(&self.stage.0).copied().unwrap_or(0),
            });
            if let Some(s) = current {
                self.stage = (s, now);
            }
        }
    }

    fn finished(&self) -> bool {
        !matches!(self.server.status(), ServerStatus::Running(_))
    }

    /// Records the outcome, lets the last frames go out, and ends every connection.
    async fn close(mut self, mut events: mpsc::Receiver<Event>) -> RoundReport {
        self.report.outcome = match self.server.status() {
            // Taken, not copied: a large model's sum is gigabytes.
            ServerStatus::Completed => self
                .server
                .take_output()
                .ok_or(AbortReason::StateLost("no output")),
            ServerStatus::Aborted(reason) => Err(reason),
            ServerStatus::Running(_) => Err(AbortReason::StateLost("not finished")),
        };
        // Connections that never joined have nothing more to say: end them now. Dropping
        // the writers lets each admitted client's writer task flush and shut its stream down.
        let Driver {
            mut tasks,
            shared,
            by_conn,
            peers,
            ..
        } = self;
        tasks.retain(|conn, task| {
            let keep = by_conn.contains_key(conn);
            if !keep {
                task.abort();
            }
            keep
        });
        drop((shared, peers));
        let grace = tokio::time::sleep(Duration::from_secs(5));
        tokio::pin!(grace);
        while !tasks.is_empty() {
            tokio::select! {
                e = events.recv() => match e {
                    Some(Event::Refused { conn, .. } | Event::Bad { conn, .. } | Event::Closed { conn }) => {
                        tasks.remove(&conn);
                    }
                    Some(_) => {}
                    None => break,
                },
                () = &mut grace => break,
            }
        }
        for t in tasks.into_values() {
            t.abort();
        }
        let mut report = self.report;
        report.elapsed = self.started.elapsed();
        report
    }
}
