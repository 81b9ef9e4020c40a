//! `secagg tls new`: a throwaway TLS CA and server certificate for tests and demonstrations.
//!
//! Production deployments give the server a certificate from their own PKI (`--tls-cert`,
//! `--tls-key`) and clients the CA that issued it (`--tls-ca`); this command makes such a
//! pair locally when there is none. The CA's private key is discarded once it has signed the
//! server certificate, so nothing else can ever be issued under it.

use std::path::PathBuf;
use std::process::ExitCode;

use secagg_host::identity::Overwrite;
use secagg_host::transport::tls::TestPki;

/// Arguments of `secagg tls`.
#[derive(Debug, clap::Args)]
pub struct TlsArgs {
    #[command(subcommand)]
    command: TlsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TlsCommand {
    /// Create a test CA and a server certificate it signed: writes DIR/ca.pem (for every
    /// client's --tls-ca), DIR/server.pem and DIR/server.key (mode 0600, for the server's
    /// --tls-cert and --tls-key).
    New(TlsNewArgs),
}

/// Arguments of `secagg tls new`.
#[derive(Debug, clap::Args)]
pub struct TlsNewArgs {
    /// Directory to write ca.pem, server.pem and server.key into (created if absent).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// A DNS name or IP address clients reach the server by; repeat for several.
    /// [default: localhost, 127.0.0.1 and ::1]
    #[arg(long = "name", value_name = "NAME")]
    names: Vec<String>,
    /// Days the certificates are valid for.
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

pub fn run(a: TlsArgs) -> Result<ExitCode, String> {
    let TlsCommand::New(a) = a.command;
    let names = if a.names.is_empty() {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    } else {
        a.names
    };
    let pki = TestPki::generate(&names, a.days).map_err(|e| e.to_string())?;
    let overwrite = if a.force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    };
    let [ca, cert, key] = pki
        .save(&a.out, overwrite)
        .map_err(|e| format!("{e} (pass --force to replace existing files)"))?;
    eprintln!(
        "wrote {} (give it to clients: --tls-ca), {} and {} (the server's --tls-cert and --tls-key; the key is mode 0600); \
         valid {} days for {}; the CA's key was discarded",
        ca.display(),
        cert.display(),
        key.display(),
        a.days,
        names.join(", ")
    );
    Ok(ExitCode::SUCCESS)
}
