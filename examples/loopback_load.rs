//! Load figure: one round of many clients over loopback TCP (TLS 1.3, enrolled clients), with
//! the server in a process of its own so that its peak memory is measured alone.
//!
//! ```sh
//! cargo run --release --example loopback_load -- --clients 1000 --params 100000 --neighbors 21 --dropout 0.1
//! ```
//!
//! The parent starts this same program as the server (`--role server`), then runs every client
//! as a tokio task; ⌊dropout·n⌋ clients leave after their share check (before their masked
//! input, the costliest case for the server). It prints wall time, the server's peak RSS, bytes
//! moved and the server's unmasking time, and checks the written sum against the plaintext.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg::engine::{BackendChoice, Engine};
use secagg::host::codec;
use secagg::host::config::RoundConfig;
use secagg::host::identity::Overwrite;
use secagg::host::plan::threshold_for;
use secagg::host::transport::{Join, ServeOptions, serve, tls};
use secagg::host::{ClientId, Stage};
use secagg::model::{ModelFormat, ModelLayout, TensorSpec, read_model, write_model};

struct Args {
    role_server: bool,
    port: u16,
    clients: usize,
    params: usize,
    neighbors: usize,
    dropout: f64,
    backend: String,
    output: PathBuf,
    tls_dir: PathBuf,
}

fn args() -> Args {
    let mut a = Args {
        role_server: false,
        port: 7399,
        clients: 1000,
        params: 100_000,
        neighbors: 21,
        dropout: 0.1,
        backend: "cpu".into(),
        output: std::env::temp_dir().join("secagg-load-sum.npy"),
        tls_dir: std::env::temp_dir().join(format!("secagg-load-tls-{}", std::process::id())),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--role" => a.role_server = val == "server",
            "--port" => a.port = val.parse().unwrap(),
            "--clients" => a.clients = val.parse().unwrap(),
            "--params" => a.params = val.parse().unwrap(),
            "--neighbors" => a.neighbors = val.parse().unwrap(),
            "--dropout" => a.dropout = val.parse().unwrap(),
            "--backend" => a.backend = val,
            "--output" => a.output = PathBuf::from(val),
            "--tls-dir" => a.tls_dir = PathBuf::from(val),
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

fn config(a: &Args) -> RoundConfig {
    let t = threshold_for(a.clients, a.neighbors, a.dropout, 0.05).threshold;
    RoundConfig::builder(a.clients, a.params)
        .neighbors(a.neighbors)
        .threshold(t)
        .stage_timeout(Duration::from_secs(60))
        .round_id(7)
        .build()
        .unwrap()
}

fn update(id: u32, m: usize) -> Vec<f32> {
    let mut r = ChaCha20Rng::seed_from_u64(u64::from(id) + 1);
    (0..m)
        .map(|_| (r.next_u32() >> 8) as f32 / (1 << 24) as f32 * 2.2 - 1.1)
        .collect()
}

fn layout(m: usize) -> ModelLayout {
    ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape: vec![m],
        }],
    }
}

fn run_server(a: &Args) {
    let config = config(a);
    let engine = Engine::choose(a.backend.parse::<BackendChoice>().unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", a.port))
            .await
            .unwrap();
        println!("listening");
        let tls = tls::server_config(&a.tls_dir.join("server.pem"), &a.tls_dir.join("server.key"))
            .unwrap();
        let options = ServeOptions {
            ca: Some(load_ca().public()),
            tls: Some(tls),
            ..ServeOptions::default()
        };
        serve(listener, config.clone(), engine, options)
            .await
            .unwrap()
    });
    let out = report.outcome.as_ref().expect("round completed");
    write_model(&a.output, &layout(a.params), &out.dequantized_sum(&config)).unwrap();
    let unmask = report
        .stages
        .iter()
        .find(|s| s.stage == Stage::Unmasking)
        .map(|s| (s.ended - s.started).as_secs_f64())
        .unwrap_or(0.0);
    println!(
        "{{\"server_elapsed_s\": {:.3}, \"server_cpu_s\": {:.2}, \"server_peak_rss\": {}, \"bytes_received\": {}, \"bytes_sent\": {}, \"unmask_stage_s\": {:.3}, \"mask_terms\": {}, \"included\": {}}}",
        report.elapsed.as_secs_f64(),
        secagg::process::process_cpu_time()
            .unwrap_or_default()
            .as_secs_f64(),
        secagg::process::peak_rss_bytes().unwrap_or(0),
        report.bytes_received,
        report.bytes_sent,
        unmask,
        out.mask_terms,
        out.included.len()
    );
}

/// The deployment CA of this load run: both processes derive it from one seed, as enrolled
/// deployments share their CA key file.
fn load_ca() -> secagg::host::identity::CaKey {
    secagg::host::sim::sim_ca(0x10ad)
}

fn main() {
    let a = args();
    if a.role_server {
        run_server(&a);
        return;
    }
    // A throwaway TLS certificate for the server process.
    let pki = tls::TestPki::generate(&["127.0.0.1".into()], 1).unwrap();
    pki.save(&a.tls_dir, Overwrite::Replace).unwrap();
    let connector = pki.connector().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut server = Command::new(exe)
        .args([
            "--role",
            "server",
            "--port",
            &a.port.to_string(),
            "--clients",
            &a.clients.to_string(),
            "--params",
            &a.params.to_string(),
            "--neighbors",
            &a.neighbors.to_string(),
            "--dropout",
            &a.dropout.to_string(),
            "--backend",
            &a.backend,
            "--output",
            a.output.to_str().unwrap(),
            "--tls-dir",
            a.tls_dir.to_str().unwrap(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "listening");

    let n = a.clients as u32;
    let dropped = (a.clients as f64 * a.dropout).floor() as u32;
    // Inputs are made before the clock starts: reading a model file is not the protocol.
    let inputs: Vec<Vec<f32>> = (0..n).map(|i| update(i, a.params)).collect();
    let layout_digest = codec::layout_digest(&layout(a.params).to_bytes());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    rt.block_on(async {
        let mut tasks = Vec::new();
        for (i, x) in inputs.iter().cloned().enumerate() {
            let i = i as u32;
            // Every tenth client (by id) leaves before its masked input.
            let leaves = i % 10 == 9 && i / 10 < dropped;
            let server_name = tls::server_name("127.0.0.1").unwrap();
            let connector = connector.clone();
            let addr = format!("127.0.0.1:{}", a.port);
            let ca = load_ca();
            tasks.push(tokio::spawn(async move {
                let mut rng = secagg::host::RoundRng::seed_from_u64(u64::from(i) ^ 0xfeed);
                let key = secagg::host::identity::IdentityKey::generate(&mut rng);
                let cert = ca.issue(ClientId(i), &key.public());
                let identity = secagg::host::ClientIdentity::enrolled(key, cert).unwrap();
                // The load run's k is fixed on the command line: the policy checks every
                // certificate, signature and list, but sets no floor on (n, k, t).
                let policy = secagg::host::ClientPolicy {
                    trust: secagg::host::Trust::Enrolled(ca.public()),
                    ..secagg::host::sim::parameter_free_policy()
                };
                let mut join = Join::new(identity, policy, layout_digest)
                    .tls(connector, server_name)
                    .rng(rng);
                if leaves {
                    join = join.drop_after(Stage::ShareCheck);
                }
                join.run(addr, &x).await
            }));
        }
        for t in tasks {
            t.await.unwrap().unwrap();
        }
    });
    let wall = start.elapsed();
    let summary = lines.next().unwrap().unwrap();
    server.wait().unwrap();
    let _ = std::fs::remove_dir_all(&a.tls_dir);

    // The check: the written sum against the clipped plaintext sum of the included clients.
    let (_, sum) = read_model(&a.output).unwrap();
    let included: Vec<u32> = (0..n)
        .filter(|i| !(i % 10 == 9 && i / 10 < dropped))
        .collect();
    let bound = 2.0 / 65535.0 * included.len() as f64 + 1e-2;
    let mut worst = 0.0f64;
    for (j, s) in sum.iter().enumerate() {
        let want: f64 = included
            .iter()
            .map(|&i| f64::from(inputs[i as usize][j].clamp(-1.0, 1.0)))
            .sum();
        worst = worst.max((f64::from(*s) - want).abs());
    }
    println!(
        "{} clients x {} params, k = {}, {} dropped before masked input, over loopback:",
        a.clients, a.params, a.neighbors, dropped
    );
    println!(
        "  wall time (first connection to last client done): {:.2} s",
        wall.as_secs_f64()
    );
    println!("  server: {summary}");
    println!(
        "  check: max |sum - plaintext| = {worst:.3e} (bound {bound:.3e}): {}",
        if worst <= bound { "OK" } else { "FAILED" }
    );
    assert!(worst <= bound);
}
