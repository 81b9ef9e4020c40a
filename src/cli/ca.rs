//! `secagg ca new` and `secagg enroll`: the deployment CA and client identities.
//!
//! The operator runs `secagg ca new` once per deployment, keeps `ca.key` private and hands
//! `ca.pub` to the server and every client. `secagg enroll` then gives each client id a
//! fresh long-term identity key and a certificate binding the two. The file formats are
//! described in [`secagg_host::identity`].

use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use secagg_host::ClientId;
use secagg_host::identity::{CaKey, IdentityError, IdentityKey, Overwrite};

/// Most ids one `secagg enroll` may create.
const MAX_ENROLL: u32 = 1_000_000;

/// Arguments of `secagg ca`.
#[derive(Debug, clap::Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CaCommand {
    /// Create a deployment CA: writes DIR/ca.key (secret, mode 0600) and DIR/ca.pub (for
    /// the server and every client), and prints the CA's fingerprint.
    New(CaNewArgs),
}

/// Arguments of `secagg ca new`.
#[derive(Debug, clap::Args)]
pub struct CaNewArgs {
    /// Directory to write ca.key and ca.pub into (created, mode 0700, if absent).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace an existing ca.key and ca.pub (every certificate they issued stops
    /// verifying under the new CA).
    #[arg(long)]
    force: bool,
}

/// Arguments of `secagg enroll`.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// The CA secret key file (ca.key from `secagg ca new`). Refused if group or others
    /// may read it.
    #[arg(long, value_name = "FILE")]
    ca_key: PathBuf,
    /// The client id to enroll (a u32), or a range A..B of ids (B excluded, at most
    /// 1000000 ids) to enroll many clients at once, e.g. 0..100.
    #[arg(long, value_name = "ID|A..B", value_parser = parse_ids)]
    id: RangeInclusive<u32>,
    /// Directory to write client-ID.key (secret, mode 0600) and client-ID.cert into
    /// (created, mode 0700, if absent).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Replace existing key and certificate files for these ids.
    #[arg(long)]
    force: bool,
}

/// Parses `7` or `A..B` (B excluded) into the ids to enroll.
fn parse_ids(s: &str) -> Result<RangeInclusive<u32>, String> {
    let number = |t: &str| {
        t.trim()
            .parse::<u32>()
            .map_err(|_| format!("{t:?} is not a client id (0..=4294967295)"))
    };
    let ids = match s.split_once("..") {
        None => {
            let id = number(s)?;
            id..=id
        }
        Some((a, b)) => {
            let (a, b) = (number(a)?, number(b)?);
            if a >= b {
                return Err(format!(
                    "{s:?} is empty: in A..B, B is excluded and must be above A"
                ));
            }
            a..=b - 1
        }
    };
    let count = u64::from(*ids.end()) - u64::from(*ids.start()) + 1;
    if count > u64::from(MAX_ENROLL) {
        return Err(format!(
            "{s:?} is {count} ids: at most {MAX_ENROLL} at once"
        ));
    }
    Ok(ids)
}

/// A library error as the CLI says it, with the flag that fixes it where there is one.
fn say(e: IdentityError) -> String {
    match e {
        IdentityError::AlreadyExists { .. } => format!("{e} (pass --force to replace it)"),
        e => e.to_string(),
    }
}

/// Creates `dir` and its missing parents, private to the user on Unix.
fn create_dir(dir: &Path) -> Result<(), String> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| format!("--out {}: {e}", dir.display()))
}

/// Refuses before writing anything when one of `paths` exists and `force` is off.
fn check_absent(paths: &[PathBuf], force: bool) -> Result<(), String> {
    if force {
        return Ok(());
    }
    match paths.iter().find(|p| p.symlink_metadata().is_ok()) {
        Some(p) => Err(format!(
            "refusing to overwrite {}: it already exists (pass --force to replace it)",
            p.display()
        )),
        None => Ok(()),
    }
}

/// A generator seeded from the operating system, zeroized on drop.
fn os_rng() -> Result<secagg_host::RoundRng, String> {
    secagg_host::round_rng().map_err(|e| format!("no operating-system randomness: {e}"))
}

fn overwrite(force: bool) -> Overwrite {
    if force {
        Overwrite::Replace
    } else {
        Overwrite::Refuse
    }
}

/// Runs `secagg ca`.
pub fn run(a: CaArgs) -> Result<ExitCode, String> {
    match a.command {
        CaCommand::New(a) => new(a),
    }
}

fn new(a: CaNewArgs) -> Result<ExitCode, String> {
    let key_path = a.out.join("ca.key");
    let pub_path = a.out.join("ca.pub");
    check_absent(&[key_path.clone(), pub_path.clone()], a.force)?;
    create_dir(&a.out)?;
    let ca = CaKey::generate(&mut os_rng()?);
    ca.save(&key_path, overwrite(a.force)).map_err(say)?;
    ca.public()
        .save(&pub_path, overwrite(a.force))
        .map_err(say)?;
    println!(
        "wrote {} (CA secret key, mode 0600: keep it private, ideally offline)",
        key_path.display()
    );
    println!(
        "wrote {} (CA public key: give it to the server and every client)",
        pub_path.display()
    );
    println!("CA fingerprint {}", ca.public().fingerprint());
    Ok(ExitCode::SUCCESS)
}

/// Runs `secagg enroll`.
pub fn enroll(a: EnrollArgs) -> Result<ExitCode, String> {
    let ca = CaKey::load(&a.ca_key).map_err(|e| format!("--ca-key: {}", say(e)))?;
    let ca_public = ca.public();
    let paths = |id: u32| {
        (
            a.out.join(format!("client-{id}.key")),
            a.out.join(format!("client-{id}.cert")),
        )
    };
    if !a.force {
        for id in a.id.clone() {
            let (key, cert) = paths(id);
            check_absent(&[key, cert], false)?;
        }
    }
    create_dir(&a.out)?;
    let mut rng = os_rng()?;
    for id in a.id.clone() {
        let (key_path, cert_path) = paths(id);
        let key = IdentityKey::generate(&mut rng);
        let certificate = ca.issue(ClientId(id), &key.public());
        key.save(ClientId(id), &key_path, overwrite(a.force))
            .map_err(say)?;
        certificate
            .save(&cert_path, &ca_public, overwrite(a.force))
            .map_err(say)?;
        println!(
            "client {id}: wrote {} and {}",
            key_path.display(),
            cert_path.display()
        );
    }
    let n = u64::from(*a.id.end()) - u64::from(*a.id.start()) + 1;
    println!(
        "enrolled {n} client{} under CA {}",
        if n == 1 { "" } else { "s" },
        ca_public.fingerprint()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::parse_ids;

    #[test]
    fn ids_and_ranges() {
        assert_eq!(parse_ids("7").unwrap(), 7..=7);
        assert_eq!(parse_ids("0..100").unwrap(), 0..=99);
        assert_eq!(parse_ids("4294967295").unwrap(), 4294967295..=4294967295);
        assert_eq!(
            parse_ids("4294967294..4294967295").unwrap(),
            4294967294..=4294967294
        );
        for bad in [
            "",
            "x",
            "-1",
            "5..5",
            "6..5",
            "..3",
            "3..",
            "0..=4",
            "4294967296",
            "0..2000000",
        ] {
            assert!(parse_ids(bad).is_err(), "{bad:?} accepted");
        }
    }
}
