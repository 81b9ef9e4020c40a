#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use super::*;

fn rng(test: &str) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(secagg_engine::testing::test_seed(test))
}

/// A scratch directory under the system temp dir, removed on drop (also when a test fails).
struct Scratch(PathBuf);

impl Scratch {
    fn new(test: &str) -> Self {
        let d = std::env::temp_dir().join(format!("secagg-identity-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Self(d)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` with `mode` (Unix) for parser tests.
    fn write(&self, name: &str, contents: &[u8], mode: u32) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, contents).unwrap();
        set_mode(&p, mode);
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(unix)]
fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[cfg(not(unix))]
fn set_mode(_: &Path, _: u32) {}

#[cfg(unix)]
fn mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::new();
    file::push_hex(&mut s, bytes);
    s
}

// ---------------------------------------------------------------------------------------
// Keys, signatures, certificates.

#[test]
fn issue_and_verify_round_trip() {
    let mut rng = rng("identity::issue_and_verify_round_trip");
    let ca = CaKey::generate(&mut rng);
    let me = IdentityKey::generate(&mut rng);
    let cert = ca.issue(ClientId(7), &me.public());
    cert.verify(&ca.public()).unwrap();
    cert.verify_for(&ca.public(), ClientId(7)).unwrap();
    assert_eq!(cert.key, me.public());

    let bytes = cert.to_bytes();
    assert_eq!(bytes.len(), CERT_LEN);
    assert_eq!(&bytes[..4], &7u32.to_le_bytes());
    let back = Certificate::from_bytes(&bytes).unwrap();
    assert_eq!(back, cert);
    back.verify(&ca.public()).unwrap();

    // Public keys round-trip through bytes.
    let pk = IdentityPublicKey::from_bytes(&me.public().to_bytes()).unwrap();
    assert_eq!(pk, me.public());
    let cpk = CaPublicKey::from_bytes(&ca.public().to_bytes()).unwrap();
    assert_eq!(cpk, ca.public());

    EnrolledIdentity::new(ClientId(7), me, cert, &ca.public()).unwrap();
}

#[test]
fn certificates_that_must_fail() {
    let mut rng = rng("identity::certificates_that_must_fail");
    let ca = CaKey::generate(&mut rng);
    let other_ca = CaKey::generate(&mut rng);
    let me = IdentityKey::generate(&mut rng);
    let cert = ca.issue(ClientId(3), &me.public());

    // Issued by another CA.
    let foreign = other_ca.issue(ClientId(3), &me.public());
    assert!(matches!(
        foreign.verify(&ca.public()),
        Err(IdentityError::BadCertificate { id: ClientId(3) })
    ));
    assert!(matches!(
        cert.verify(&other_ca.public()),
        Err(IdentityError::BadCertificate { .. })
    ));

    // Valid, but for another client.
    assert!(matches!(
        cert.verify_for(&ca.public(), ClientId(4)),
        Err(IdentityError::WrongId {
            expected: ClientId(4),
            found: ClientId(3)
        })
    ));
    // Relabelled to another client.
    let relabelled = Certificate {
        id: ClientId(4),
        ..cert
    };
    assert!(matches!(
        relabelled.verify_for(&ca.public(), ClientId(4)),
        Err(IdentityError::BadCertificate { id: ClientId(4) })
    ));
    // Someone else's key under this id.
    let thief = IdentityKey::generate(&mut rng);
    let swapped = Certificate {
        key: thief.public(),
        ..cert
    };
    assert!(matches!(
        swapped.verify(&ca.public()),
        Err(IdentityError::BadCertificate { .. })
    ));
    // A valid certificate paired with another secret key.
    assert!(matches!(
        EnrolledIdentity::new(ClientId(3), thief, cert, &ca.public()),
        Err(IdentityError::KeyMismatch { id: ClientId(3) })
    ));

    // Every single flipped bit is caught: at parse time (key, signature scalar) or by the
    // signature check.
    let bytes = cert.to_bytes();
    for bit in 0..8 * CERT_LEN {
        let mut b = bytes;
        b[bit / 8] ^= 1 << (bit % 8);
        match Certificate::from_bytes(&b) {
            Ok(c) => assert!(
                matches!(
                    c.verify(&ca.public()),
                    Err(IdentityError::BadCertificate { .. })
                ),
                "bit {bit} flipped and still verifies"
            ),
            Err(IdentityError::InvalidPublicKey(_)) => assert!((32..288).contains(&bit)),
            Err(IdentityError::MalformedSignature) => assert!(bit >= 8 * 68),
            Err(e) => panic!("bit {bit}: unexpected {e}"),
        }
    }

    // Truncated and extended.
    for len in [0, 1, 4, 36, CERT_LEN - 1, CERT_LEN + 1, 2 * CERT_LEN] {
        let mut v = bytes.to_vec();
        v.resize(len, 0);
        assert!(
            matches!(
                Certificate::from_bytes(&v),
                Err(IdentityError::CertificateLength { found }) if found == len
            ),
            "length {len}"
        );
    }
}

/// The key problem behind a refused public key, if that is why it was refused.
fn problem<T>(r: Result<T, IdentityError>) -> Option<KeyProblem> {
    match r {
        Err(IdentityError::InvalidPublicKey(p)) => Some(p),
        _ => None,
    }
}

#[test]
fn public_keys_are_parsed_strictly() {
    // p = 2^255 - 19 in little-endian; y = p + k encodes y = k non-canonically.
    let noncanonical = |k: u8| {
        let mut b = [0xffu8; 32];
        b[0] = 0xed + k;
        b[31] = 0x7f;
        b
    };
    let canonical = |k: u8| {
        let mut b = [0u8; 32];
        b[0] = k;
        b
    };
    // y = 1 is the identity: small order, and refused as non-canonical when encoded as p + 1.
    assert_eq!(
        problem(IdentityPublicKey::from_bytes(&canonical(1))),
        Some(KeyProblem::SmallOrder)
    );
    assert_eq!(
        problem(CaPublicKey::from_bytes(&canonical(1))),
        Some(KeyProblem::SmallOrder)
    );
    assert_eq!(
        problem(IdentityPublicKey::from_bytes(&noncanonical(1))),
        Some(KeyProblem::NonCanonical)
    );
    // Some point of large order with a small y has a second, non-canonical encoding.
    assert!((2u8..19).any(|k| {
        IdentityPublicKey::from_bytes(&canonical(k)).is_ok()
            && problem(IdentityPublicKey::from_bytes(&noncanonical(k)))
                == Some(KeyProblem::NonCanonical)
    }));
    // Some y has no x.
    assert!((2u8..100).any(|y| {
        problem(IdentityPublicKey::from_bytes(&canonical(y))) == Some(KeyProblem::NotOnCurve)
    }));
}

#[test]
fn signatures_are_domain_separated() {
    let mut rng = rng("identity::signatures_are_domain_separated");
    let me = IdentityKey::generate(&mut rng);
    let other = IdentityKey::generate(&mut rng);
    let sig = me.sign(b"secagg/v1/test", b"hello");
    me.public()
        .verify(b"secagg/v1/test", b"hello", &sig)
        .unwrap();
    let bad = |r: Result<(), IdentityError>| matches!(r, Err(IdentityError::BadSignature));
    assert!(bad(me.public().verify(b"secagg/v1/test", b"hellO", &sig)));
    assert!(bad(me.public().verify(b"secagg/v1/tes", b"thello", &sig)));
    assert!(bad(me.public().verify(b"secagg/v1/testh", b"ello", &sig)));
    assert!(bad(other.public().verify(
        b"secagg/v1/test",
        b"hello",
        &sig
    )));
    // Not a plain Ed25519 signature over the message either.
    assert!(
        me.public()
            .0
            .verify_strict(b"hello", &Signature::from_bytes(&sig))
            .is_err()
    );
    // A certificate signature does not double as a client signature.
    let ca = CaKey::generate(&mut rng);
    let cert = ca.issue(ClientId(1), &me.public());
    let item = cert.signed_item(&ca.public());
    verify_batch(std::slice::from_ref(&item)).unwrap();
}

#[test]
fn batch_names_the_bad_items() {
    let mut rng = rng("identity::batch_names_the_bad_items");
    let ca = CaKey::generate(&mut rng);
    let keys: Vec<IdentityKey> = (0..8).map(|_| IdentityKey::generate(&mut rng)).collect();
    let certs: Vec<Certificate> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ca.issue(ClientId(i as u32), &k.public()))
        .collect();
    let n = 96;
    let messages: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut m = vec![0u8; (i * 7) % 61];
            rng.fill_bytes(&mut m);
            m
        })
        .collect();
    let mut signatures: Vec<[u8; 64]> = (0..n)
        .map(|i| keys[i % keys.len()].sign(b"secagg/v1/round-keys", &messages[i]))
        .collect();
    let build = |signatures: &[[u8; 64]]| -> Vec<SignedItem<'_>> {
        let mut items: Vec<SignedItem<'_>> = (0..n)
            .map(|i| {
                SignedItem::new(
                    &keys[i % keys.len()].public(),
                    b"secagg/v1/round-keys",
                    &messages[i],
                    &signatures[i],
                )
            })
            .collect();
        items.extend(certs.iter().map(|c| c.signed_item(&ca.public())));
        items
    };
    verify_batch(&build(&signatures)).unwrap();
    verify_batch(&[]).unwrap();

    // Break a few random items: a flipped signature bit, or a signature by the wrong key.
    let bad_count = 1 + (rng.next_u32() % 4) as usize;
    let mut bad: Vec<usize> = Vec::new();
    while bad.len() < bad_count {
        let i = (rng.next_u32() as usize) % n;
        if !bad.contains(&i) {
            bad.push(i);
        }
    }
    bad.sort_unstable();
    for &i in &bad {
        if i % 2 == 0 {
            let bit = (rng.next_u32() % 512) as usize;
            signatures[i][bit / 8] ^= 1 << (bit % 8);
        } else {
            signatures[i] = keys[(i + 1) % keys.len()].sign(b"secagg/v1/round-keys", &messages[i]);
        }
    }
    match verify_batch(&build(&signatures)) {
        Err(IdentityError::BadSignatures { indices }) => assert_eq!(indices, bad),
        other => panic!("expected bad items {bad:?}, got {other:?}"),
    }
    // A batch of one goes through the single path and still names its index.
    let one = build(&signatures);
    match verify_batch(&one[bad[0]..=bad[0]]) {
        Err(IdentityError::BadSignatures { indices }) => assert_eq!(indices, [0]),
        other => panic!("expected [0], got {other:?}"),
    }
}

#[test]
fn debug_shows_fingerprints_not_keys() {
    let mut rng = rng("identity::debug_shows_fingerprints_not_keys");
    let ca = CaKey::generate(&mut rng);
    let me = IdentityKey::generate(&mut rng);
    let cert = ca.issue(ClientId(9), &me.public());
    let ca_hex = hex(&ca.public().to_bytes());
    let shown = format!("{:?} {} {:?}", ca.public(), ca.public(), cert);
    assert!(shown.contains(&ca.public().fingerprint().to_string()));
    assert!(!shown.contains(&ca_hex));
    assert!(!shown.contains(&hex(&me.public().to_bytes())));
    assert!(!shown.contains(&hex(ca.0.as_bytes())));
    assert_eq!(ca.public().fingerprint().to_string().len(), 16);
    // Secret types zeroize on drop.
    fn zeroizes<T: ZeroizeOnDrop>() {}
    zeroizes::<CaKey>();
    zeroizes::<IdentityKey>();
}

// ---------------------------------------------------------------------------------------
// Files.

#[test]
fn files_round_trip() {
    let mut rng = rng("identity::files_round_trip");
    let dir = Scratch::new("round-trip");
    let ca = CaKey::generate(&mut rng);
    let me = IdentityKey::generate(&mut rng);
    let cert = ca.issue(ClientId(4_000_000_000), &me.public());

    ca.save(&dir.path("ca.key"), Overwrite::Refuse).unwrap();
    ca.public()
        .save(&dir.path("ca.pub"), Overwrite::Refuse)
        .unwrap();
    me.save(
        ClientId(4_000_000_000),
        &dir.path("c.key"),
        Overwrite::Refuse,
    )
    .unwrap();
    cert.save(&dir.path("c.cert"), &ca.public(), Overwrite::Refuse)
        .unwrap();

    let ca2 = CaKey::load(&dir.path("ca.key")).unwrap();
    assert_eq!(ca2.public(), ca.public());
    let ca_pub = CaPublicKey::load(&dir.path("ca.pub")).unwrap();
    assert_eq!(ca_pub, ca.public());
    let (id, me2) = IdentityKey::load(&dir.path("c.key")).unwrap();
    assert_eq!(id, ClientId(4_000_000_000));
    assert_eq!(me2.public(), me.public());
    let cert2 = Certificate::load(&dir.path("c.cert"), &ca_pub).unwrap();
    assert_eq!(cert2, cert);
    let who = EnrolledIdentity::load(&dir.path("c.key"), &dir.path("c.cert"), &ca_pub).unwrap();
    assert_eq!(who.id(), ClientId(4_000_000_000));
    assert_eq!(who.certificate(), &cert);
    assert_eq!(who.key().public(), me.public());

    // The text is what the module docs say.
    let text = std::fs::read_to_string(dir.path("c.cert")).unwrap();
    assert!(text.starts_with("# secagg certificate v1\n"));
    assert!(text.contains("\nid = 4000000000\n"));
    assert!(text.contains(&format!("\nca = {}\n", hex(&ca.public().to_bytes()))));
    let text = std::fs::read_to_string(dir.path("ca.pub")).unwrap();
    assert!(text.contains(&format!("\nkey = {}\n", hex(&ca.public().to_bytes()))));

    // A certificate is only saved beside the CA that issued it.
    let other = CaKey::generate(&mut rng);
    assert!(matches!(
        cert.save(&dir.path("x.cert"), &other.public(), Overwrite::Refuse),
        Err(IdentityError::BadCertificate { .. })
    ));
}

#[cfg(unix)]
#[test]
fn secret_files_are_private_and_never_clobbered() {
    let mut rng = rng("identity::secret_files_are_private");
    let dir = Scratch::new("private");
    let ca = CaKey::generate(&mut rng);
    let me = IdentityKey::generate(&mut rng);
    ca.save(&dir.path("ca.key"), Overwrite::Refuse).unwrap();
    me.save(ClientId(1), &dir.path("c.key"), Overwrite::Refuse)
        .unwrap();
    assert_eq!(mode(&dir.path("ca.key")), 0o600);
    assert_eq!(mode(&dir.path("c.key")), 0o600);

    // Refused without Replace; the old file is untouched.
    let other = CaKey::generate(&mut rng);
    assert!(matches!(
        other.save(&dir.path("ca.key"), Overwrite::Refuse),
        Err(IdentityError::AlreadyExists { .. })
    ));
    assert_eq!(
        CaKey::load(&dir.path("ca.key")).unwrap().public(),
        ca.public()
    );

    // Replacing a world-readable file leaves a private one.
    set_mode(&dir.path("ca.key"), 0o644);
    other.save(&dir.path("ca.key"), Overwrite::Replace).unwrap();
    assert_eq!(mode(&dir.path("ca.key")), 0o600);
    assert_eq!(
        CaKey::load(&dir.path("ca.key")).unwrap().public(),
        other.public()
    );
    assert_eq!(
        std::fs::read_dir(&dir.0).unwrap().count(),
        2,
        "temp file left"
    );

    // Group- or world-accessible secret files are refused, with the fix in the message.
    for m in [0o644, 0o640, 0o604, 0o620, 0o601] {
        set_mode(&dir.path("c.key"), m);
        let err = match IdentityKey::load(&dir.path("c.key")) {
            Err(e) => e,
            Ok(_) => panic!("mode {m:o} accepted"),
        };
        assert!(
            matches!(&err, IdentityError::InsecurePermissions { mode, .. } if *mode == m),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
    set_mode(&dir.path("c.key"), 0o400);
    IdentityKey::load(&dir.path("c.key")).unwrap();
}

/// One malformed file and the error it must give.
struct Bad {
    name: &'static str,
    contents: Vec<u8>,
    check: fn(&IdentityError) -> bool,
}

fn parse_error(e: &IdentityError, want_line: usize, want: fn(&FileProblem) -> bool) -> bool {
    matches!(e, IdentityError::Parse { line, problem, .. } if *line == want_line && want(problem))
}

#[test]
fn malformed_files_give_precise_errors() {
    let mut rng = rng("identity::malformed_files");
    let dir = Scratch::new("malformed");
    let ca = CaKey::generate(&mut rng);
    let other_ca = CaKey::generate(&mut rng);
    let secret = hex(IdentityKey::generate(&mut rng).0.as_bytes());
    let key = hex(&ca.public().to_bytes());
    let id_file = |body: &str| format!("# secagg identity secret key v1\n{body}").into_bytes();
    let mut one = [0u8; 32];
    one[0] = 1;
    let small_order = hex(&one);

    let cases = vec![
        Bad {
            name: "empty",
            contents: Vec::new(),
            check: |e| {
                parse_error(e, 1, |p| {
                    matches!(p, FileProblem::WrongHeader { found: None, .. })
                })
            },
        },
        Bad {
            name: "other kind",
            contents: format!("# secagg ca public key v1\nkey = {key}\n").into_bytes(),
            check: |e| {
                parse_error(
                    e,
                    1,
                    |p| matches!(p, FileProblem::WrongHeader { found: Some(f), .. } if f == "# secagg ca public key v1"),
                )
            },
        },
        Bad {
            name: "not ours",
            contents: b"-----BEGIN OPENSSH PRIVATE KEY-----\n".to_vec(),
            check: |e| {
                parse_error(e, 1, |p| {
                    matches!(p, FileProblem::WrongHeader { found: None, .. })
                })
            },
        },
        Bad {
            name: "unknown field",
            contents: id_file(&format!(
                "id = 3\n\n# note\nsecret = {secret}\ncolour = red\n"
            )),
            check: |e| {
                parse_error(
                    e,
                    6,
                    |p| matches!(p, FileProblem::UnknownField { name, .. } if name == "colour"),
                )
            },
        },
        Bad {
            name: "missing id",
            contents: id_file(&format!("secret = {secret}\n")),
            check: |e| matches!(e, IdentityError::MissingField { field: "id", .. }),
        },
        Bad {
            name: "missing secret",
            contents: id_file("id = 3\n"),
            check: |e| {
                matches!(
                    e,
                    IdentityError::MissingField {
                        field: "secret",
                        ..
                    }
                )
            },
        },
        Bad {
            name: "duplicate",
            contents: id_file(&format!("id = 3\nsecret = {secret}\nid = 4\n")),
            check: |e| {
                parse_error(e, 4, |p| {
                    *p == FileProblem::DuplicateField {
                        field: "id",
                        first_line: 2,
                    }
                })
            },
        },
        Bad {
            name: "not key = value",
            contents: id_file(&format!("id 3\nsecret = {secret}\n")),
            check: |e| parse_error(e, 2, |p| *p == FileProblem::NotKeyValue),
        },
        Bad {
            name: "bad hex",
            contents: id_file(&format!(
                "id = 3\nsecret = {}g{}\n",
                &secret[..9],
                &secret[10..]
            )),
            check: |e| parse_error(e, 3, |p| *p == FileProblem::BadHex { position: 10 }),
        },
        Bad {
            name: "short",
            contents: id_file(&format!("id = 3\nsecret = {}\n", &secret[..62])),
            check: |e| {
                parse_error(e, 3, |p| {
                    *p == FileProblem::WrongLength {
                        expected: 64,
                        found: 62,
                    }
                })
            },
        },
        Bad {
            name: "long",
            contents: id_file(&format!("id = 3\nsecret = {secret}00\n")),
            check: |e| {
                parse_error(e, 3, |p| {
                    *p == FileProblem::WrongLength {
                        expected: 64,
                        found: 66,
                    }
                })
            },
        },
        Bad {
            name: "negative id",
            contents: id_file(&format!("id = -1\nsecret = {secret}\n")),
            check: |e| parse_error(e, 2, |p| *p == FileProblem::BadId),
        },
        Bad {
            name: "signed id",
            contents: id_file(&format!("id = +7\nsecret = {secret}\n")),
            check: |e| parse_error(e, 2, |p| *p == FileProblem::BadId),
        },
        Bad {
            name: "leading zero",
            contents: id_file(&format!("id = 07\nsecret = {secret}\n")),
            check: |e| parse_error(e, 2, |p| *p == FileProblem::BadId),
        },
        Bad {
            name: "id overflow",
            contents: id_file(&format!("id = 4294967296\nsecret = {secret}\n")),
            check: |e| parse_error(e, 2, |p| *p == FileProblem::BadId),
        },
        Bad {
            name: "not utf8",
            contents: {
                let mut v = id_file("id = 3\n");
                v.extend_from_slice(b"secret = \xff\xfe\n");
                v
            },
            check: |e| parse_error(e, 3, |p| *p == FileProblem::NotUtf8),
        },
        Bad {
            name: "too large",
            contents: {
                let mut v = id_file(&format!("id = 3\nsecret = {secret}\n"));
                v.resize(20_000, b'\n');
                v
            },
            check: |e| matches!(e, IdentityError::FileTooLarge { .. }),
        },
    ];
    for case in cases {
        let p = dir.write("case.key", &case.contents, 0o600);
        let err = match IdentityKey::load(&p) {
            Err(e) => e,
            Ok(_) => panic!("{}: accepted", case.name),
        };
        assert!((case.check)(&err), "{}: got {err:?}", case.name);
        let shown = err.to_string();
        assert!(shown.contains("case.key"), "{}: {shown}", case.name);
        assert!(
            !shown.contains(&secret[..16]),
            "{}: echoes the secret",
            case.name
        );
    }

    // CRLF line ends and uppercase hex are accepted.
    let p = dir.write(
        "crlf.key",
        id_file(&format!("id = 3\r\nsecret = {}\r\n", secret.to_uppercase())).as_slice(),
        0o600,
    );
    IdentityKey::load(&p).unwrap();

    // A small-order CA public key.
    let p = dir.write(
        "weak.pub",
        format!("# secagg ca public key v1\nkey = {small_order}\n").as_bytes(),
        0o644,
    );
    let err = CaPublicKey::load(&p).unwrap_err();
    assert!(
        parse_error(&err, 2, |p| *p
            == FileProblem::InvalidKey(KeyProblem::SmallOrder)),
        "{err:?}"
    );

    // A public key file given where a secret one belongs is named as the wrong kind of
    // file, not as a permissions problem.
    let err = match CaKey::load(&p) {
        Err(e) => e,
        Ok(_) => panic!("a public key file loaded as a secret key"),
    };
    assert!(
        parse_error(&err, 1, |p| matches!(
            p,
            FileProblem::WrongHeader {
                expected: "# secagg ca secret key v1",
                found: Some(_)
            }
        )),
        "{err:?}"
    );

    // A certificate issued by another CA names both CAs.
    let me = IdentityKey::generate(&mut rng);
    let foreign = other_ca.issue(ClientId(5), &me.public());
    foreign
        .save(
            &dir.path("foreign.cert"),
            &other_ca.public(),
            Overwrite::Refuse,
        )
        .unwrap();
    match Certificate::load(&dir.path("foreign.cert"), &ca.public()) {
        Err(IdentityError::WrongCa {
            expected, found, ..
        }) => {
            assert_eq!(expected, ca.public().fingerprint());
            assert_eq!(found, other_ca.public().fingerprint());
        }
        other => panic!("expected WrongCa, got {other:?}"),
    }
    // ...and one whose `ca` line was edited to match still fails its signature.
    let text = std::fs::read_to_string(dir.path("foreign.cert")).unwrap();
    let edited = text.replace(&hex(&other_ca.public().to_bytes()), &key);
    let p = dir.write("edited.cert", edited.as_bytes(), 0o644);
    assert!(matches!(
        Certificate::load(&p, &ca.public()),
        Err(IdentityError::BadCertificate { id: ClientId(5) })
    ));

    // Not a file; no file.
    assert!(matches!(
        CaKey::load(&dir.0),
        Err(IdentityError::NotAFile { .. })
    ));
    assert!(matches!(
        CaKey::load(&dir.path("absent.key")),
        Err(IdentityError::Io { .. })
    ));
}

// ---------------------------------------------------------------------------------------
// Timing (run with `cargo test -p secagg-host --release identity::tests::batch_timing --
// --ignored --nocapture`).

#[test]
#[ignore = "timing, not a check"]
fn batch_timing() {
    use std::time::Instant;
    let mut rng = rng("identity::batch_timing");
    let keys: Vec<IdentityKey> = (0..256).map(|_| IdentityKey::generate(&mut rng)).collect();
    let messages: Vec<[u8; 64]> = (0..256)
        .map(|_| {
            let mut m = [0u8; 64];
            rng.fill_bytes(&mut m);
            m
        })
        .collect();
    let signatures: Vec<[u8; 64]> = keys
        .iter()
        .zip(&messages)
        .map(|(k, m)| k.sign(b"secagg/v1/round-keys", m))
        .collect();
    let publics: Vec<IdentityPublicKey> = keys.iter().map(IdentityKey::public).collect();
    let items: Vec<SignedItem<'_>> = (0..256)
        .map(|i| {
            SignedItem::new(
                &publics[i],
                b"secagg/v1/round-keys",
                &messages[i],
                &signatures[i],
            )
        })
        .collect();
    // Per-signature time, the best of 9 trials alternating the two paths (a shared VM is
    // noisy; the minimum is the least disturbed run).
    let time = |f: &dyn Fn(), n: usize| {
        let reps = (2048 / n).max(4);
        let t = Instant::now();
        for _ in 0..reps {
            f();
        }
        t.elapsed().as_secs_f64() / (reps * n) as f64
    };
    for n in [1usize, 2, 3, 4, 8, 16, 64, 256] {
        let (mut each, mut batch) = (f64::MAX, f64::MAX);
        for _ in 0..9 {
            each = each.min(time(&|| verify_each(&items[..n]).unwrap(), n));
            batch = batch.min(time(&|| verify_batch(&items[..n]).unwrap(), n));
        }
        eprintln!(
            "n = {n:>3}: one by one {:5.1} µs/sig, batch {:5.1} µs/sig, batch/single {:.2}",
            each * 1e6,
            batch * 1e6,
            batch / each
        );
    }
}
