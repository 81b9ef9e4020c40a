//! The command-line contract, tested from outside: a `secagg server` process and several
//! `secagg client` processes over loopback, with .npy and .safetensors files in and out,
//! dropouts, weights, an abort below threshold, a TOML config file and `--help`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::needless_range_loop
)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use secagg::engine::testing;
use secagg::model::{ModelFormat, ModelLayout, TensorSpec, read_model, write_model};

const BIN: &str = env!("CARGO_BIN_EXE_secagg");

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

fn client(port: u16, id: u32, input: &Path, extra: &[&str]) -> Child {
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
    ]);
    let clients: Vec<Child> = (0..4u32)
        .map(|i| {
            let extra: &[&str] = if i == 2 {
                &["--drop-after", "share-keys"]
            } else {
                &[]
            };
            client(port, i, &inputs[i as usize], extra)
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
    assert!(s["stages"].as_array().unwrap().len() == 4);
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
            "listen = \"127.0.0.1:{port}\"\nclients = 3\nthreshold = 2\ndeadline-ms = 10000\nbackend = \"cpu\"\noutput = \"{}\"\nsummary = \"{}\"\n",
            out.display(),
            sum_json.display()
        ),
    )
    .unwrap();
    let srv = server(&["--config", config.to_str().unwrap()]);
    let weights = [1u32, 2, 3];
    let clients: Vec<Child> = (0..3u32)
        .map(|i| {
            client(
                port,
                10 + i,
                &inputs[i as usize],
                &["--weight", &weights[i as usize].to_string()],
            )
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
        "3",
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
    ]);
    let clients: Vec<Child> = (0..3u32)
        .map(|i| {
            let p = d.join(format!("u{i}.npy"));
            write_model(&p, &layout, &values(seed, i, 5)).unwrap();
            let extra: &[&str] = if i == 0 {
                &["--drop-after", "advertise-keys"]
            } else {
                &[]
            };
            client(port, i, &p, extra)
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
    assert_eq!(codes[0], Some(0), "the client told to drop exits 0");
    assert_eq!(codes[1], Some(3));
    assert_eq!(codes[2], Some(3));
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
    ] {
        assert!(text.contains(flag), "client --help lacks {flag}");
    }
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
