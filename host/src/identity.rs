//! Long-term client identities, bound to client ids by a deployment CA.
//!
//! Every client holds a long-term Ed25519 [`IdentityKey`]. The operator runs a deployment CA
//! ([`CaKey`]) that issues each client a [`Certificate`] binding its [`ClientId`] to its
//! [`IdentityPublicKey`]. The CA's public key ([`CaPublicKey`]) reaches clients and the server
//! from the operator, as a file; it never comes from the round itself. A client can then sign
//! what it sends with [`IdentityKey::sign`], and anyone holding the CA public key can check
//! both the certificate and the signature, many at once with [`verify_batch`].
//!
//! # Signatures
//!
//! Every signature made here covers an unambiguous, domain-separated encoding:
//!
//! ```text
//! u64 little-endian length of domain || domain || message
//! ```
//!
//! so that a signature made for one purpose (one `domain`, such as `secagg/v1/certificate`)
//! never verifies for another. Single signatures are checked with ed25519-dalek's
//! `verify_strict`, which rejects small-order keys, small-order `R`, non-canonical `R` and
//! non-canonical `s`.
//!
//! # Certificates
//!
//! Our own fixed format of [`CERT_LEN`] = 100 bytes:
//!
//! ```text
//! id: u32 little-endian (4) || identity public key (32) || CA signature (64)
//! ```
//!
//! The CA signature is made under the domain [`CERTIFICATE_DOMAIN`] (`secagg/v1/certificate`)
//! over `CA public key (32) || id u32 LE (4) || identity public key (32)`: a certificate is
//! bound to the CA that issued it, the id and the key. Public keys are parsed strictly: an
//! encoding that is not on the curve, not canonical, or of small order is refused.
//!
//! # Batch verification
//!
//! [`verify_batch`] checks many [`SignedItem`]s with one multiscalar multiplication
//! (ed25519-dalek's cofactorless batch equation with 128-bit coefficients derived from the
//! whole batch). When the batch fails it verifies every item on its own with
//! `verify_strict` and reports the indices of the bad ones. Batches below [`BATCH_MIN`]
//! items are verified one by one.
//!
//! Every item `verify_strict` accepts passes the batch. The converse holds for signatures
//! made by honest signers; a signer who crafts a signature with a small-order component in
//! `R` (which needs its own secret key) can make it pass some batches and fail others. That
//! gives no forgery, and no power a malicious server lacks anyway: the server relays every
//! message and can already make honest clients see different verdicts about any client by
//! corrupting the bytes it forwards to some of them.
//!
//! # Files
//!
//! The operator's keys and certificates are small text files, one `name = value` per line
//! after a fixed first line naming the kind of file. Blank lines and lines starting with `#`
//! after the first are comments. Keys and signatures are lowercase hex (uppercase is
//! accepted), ids are decimal. Every field must be present exactly once; unknown fields,
//! bad hex and wrong lengths are errors naming the file and line.
//!
//! ```text
//! # secagg ca public key v1
//! key = <64 hex: the CA's Ed25519 public key>
//!
//! # secagg ca secret key v1
//! secret = <64 hex: the CA's Ed25519 secret key>
//!
//! # secagg identity secret key v1
//! id = 7
//! secret = <64 hex: the client's Ed25519 secret key>
//!
//! # secagg certificate v1
//! id = 7
//! key = <64 hex: the client's identity public key>
//! signature = <128 hex: the CA's signature>
//! ca = <64 hex: the public key of the CA that issued it>
//! ```
//!
//! Secret files are created with mode 0600 (on Unix) and, like ssh, refused when loading if
//! their group or others have any access, with an error that says to `chmod 600`. Files are
//! created only if absent unless [`Overwrite::Replace`] is passed; a replaced file is written
//! to a temporary file beside it and renamed over it, so it is never half-written and a
//! secret never inherits an old file's permissions.

mod file;

use std::borrow::Cow;
use std::fmt;
use std::path::PathBuf;

use curve25519_dalek::Scalar;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use zeroize::ZeroizeOnDrop;

use crate::ClientId;

#[cfg(feature = "test-pki")]
pub(crate) use file::write_file;
pub use file::{FileProblem, Overwrite};

/// Length of a [`Certificate`] in bytes: id (4), identity key (32), signature (64).
pub const CERT_LEN: usize = 4 + 32 + SIGNATURE_LEN;

/// Length of an Ed25519 signature in bytes.
pub const SIGNATURE_LEN: usize = 64;

/// Length of an Ed25519 public key in bytes.
pub const PUBLIC_KEY_LEN: usize = 32;

/// The domain under which the CA signs certificates.
pub const CERTIFICATE_DOMAIN: &[u8] = b"secagg/v1/certificate";

/// Label of the hash behind [`Fingerprint`].
const FINGERPRINT_LABEL: &[u8] = b"secagg/v1/ca-fingerprint";

/// Batches smaller than this are verified one signature at a time (measured on a 2-vCPU
/// AMD EPYC: a batch of two is already faster than two single verifications, see the
/// `batch_timing` test).
pub const BATCH_MIN: usize = 2;

/// What can go wrong with identities, certificates, signatures and their files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The certificate's signature does not verify under the given CA.
    #[error(
        "the certificate for client {id} is not signed by this deployment's CA (forged, corrupted, or issued by another CA)"
    )]
    BadCertificate {
        /// The id the certificate claims.
        id: ClientId,
    },
    /// The certificate is valid but names another client.
    #[error("the certificate is for client {found}, expected client {expected}")]
    WrongId {
        /// The id the caller expected.
        expected: ClientId,
        /// The id in the certificate.
        found: ClientId,
    },
    /// A certificate file says it was issued by another CA than the one given.
    #[error(
        "{path}: issued by CA {found}, but this deployment's CA is {expected}",
        path = path.display()
    )]
    WrongCa {
        /// The certificate file.
        path: PathBuf,
        /// Fingerprint of the CA the caller trusts.
        expected: Fingerprint,
        /// Fingerprint of the CA named in the file.
        found: Fingerprint,
    },
    /// The certificate's identity key is not the public half of the given secret key.
    #[error("the certificate for client {id} certifies another identity key than this secret key")]
    KeyMismatch {
        /// The client.
        id: ClientId,
    },
    /// Certificate bytes of the wrong length.
    #[error("a certificate is exactly {CERT_LEN} bytes, got {found}")]
    CertificateLength {
        /// The length received.
        found: usize,
    },
    /// Bytes that are not an acceptable Ed25519 public key.
    #[error("invalid public key: {0}")]
    InvalidPublicKey(KeyProblem),
    /// A signature whose `s` half is not a canonical scalar (never made by a signer).
    #[error("malformed signature: its scalar is not canonical")]
    MalformedSignature,
    /// A single signature that does not verify.
    #[error("bad signature")]
    BadSignature,
    /// Items of a batch whose signatures do not verify (indices into the batch, ascending).
    #[error("bad signature at batch items {indices:?}")]
    BadSignatures {
        /// The failing items' indices.
        indices: Vec<usize>,
    },
    /// An I/O error on a file.
    #[error("{action} {path}: {source}", path = path.display())]
    Io {
        /// What was being done ("reading", "creating", ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A file that would be overwritten without [`Overwrite::Replace`].
    #[error("refusing to overwrite {path}: it already exists", path = path.display())]
    AlreadyExists {
        /// The file.
        path: PathBuf,
    },
    /// A secret key file that its group or others may access.
    #[error(
        "{path}: a secret key file must be private, but its mode is {mode:03o}: run `chmod 600 {path}`",
        path = path.display()
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A path that is not a regular file.
    #[error("{path} is not a regular file", path = path.display())]
    NotAFile {
        /// The path.
        path: PathBuf,
    },
    /// A file far larger than any of ours.
    #[error("{path} is larger than {limit} bytes: not a secagg key or certificate file", path = path.display())]
    FileTooLarge {
        /// The file.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// A line of a file that does not parse.
    #[error("{path}:{line}: {problem}", path = path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        problem: FileProblem,
    },
    /// A required field absent from a file.
    #[error("{path}: missing `{field} = ...`", path = path.display())]
    MissingField {
        /// The file.
        path: PathBuf,
        /// The field.
        field: &'static str,
    },
}

/// Why 32 bytes are not an acceptable public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyProblem {
    /// Not the encoding of a curve point.
    #[error("not a point on the curve")]
    NotOnCurve,
    /// A point, but not in its one canonical encoding.
    #[error("non-canonical point encoding")]
    NonCanonical,
    /// A point of small order (a weak key: signatures under it prove nothing).
    #[error("point of small order")]
    SmallOrder,
}

/// Decodes and checks a public key: on the curve, canonically encoded, not of small order.
fn parse_public(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<VerifyingKey, KeyProblem> {
    let key = VerifyingKey::from_bytes(bytes).map_err(|_| KeyProblem::NotOnCurve)?;
    if key.to_edwards().compress().as_bytes() != bytes {
        return Err(KeyProblem::NonCanonical);
    }
    if key.is_weak() {
        return Err(KeyProblem::SmallOrder);
    }
    Ok(key)
}

/// The bytes every signature here covers: `u64 LE len(domain) || domain || message`.
fn signed_bytes(domain: &[u8], message: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + domain.len() + message.len());
    v.extend_from_slice(&(domain.len() as u64).to_le_bytes());
    v.extend_from_slice(domain);
    v.extend_from_slice(message);
    v
}

fn hex_prefix(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(2 * bytes.len());
    file::push_hex(&mut s, bytes);
    s
}

/// A short name for a CA public key, for humans: the first 8 bytes of
/// SHA-256(`secagg/v1/ca-fingerprint` || key), shown as 16 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 8]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_prefix(&self.0))
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// The deployment CA's signing key. Zeroized on drop; no `Debug`, `Clone` or serialization.
pub struct CaKey(SigningKey);

impl ZeroizeOnDrop for CaKey {}

impl CaKey {
    /// A fresh CA key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The CA's public key, which the operator hands to clients and the server.
    pub fn public(&self) -> CaPublicKey {
        CaPublicKey(self.0.verifying_key())
    }

    /// A certificate binding client `id` to `identity`.
    pub fn issue(&self, id: ClientId, identity: &IdentityPublicKey) -> Certificate {
        let message = certificate_message(&self.public(), id, identity);
        let signature = self
            .0
            .sign(&signed_bytes(CERTIFICATE_DOMAIN, &message))
            .to_bytes();
        Certificate {
            id,
            key: *identity,
            signature,
        }
    }
}

/// The deployment CA's public key. `Debug` and `Display` show its [`Fingerprint`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CaPublicKey(VerifyingKey);

impl CaPublicKey {
    /// Parses a CA public key, refusing encodings that are off the curve, non-canonical or
    /// of small order.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, IdentityError> {
        parse_public(bytes)
            .map(Self)
            .map_err(IdentityError::InvalidPublicKey)
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// The key's short name for humans.
    pub fn fingerprint(&self) -> Fingerprint {
        let mut h = Sha256::new();
        h.update(FINGERPRINT_LABEL);
        h.update(self.0.as_bytes());
        let digest = h.finalize();
        let mut out = [0u8; 8];
        out.copy_from_slice(&digest[..8]);
        Fingerprint(out)
    }
}

impl fmt::Debug for CaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CaPublicKey({})", self.fingerprint())
    }
}

impl fmt::Display for CaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.fingerprint(), f)
    }
}

/// A client's long-term signing key. Zeroized on drop; no `Debug`, `Clone` or serialization.
pub struct IdentityKey(SigningKey);

impl ZeroizeOnDrop for IdentityKey {}

impl IdentityKey {
    /// A fresh identity key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        Self(SigningKey::generate(rng))
    }

    /// The public half, which the CA certifies.
    pub fn public(&self) -> IdentityPublicKey {
        IdentityPublicKey(self.0.verifying_key())
    }

    /// The 32 secret bytes, for a client snapshot that must outlive its process (a Flower
    /// client mod keeps its state between messages this way). Zeroized when dropped; store
    /// them only where the key itself may live.
    pub fn to_secret_bytes(&self) -> zeroize::Zeroizing<[u8; 32]> {
        zeroize::Zeroizing::new(self.0.to_bytes())
    }

    /// The key from [`to_secret_bytes`](Self::to_secret_bytes).
    pub fn from_secret_bytes(bytes: &[u8; 32]) -> Self {
        Self(SigningKey::from_bytes(bytes))
    }

    /// Signs `message` under `domain` (see the [module docs](self) for the encoding).
    pub fn sign(&self, domain: &[u8], message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.0.sign(&signed_bytes(domain, message)).to_bytes()
    }
}

/// A client's identity public key. `Debug` shows its first 8 bytes in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey(VerifyingKey);

impl IdentityPublicKey {
    /// Parses an identity public key, refusing encodings that are off the curve,
    /// non-canonical or of small order.
    pub fn from_bytes(bytes: &[u8; PUBLIC_KEY_LEN]) -> Result<Self, IdentityError> {
        parse_public(bytes)
            .map(Self)
            .map_err(IdentityError::InvalidPublicKey)
    }

    /// The key's 32 bytes.
    pub fn to_bytes(&self) -> [u8; PUBLIC_KEY_LEN] {
        self.0.to_bytes()
    }

    /// Checks `signature` on `message` under `domain`, strictly (`verify_strict`).
    pub fn verify(
        &self,
        domain: &[u8],
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), IdentityError> {
        self.0
            .verify_strict(
                &signed_bytes(domain, message),
                &Signature::from_bytes(signature),
            )
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "IdentityPublicKey({}…)",
            hex_prefix(&self.0.as_bytes()[..8])
        )
    }
}

/// What the CA signs: `CA public key || id u32 LE || identity public key`.
fn certificate_message(
    ca: &CaPublicKey,
    id: ClientId,
    identity: &IdentityPublicKey,
) -> [u8; 2 * PUBLIC_KEY_LEN + 4] {
    let mut m = [0u8; 2 * PUBLIC_KEY_LEN + 4];
    m[..32].copy_from_slice(ca.0.as_bytes());
    m[32..36].copy_from_slice(&id.0.to_le_bytes());
    m[36..].copy_from_slice(identity.0.as_bytes());
    m
}

/// A CA's statement that client `id` owns identity key `key`. See the [module docs](self)
/// for the byte format and what is signed. Parsing does not verify: call
/// [`verify`](Self::verify) (or batch [`signed_item`](Self::signed_item)s).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Certificate {
    /// The client.
    pub id: ClientId,
    /// Its identity public key.
    pub key: IdentityPublicKey,
    /// The CA's signature.
    pub signature: [u8; SIGNATURE_LEN],
}

impl Certificate {
    /// Checks the CA's signature (strictly).
    pub fn verify(&self, ca: &CaPublicKey) -> Result<(), IdentityError> {
        let message = certificate_message(ca, self.id, &self.key);
        ca.0.verify_strict(
            &signed_bytes(CERTIFICATE_DOMAIN, &message),
            &Signature::from_bytes(&self.signature),
        )
        .map_err(|_| IdentityError::BadCertificate { id: self.id })
    }

    /// Checks that the certificate names client `id`, then its signature.
    pub fn verify_for(&self, ca: &CaPublicKey, id: ClientId) -> Result<(), IdentityError> {
        if self.id != id {
            return Err(IdentityError::WrongId {
                expected: id,
                found: self.id,
            });
        }
        self.verify(ca)
    }

    /// The certificate's signature as an item for [`verify_batch`], so that a neighbour's
    /// certificate and its signed messages are checked in one batch.
    pub fn signed_item(&self, ca: &CaPublicKey) -> SignedItem<'static> {
        SignedItem {
            key: ca.0,
            domain: CERTIFICATE_DOMAIN,
            message: Cow::Owned(certificate_message(ca, self.id, &self.key).to_vec()),
            signature: Signature::from_bytes(&self.signature),
        }
    }

    /// The certificate's [`CERT_LEN`] bytes.
    pub fn to_bytes(&self) -> [u8; CERT_LEN] {
        let mut out = [0u8; CERT_LEN];
        out[..4].copy_from_slice(&self.id.0.to_le_bytes());
        out[4..36].copy_from_slice(self.key.0.as_bytes());
        out[36..].copy_from_slice(&self.signature);
        out
    }

    /// Parses exactly [`CERT_LEN`] bytes, refusing an unacceptable identity key or a
    /// signature whose scalar is not canonical. Does not verify the signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, IdentityError> {
        let bytes: &[u8; CERT_LEN] = bytes
            .try_into()
            .map_err(|_| IdentityError::CertificateLength { found: bytes.len() })?;
        let mut id = [0u8; 4];
        id.copy_from_slice(&bytes[..4]);
        let mut key = [0u8; PUBLIC_KEY_LEN];
        key.copy_from_slice(&bytes[4..36]);
        let mut signature = [0u8; SIGNATURE_LEN];
        signature.copy_from_slice(&bytes[36..]);
        let mut s = [0u8; 32];
        s.copy_from_slice(&signature[32..]);
        if Scalar::from_canonical_bytes(s).is_none().into() {
            return Err(IdentityError::MalformedSignature);
        }
        Ok(Self {
            id: ClientId(u32::from_le_bytes(id)),
            key: IdentityPublicKey::from_bytes(&key)?,
            signature,
        })
    }
}

impl fmt::Debug for Certificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("id", &self.id)
            .field("key", &self.key)
            .field(
                "signature",
                &format_args!("{}…", hex_prefix(&self.signature[..8])),
            )
            .finish()
    }
}

/// One signature to check in a [`verify_batch`]: `signature` by `key` on `message` under
/// `domain`.
#[derive(Clone)]
pub struct SignedItem<'a> {
    key: VerifyingKey,
    domain: &'a [u8],
    message: Cow<'a, [u8]>,
    signature: Signature,
}

impl<'a> SignedItem<'a> {
    /// A client's signature on `message` under `domain`.
    pub fn new(
        key: &IdentityPublicKey,
        domain: &'a [u8],
        message: &'a [u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Self {
        Self {
            key: key.0,
            domain,
            message: Cow::Borrowed(message),
            signature: Signature::from_bytes(signature),
        }
    }

    fn verify_strict(&self) -> bool {
        self.key
            .verify_strict(&signed_bytes(self.domain, &self.message), &self.signature)
            .is_ok()
    }
}

impl fmt::Debug for SignedItem<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedItem")
            .field(
                "key",
                &format_args!("{}…", hex_prefix(&self.key.as_bytes()[..8])),
            )
            .field("domain", &String::from_utf8_lossy(self.domain))
            .field("message_len", &self.message.len())
            .finish_non_exhaustive()
    }
}

/// Verifies every item, as one batch when there are at least [`BATCH_MIN`] of them.
///
/// `Ok(())` when every item verifies; otherwise
/// [`IdentityError::BadSignatures`] with the indices of the items that fail `verify_strict`,
/// so the caller can name each culprit. An empty batch verifies. See the
/// [module docs](self) for how batch and single verification relate.
pub fn verify_batch(items: &[SignedItem<'_>]) -> Result<(), IdentityError> {
    if items.len() >= BATCH_MIN {
        let messages: Vec<Vec<u8>> = items
            .iter()
            .map(|it| signed_bytes(it.domain, &it.message))
            .collect();
        let messages: Vec<&[u8]> = messages.iter().map(Vec::as_slice).collect();
        let signatures: Vec<Signature> = items.iter().map(|it| it.signature).collect();
        let keys: Vec<VerifyingKey> = items.iter().map(|it| it.key).collect();
        if ed25519_dalek::verify_batch(&messages, &signatures, &keys).is_ok() {
            return Ok(());
        }
    }
    verify_each(items)
}

/// Verifies each item on its own; the reference the batch falls back to.
fn verify_each(items: &[SignedItem<'_>]) -> Result<(), IdentityError> {
    let indices: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, it)| !it.verify_strict())
        .map(|(i, _)| i)
        .collect();
    if indices.is_empty() {
        Ok(())
    } else {
        Err(IdentityError::BadSignatures { indices })
    }
}

/// A client's enrolled identity as loaded from the operator's files: its id, its secret key,
/// and a certificate for both, checked against the deployment CA.
pub struct EnrolledIdentity {
    id: ClientId,
    key: IdentityKey,
    certificate: Certificate,
}

impl EnrolledIdentity {
    /// Loads a client's identity key file and certificate file and checks that the
    /// certificate was issued by `ca`, for the key file's id and for its key.
    pub fn load(
        key_path: &std::path::Path,
        certificate_path: &std::path::Path,
        ca: &CaPublicKey,
    ) -> Result<Self, IdentityError> {
        let (id, key) = IdentityKey::load(key_path)?;
        let certificate = Certificate::load(certificate_path, ca)?;
        Self::new(id, key, certificate, ca)
    }

    /// Pairs a key with its certificate, checking that they belong together under `ca`.
    pub fn new(
        id: ClientId,
        key: IdentityKey,
        certificate: Certificate,
        ca: &CaPublicKey,
    ) -> Result<Self, IdentityError> {
        certificate.verify_for(ca, id)?;
        if certificate.key != key.public() {
            return Err(IdentityError::KeyMismatch { id });
        }
        Ok(Self {
            id,
            key,
            certificate,
        })
    }

    /// The client's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// The client's signing key.
    pub fn key(&self) -> &IdentityKey {
        &self.key
    }

    /// The client's certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// The id, the key and the certificate, to hand to a protocol client.
    pub fn into_parts(self) -> (ClientId, IdentityKey, Certificate) {
        (self.id, self.key, self.certificate)
    }
}

#[cfg(test)]
mod tests;
