//! `secagg ca new` and `secagg enroll` from outside: the files they write, their
//! permissions, and that the library accepts what they make (and only under the right CA).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::ffi::OsStr;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use secagg::host::ClientId;
use secagg::host::identity::{
    CaPublicKey, Certificate, EnrolledIdentity, IdentityError, IdentityKey,
};

mod support;
use support::{secagg, secagg_ok};

/// A scratch directory, removed on drop (also when the test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let d =
            std::env::temp_dir().join(format!("secagg-identity-cli-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a command that must fail with a usage error (exit 2); returns its stderr.
fn refused<S: AsRef<OsStr> + Debug>(args: &[S]) -> String {
    let out = secagg(args);
    assert_eq!(
        out.status.code(),
        Some(2),
        "secagg {args:?}: stdout {} stderr {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stderr).unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn ca_new_then_enroll_gives_certificates_that_verify() {
    let d = Scratch::new("verify");
    let ca_dir = d.join("deploy/ca");
    let out = secagg_ok(&["ca", "new", "--out", s(&ca_dir)]);
    let ca = CaPublicKey::load(&ca_dir.join("ca.pub")).unwrap();
    assert!(out.contains(s(&ca_dir.join("ca.key"))), "{out}");
    assert!(out.contains(s(&ca_dir.join("ca.pub"))), "{out}");
    assert!(out.contains(&ca.fingerprint().to_string()), "{out}");

    let clients = d.join("clients");
    let out = secagg_ok(&[
        "enroll",
        "--ca-key",
        s(&ca_dir.join("ca.key")),
        "--id",
        "0..5",
        "--out",
        s(&clients),
    ]);
    assert!(out.contains("enrolled 5 clients"), "{out}");
    secagg_ok(&[
        "enroll",
        "--ca-key",
        s(&ca_dir.join("ca.key")),
        "--id",
        "4294967295",
        "--out",
        s(&clients),
    ]);
    #[cfg(unix)]
    {
        assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);
        assert_eq!(mode(&ca_dir), 0o700);
    }
    for id in [0u32, 1, 2, 3, 4, 4294967295] {
        let key = clients.join(format!("client-{id}.key"));
        let cert = clients.join(format!("client-{id}.cert"));
        assert!(out.contains(s(&key)) || id > 4, "{out}");
        #[cfg(unix)]
        assert_eq!(mode(&key), 0o600, "{}", key.display());
        let who = EnrolledIdentity::load(&key, &cert, &ca).unwrap();
        assert_eq!(who.id(), ClientId(id));
        who.certificate().verify_for(&ca, ClientId(id)).unwrap();
    }
    assert!(!clients.join("client-5.key").exists());
}

#[test]
fn a_certificate_from_another_ca_does_not_verify() {
    let d = Scratch::new("foreign");
    secagg_ok(&["ca", "new", "--out", s(&d.join("ca1"))]);
    secagg_ok(&["ca", "new", "--out", s(&d.join("ca2"))]);
    secagg_ok(&[
        "enroll",
        "--ca-key",
        s(&d.join("ca2/ca.key")),
        "--id",
        "3",
        "--out",
        s(&d.join("c")),
    ]);
    let ca1 = CaPublicKey::load(&d.join("ca1/ca.pub")).unwrap();
    let ca2 = CaPublicKey::load(&d.join("ca2/ca.pub")).unwrap();
    assert_ne!(ca1, ca2);
    let cert_path = d.join("c/client-3.cert");
    assert!(matches!(
        Certificate::load(&cert_path, &ca1),
        Err(IdentityError::WrongCa { .. })
    ));
    let cert = Certificate::load(&cert_path, &ca2).unwrap();
    assert!(matches!(
        cert.verify(&ca1),
        Err(IdentityError::BadCertificate { id: ClientId(3) })
    ));
    assert!(EnrolledIdentity::load(&d.join("c/client-3.key"), &cert_path, &ca1).is_err());
}

#[test]
fn nothing_is_overwritten_without_force() {
    let d = Scratch::new("force");
    let ca_dir = d.join("ca");
    secagg_ok(&["ca", "new", "--out", s(&ca_dir)]);
    let before = std::fs::read(ca_dir.join("ca.pub")).unwrap();
    let err = refused(&["ca", "new", "--out", s(&ca_dir)]);
    assert!(
        err.contains("refusing to overwrite") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(ca_dir.join("ca.pub")).unwrap(), before);
    // A half-present CA is refused too, and nothing is written.
    std::fs::remove_file(ca_dir.join("ca.pub")).unwrap();
    refused(&["ca", "new", "--out", s(&ca_dir)]);
    assert!(!ca_dir.join("ca.pub").exists());

    secagg_ok(&["ca", "new", "--out", s(&ca_dir), "--force"]);
    assert_ne!(std::fs::read(ca_dir.join("ca.pub")).unwrap(), before);
    #[cfg(unix)]
    assert_eq!(mode(&ca_dir.join("ca.key")), 0o600);

    let ca_key = ca_dir.join("ca.key");
    let clients = d.join("clients");
    let enroll = |ids: &'static str, force: bool| {
        let mut args = vec![
            "enroll".to_string(),
            "--ca-key".into(),
            s(&ca_key).into(),
            "--id".into(),
            ids.into(),
            "--out".into(),
            s(&clients).into(),
        ];
        if force {
            args.push("--force".into());
        }
        args
    };
    secagg_ok(&enroll("2", false));
    let key_before = std::fs::read(clients.join("client-2.key")).unwrap();
    // Enrolling 0..4 would overwrite client 2: refused before any file is written.
    let err = refused(&enroll("0..4", false));
    assert!(err.contains("client-2"), "{err}");
    assert!(!clients.join("client-0.key").exists());
    assert_eq!(
        std::fs::read(clients.join("client-2.key")).unwrap(),
        key_before
    );
    secagg_ok(&enroll("0..4", true));
    assert_ne!(
        std::fs::read(clients.join("client-2.key")).unwrap(),
        key_before
    );
    let ca = CaPublicKey::load(&ca_dir.join("ca.pub")).unwrap();
    for id in 0..4 {
        let (got, _) = IdentityKey::load(&clients.join(format!("client-{id}.key"))).unwrap();
        assert_eq!(got, ClientId(id));
        Certificate::load(&clients.join(format!("client-{id}.cert")), &ca).unwrap();
    }
}

#[cfg(unix)]
#[test]
fn a_readable_ca_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let d = Scratch::new("perms");
    secagg_ok(&["ca", "new", "--out", s(&d.join("ca"))]);
    let ca_key = d.join("ca/ca.key");
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = refused(&[
        "enroll",
        "--ca-key",
        s(&ca_key),
        "--id",
        "1",
        "--out",
        s(&d.join("c")),
    ]);
    assert!(
        err.contains("chmod 600") && err.contains(s(&ca_key)),
        "{err}"
    );
    assert!(!d.join("c").exists());
}

#[test]
fn bad_arguments_are_usage_errors_and_help_documents_every_flag() {
    let d = Scratch::new("args");
    secagg_ok(&["ca", "new", "--out", s(&d.join("ca"))]);
    let ca_key = d.join("ca/ca.key");
    for ids in ["5..5", "x", "-1", "0..2000000", "4294967296"] {
        let err = refused(&[
            "enroll",
            "--ca-key",
            s(&ca_key),
            "--id",
            ids,
            "--out",
            s(&d.join("c")),
        ]);
        assert!(err.contains("--id"), "{ids}: {err}");
    }
    // The public key file where the secret one belongs.
    let err = refused(&[
        "enroll",
        "--ca-key",
        s(&d.join("ca/ca.pub")),
        "--id",
        "1",
        "--out",
        s(&d.join("c")),
    ]);
    assert!(err.contains("# secagg ca secret key v1"), "{err}");
    let err = refused(&[
        "enroll",
        "--ca-key",
        s(&d.join("absent.key")),
        "--id",
        "1",
        "--out",
        s(&d.join("c")),
    ]);
    assert!(err.contains("absent.key"), "{err}");

    let help = secagg_ok(&["ca", "new", "--help"]);
    for flag in ["--out", "--force"] {
        assert!(help.contains(flag), "ca new --help lacks {flag}");
    }
    let help = secagg_ok(&["enroll", "--help"]);
    for flag in ["--ca-key", "--id", "--out", "--force", "A..B"] {
        assert!(help.contains(flag), "enroll --help lacks {flag}");
    }
    let help = secagg_ok(&["--help"]);
    assert!(help.contains("ca") && help.contains("enroll"));
}
