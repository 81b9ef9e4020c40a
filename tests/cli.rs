//! The command-line contract, tested from outside: a `secagg server` process and several
//! `secagg client` processes over loopback, clients enrolled through `secagg ca new` and
//! `secagg enroll`, with .npy and .safetensors files in and out, dropouts, weights, an abort
//! below threshold, a TOML config file, a client enrolled by another CA, a client whose policy
//! refuses the round, the server's refusal of insecure parameters, `--help`, and `secagg
//! simulate` on a sharded server engine.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::ffi::OsStr;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg::engine::testing;
use secagg::model::{ModelFormat, ModelLayout, TensorSpec, read_model, write_model};

mod support;
use support::{BIN, CliDeployment};

fn dir(test: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("secagg-cli-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn values(seed: u64, i: u32, n: usize) -> Vec<f32> {
    let mut r = ChaCha20Rng::seed_from_u64(seed ^ (u64::from(i) << 40));
    (0..n)
        .map(|_| (r.next_u32() >> 8) as f32 / (1 << 24) as f32 * 2.6 - 1.3)
        .collect()
}

fn server(args: &[&str]) -> Child {
    Command::new(BIN)
        .arg("server")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn client<S: AsRef<OsStr>>(port: u16, id: u32, input: &Path, extra: &[S]) -> Child {
    Command::new(BIN)
        .args([
            "client",
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--id",
            &id.to_string(),
        ])
        .arg("--input")
        .arg(input)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Client `id`'s identity flags, a policy that admits these small rounds (T = 3 instead of
/// the default 10, and no colluders among a handful of enrolled clients instead of the
/// default 5; the other floors stay the defaults unless `policy` overrides them), and
/// `extra`.
fn enrolled(dep: &CliDeployment, id: u32, policy: &[&str], extra: &[&str]) -> Vec<String> {
    let mut args = dep.client_args(id);
    args.extend(dep.client_tls_args());
    if !policy.contains(&"--min-cohort") {
        args.extend(["--min-cohort", "3"].map(String::from));
    }
    if !policy.contains(&"--colluders") {
        args.extend(["--colluders", "0"].map(String::from));
    }
    args.extend(policy.iter().chain(extra).map(|s| s.to_string()));
    args
}

fn finish(c: Child, what: &str) -> Output {
    let out = c.wait_with_output().unwrap();
    eprintln!(
        "--- {what}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn summary(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Quantization bound for the server's defaults (q = 2^16 on [-1, 1]) and total weight w.
fn bound(total_weight: f64) -> f64 {
    2.0 / 65535.0 * total_weight + 1e-4
}

#[test]
fn a_server_and_four_client_processes_with_npy_files() {
    let seed = testing::test_seed("cli::four_clients_npy");
    let d = dir("npy");
    let dep = CliDeployment::create(&d.join("pki"), 0..4);
    let layout = ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape: vec![3, 7],
        }],
    };
    let inputs: Vec<PathBuf> = (0..4u32)
        .map(|i| {
            let p = d.join(format!("update{i}.npy"));
            write_model(&p, &layout, &values(seed, i, 21)).unwrap();
            p
        })
        .collect();
    let port = free_port();
    let out = d.join("sum.npy");
    let sum_json = d.join("summary.json");
    let srv = server(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--clients",
        "4",
        "--threshold",
        "3",
        "--deadline-ms",
        "10000",
        "--backend",
        "cpu",
        "--output",
        out.to_str().unwrap(),
        "--summary",
        sum_json.to_str().unwrap(),
        "--ca",
        dep.ca_pub().to_str().unwrap(),
        // The global model fixes the round's layout (any of the updates has it).
        "--model",
        inputs[0].to_str().unwrap(),
        "--tls-cert",
        &dep.server_tls_args()[1],
        "--tls-key",
        &dep.server_tls_args()[3],
    ]);
    let clients: Vec<Child> = (0..4u32)
        .map(|i| {
            // 2 leaves after checking its shares: it misses the masked input.
            let extra: &[&str] = if i == 2 {
                &["--drop-after", "share-check"]
            } else {
                &[]
            };
            client(port, i, &inputs[i as usize], &enrolled(&dep, i, &[], extra))
        })
        .collect();
    for (i, c) in clients.into_iter().enumerate() {
        assert!(
            finish(c, &format!("client {i}")).status.success(),
            "client {i} failed"
        );
    }
    assert!(finish(srv, "server").status.success());
    let s = summary(&sum_json);
    assert_eq!(s["status"], "completed");
    assert_eq!(s["included"], serde_json::json!([0, 1, 3]));
    assert_eq!(s["dropped"][0]["id"], 2);
    assert_eq!(s["dropped"][0]["stage"], "masked-input");
    assert!(s["bytes_received"].as_u64().unwrap() > 0);
    // join, advertise-keys, share-keys, share-check, masked-input, consistency, unmasking.
    assert_eq!(s["stages"].as_array().unwrap().len(), 7);
    let (got_layout, got) = read_model(&out).unwrap();
    assert_eq!(got_layout.tensors[0].shape, vec![3, 7]);
    for j in 0..21 {
        let want: f64 = [0u32, 1, 3]
            .iter()
            .map(|&i| f64::from(values(seed, i, 21)[j].clamp(-1.0, 1.0)))
            .sum();
        assert!(
            (f64::from(got[j]) - want).abs() <= bound(3.0),
            "element {j}: {} vs {want}",
            got[j]
        );
    }
}

#[test]
fn safetensors_with_weights_and_a_config_file() {
    let seed = testing::test_seed("cli::safetensors_weights");
    let d = dir("st");
    let dep = CliDeployment::create(&d.join("pki"), 10..13);
    let layout = ModelLayout {
        format: ModelFormat::Safetensors,
        tensors: vec![
            TensorSpec {
                name: "layer.bias".into(),
                shape: vec![4],
            },
            TensorSpec {
                name: "layer.weight".into(),
                shape: vec![2, 3],
            },
        ],
    };
    let inputs: Vec<PathBuf> = (0..3u32)
        .map(|i| {
            let p = d.join(format!("u{i}.safetensors"));
            write_model(&p, &layout, &values(seed, i, 10)).unwrap();
            p
        })
        .collect();
    let port = free_port();
    let out = d.join("sum.safetensors");
    let sum_json = d.join("summary.json");
    let config = d.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:{port}\"\nclients = 3\nthreshold = 2\ndeadline-ms = 10000\nbackend = \"cpu\"\noutput = \"{}\"\nsummary = \"{}\"\nca = \"{}\"\nadversary = \"curious\"\nmodel = \"{}\"\ntls-cert = \"{}\"\ntls-key = \"{}\"\n",
            out.display(),
            sum_json.display(),
            dep.ca_pub().display(),
            inputs[0].display(),
            dep.server_tls_args()[1],
            dep.server_tls_args()[3],
        ),
    )
    .unwrap();
    let srv = server(&["--config", config.to_str().unwrap()]);
    let weights = [1u32, 2, 3];
    // Three clients, t = 2: secure against a curious server only, which these clients accept.
    let clients: Vec<Child> = (0..3u32)
        .map(|i| {
            let weight = weights[i as usize].to_string();
            let args = enrolled(
                &dep,
                10 + i,
                &["--adversary", "curious"],
                &["--weight", &weight],
            );
            client(port, 10 + i, &inputs[i as usize], &args)
        })
        .collect();
    for c in clients {
        assert!(finish(c, "client").status.success());
    }
    assert!(finish(srv, "server").status.success());
    let (got_layout, got) = read_model(&out).unwrap();
    assert_eq!(got_layout.tensors, layout.tensors);
    let s = summary(&sum_json);
    assert_eq!(s["total_weight"], 6);
    let mean = s["weighted_mean"].as_array().unwrap();
    assert_eq!(mean.len(), 10);
    for j in 0..10 {
        let weighted: f64 = (0..3u32)
            .map(|i| {
                f64::from(values(seed, i, 10)[j].clamp(-1.0, 1.0)) * f64::from(weights[i as usize])
            })
            .sum();
        assert!(
            (f64::from(got[j]) - weighted).abs() <= bound(6.0),
            "sum {j}"
        );
        assert!(
            (mean[j].as_f64().unwrap() - weighted / 6.0).abs() <= bound(6.0) / 6.0,
            "mean {j}"
        );
    }
}

#[test]
fn below_threshold_the_server_aborts_and_writes_nothing() {
    let seed = testing::test_seed("cli::abort");
    let d = dir("abort");
    let dep = CliDeployment::create(&d.join("pki"), 0..4);
    let layout = ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape: vec![5],
        }],
    };
    let port = free_port();
    let out = d.join("sum.npy");
    let sum_json = d.join("summary.json");
    let srv = server(&[
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--clients",
        "4",
        "--threshold",
        "3",
        "--deadline-ms",
        "3000",
        "--backend",
        "cpu",
        "--output",
        out.to_str().unwrap(),
        "--summary",
        sum_json.to_str().unwrap(),
        "--ca",
        dep.ca_pub().to_str().unwrap(),
        "--params",
        "5",
        "--tls-cert",
        &dep.server_tls_args()[1],
        "--tls-key",
        &dep.server_tls_args()[3],
    ]);
    // Four clients, T = t = 3; two leave after advertising keys, so two remain.
    let clients: Vec<Child> = (0..4u32)
        .map(|i| {
            let p = d.join(format!("u{i}.npy"));
            write_model(&p, &layout, &values(seed, i, 5)).unwrap();
            let extra: &[&str] = if i < 2 {
                &["--drop-after", "advertise-keys"]
            } else {
                &[]
            };
            client(port, i, &p, &enrolled(&dep, i, &[], extra))
        })
        .collect();
    let codes: Vec<Option<i32>> = clients
        .into_iter()
        .map(|c| finish(c, "client").status.code())
        .collect();
    let s_out = finish(srv, "server");
    assert_eq!(s_out.status.code(), Some(3), "server must exit 3 on abort");
    assert!(String::from_utf8_lossy(&s_out.stderr).contains("aborted"));
    assert!(!out.exists(), "an aborted round wrote an output file");
    assert_eq!(summary(&sum_json)["status"], "aborted");
    assert_eq!(codes[0], Some(0), "a client told to drop exits 0");
    assert_eq!(codes[1], Some(0), "a client told to drop exits 0");
    assert_eq!(codes[2], Some(3));
    assert_eq!(codes[3], Some(3));
}

/// Writes client `i`'s update as a flat .npy of `len` values for each id in `ids`.
fn npy_updates(d: &Path, seed: u64, ids: std::ops::Range<u32>, len: usize) -> Vec<PathBuf> {
    let layout = ModelLayout {
        format: ModelFormat::Npy,
        tensors: vec![TensorSpec {
            name: String::new(),
            shape: vec![len],
        }],
    };
    ids.map(|i| {
        let p = d.join(format!("u{i}.npy"));
        write_model(&p, &layout, &values(seed, i, len)).unwrap();
        p
    })
    .collect()
}

/// A server on `port` for `n` clients and threshold `t` summing 6 parameters, with `dep`'s
/// CA and TLS certificate, writing into `d`, with `extra` flags.
fn small_server(
    port: u16,
    (n, t): (usize, usize),
    deadline_ms: u64,
    d: &Path,
    dep: &CliDeployment,
    extra: &[&str],
) -> Child {
    let mut args: Vec<String> = [
        "--listen",
        &format!("127.0.0.1:{port}"),
        "--clients",
        &n.to_string(),
        "--threshold",
        &t.to_string(),
        "--deadline-ms",
        &deadline_ms.to_string(),
        "--backend",
        "cpu",
        "--output",
        d.join("sum.npy").to_str().unwrap(),
        "--summary",
        d.join("summary.json").to_str().unwrap(),
        "--params",
        "6",
        "--ca",
        dep.ca_pub().to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(dep.server_tls_args());
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    server(&args)
}

/// A client holding a certificate from another CA (and trusting that CA) is refused by the
/// server at its hello, with the reason; the others complete. Given the deployment's CA with
/// that certificate, a client refuses to start at all.
#[test]
fn a_client_enrolled_by_another_ca_is_refused() {
    let seed = testing::test_seed("cli::another_ca");
    let d = dir("another-ca");
    let dep = CliDeployment::create(&d.join("pki"), 0..5);
    let other = CliDeployment::create(&d.join("other-pki"), 5..6);
    let inputs = npy_updates(&d, seed, 0..6, 6);
    let port = free_port();
    let ca = dep.ca_pub();
    // Six clients, t = 4: secure against the semi-malicious server the clients' default
    // policy assumes, and five maskers still have t partners each.
    let srv = small_server(port, (6, 4), 10_000, &d, &dep, &[]);
    let clients: Vec<Child> = (0..5u32)
        .map(|i| client(port, i, &inputs[i as usize], &enrolled(&dep, i, &[], &[])))
        .collect();
    // Enrolled by the other CA, but it trusts this server's TLS certificate.
    let mut foreign_args = other.client_args(5);
    foreign_args.extend(dep.client_tls_args());
    foreign_args.extend(["--min-cohort", "3", "--colluders", "0"].map(String::from));
    let foreign = client(port, 5, &inputs[5], &foreign_args);
    for (i, c) in clients.into_iter().enumerate() {
        assert!(
            finish(c, &format!("client {i}")).status.success(),
            "client {i} failed"
        );
    }
    let foreign_out = finish(foreign, "foreign client");
    assert!(!foreign_out.status.success());
    let err = String::from_utf8_lossy(&foreign_out.stderr);
    assert!(err.contains("not issued by this round's CA"), "{err}");
    assert!(finish(srv, "server").status.success());
    let s = summary(&d.join("summary.json"));
    assert_eq!(s["status"], "completed");
    assert_eq!(s["included"], serde_json::json!([0, 1, 2, 3, 4]));
    assert_eq!(s["refused_by_reason"]["not-enrolled"], 1);
    // It never joined: the round's own records do not know it.
    assert!(
        s["dropped"].as_array().unwrap().is_empty(),
        "{}",
        s["dropped"]
    );

    // The other CA's certificate with this deployment's ca.pub: refused before connecting.
    let mut args = foreign_args.clone();
    assert_eq!(args[0], "--ca");
    args[1] = ca.display().to_string();
    let out = finish(
        client(free_port(), 5, &inputs[5], &args),
        "mismatched client",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("client-5.cert: issued by CA") && err.contains("this deployment's CA"),
        "{err}"
    );
}

/// Waits for every client and the server to succeed; the summary, which says completed.
fn completed(clients: Vec<Child>, srv: Child, summary_path: &Path) -> serde_json::Value {
    let ok: Vec<bool> = clients
        .into_iter()
        .enumerate()
        .map(|(i, c)| finish(c, &format!("client {i}")).status.success())
        .collect();
    assert!(
        finish(srv, "server").status.success() && ok.iter().all(|&o| o),
        "{ok:?}"
    );
    let s = summary(summary_path);
    assert_eq!(s["status"], "completed", "{s}");
    s
}

/// A DP round over TCP: the server plans the noise for k − t + 2 = 3 honest inputs, six client
/// processes clip, rotate, round and noise their updates under the masks, and the summary
/// records the round's privacy event; the written sum is Σ clip(x) within the noise.
#[test]
fn a_dp_round_records_its_privacy_event_in_the_summary() {
    let s = dp_round_over_tcp("dp_round", &[]);
    assert!(s["bits"].as_u64().unwrap() <= 32, "{s}");
}

/// The same at `--bits 40`: the clients encode 64-bit elements, and the server decodes the
/// wide sum it writes.
#[test]
fn a_dp_round_at_40_bits_writes_the_noisy_sum() {
    let s = dp_round_over_tcp("dp_round_40", &["--bits", "40"]);
    assert_eq!(s["bits"], 40, "{s}");
}

/// The body of the DP-round tests, with `extra` server arguments; returns the summary.
fn dp_round_over_tcp(name: &str, extra: &[&str]) -> serde_json::Value {
    let seed = testing::test_seed(&format!("cli::{name}"));
    let d = dir(&name.replace('_', "-"));
    let dep = CliDeployment::create(&d.join("pki"), 0..6);
    let inputs = npy_updates(&d, seed, 0..6, 6);
    let port = free_port();
    let mut args = vec![
        "--epsilon",
        "1",
        "--delta",
        "1e-5",
        "--rounds",
        "4",
        "--colluders",
        "0",
    ];
    args.extend_from_slice(extra);
    let srv = small_server(port, (6, 4), 10_000, &d, &dep, &args);
    let clients: Vec<Child> = (0..6u32)
        .map(|i| client(port, i, &inputs[i as usize], &enrolled(&dep, i, &[], &[])))
        .collect();
    let s = completed(clients, srv, &d.join("summary.json"));
    let p = &s["privacy"];
    assert_eq!(p["released"], true);
    assert_eq!(p["mechanism"], "skellam");
    // T − c = 4, but a semi-malicious server can isolate an input with k − t + 1 = 2 other
    // honest ones: the noise rests on 3.
    assert_eq!(p["honest_survivors"], 3);
    assert_eq!(p["inputs_in_sum"], 6);
    assert_eq!(p["planned_rounds"], 4);
    let planned = p["planned_epsilon"].as_f64().unwrap();
    let this_round = p["epsilon_this_round"].as_f64().unwrap();
    assert!(planned <= 1.0 && this_round < planned, "{p}");
    assert!(!p["rdp"].as_array().unwrap().is_empty());
    // Every input's norm is above c = 1: each is clipped to it.
    let (_, got) = read_model(&d.join("sum.npy")).unwrap();
    let noise = p["noise_per_client"].as_f64().unwrap();
    let scale = p["scale"].as_f64().unwrap();
    let sd = (6.0 * noise + 6.0 / 4.0).sqrt() / scale;
    for j in 0..6 {
        let want: f64 = (0..6u32)
            .map(|i| {
                let x = values(seed, i, 6);
                let norm = x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>().sqrt();
                f64::from(x[j]) / norm.max(1.0)
            })
            .sum();
        assert!(
            (f64::from(got[j]) - want).abs() < 6.0 * sd,
            "element {j}: {} vs {want} (σ {sd}, seed {seed})",
            got[j]
        );
    }
    s
}

/// A client whose policy the announced round fails (here its minimum cohort is above the
/// round's size) exits 1 naming the failed bound, without joining; the others complete.
#[test]
fn a_client_whose_policy_the_round_fails_exits_naming_the_bound() {
    let seed = testing::test_seed("cli::policy_refusal");
    let d = dir("policy");
    let dep = CliDeployment::create(&d.join("pki"), 0..6);
    let inputs = npy_updates(&d, seed, 0..6, 6);
    let port = free_port();
    // The refuser never joins, so the join stage runs to its deadline.
    let srv = small_server(port, (6, 4), 3_000, &d, &dep, &[]);
    let clients: Vec<Child> = (0..5u32)
        .map(|i| client(port, i, &inputs[i as usize], &enrolled(&dep, i, &[], &[])))
        .collect();
    let refuser = client(
        port,
        5,
        &inputs[5],
        &enrolled(&dep, 5, &["--min-cohort", "7"], &[]),
    );
    let out = finish(refuser, "refusing client");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the round") && err.contains("minimum of 7 honest members"),
        "{err}"
    );
    for (i, c) in clients.into_iter().enumerate() {
        assert!(
            finish(c, &format!("client {i}")).status.success(),
            "client {i} failed"
        );
    }
    assert!(finish(srv, "server").status.success());
    let s = summary(&d.join("summary.json"));
    assert_eq!(s["included"], serde_json::json!([0, 1, 2, 3, 4]));
    assert_eq!(s["dropped"][0]["id"], 5);
    assert_eq!(s["dropped"][0]["stage"], "join");
}

/// The server refuses to start a round whose threshold is insecure against the
/// semi-malicious server (exit 2, naming the bound and the way out); with --insecure-params
/// it starts, clients that only assume a curious server complete it, and a client with the
/// default semi-malicious policy still refuses it.
#[test]
fn the_server_refuses_insecure_parameters_unless_told() {
    let seed = testing::test_seed("cli::insecure_params");
    let d = dir("insecure");
    let dep = CliDeployment::create(&d.join("pki"), 0..4);
    let inputs = npy_updates(&d, seed, 0..4, 6);
    // Four clients, t = 2 of k = 3: two survivor lists need 2t - k - 1 = 0 corrupted
    // neighbours.
    let args = ["--adversary", "semi-malicious"];
    let out = finish(
        small_server(free_port(), (4, 2), 3_000, &d, &dep, &args),
        "server",
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to start an insecure round")
            && err.contains("semi-malicious")
            && err.contains("--insecure-params"),
        "{err}"
    );

    let port = free_port();
    let insecure = ["--adversary", "semi-malicious", "--insecure-params"];
    let srv = small_server(port, (4, 2), 3_000, &d, &dep, &insecure);
    let clients: Vec<Child> = (0..3u32)
        .map(|i| {
            let args = enrolled(&dep, i, &["--adversary", "curious"], &[]);
            client(port, i, &inputs[i as usize], &args)
        })
        .collect();
    let refuser = client(port, 3, &inputs[3], &enrolled(&dep, 3, &[], &[]));
    let out = finish(refuser, "semi-malicious client");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refused the round") && err.contains("semi-malicious"),
        "{err}"
    );
    for (i, c) in clients.into_iter().enumerate() {
        assert!(
            finish(c, &format!("client {i}")).status.success(),
            "client {i} failed"
        );
    }
    let out = finish(srv, "server");
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("insecure round parameters"), "{err}");
    let s = summary(&d.join("summary.json"));
    assert_eq!(s["status"], "completed");
    assert_eq!(s["included"], serde_json::json!([0, 1, 2]));
}

#[test]
fn help_documents_every_flag_and_bad_flags_are_refused() {
    let help = Command::new(BIN)
        .args(["server", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--listen",
        "--clients",
        "--threshold",
        "--neighbors",
        "--bits",
        "--clip",
        "--deadline-ms",
        "--backend",
        "--output",
        "--summary",
        "--config",
        "--ca",
        "--adversary",
        "--corrupt",
        "--dropout",
        "--insecure-params",
        "--context",
        "--model",
        "--params",
        "--tls-cert",
        "--tls-key",
        "--insecure-plaintext",
        "--hello-timeout-ms",
        "--max-pending",
        "--upload-deadline-ms",
    ] {
        assert!(text.contains(flag), "server --help lacks {flag}");
    }
    assert!(text.contains("default: 30000"), "defaults are documented");
    let help = Command::new(BIN)
        .args(["client", "--help"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&help.stdout);
    for flag in [
        "--connect",
        "--id",
        "--input",
        "--weight",
        "--drop-after",
        "--config",
        "--ca",
        "--key",
        "--cert",
        "--adversary",
        "--min-cohort",
        "--security-bits",
        "--allow-prg",
        "--allow-bits",
        "--tls-ca",
        "--tls-name",
        "--insecure-plaintext",
    ] {
        assert!(text.contains(flag), "client --help lacks {flag}");
    }
    // TLS is not optional by omission: both sides refuse to start without it unless told.
    let no_tls = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:1",
            "--clients",
            "3",
            "--threshold",
            "2",
            "--params",
            "4",
            "--adversary",
            "curious",
            "--output",
            "sum.npy",
        ])
        .output()
        .unwrap();
    assert_eq!(no_tls.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_tls.stderr).contains("--insecure-plaintext"));
    let no_shape = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:1",
            "--clients",
            "3",
            "--threshold",
            "2",
            "--adversary",
            "curious",
            "--output",
            "sum.npy",
            "--insecure-plaintext",
        ])
        .output()
        .unwrap();
    assert_eq!(no_shape.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_shape.stderr).contains("--model FILE"));
    let no_tls = Command::new(BIN)
        .args([
            "client",
            "--connect",
            "localhost:1",
            "--id",
            "1",
            "--input",
            "u.npy",
            "--adversary",
            "curious",
        ])
        .output()
        .unwrap();
    assert_eq!(no_tls.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_tls.stderr).contains("--tls-ca"));
    let bad = Command::new(BIN)
        .args([
            "server",
            "--listen",
            "127.0.0.1:1",
            "--clients",
            "3",
            "--threshold",
            "2",
            "--output",
            "sum.csv",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains(".npy or .safetensors"));
    let missing = Command::new(BIN)
        .args(["server", "--clients", "3"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--listen is required"));
}

/// `secagg simulate` with the server's accumulator on two CPU shards: the round completes
/// and its sum is exactly the plaintext sum.
#[test]
fn simulate_on_two_cpu_shards_is_exact() {
    let seed = testing::test_seed("cli::simulate_shards");
    let out = Command::new(BIN)
        .args(["simulate", "--clients", "6", "--params", "5000"])
        .args(["--backend", "cpu,cpu"])
        .args(["--seed", &seed.to_string(), "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "exit {:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["result"]["status"], "ok", "{v}");
    assert_eq!(v["result"]["exact"], true, "{v}");
    assert!(v["engine"].as_str().unwrap().starts_with("2 shards"), "{v}");
}

/// `--backend auto` (the default) defers to `SECAGG_BACKEND`, as the README says; an explicit
/// `--backend` wins over it, and a bad value is refused naming the variable.
#[test]
fn secagg_backend_chooses_the_engine_where_auto_is_the_default() {
    let simulate = |env: Option<&str>, extra: &[&str]| {
        let mut cmd = Command::new(BIN);
        cmd.args([
            "simulate",
            "--clients",
            "3",
            "--params",
            "64",
            "--json",
            "--quiet",
        ])
        .args(["--insecure-params"])
        .args(extra);
        cmd.env_remove("SECAGG_BACKEND");
        if let Some(v) = env {
            cmd.env("SECAGG_BACKEND", v);
        }
        cmd.output().unwrap()
    };
    let engine_of = |out: &Output| {
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["engine"].as_str().unwrap_or_default().to_string()
    };
    let sharded = engine_of(&simulate(Some("cpu,cpu"), &[]));
    assert!(
        sharded.contains("shard"),
        "SECAGG_BACKEND=cpu,cpu gave {sharded}"
    );
    let explicit = engine_of(&simulate(Some("cpu,cpu"), &["--backend", "cpu"]));
    assert!(!explicit.contains("shard"), "--backend cpu gave {explicit}");
    let bad = simulate(Some("tpu"), &[]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("SECAGG_BACKEND=tpu"), "{err}");
}

/// `secagg simulate --epsilon 1 --delta 1e-6 --clip 1 ...` runs a DP round through the binary:
/// its JSON reports an exact integer sum, the ε spent (at most the 1 asked for), the noise the
/// plan sized and the error measured on the decoded sum, which must match the noise of the
/// inputs in it; its text report prints the same three.
#[test]
fn simulate_runs_a_dp_round_and_reports_epsilon_noise_and_measured_error() {
    let seed = testing::test_seed("cli::simulate_dp").to_string();
    let args = [
        "simulate",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--clip",
        "1",
        "--clients",
        "24",
        "--params",
        "20000",
        "--backend",
        "cpu",
        "--seed",
        &seed,
    ];
    let out = support::secagg_ok(&[&args[..], &["--json"]].concat());
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(r["result"]["exact"], true, "{r}");
    let p = &r["privacy"];
    let epsilon = p["epsilon"].as_f64().unwrap();
    assert!(epsilon > 0.5 && epsilon <= 1.0 + 1e-9, "ε spent {epsilon}");
    assert_eq!(p["delta"].as_f64(), Some(1e-6));
    let m = &p["measured"];
    let included = r["result"]["included"].as_array().map(Vec::len);
    assert_eq!(m["inputs"].as_u64().map(|n| n as usize), included, "{m}");
    let coords = m["coords"].as_f64().unwrap();
    assert_eq!(coords, 20000.0);
    let (noise, ceiling) = (
        m["noise_std"].as_f64().unwrap(),
        m["expected_std_max"].as_f64().unwrap(),
    );
    let measured = m["measured_std"].as_f64().unwrap();
    // The RMS of 20,000 draws is within 3% of its σ far beyond six standard errors (0.5% each).
    assert!(
        measured > noise * 0.97 && measured < ceiling * 1.03,
        "measured error {measured} against the noise {noise} (at most {ceiling} with rounding)"
    );
    let mean = m["measured_mean"].as_f64().unwrap();
    assert!(
        mean.abs() < 6.0 * noise / coords.sqrt(),
        "mean error {mean}"
    );
    let text = support::secagg_ok(&args);
    for needle in ["ε spent", "central noise σ", "measured error", "result: OK"] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}
