//! The operator's key and certificate files: writing, reading, permissions and strict
//! parsing. The formats are described in the [parent module](super).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use ed25519_dalek::SigningKey;
use zeroize::Zeroizing;

use super::{
    CaKey, CaPublicKey, Certificate, IdentityError, IdentityKey, IdentityPublicKey, KeyProblem,
    PUBLIC_KEY_LEN, SIGNATURE_LEN, parse_public,
};
use crate::ClientId;

const CA_PUBLIC: &str = "# secagg ca public key v1";
const CA_SECRET: &str = "# secagg ca secret key v1";
const IDENTITY_SECRET: &str = "# secagg identity secret key v1";
const CERTIFICATE: &str = "# secagg certificate v1";

/// Our files are a few hundred bytes; anything above this is not one of them.
const MAX_FILE_LEN: u64 = 16 * 1024;

/// Longest unknown field name echoed back in an error.
const MAX_ECHO: usize = 40;

/// Whether saving may replace an existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overwrite {
    /// Fail with [`IdentityError::AlreadyExists`] if the file exists.
    Refuse,
    /// Replace an existing file (atomically, by renaming a new file over it).
    Replace,
}

/// What is wrong with one line of a key or certificate file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FileProblem {
    /// The first line is not the expected one for this kind of file.
    #[error("expected first line `{expected}`{}", found.as_ref().map(|f| format!(", found `{f}`")).unwrap_or_default())]
    WrongHeader {
        /// The first line this kind of file starts with.
        expected: &'static str,
        /// The first line found, when it names another secagg file (other text is never
        /// echoed: it could be a secret).
        found: Option<String>,
    },
    /// Bytes that are not UTF-8.
    #[error("not UTF-8 text")]
    NotUtf8,
    /// A line that is neither blank, a `#` comment, nor `name = value`.
    #[error("expected `name = value`")]
    NotKeyValue,
    /// A field this kind of file does not have.
    #[error("unknown field `{name}` (expected one of: {expected})")]
    UnknownField {
        /// The field's name (cut to 40 characters).
        name: String,
        /// The fields this kind of file has.
        expected: String,
    },
    /// A field given twice.
    #[error("`{field}` given twice (first on line {first_line})")]
    DuplicateField {
        /// The field.
        field: &'static str,
        /// Where it was first given.
        first_line: usize,
    },
    /// A character that is not a hex digit.
    #[error("not a hex digit at character {position} of the value")]
    BadHex {
        /// Its position in the value, from 1.
        position: usize,
    },
    /// A hex value of the wrong length.
    #[error("expected {expected} hex digits, found {found}")]
    WrongLength {
        /// Hex digits expected.
        expected: usize,
        /// Characters found.
        found: usize,
    },
    /// An id that is not a decimal `u32` without sign or leading zeros.
    #[error(
        "expected a client id: a decimal number in 0..=4294967295 without sign or leading zeros"
    )]
    BadId,
    /// A public key that is not acceptable.
    #[error("invalid public key: {0}")]
    InvalidKey(KeyProblem),
}

// ---------------------------------------------------------------------------------------
// Hex.

/// Appends `bytes` as lowercase hex.
pub(super) fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Decodes exactly `2 * out.len()` hex digits into `out`.
fn decode_hex(value: &str, out: &mut [u8]) -> Result<(), FileProblem> {
    let digits = value.as_bytes();
    if digits.len() != 2 * out.len() {
        return Err(FileProblem::WrongLength {
            expected: 2 * out.len(),
            found: value.chars().count(),
        });
    }
    for (i, (o, pair)) in out.iter_mut().zip(digits.chunks_exact(2)).enumerate() {
        let hi = nibble(pair[0]).ok_or(FileProblem::BadHex {
            position: 2 * i + 1,
        })?;
        let lo = nibble(pair[1]).ok_or(FileProblem::BadHex {
            position: 2 * i + 2,
        })?;
        *o = (hi << 4) | lo;
    }
    Ok(())
}

fn decode_id(value: &str) -> Result<ClientId, FileProblem> {
    let b = value.as_bytes();
    let canonical =
        !b.is_empty() && b.iter().all(u8::is_ascii_digit) && (b.len() == 1 || b[0] != b'0');
    if !canonical {
        return Err(FileProblem::BadId);
    }
    value.parse().map(ClientId).map_err(|_| FileProblem::BadId)
}

fn decode_public(value: &str) -> Result<ed25519_dalek::VerifyingKey, FileProblem> {
    let mut bytes = [0u8; PUBLIC_KEY_LEN];
    decode_hex(value, &mut bytes)?;
    parse_public(&bytes).map_err(FileProblem::InvalidKey)
}

fn decode_secret(value: &str) -> Result<SigningKey, FileProblem> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    decode_hex(value, &mut bytes[..])?;
    Ok(SigningKey::from_bytes(&bytes))
}

// ---------------------------------------------------------------------------------------
// Parsing.

/// Checks that the first line is `header` (trailing whitespace and `\r` aside).
fn check_header(path: &Path, bytes: &[u8], header: &'static str) -> Result<(), IdentityError> {
    let first = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = first.trim_ascii_end();
    if first == header.as_bytes() {
        return Ok(());
    }
    let found = std::str::from_utf8(first)
        .ok()
        .filter(|f| f.starts_with("# secagg "))
        .map(|f| f.chars().take(MAX_ECHO).collect());
    Err(IdentityError::Parse {
        path: path.to_path_buf(),
        line: 1,
        problem: FileProblem::WrongHeader {
            expected: header,
            found,
        },
    })
}

/// The fields of one parsed file, in the order of the names asked for.
struct Fields<'t> {
    path: PathBuf,
    names: &'static [&'static str],
    values: Vec<Option<(usize, &'t str)>>,
}

impl<'t> Fields<'t> {
    /// Splits `text` into fields, checking the first line and that every other line is blank,
    /// a comment, or one of `names` given once.
    fn parse(
        path: &Path,
        bytes: &'t [u8],
        header: &'static str,
        names: &'static [&'static str],
    ) -> Result<Self, IdentityError> {
        let parse_error = |line: usize, problem: FileProblem| IdentityError::Parse {
            path: path.to_path_buf(),
            line,
            problem,
        };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = 1 + bytes[..e.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            parse_error(line, FileProblem::NotUtf8)
        })?;
        check_header(path, bytes, header)?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        lines.next();
        let mut values = vec![None; names.len()];
        for (i, line) in lines.enumerate() {
            let line_no = i + 2;
            let t = line.trim();
            if t.is_empty() || t.starts_with('#') {
                continue;
            }
            let Some((name, value)) = t.split_once('=') else {
                return Err(parse_error(line_no, FileProblem::NotKeyValue));
            };
            let name = name.trim();
            let Some(slot) = names.iter().position(|n| *n == name) else {
                return Err(parse_error(
                    line_no,
                    FileProblem::UnknownField {
                        name: name.chars().take(MAX_ECHO).collect(),
                        expected: names.join(", "),
                    },
                ));
            };
            if let Some((first_line, _)) = values[slot] {
                return Err(parse_error(
                    line_no,
                    FileProblem::DuplicateField {
                        field: names[slot],
                        first_line,
                    },
                ));
            }
            values[slot] = Some((line_no, value.trim()));
        }
        Ok(Self {
            path: path.to_path_buf(),
            names,
            values,
        })
    }

    /// Decodes field `name` with `decode`, naming the file and line on failure.
    fn get<T>(
        &self,
        name: &'static str,
        decode: impl FnOnce(&str) -> Result<T, FileProblem>,
    ) -> Result<T, IdentityError> {
        let slot = self.names.iter().position(|n| *n == name);
        let Some((line, value)) = slot.and_then(|i| self.values[i]) else {
            return Err(IdentityError::MissingField {
                path: self.path.clone(),
                field: name,
            });
        };
        decode(value).map_err(|problem| IdentityError::Parse {
            path: self.path.clone(),
            line,
            problem,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Reading and writing.

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> IdentityError + use<> {
    let path = path.to_path_buf();
    move |source| IdentityError::Io {
        action,
        path,
        source,
    }
}

/// Reads a whole (small) file of the kind that starts with `header`. A secret file must not
/// be accessible by group or others; that is checked once the file is known to be of the
/// kind asked for, so that a public file given in place of a secret one is named as such.
fn read_file(
    path: &Path,
    header: &'static str,
    secret: bool,
) -> Result<Zeroizing<Vec<u8>>, IdentityError> {
    // Look before opening: opening a FIFO for reading would block.
    let meta = std::fs::metadata(path).map_err(io_error("reading", path))?;
    if !meta.is_file() {
        return Err(IdentityError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let file = File::open(path).map_err(io_error("reading", path))?;
    let meta = file.metadata().map_err(io_error("reading", path))?;
    if !meta.is_file() {
        return Err(IdentityError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let too_large = || IdentityError::FileTooLarge {
        path: path.to_path_buf(),
        limit: MAX_FILE_LEN,
    };
    if meta.len() > MAX_FILE_LEN {
        return Err(too_large());
    }
    // Reserve once so that reading never reallocates (and leaves copies of a secret behind).
    let mut bytes = Zeroizing::new(Vec::with_capacity(
        usize::try_from(MAX_FILE_LEN + 1).unwrap_or(usize::MAX),
    ));
    file.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut bytes)
        .map_err(io_error("reading", path))?;
    if bytes.len() as u64 > MAX_FILE_LEN {
        return Err(too_large());
    }
    check_header(path, &bytes, header)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(IdentityError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(bytes)
}

/// Creates `path` only if it does not exist; mode 0600 on Unix for a secret.
fn create_new(path: &Path, secret: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    options.open(path)
}

fn write_all_synced(mut file: File, contents: &[u8]) -> io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()
}

/// Writes `contents` to `path`: a new file, or with [`Overwrite::Replace`] a new file renamed
/// over the old one.
pub(crate) fn write_file(
    path: &Path,
    contents: &[u8],
    secret: bool,
    overwrite: Overwrite,
) -> Result<(), IdentityError> {
    match overwrite {
        Overwrite::Refuse => {
            let file = create_new(path, secret).map_err(|e| {
                if e.kind() == io::ErrorKind::AlreadyExists {
                    IdentityError::AlreadyExists {
                        path: path.to_path_buf(),
                    }
                } else {
                    io_error("creating", path)(e)
                }
            })?;
            write_all_synced(file, contents).map_err(|e| {
                let _ = std::fs::remove_file(path);
                io_error("writing", path)(e)
            })
        }
        Overwrite::Replace => {
            let Some(name) = path.file_name() else {
                return Err(IdentityError::NotAFile {
                    path: path.to_path_buf(),
                });
            };
            let mut tmp_name = std::ffi::OsString::from(".");
            tmp_name.push(name);
            tmp_name.push(format!(".tmp{}", std::process::id()));
            let tmp = path.with_file_name(tmp_name);
            let file = match create_new(&tmp, secret) {
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    // Left behind by an earlier crash of this process id.
                    std::fs::remove_file(&tmp).map_err(io_error("removing", &tmp))?;
                    create_new(&tmp, secret)
                }
                other => other,
            }
            .map_err(io_error("creating", &tmp))?;
            write_all_synced(file, contents)
                .map_err(io_error("writing", &tmp))
                .and_then(|()| std::fs::rename(&tmp, path).map_err(io_error("replacing", path)))
                .inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })
        }
    }
}

// ---------------------------------------------------------------------------------------
// The four kinds of file.

impl CaKey {
    /// Writes the CA secret key file (mode 0600).
    pub fn save(&self, path: &Path, overwrite: Overwrite) -> Result<(), IdentityError> {
        let mut text = Zeroizing::new(String::with_capacity(128));
        text.push_str(CA_SECRET);
        text.push_str("\nsecret = ");
        push_hex(&mut text, self.0.as_bytes());
        text.push('\n');
        write_file(path, text.as_bytes(), true, overwrite)
    }

    /// Reads a CA secret key file, refusing one that group or others may access.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let bytes = read_file(path, CA_SECRET, true)?;
        let fields = Fields::parse(path, &bytes, CA_SECRET, &["secret"])?;
        fields.get("secret", decode_secret).map(Self)
    }
}

impl CaPublicKey {
    /// Writes the CA public key file.
    pub fn save(&self, path: &Path, overwrite: Overwrite) -> Result<(), IdentityError> {
        let mut text = String::with_capacity(160);
        text.push_str(CA_PUBLIC);
        text.push_str(&format!("\n# fingerprint {}\nkey = ", self.fingerprint()));
        push_hex(&mut text, self.0.as_bytes());
        text.push('\n');
        write_file(path, text.as_bytes(), false, overwrite)
    }

    /// Reads a CA public key file.
    pub fn load(path: &Path) -> Result<Self, IdentityError> {
        let bytes = read_file(path, CA_PUBLIC, false)?;
        let fields = Fields::parse(path, &bytes, CA_PUBLIC, &["key"])?;
        fields.get("key", decode_public).map(Self)
    }
}

impl IdentityKey {
    /// Writes client `id`'s identity secret key file (mode 0600).
    pub fn save(
        &self,
        id: ClientId,
        path: &Path,
        overwrite: Overwrite,
    ) -> Result<(), IdentityError> {
        let mut text = Zeroizing::new(String::with_capacity(160));
        text.push_str(IDENTITY_SECRET);
        text.push_str(&format!("\nid = {id}\nsecret = "));
        push_hex(&mut text, self.0.as_bytes());
        text.push('\n');
        write_file(path, text.as_bytes(), true, overwrite)
    }

    /// Reads an identity secret key file, refusing one that group or others may access.
    pub fn load(path: &Path) -> Result<(ClientId, Self), IdentityError> {
        let bytes = read_file(path, IDENTITY_SECRET, true)?;
        let fields = Fields::parse(path, &bytes, IDENTITY_SECRET, &["id", "secret"])?;
        let id = fields.get("id", decode_id)?;
        let key = fields.get("secret", decode_secret)?;
        Ok((id, Self(key)))
    }
}

impl Certificate {
    /// Writes the certificate file, after checking that `ca` issued it.
    pub fn save(
        &self,
        path: &Path,
        ca: &CaPublicKey,
        overwrite: Overwrite,
    ) -> Result<(), IdentityError> {
        self.verify(ca)?;
        let mut text = String::with_capacity(400);
        text.push_str(CERTIFICATE);
        text.push_str(&format!(
            "\n# issued by CA {}\nid = {}\nkey = ",
            ca.fingerprint(),
            self.id
        ));
        push_hex(&mut text, self.key.0.as_bytes());
        text.push_str("\nsignature = ");
        push_hex(&mut text, &self.signature);
        text.push_str("\nca = ");
        push_hex(&mut text, ca.0.as_bytes());
        text.push('\n');
        write_file(path, text.as_bytes(), false, overwrite)
    }

    /// Reads a certificate file and checks it against `ca`: the file's `ca` must be `ca`
    /// ([`IdentityError::WrongCa`] otherwise) and the signature must verify.
    pub fn load(path: &Path, ca: &CaPublicKey) -> Result<Self, IdentityError> {
        let bytes = read_file(path, CERTIFICATE, false)?;
        let fields = Fields::parse(path, &bytes, CERTIFICATE, &["id", "key", "signature", "ca"])?;
        let id = fields.get("id", decode_id)?;
        let key = IdentityPublicKey(fields.get("key", decode_public)?);
        let signature = fields.get("signature", |v| {
            let mut s = [0u8; SIGNATURE_LEN];
            decode_hex(v, &mut s).map(|()| s)
        })?;
        let issuer = CaPublicKey(fields.get("ca", decode_public)?);
        if issuer != *ca {
            return Err(IdentityError::WrongCa {
                path: path.to_path_buf(),
                expected: ca.fingerprint(),
                found: issuer.fingerprint(),
            });
        }
        let certificate = Self { id, key, signature };
        certificate.verify(ca)?;
        Ok(certificate)
    }
}
