//! Setup shared by the command-line tests: the `secagg` binary of this build, running it, and
//! a deployment made through it (`secagg ca new`, `secagg enroll`, `secagg tls new`).
//! The protocol tests' deployment (a CA and identities from a seed, TLS, a hand-made
//! handshake) lives in `host/tests/support`, beside the tests that use it.
//!
//! Each test file includes it with `mod support;` and uses what it needs.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `secagg` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_secagg");

/// Runs `secagg ARGS` and returns what it did.
pub fn secagg<S: AsRef<OsStr>>(args: &[S]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

/// Runs `secagg ARGS`, panicking with its stderr if it fails; returns its stdout.
pub fn secagg_ok<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = secagg(args);
    assert!(
        out.status.success(),
        "secagg {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A deployment made through the CLI: `secagg ca new` in `dir`, then `secagg enroll` for
/// `ids`, and `secagg tls new` in DIR/tls.
pub struct CliDeployment {
    /// The directory holding ca.key, ca.pub and the clients' files.
    pub dir: PathBuf,
}

impl CliDeployment {
    /// Runs `secagg ca new --out DIR`, `secagg enroll --id A..B --out DIR` and
    /// `secagg tls new --out DIR/tls`.
    pub fn create(dir: &Path, ids: std::ops::Range<u32>) -> Self {
        let d = dir.to_str().unwrap();
        secagg_ok(&["ca", "new", "--out", d]);
        secagg_ok(&["tls", "new", "--out", dir.join("tls").to_str().unwrap()]);
        let ca_key = dir.join("ca.key");
        secagg_ok(&[
            "enroll",
            "--ca-key",
            ca_key.to_str().unwrap(),
            "--id",
            &format!("{}..{}", ids.start, ids.end),
            "--out",
            d,
        ]);
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The CA's public key file.
    pub fn ca_pub(&self) -> PathBuf {
        self.dir.join("ca.pub")
    }

    /// The server's `--tls-cert … --tls-key …`.
    pub fn server_tls_args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            self.dir.join("tls/server.pem").display().to_string(),
            "--tls-key".into(),
            self.dir.join("tls/server.key").display().to_string(),
        ]
    }

    /// A client's `--tls-ca …`.
    pub fn client_tls_args(&self) -> Vec<String> {
        vec![
            "--tls-ca".into(),
            self.dir.join("tls/ca.pem").display().to_string(),
        ]
    }

    /// `--ca ca.pub --key client-ID.key --cert client-ID.cert` for client `id`.
    pub fn client_args(&self, id: u32) -> Vec<String> {
        vec![
            "--ca".into(),
            self.ca_pub().display().to_string(),
            "--key".into(),
            self.dir
                .join(format!("client-{id}.key"))
                .display()
                .to_string(),
            "--cert".into(),
            self.dir
                .join(format!("client-{id}.cert"))
                .display()
                .to_string(),
        ]
    }
}
