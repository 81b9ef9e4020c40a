//! A server and its clients embedded in an application, over real TCP with TLS 1.3.
//!
//! [`server`] is what an aggregation service embeds: its own tokio runtime, the deployment's
//! CA (only enrolled clients are admitted), a model layout every client must match, and the
//! round's report handled in code. [`client`] is what a training job embeds: its enrolled
//! identity, its own policy (checked against whatever the server announces before anything
//! secret leaves), and its update. Here both run in one process on loopback, with a test
//! TLS certificate; a deployment makes its CA with `secagg ca new`, enrolls clients with
//! `secagg enroll`, and gets a TLS certificate for the server's name (`secagg tls new`).
//!
//! Run it with `cargo run --release --example tcp_round`.

use std::net::SocketAddr;
use std::time::Duration;

use secagg::engine::CpuEngine;
use secagg::host::codec::layout_digest;
use secagg::host::identity::{CaKey, CaPublicKey, IdentityKey};
use secagg::host::plan::{Adversary, PlanRequest, plan};
use secagg::host::transport::tls::{self, TestPki, TlsAcceptor, TlsConnector};
use secagg::host::transport::{ClientOutcome, Join, RoundReport, ServeOptions, serve};
use secagg::host::{ClientId, ClientIdentity, ClientPolicy, RoundConfig, round_rng};
use secagg::model::{ModelFormat, ModelLayout, TensorSpec};

/// The model every client trains: its layout travels as a digest in each client's hello.
fn layout() -> ModelLayout {
    let tensor = |name: &str, shape: &[usize]| TensorSpec {
        name: name.into(),
        shape: shape.to_vec(),
    };
    ModelLayout {
        format: ModelFormat::Safetensors,
        tensors: vec![
            tensor("layer0.bias", &[64]),
            tensor("layer0.weight", &[64, 256]),
        ],
    }
}

/// The aggregation service: serves one round on `listener` and returns its report.
async fn server(
    listener: tokio::net::TcpListener,
    config: RoundConfig,
    ca: CaPublicKey,
    tls: TlsAcceptor,
) -> Result<RoundReport, Box<dyn std::error::Error>> {
    let options = ServeOptions {
        ca: Some(ca),                                      // admit enrolled clients only
        tls: Some(tls),                                    // TLS 1.3 on every connection
        layout: Some(layout_digest(&layout().to_bytes())), // refuse any other model
        ..ServeOptions::default()
    };
    Ok(serve(listener, config, CpuEngine::new(), options).await?)
}

/// The most enrolled identities that may collude with the server, in this deployment.
const COLLUDERS: usize = 1;

/// A training job: joins the round at `addr` as `identity` and sends `update`.
async fn client(
    addr: SocketAddr,
    identity: ClientIdentity,
    ca: CaPublicKey,
    tls: TlsConnector,
    update: Vec<f32>,
) -> Result<ClientOutcome, Box<dyn std::error::Error + Send + Sync>> {
    // The client's own floors: a semi-malicious server, at most one of the deployment's
    // twelve enrolled identities colluding with it (the default budget of five suits a
    // deployment of a hundred), 10% dropout, 2^-40 security, at least 10 honest members.
    // A round announced below them is refused.
    let policy = ClientPolicy {
        colluders: COLLUDERS,
        ..ClientPolicy::enrolled(ca)
    };
    let outcome = Join::new(identity, policy, layout_digest(&layout().to_bytes()))
        .tls(tls, tls::server_name("127.0.0.1")?)
        .run(addr, &update);
    Ok(outcome.await?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n = 12;
    let m = layout().params();
    // The deployment: a CA (kept offline in real life) and one certificate per client.
    let mut rng = round_rng()?;
    let ca = CaKey::generate(&mut rng);
    let identities: Vec<ClientIdentity> = (0..n as u32)
        .map(|i| {
            let key = IdentityKey::generate(&mut rng);
            let cert = ca.issue(ClientId(i), &key.public());
            ClientIdentity::enrolled(key, cert)
        })
        .collect::<Result<_, _>>()?;
    let pki = TestPki::generate(&["127.0.0.1".into()], 1)?;

    // The round: k and t from the planner, for the same bounds the clients' policy holds.
    let p = plan(&PlanRequest {
        clients: n,
        colluders: Some(COLLUDERS),
        adversary: Adversary::SemiMalicious,
        ..PlanRequest::default()
    })?;
    let config = RoundConfig::builder(n, m)
        .neighbors(p.neighbors)
        .threshold(p.threshold)
        .stage_timeout(Duration::from_secs(10))
        .build()?;
    println!(
        "round: n = {n}, m = {m}, k = {}, t = {}",
        p.neighbors, p.threshold
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut jobs = Vec::new();
        for (i, identity) in identities.into_iter().enumerate() {
            let (ca, connector) = (ca.public(), pki.connector()?);
            let update = vec![0.01 * i as f32; m];
            jobs.push(tokio::spawn(async move {
                client(addr, identity, ca, connector, update).await
            }));
        }
        let report = server(listener, config.clone(), ca.public(), pki.acceptor()?).await?;
        for job in jobs {
            match job.await? {
                Ok(outcome) => println!("client: {outcome:?}"),
                Err(e) => println!("client failed: {e}"),
            }
        }
        Ok::<_, Box<dyn std::error::Error>>(report)
    })?;

    // The report, handled in code.
    println!(
        "{} connections, {} refused, {} B received, {:.2?}",
        report.connections,
        report.refusal_count(),
        report.bytes_received,
        report.elapsed
    );
    let out = report
        .outcome
        .map_err(|reason| format!("round aborted: {reason}"))?;
    let mean = out.weighted_mean(&config);
    println!(
        "{} inputs; mean[0] = {:.4} (expected 0.0550)",
        out.included.len(),
        mean[0]
    );
    assert_eq!(out.included.len(), n);
    assert!((mean[0] - 0.055).abs() < 1e-3);
    Ok(())
}
