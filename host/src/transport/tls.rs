//! TLS for the transport: rustls with the ring provider, TLS 1.3 only.
//!
//! The server presents a certificate chain; each client checks it against the CA file it was
//! given (not the system's roots: a deployment's aggregation server is named by its operator).
//! Clients are not authenticated by TLS: they prove their enrolled identity in the hello,
//! whose signature also covers the connection's TLS exporter value
//! ([`channel_binding`]), so a hello cannot be relayed into another TLS session.
//!
//! With the `test-pki` feature, `TestPki::generate` makes a throwaway CA and a server
//! certificate for tests and demonstrations (`secagg tls new`); production deployments use
//! their own PKI.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use zeroize::Zeroizing;

use crate::identity::IdentityError;
#[cfg(feature = "test-pki")]
use crate::identity::Overwrite;

pub use tokio_rustls::client::TlsStream;
pub use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A server name a client checks the certificate against (owned).
pub type ServerNameOwned = ServerName<'static>;

/// Label of the TLS exporter value the hello signs (RFC 8446 §7.5).
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-secagg-hello-v3";

/// Largest PEM file read (a system CA bundle is a few hundred KiB).
const MAX_PEM_LEN: u64 = 4 << 20;

/// What can go wrong setting up TLS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or written.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A PEM file holds nothing usable.
    #[error("{}: {why}", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A name the certificate or the connection is for is not a DNS name or IP address.
    #[error("`{0}` is not a DNS name or an IP address")]
    BadName(String),
    /// Certificate generation failed (`TestPki`, feature `test-pki`).
    #[error("generating a certificate: {0}")]
    Generate(String),
    /// Writing a generated file failed.
    #[error(transparent)]
    Write(#[from] IdentityError),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file, bounded in size; a secret one must not be readable by group or others.
fn read_pem(path: &Path, secret: bool) -> Result<Zeroizing<Vec<u8>>, TlsError> {
    let fail = |why: String| TlsError::File {
        path: path.to_path_buf(),
        why,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.len() > MAX_PEM_LEN {
        return Err(fail(format!(
            "{} bytes, more than the {MAX_PEM_LEN} a PEM file may have here",
            meta.len()
        )));
    }
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "private key readable by others (mode {mode:o}); run `chmod 600 {}`",
                path.display()
            )));
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    Ok(Zeroizing::new(bytes))
}

fn certificates(path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            why: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            why: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The server side: its certificate chain (leaf first) and private key, as PEM.
pub fn server_config_from_pem(
    chain: &[u8],
    key: &[u8],
    names: (&Path, &Path),
) -> Result<TlsAcceptor, TlsError> {
    let chain = certificates(names.0, chain)?;
    let key = PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem {
        path: names.1.to_path_buf(),
        why: format!("no usable private key: {e}"),
    })?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The server side, from files: `--tls-cert` (chain, leaf first) and `--tls-key`.
pub fn server_config(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let chain = read_pem(cert, false)?;
    let secret = read_pem(key, true)?;
    server_config_from_pem(&chain, &secret, (cert, key))
}

/// The client side: trust exactly the CA certificates in this PEM.
pub fn client_config_from_pem(ca: &[u8], name: &Path) -> Result<TlsConnector, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(name, ca)? {
        roots.add(cert).map_err(|e| TlsError::Pem {
            path: name.to_path_buf(),
            why: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

/// The client side, from the CA file (`--tls-ca`).
pub fn client_config(ca: &Path) -> Result<TlsConnector, TlsError> {
    client_config_from_pem(&read_pem(ca, false)?, ca)
}

/// The name a client checks the server's certificate against: a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_owned()).map_err(|_| TlsError::BadName(name.to_owned()))
}

/// The value a hello signs to bind it to its TLS session: 32 bytes of the TLS exporter.
pub fn channel_binding(conn: &impl ExportKeyingMaterial) -> Result<[u8; 32], rustls::Error> {
    conn.export(EXPORTER_LABEL)
}

/// Either end of a rustls connection, for [`channel_binding`].
pub trait ExportKeyingMaterial {
    /// 32 bytes exported under `label`.
    fn export(&self, label: &[u8]) -> Result<[u8; 32], rustls::Error>;
}

impl ExportKeyingMaterial for rustls::ServerConnection {
    fn export(&self, label: &[u8]) -> Result<[u8; 32], rustls::Error> {
        self.export_keying_material([0u8; 32], label, None)
    }
}

impl ExportKeyingMaterial for rustls::ClientConnection {
    fn export(&self, label: &[u8]) -> Result<[u8; 32], rustls::Error> {
        self.export_keying_material([0u8; 32], label, None)
    }
}

/// A throwaway CA and a server certificate it signed, as PEM: for tests and demonstrations
/// (feature `test-pki`).
#[cfg(feature = "test-pki")]
pub struct TestPki {
    /// The CA certificate: what clients are given (`--tls-ca`).
    pub ca_pem: String,
    /// The server certificate (`--tls-cert`).
    pub cert_pem: String,
    /// The server's private key (`--tls-key`); zeroized on drop.
    pub key_pem: Zeroizing<String>,
}

#[cfg(feature = "test-pki")]
impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("ca_pem", &self.ca_pem.len())
            .field("cert_pem", &self.cert_pem.len())
            .field("key_pem", &"<secret>")
            .finish()
    }
}

#[cfg(feature = "test-pki")]
impl TestPki {
    /// A new CA (its key is discarded once the server certificate is signed) and a server
    /// certificate for `names` (DNS names or IP addresses), valid from an hour ago for `days`.
    /// ECDSA P-256 keys.
    pub fn generate(names: &[String], days: u32) -> Result<Self, TlsError> {
        use rcgen::{
            BasicConstraints, CertificateParams, DistinguishedName, DnType,
            ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        };
        let err = |e: rcgen::Error| TlsError::Generate(e.to_string());
        if names.is_empty() {
            return Err(TlsError::Generate(
                "name at least one host the server is reached by".into(),
            ));
        }
        for n in names {
            server_name(n)?;
        }
        let now = time::OffsetDateTime::now_utc();
        let not_before = now - time::Duration::hours(1);
        let not_after = now + time::Duration::days(i64::from(days.max(1)));

        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name = DistinguishedName::new();
        ca.distinguished_name
            .push(DnType::CommonName, "secagg test CA");
        ca.not_before = not_before;
        ca.not_after = not_after;
        let ca_key = KeyPair::generate().map_err(err)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
        let issuer = Issuer::new(ca, ca_key);

        let mut leaf = CertificateParams::new(names.to_vec()).map_err(err)?;
        leaf.distinguished_name = DistinguishedName::new();
        leaf.distinguished_name
            .push(DnType::CommonName, "secagg aggregation server");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        leaf.not_before = not_before;
        leaf.not_after = not_after;
        let key = KeyPair::generate().map_err(err)?;
        let cert = leaf.signed_by(&key, &issuer).map_err(err)?;
        Ok(Self {
            ca_pem: ca_cert.pem(),
            cert_pem: cert.pem(),
            key_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// The server's TLS acceptor.
    pub fn acceptor(&self) -> Result<TlsAcceptor, TlsError> {
        server_config_from_pem(
            self.cert_pem.as_bytes(),
            self.key_pem.as_bytes(),
            (
                Path::new("<generated certificate>"),
                Path::new("<generated key>"),
            ),
        )
    }

    /// A client connector that trusts this CA.
    pub fn connector(&self) -> Result<TlsConnector, TlsError> {
        client_config_from_pem(self.ca_pem.as_bytes(), Path::new("<generated CA>"))
    }

    /// Writes DIR/ca.pem, DIR/server.pem and DIR/server.key (mode 0600), refusing to replace
    /// existing files unless `overwrite` says so. Returns the three paths.
    pub fn save(&self, dir: &Path, overwrite: Overwrite) -> Result<[PathBuf; 3], TlsError> {
        std::fs::create_dir_all(dir).map_err(|e| TlsError::File {
            path: dir.to_path_buf(),
            why: e.to_string(),
        })?;
        let paths = [
            dir.join("ca.pem"),
            dir.join("server.pem"),
            dir.join("server.key"),
        ];
        crate::identity::write_file(&paths[0], self.ca_pem.as_bytes(), false, overwrite)?;
        crate::identity::write_file(&paths[1], self.cert_pem.as_bytes(), false, overwrite)?;
        crate::identity::write_file(&paths[2], self.key_pem.as_bytes(), true, overwrite)?;
        Ok(paths)
    }
}
