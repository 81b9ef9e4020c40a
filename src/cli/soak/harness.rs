//! The attack soak: one real round on loopback — the `secagg server` binary in a process of
//! its own, over TLS, admitting only enrolled clients — with honest clients and rogue
//! connections of every kind the transport defends against, run at once.
//!
//! The honest round must complete before its deadline with the sum of the honest survivors;
//! every rogue must be refused or cut off with its reason in the server's summary; the
//! server's peak memory (its own `VmHWM`, from `/proc`) is reported. `secagg soak` runs it;
//! `tests/soak.rs` runs it at 200 honest clients and asserts the bounds.
//!
//! Rogue connections (each bounded in time; they never join):
//!
//! | kind | does | refused as |
//! |------|------|------------|
//! | `silent` | connects, sends nothing | hello-timeout |
//! | `slow-tls` | sends half a TLS ClientHello record, then nothing | hello-timeout |
//! | `not-tls` | sends an HTTP request | tls-handshake |
//! | `huge-prefix` | after TLS, announces a 2 GiB frame | bad-frame |
//! | `garbage-hello` | after TLS, a well-framed hello of random bytes | bad-frame |
//! | `foreign-ca` | a certificate from another CA | not-enrolled |
//! | `self-asserted` | no certificate | not-enrolled |
//! | `stolen-cert` | honest client 0's certificate under its own key and id | wrong-identity |
//! | `forged` | claims honest client 1's id and certificate, signs with its own key | bad-signature |
//! | `replay` | a valid hello made for one connection, sent on another | bad-signature |
//! | `wrong-shape` | an enrolled client whose model has one parameter too many | wrong-shape |
//! | `wrong-round` | an enrolled client answering with another round id | wrong-round |
//! | `duplicate` | a second connection of an admitted (rogue) client | duplicate-id |
//!
//! Rogue members (enrolled, admitted, with zero updates so the honest sum is unchanged):
//!
//! | kind | does | cut off as |
//! |------|------|------------|
//! | `tiny-chunks` | sends its masked vector one element per chunk | bad-upload |
//! | `stall` | sends one chunk, then stalls past the upload deadline | upload-deadline |
//! | `twice` | uploads its masked vector twice | duplicate-upload |
//! | `garbage-frame` | sends a garbage frame right after its welcome | bad-frame |

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg::model::{ModelFormat, ModelLayout, TensorSpec, read_model};
use secagg_host::codec::{self, HELLO_DOMAIN, Hello};
use secagg_host::identity::{CaKey, IdentityKey, Overwrite};
use secagg_host::plan::{self, Adversary, PlanRequest};
use secagg_host::transport::tls::{self, TestPki, TlsConnector};
use secagg_host::transport::{ClientOutcome, Join, Misbehaviour};
use secagg_host::{ClientId, ClientIdentity, ClientPolicy, Stage};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// What to run.
#[derive(Clone, Debug)]
pub struct SoakOptions {
    /// Honest clients.
    pub honest: usize,
    /// Rogue connections, spread over the kinds (at least one of each).
    pub rogue: usize,
    /// Parameters per update.
    pub params: usize,
    /// The server's stage deadline.
    pub deadline: Duration,
    /// The server's hello timeout.
    pub hello_timeout: Duration,
    /// The server's upload deadline.
    pub upload_deadline: Duration,
    /// The `secagg` binary to run as the server.
    pub server_bin: PathBuf,
    /// A scratch directory (the PKI, the sum, the server's summary).
    pub dir: PathBuf,
    /// Seed of the inputs and identities.
    pub seed: u64,
}

/// What the soak saw.
#[derive(Clone, Debug)]
pub struct SoakReport {
    /// The whole report as JSON (also printed by `secagg soak`).
    pub json: Value,
    /// Whether the round completed with the honest survivors' sum, every honest client
    /// finished as told, and every rogue kind was refused for its reason.
    pub passed: bool,
    /// What failed, when something did.
    pub failures: Vec<String>,
}

/// A rogue connection kind: its name and the server's refusal label it must produce.
const CONNECTION_KINDS: [(&str, &str); 13] = [
    ("silent", "hello-timeout"),
    ("slow-tls", "hello-timeout"),
    ("not-tls", "tls-handshake"),
    ("huge-prefix", "bad-frame"),
    ("garbage-hello", "bad-frame"),
    ("foreign-ca", "not-enrolled"),
    ("self-asserted", "not-enrolled"),
    ("stolen-cert", "wrong-identity"),
    ("forged", "bad-signature"),
    ("replay", "bad-signature"),
    ("wrong-shape", "wrong-shape"),
    ("wrong-round", "wrong-round"),
    ("duplicate", "duplicate-id"),
];

/// Rogue member kinds and the cut-off label each must produce.
const MEMBER_KINDS: [(&str, &str); 4] = [
    ("tiny-chunks", "bad-upload"),
    ("stall", "upload-deadline"),
    ("twice", "duplicate-upload"),
    ("garbage-frame", "bad-frame"),
];

/// Ids of enrolled identities that are not round members (wrong-shape, wrong-round, …).
const EXTRA_IDS: u32 = 1_000_000;

struct Setup {
    ca: CaKey,
    foreign_ca: CaKey,
    connector: TlsConnector,
    addr: SocketAddr,
    params: usize,
    seed: u64,
    /// The clients the server has logged as joined (read from its stderr).
    joined: Joined,
}

/// Client ids the server has admitted, as its log reports them.
type Joined = Arc<std::sync::Mutex<std::collections::HashSet<u32>>>;

/// The id in a server log line `... client {id} joined (connection {c})`.
fn joined_id(line: &str) -> Option<u32> {
    let (before, _) = line.split_once(" joined (connection ")?;
    before.rsplit_once("client ")?.1.parse().ok()
}

impl Setup {
    /// Waits until the server has admitted `id` (the soak's outer timeouts bound the wait).
    async fn wait_joined(&self, id: u32) {
        loop {
            if self.joined.lock().map(|j| j.contains(&id)).unwrap_or(false) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn key(&self, id: u32) -> IdentityKey {
        let mut rng = ChaCha20Rng::seed_from_u64(self.seed ^ 0x1d);
        rng.set_stream(u64::from(id) + 1);
        IdentityKey::generate(&mut rng)
    }

    fn identity(&self, id: u32) -> ClientIdentity {
        let key = self.key(id);
        let cert = self.ca.issue(ClientId(id), &key.public());
        ClientIdentity::enrolled(key, cert).unwrap_or_else(|_| unreachable!("issued for it"))
    }

    fn client_tls(&self) -> (TlsConnector, tls::ServerNameOwned) {
        (
            self.connector.clone(),
            tls::server_name("127.0.0.1").unwrap_or_else(|_| unreachable!("an IP address")),
        )
    }

    /// Enrolled client `id` over TLS, under a policy that trusts the deployment's CA.
    fn join(&self, id: u32) -> Result<Join, String> {
        let (connector, name) = self.client_tls();
        let policy = ClientPolicy::enrolled(self.ca.public());
        let rng = secagg_host::round_rng().map_err(|e| e.to_string())?;
        Ok(Join::new(self.identity(id), policy, self.layout())
            .tls(connector, name)
            .connect_timeout(Duration::from_secs(30))
            .rng(rng))
    }

    /// The layout digest of the soak's flat model.
    fn layout(&self) -> [u8; 32] {
        codec::layout_digest(&flat_layout(self.params).to_bytes())
    }

    /// Connects over TLS and reads the challenge.
    async fn open(
        &self,
    ) -> Result<
        (
            Framed<tls::TlsStream<TcpStream>, LengthDelimitedCodec>,
            codec::Challenge,
            [u8; 32],
        ),
        String,
    > {
        let socket = TcpStream::connect(self.addr)
            .await
            .map_err(|e| e.to_string())?;
        let (connector, name) = self.client_tls();
        let stream = connector
            .connect(name, socket)
            .await
            .map_err(|e| e.to_string())?;
        let binding = tls::channel_binding(stream.get_ref().1).map_err(|e| e.to_string())?;
        let mut framed = Framed::new(stream, secagg_host::transport::frame_codec(1 << 16));
        let first = framed
            .next()
            .await
            .ok_or("closed before the challenge")?
            .map_err(|e| e.to_string())?;
        let challenge = codec::decode_challenge(&first).map_err(|e| e.to_string())?;
        Ok((framed, challenge, binding))
    }
}

fn flat_layout(m: usize) -> ModelLayout {
    ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape: vec![m],
        }],
    }
}

fn honest_update(seed: u64, id: u32, m: usize) -> Vec<f32> {
    let mut r = ChaCha20Rng::seed_from_u64(seed ^ (u64::from(id) << 24) ^ 0x5eed);
    (0..m)
        .map(|_| (r.next_u32() >> 8) as f32 / (1 << 24) as f32 * 2.2 - 1.1)
        .collect()
}

/// Honest client `i` leaves after its share check when this is true (one in twenty).
fn honest_drops(i: u32) -> bool {
    i % 20 == 19
}

/// Whether `honest` honest clients and `members` rogue members stay within the planned 10%
/// dropout (rogue members are cut off; one honest client in twenty leaves on purpose).
fn within_dropout(honest: usize, members: usize) -> bool {
    let leaving = members + (0..honest as u32).filter(|&i| honest_drops(i)).count();
    leaving as f64 <= 0.1 * (honest + members) as f64
}

/// The fewest honest clients that keep `members` rogue members within the dropout.
fn min_honest(members: usize) -> usize {
    (1..)
        .find(|&h| within_dropout(h, members))
        .unwrap_or(usize::MAX)
}

/// Runs the soak. Errors are setup failures (no server, no port); the round's own failures
/// are in the report.
pub fn run(o: &SoakOptions) -> Result<SoakReport, String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    let members_per_kind = (o.rogue / 100).max(1);
    let members = members_per_kind * MEMBER_KINDS.len();
    let n = o.honest + members;
    // Rogue members are cut off and honest clients leave on purpose: together they must stay
    // within the dropout rate the round is planned for, or the honest round rightly fails.
    if !within_dropout(o.honest, members) {
        let leaving = members + (0..o.honest as u32).filter(|&i| honest_drops(i)).count();
        return Err(format!(
            "{} rogue connections make {members} rogue members; with the {} honest clients that \
             leave on purpose that is {leaving} of {n} clients lost, past the 10% dropout the \
             round is planned for: use at least {} honest clients",
            o.rogue,
            leaving - members,
            min_honest(members)
        ));
    }
    let request = PlanRequest {
        clients: n,
        dropout_rate: 0.1,
        corrupt_fraction: 0.05,
        adversary: Adversary::SemiMalicious,
        ..PlanRequest::default()
    };
    let p = plan::plan(&request).map_err(|e| format!("no SecAgg+ parameters for n = {n}: {e}"))?;
    // The deployment.
    let mut rng = ChaCha20Rng::seed_from_u64(o.seed);
    let ca = CaKey::generate(&mut rng);
    let foreign_ca = CaKey::generate(&mut rng);
    let ca_pub = o.dir.join("ca.pub");
    ca.public()
        .save(&ca_pub, Overwrite::Replace)
        .map_err(|e| e.to_string())?;
    let pki = TestPki::generate(&["127.0.0.1".into()], 1).map_err(|e| e.to_string())?;
    let [_, cert, key] = pki
        .save(&o.dir.join("tls"), Overwrite::Replace)
        .map_err(|e| e.to_string())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let output = o.dir.join("sum.npy");
    let summary_path = o.dir.join("summary.json");
    let _ = std::fs::remove_file(&output);
    let _ = std::fs::remove_file(&summary_path);
    let mut server = Command::new(&o.server_bin)
        .args(["server", "--listen", &addr.to_string()])
        .args(["--clients", &n.to_string()])
        .args(["--neighbors", &p.neighbors.to_string()])
        .args(["--threshold", &p.threshold.to_string()])
        .args(["--params", &o.params.to_string()])
        .args(["--backend", "cpu"])
        .args(["--deadline-ms", &o.deadline.as_millis().to_string()])
        .args([
            "--hello-timeout-ms",
            &o.hello_timeout.as_millis().to_string(),
        ])
        .args([
            "--upload-deadline-ms",
            &o.upload_deadline.as_millis().to_string(),
        ])
        .arg("--ca")
        .arg(&ca_pub)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--output")
        .arg(&output)
        .arg("--summary")
        .arg(&summary_path)
        // Joins are logged at info: the duplicate rogue waits for its target's.
        .env(
            "RUST_LOG",
            "warn,secagg_host::transport::server::driver=info",
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("{}: {e}", o.server_bin.display()))?;
    let joined = Joined::default();
    let server_log = wait_listening(&mut server, Arc::clone(&joined))?;
    let connector = pki.connector().map_err(|e| e.to_string())?;
    let setup = Arc::new(Setup {
        ca,
        foreign_ca,
        connector,
        addr,
        params: o.params,
        seed: o.seed,
        joined,
    });

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let limit = o.deadline * 8 + Duration::from_secs(30);
    let (honest_results, sent) = runtime.block_on(async {
        tokio::time::timeout(limit, drive(Arc::clone(&setup), o, members_per_kind))
            .await
            .unwrap_or_else(|_| (Vec::new(), BTreeMap::new()))
    });
    let wall = started.elapsed();
    // The server ends by itself once the round does; give it a moment, then stop it.
    let status = wait_or_kill(&mut server, Duration::from_secs(30));
    let log = server_log.join().unwrap_or_default();
    drop(setup);
    report(
        o,
        n,
        &p,
        wall,
        &honest_results,
        &sent,
        status,
        &log,
        &output,
        &summary_path,
    )
}

/// Reads the server's stderr until it says it is listening; the rest is collected by the
/// returned thread.
fn wait_listening(
    server: &mut Child,
    joined: Joined,
) -> Result<std::thread::JoinHandle<String>, String> {
    let stderr = server.stderr.take().ok_or("no server stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("secagg server on") {
                let _ = tx.send(());
            }
            if let (Some(id), Ok(mut j)) = (joined_id(&line), joined.lock()) {
                j.insert(id);
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(()) => Ok(handle),
        Err(_) => {
            let _ = server.kill();
            let log = handle.join().unwrap_or_default();
            Err(format!("the server did not start:\n{log}"))
        }
    }
}

fn wait_or_kill(server: &mut Child, within: Duration) -> Option<i32> {
    let start = Instant::now();
    loop {
        if let Ok(Some(status)) = server.try_wait() {
            return status.code();
        }
        if start.elapsed() > within {
            let _ = server.kill();
            let _ = server.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An honest client's id, how its round ended, and when (from the soak's start).
type HonestResult = (u32, Result<ClientOutcome, String>, Duration);

/// Starts the rogue members, the honest clients and the rogue connections together, and
/// waits for all of them.
async fn drive(
    s: Arc<Setup>,
    o: &SoakOptions,
    members_per_kind: usize,
) -> (Vec<HonestResult>, BTreeMap<String, usize>) {
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    let mut rogues = Vec::new();
    // Members first, so that duplicates of them have someone to duplicate.
    let first_member = o.honest as u32;
    let mut member_ids = Vec::new();
    for (k, (kind, _)) in MEMBER_KINDS.iter().enumerate() {
        for j in 0..members_per_kind {
            let id = first_member + (k * members_per_kind + j) as u32;
            member_ids.push(id);
            *sent.entry((*kind).to_string()).or_default() += 1;
            let s = Arc::clone(&s);
            let kind = *kind;
            let stall = o.upload_deadline * 2;
            rogues.push(tokio::spawn(async move {
                let _ = member(&s, id, kind, stall).await;
            }));
        }
    }
    let mut honest = Vec::new();
    let started = Instant::now();
    for i in 0..o.honest as u32 {
        let s = Arc::clone(&s);
        let x = honest_update(s.seed, i, s.params);
        honest.push(tokio::spawn(async move {
            let r = async {
                let mut join = s.join(i)?;
                if honest_drops(i) {
                    join = join.drop_after(Stage::ShareCheck);
                }
                join.run(s.addr, &x).await.map_err(|e| e.to_string())
            }
            .await;
            (r, started.elapsed())
        }));
    }
    // Connection rogues, round robin over the kinds, while the honest clients join.
    let hold = o.hello_timeout * 3;
    for r in 0..o.rogue.max(CONNECTION_KINDS.len()) {
        let (kind, _) = CONNECTION_KINDS[r % CONNECTION_KINDS.len()];
        *sent.entry(kind.to_string()).or_default() += 1;
        let s = Arc::clone(&s);
        let target = member_ids[r % member_ids.len()];
        let extra = EXTRA_IDS + r as u32;
        rogues.push(tokio::spawn(async move {
            let _ = tokio::time::timeout(hold, connection_rogue(&s, kind, target, extra)).await;
        }));
    }
    let mut results = Vec::new();
    for (i, h) in honest.into_iter().enumerate() {
        let (r, at) = h
            .await
            .unwrap_or_else(|e| (Err(e.to_string()), started.elapsed()));
        results.push((i as u32, r, at));
    }
    for r in rogues {
        let _ = r.await;
    }
    (results, sent)
}

/// One rogue connection of `kind` (see the module docs).
async fn connection_rogue(s: &Setup, kind: &str, target: u32, extra: u32) -> Result<(), String> {
    let hello_for = |identity: &ClientIdentity,
                     challenge: &codec::Challenge,
                     binding: &[u8; 32],
                     params: usize,
                     round: u64| {
        Hello::signed(
            identity,
            round,
            false,
            params as u32,
            s.layout(),
            &challenge.nonce,
            binding,
        )
    };
    match kind {
        "silent" => {
            let _socket = TcpStream::connect(s.addr)
                .await
                .map_err(|e| e.to_string())?;
            std::future::pending::<()>().await;
            Ok(())
        }
        "slow-tls" => {
            let mut socket = TcpStream::connect(s.addr)
                .await
                .map_err(|e| e.to_string())?;
            // A handshake record header announcing 512 bytes, and 3 of them.
            socket
                .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01])
                .await
                .map_err(|e| e.to_string())?;
            until_closed(&mut socket).await;
            Ok(())
        }
        "not-tls" => {
            let mut socket = TcpStream::connect(s.addr)
                .await
                .map_err(|e| e.to_string())?;
            let _ = socket
                .write_all(b"GET / HTTP/1.1\r\nHost: secagg\r\n\r\n")
                .await;
            let mut buf = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut socket, &mut buf).await;
            Ok(())
        }
        "huge-prefix" => {
            let (framed, _, _) = s.open().await?;
            let mut stream = framed.into_inner();
            stream
                .write_all(&0x7fff_ffffu32.to_be_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.flush().await;
            let mut buf = [0u8; 64];
            let _ = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await;
            Ok(())
        }
        "garbage-hello" => {
            let (mut framed, _, _) = s.open().await?;
            let mut junk = vec![0u8; 200];
            ChaCha20Rng::seed_from_u64(u64::from(extra)).fill_bytes(&mut junk);
            junk[0] = codec::VERSION;
            junk[1] = codec::tag::HELLO;
            framed
                .send(Bytes::from(junk))
                .await
                .map_err(|e| e.to_string())?;
            let _ = framed.next().await;
            Ok(())
        }
        "foreign-ca" | "self-asserted" | "stolen-cert" | "forged" | "wrong-shape"
        | "wrong-round" | "duplicate" => {
            if kind == "duplicate" {
                // A second connection of an admitted member: wait for its admission.
                s.wait_joined(target).await;
            }
            let (mut framed, challenge, binding) = s.open().await?;
            let key = s.key(extra);
            let (identity, params, round) = match kind {
                "foreign-ca" => {
                    let cert = s.foreign_ca.issue(ClientId(extra), &key.public());
                    (
                        ClientIdentity::enrolled(key, cert).map_err(|e| e.to_string())?,
                        s.params,
                        challenge.round,
                    )
                }
                "self-asserted" => (
                    ClientIdentity::self_asserted(ClientId(extra), key),
                    s.params,
                    challenge.round,
                ),
                "wrong-shape" => (s.identity(extra), s.params + 1, challenge.round),
                "wrong-round" => (s.identity(extra), s.params, challenge.round ^ 1),
                "duplicate" => (s.identity(target), s.params, challenge.round),
                _ => (s.identity(extra), s.params, challenge.round),
            };
            let mut hello = hello_for(&identity, &challenge, &binding, params, round);
            match kind {
                // Honest client 0's certificate under this rogue's own key and id.
                "stolen-cert" => {
                    hello.credential = s.identity(0).credential().clone();
                    hello.signature = identity.sign(
                        HELLO_DOMAIN,
                        &hello.signed_message(&challenge.nonce, &binding),
                    );
                }
                // Honest client 1's id and certificate, signed with another key.
                "forged" => {
                    hello.client = ClientId(1);
                    hello.credential = s.identity(1).credential().clone();
                    hello.signature = identity.sign(
                        HELLO_DOMAIN,
                        &hello.signed_message(&challenge.nonce, &binding),
                    );
                }
                _ => {}
            }
            framed
                .send(Bytes::from(codec::encode_hello(&hello)))
                .await
                .map_err(|e| e.to_string())?;
            let _ = framed.next().await;
            Ok(())
        }
        "replay" => {
            // A valid hello for the first connection, sent on the second.
            let (first, challenge, binding) = s.open().await?;
            let identity = s.identity(extra);
            let hello = hello_for(&identity, &challenge, &binding, s.params, challenge.round);
            drop(first);
            let (mut second, _, _) = s.open().await?;
            second
                .send(Bytes::from(codec::encode_hello(&hello)))
                .await
                .map_err(|e| e.to_string())?;
            let _ = second.next().await;
            Ok(())
        }
        other => Err(format!("unknown rogue kind {other}")),
    }
}

/// Reads (and ignores) until the server closes the connection.
async fn until_closed(socket: &mut TcpStream) {
    let mut buf = [0u8; 256];
    while let Ok(n) = tokio::io::AsyncReadExt::read(socket, &mut buf).await {
        if n == 0 {
            break;
        }
    }
}

/// One rogue member: admitted, then breaks a rule.
async fn member(s: &Setup, id: u32, kind: &str, stall: Duration) -> Result<(), String> {
    let zeros = vec![0.0f32; s.params];
    if kind == "garbage-frame" {
        let (mut framed, challenge, binding) = s.open().await?;
        let identity = s.identity(id);
        let hello = Hello::signed(
            &identity,
            challenge.round,
            false,
            s.params as u32,
            s.layout(),
            &challenge.nonce,
            &binding,
        );
        framed
            .send(Bytes::from(codec::encode_hello(&hello)))
            .await
            .map_err(|e| e.to_string())?;
        let _welcome = framed.next().await;
        framed
            .send(Bytes::from(vec![codec::VERSION, 0x7e, 1, 2, 3]))
            .await
            .map_err(|e| e.to_string())?;
        let _ = framed.next().await;
        return Ok(());
    }
    let mut join = s.join(id)?;
    let how = match kind {
        "tiny-chunks" => Some(Misbehaviour::TinyChunks(1)),
        "stall" => Some(Misbehaviour::StallUpload(stall)),
        "twice" => Some(Misbehaviour::UploadTwice),
        _ => None,
    };
    if let Some(how) = how {
        join = join.misbehave(how);
    }
    join.run(s.addr, &zeros)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[allow(clippy::too_many_arguments)]
fn report(
    o: &SoakOptions,
    n: usize,
    p: &plan::Plan,
    wall: Duration,
    honest: &[HonestResult],
    sent: &BTreeMap<String, usize>,
    status: Option<i32>,
    log: &str,
    output: &Path,
    summary_path: &Path,
) -> Result<SoakReport, String> {
    let mut failures = Vec::new();
    let summary: Value = std::fs::read_to_string(summary_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    if status != Some(0) {
        failures.push(format!("the server exited with {status:?}:\n{log}"));
    }
    if summary["status"] != "completed" {
        failures.push(format!("the round did not complete: {}", summary["reason"]));
    }
    // Every honest client finished as it was told to.
    let mut honest_ok = 0;
    let honest_done = honest.iter().map(|h| h.2).max().unwrap_or_default();
    for (i, r, _) in honest {
        let fine = match r {
            Ok(ClientOutcome::Dropped { .. }) => honest_drops(*i),
            Ok(ClientOutcome::Completed { .. }) => !honest_drops(*i),
            Err(_) => false,
        };
        if fine {
            honest_ok += 1;
        } else {
            failures.push(format!("honest client {i}: {r:?}"));
        }
    }
    if honest.len() != o.honest {
        failures.push(format!(
            "{} of {} honest clients reported (the soak timed out)",
            honest.len(),
            o.honest
        ));
    }
    // The sum is the honest survivors' (members sent zeros).
    let survivors: Vec<u32> = (0..o.honest as u32).filter(|&i| !honest_drops(i)).collect();
    let (max_error, bound) = match read_model(output) {
        Ok((_, sum)) if sum.len() == o.params => {
            let bound = 2.0 / 65535.0 * n as f64 + 1e-3;
            let mut want = vec![0f64; o.params];
            for &i in &survivors {
                for (w, x) in want.iter_mut().zip(honest_update(o.seed, i, o.params)) {
                    *w += f64::from(x.clamp(-1.0, 1.0));
                }
            }
            let err = sum
                .iter()
                .zip(&want)
                .map(|(s, w)| (f64::from(*s) - w).abs())
                .fold(0.0, f64::max);
            (err, bound)
        }
        Ok((_, sum)) => {
            failures.push(format!(
                "the sum has {} values, not {}",
                sum.len(),
                o.params
            ));
            (f64::INFINITY, 0.0)
        }
        Err(e) => {
            failures.push(format!("no sum: {e}"));
            (f64::INFINITY, 0.0)
        }
    };
    if max_error > bound {
        failures.push(format!(
            "the sum is off by {max_error:.3e} (bound {bound:.3e})"
        ));
    }
    let included: Vec<u64> = summary["included"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    for i in &survivors {
        if !included.contains(&u64::from(*i)) {
            failures.push(format!("honest survivor {i} is not in the sum"));
        }
    }
    // Every rogue kind was refused or cut off for its reason.
    let refused = &summary["refused_by_reason"];
    // A round shorter than the hello timeout ends before a silent connection can time out;
    // it is then closed unrefused, and the timeout kinds are not observed.
    let elapsed = summary["elapsed_s"].as_f64().unwrap_or(0.0);
    let timeouts_observable = elapsed > o.hello_timeout.as_secs_f64();
    for (kind, reason) in CONNECTION_KINDS.iter().chain(MEMBER_KINDS.iter()) {
        if *reason == "hello-timeout" && !timeouts_observable {
            continue;
        }
        if refused[*reason].as_u64().unwrap_or(0) == 0 {
            failures.push(format!(
                "rogue kind {kind}: no refusal for {reason} in the summary"
            ));
        }
    }
    // And every connection that was not an honest client's was refused exactly once (a rogue
    // the loaded client process could not serve in time counts as a hello timeout).
    let refused_total: u64 = refused
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let connections = summary["connections"].as_u64().unwrap_or(0);
    if timeouts_observable && refused_total + o.honest as u64 != connections {
        failures.push(format!(
            "{connections} connections, {} honest, but {refused_total} refusals",
            o.honest
        ));
    }
    let deadline_s = o.deadline.as_secs_f64();
    let json = json!({
        "honest": o.honest,
        "rogue_connections": sent.iter().filter(|(k, _)| CONNECTION_KINDS.iter().any(|(c, _)| c == k)).map(|(_, v)| v).sum::<usize>(),
        "rogue_members": n - o.honest,
        "clients": n,
        "neighbors": p.neighbors,
        "threshold": p.threshold,
        "params": o.params,
        "stage_deadline_s": deadline_s,
        "wall_s": wall.as_secs_f64(),
        "honest_done_s": honest_done.as_secs_f64(),
        "honest_finished_as_told": honest_ok,
        "sum_max_error": max_error,
        "sum_bound": bound,
        "rogue_sent_by_kind": sent,
        "refused_by_reason": refused,
        "hello_timeouts_observable": timeouts_observable,
        "server_peak_rss_bytes": summary["peak_rss_bytes"],
        "server_cpu_s": summary["cpu_s"],
        "server_elapsed_s": summary["elapsed_s"],
        "server_connections": summary["connections"],
        "server_peak_pending": summary["peak_pending"],
        "server_status": summary["status"],
        "failures": failures,
    });
    Ok(SoakReport {
        json,
        passed: failures.is_empty(),
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::joined_id;

    #[test]
    fn the_join_log_line_names_its_client() {
        let line = "[2026-12-02T21:00:00.123Z INFO  secagg_host::transport::server::driver] client 4711 joined (connection 12)";
        assert_eq!(joined_id(line), Some(4711));
        assert_eq!(joined_id("client 3 disconnected"), None);
        assert_eq!(joined_id("client x joined (connection 1)"), None);
    }
}
