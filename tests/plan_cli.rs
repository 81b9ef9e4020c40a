//! `secagg plan` from outside: choosing a pair, checking one, the exit statuses and the
//! reasons it gives. Expected pairs come from the library's planner, so these tests pin the
//! command's contract rather than particular numbers.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Output;

use secagg::host::plan::{Adversary, PlanRequest, plan};

mod support;

fn secagg_plan(args: &[&str]) -> Output {
    support::secagg(&[&["plan"], args].concat())
}

/// Exit code, stdout and stderr, with the arguments for assertion messages.
fn outcome(args: &[&str]) -> (Option<i32>, String, String) {
    let out = secagg_plan(args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn request(n: usize, dropout: f64, corrupt: f64, adversary: Adversary) -> PlanRequest {
    PlanRequest {
        clients: n,
        dropout_rate: dropout,
        corrupt_fraction: corrupt,
        adversary,
        ..PlanRequest::default()
    }
}

#[test]
fn choose_prints_the_semi_malicious_pair_and_the_model() {
    let args = [
        "--adversary",
        "semi-malicious",
        "--clients",
        "1000",
        "--dropout",
        "0.05",
        "--corrupt",
        "0.05",
    ];
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
    let p = plan(&request(1000, 0.05, 0.05, Adversary::SemiMalicious)).unwrap();
    assert!(out.contains("semi-malicious"), "{args:?}\n{out}");
    assert!(
        out.contains(&format!("neighbors k = {}", p.neighbors)),
        "{args:?}: want {p:?}\n{out}"
    );
    assert!(
        out.contains(&format!("threshold t = {}", p.threshold)),
        "{args:?}: want {p:?}\n{out}"
    );

    // Semi-malicious is the default; the curious pair is different and labelled so.
    let (code, default_out, _) = outcome(&args[2..]);
    assert_eq!(code, Some(0), "{:?}", &args[2..]);
    assert_eq!(
        default_out, out,
        "default adversary should be semi-malicious"
    );
    let mut curious_args = args;
    curious_args[1] = "curious";
    let (code, out, err) = outcome(&curious_args);
    assert_eq!(code, Some(0), "{curious_args:?}\n{out}\n{err}");
    let c = plan(&request(1000, 0.05, 0.05, Adversary::Curious)).unwrap();
    assert!(out.contains("curious server"), "{curious_args:?}\n{out}");
    assert!(
        out.contains(&format!("neighbors k = {}", c.neighbors))
            && out.contains(&format!("threshold t = {}", c.threshold)),
        "{curious_args:?}: want {c:?}\n{out}"
    );
    assert_ne!(
        (c.neighbors, c.threshold),
        (p.neighbors, p.threshold),
        "n=1000 δ=0.05 γ=0.05: the two models should differ"
    );
}

#[test]
fn check_mode_exits_zero_on_a_good_pair_and_one_on_a_bad_one() {
    let p = plan(&request(1000, 0.1, 0.05, Adversary::SemiMalicious)).unwrap();
    let (k, t) = (p.neighbors.to_string(), p.threshold.to_string());
    let base = ["--clients", "1000", "--dropout", "0.1", "--corrupt", "0.05"];

    let args = [&base[..], &["--neighbors", &k, "--threshold", &t]].concat();
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
    assert!(out.contains("meets every bound"), "{args:?}\n{out}");
    assert!(out.contains("semi-malicious"), "{args:?}\n{out}");

    // One below the planned threshold: the split-view bound fails, and the fix is named.
    let low = (p.threshold - 1).to_string();
    let args = [&base[..], &["--neighbors", &k, "--threshold", &low]].concat();
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(1), "{args:?}\n{out}\n{err}");
    assert!(out.contains("verdict: insecure"), "{args:?}\n{out}");
    assert!(err.contains("split-view"), "{args:?}\n{err}");
    assert!(
        err.contains(&format!("t = {}", p.threshold)),
        "{args:?}\n{err}"
    );

    // The same pair against a curious server may pass or fail, but if it fails it is the
    // curious exposure bound that says so.
    let args = [
        &base[..],
        &[
            "--neighbors",
            &k,
            "--threshold",
            &low,
            "--adversary",
            "curious",
        ],
    ]
    .concat();
    let (code, out, err) = outcome(&args);
    assert!(
        code == Some(0) || (code == Some(1) && err.contains("exposure")),
        "{args:?}\n{out}\n{err}"
    );

    // All k neighbours and the owner: secure, but a dropped client's mask key has only k
    // holders, so correctness fails.
    let high = (p.neighbors + 1).to_string();
    let args = [&base[..], &["--neighbors", &k, "--threshold", &high]].concat();
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(1), "{args:?}\n{out}\n{err}");
    assert!(
        out.contains("verdict: fails correctness"),
        "{args:?}\n{out}"
    );
    assert!(err.contains("correctness"), "{args:?}\n{err}");

    // Too few neighbours: disconnection, with a degree that would do.
    let args = [&base[..], &["--neighbors", "4", "--threshold", "3"]].concat();
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(1), "{args:?}\n{out}\n{err}");
    assert!(err.contains("disconnection"), "{args:?}\n{err}");
    assert!(err.contains("raise k"), "{args:?}\n{err}");
}

#[test]
fn check_mode_accepts_the_complete_graph() {
    // 10 clients, 1 corrupted, 3 dropped: t must exceed (10 + 1) / 2 and stay within the
    // 6 other survivors.
    let base = ["--clients", "10", "--dropout", "0.3", "--corrupt", "0.1"];
    let args = [&base[..], &["--neighbors", "9", "--threshold", "6"]].concat();
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
    assert!(out.contains("complete graph"), "{args:?}\n{out}");
    for (t, bound) in [("5", "split-view"), ("7", "correctness")] {
        let args = [&base[..], &["--neighbors", "9", "--threshold", t]].concat();
        let (code, out, err) = outcome(&args);
        assert_eq!(code, Some(1), "{args:?}\n{out}\n{err}");
        assert!(err.contains(bound), "{args:?}: want {bound}\n{err}");
    }
}

#[test]
fn infeasible_requests_exit_one_with_a_reason() {
    // γ + 2δ > 1: no threshold both beats the split view and fits the survivors.
    let args = [
        "--clients",
        "1000",
        "--dropout",
        "0.34",
        "--corrupt",
        "0.34",
    ];
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(1), "{args:?}\n{out}\n{err}");
    assert!(err.contains("infeasible"), "{args:?}\n{err}");
    assert!(err.contains("semi-malicious"), "{args:?}\n{err}");
    assert!(err.contains("lower dropout to at most"), "{args:?}\n{err}");
    // The curious server can still be planned for.
    let args = [&args[..], &["--adversary", "curious"]].concat();
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
}

#[test]
fn malformed_input_exits_two() {
    for args in [
        &["--clients", "1000", "--neighbors", "30"][..],
        &["--clients", "1000", "--threshold", "10"],
        &["--clients", "1000", "--dropout", "1.5"],
        &["--clients", "1000", "--corrupt", "-0.1"],
        &["--clients", "1", "--dropout", "0.1"],
        &["--clients", "1000", "--adversary", "evil"],
        &[
            "--clients",
            "1000",
            "--neighbors",
            "30",
            "--threshold",
            "32",
        ],
        &[
            "--clients",
            "1000",
            "--neighbors",
            "1000",
            "--threshold",
            "3",
        ],
    ] {
        let (code, out, err) = outcome(args);
        assert_eq!(code, Some(2), "{args:?}\n{out}\n{err}");
        assert!(!err.is_empty(), "{args:?}: no reason given");
    }
}

/// The colluder budget is absolute: `--colluders C` counts colluders in the round whatever its
/// size. n = 12, k = 11, t = 7 falls to 2t − k − 1 = 2 colluders (the split-view attack in
/// host/tests/adversarial/policy.rs runs it), so two fail it and one passes; `--population P --corrupt G`
/// derives c = ⌈G·P⌉; self-selection bounds the colluders in the round by a binomial tail.
#[test]
fn the_colluder_budget_is_absolute_and_self_selection_bounds_it() {
    let small = ["--clients", "12", "--neighbors", "11", "--threshold", "7"];
    let with = |extra: &[&str]| {
        let mut a = small.to_vec();
        a.extend_from_slice(extra);
        outcome(&a)
    };
    let (code, out, err) = with(&["--colluders", "2"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        err.contains("2t - k - 1 = 2") && out.contains("colluders ≤ 2"),
        "{out}\n{err}"
    );
    let (code, out, err) = with(&["--colluders", "1"]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("meets every bound"), "{out}");
    // ⌈0.05 × 40⌉ = 2 enrolled colluders: the same verdict as --colluders 2.
    let (code, out, err) = with(&["--population", "40", "--corrupt", "0.05"]);
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(out.contains("colluders ≤ 2"), "{out}");

    // A million enrolled devices at 5% is 50,000 colluders: no round of 1,000 survives that
    // many in it, but one self-selected at rate 1/1000 holds at most the binomial bound.
    let big = [
        "--clients",
        "1000",
        "--population",
        "1000000",
        "--corrupt",
        "0.05",
    ];
    let (code, out, err) = outcome(&big);
    assert_eq!(code, Some(1), "{out}\n{err}");
    let mut selected = big.to_vec();
    selected.extend_from_slice(&["--select-rate", "0.001"]);
    let (code, out, err) = outcome(&selected);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let bound = secagg::host::plan::colluders_in_cohort(50_000, 0.001, 41);
    assert!(
        out.contains(&format!("colluders ≤ {bound} of 50000 enrolled")),
        "want {bound}\n{out}"
    );
    let p = plan(&PlanRequest {
        clients: 1000,
        colluders: Some(bound as usize),
        adversary: Adversary::SemiMalicious,
        ..PlanRequest::default()
    })
    .unwrap();
    assert!(
        out.contains(&format!("neighbors k = {}", p.neighbors)),
        "want {p:?}\n{out}"
    );
    // A rate outside (0, 1) is malformed.
    let mut bad = big.to_vec();
    bad.extend_from_slice(&["--select-rate", "1.5"]);
    assert_eq!(outcome(&bad).0, Some(2));
}

/// `--epsilon` adds the DP plan, sized for T − c honest survivors, with the figures the
/// library's DP planner gives for the same request; `--noise` reports ε instead.
#[test]
fn the_dp_plan_is_printed_beside_the_pair() {
    let args = [
        "--clients",
        "100",
        "--colluders",
        "5",
        "--epsilon",
        "1",
        "--delta",
        "1e-6",
        "--rounds",
        "3",
        "--clip",
        "0.5",
        "--params",
        "100000",
    ];
    let (code, out, err) = outcome(&args);
    assert_eq!(code, Some(0), "{args:?}\n{out}\n{err}");
    let req = PlanRequest {
        colluders: Some(5),
        ..request(100, 0.1, 0.05, Adversary::SemiMalicious)
    };
    let chosen = plan(&req).unwrap();
    let (k, t) = (chosen.neighbors, chosen.threshold);
    // A semi-malicious server can isolate an input with k − t + 1 other honest ones.
    let h = (t - 5).min(k + 2 - t);
    let why = if h == t - 5 {
        format!("h = T - c = {t} - 5 = {h}")
    } else {
        format!("h = k - t + 2 = {k} - {t} + 2 = {h}")
    };
    assert!(out.contains(&why), "want {why:?} in\n{out}");
    let dp = secagg::host::plan::plan_dp(&secagg::host::plan::DpRequest {
        delta: 1e-6,
        rounds: 3,
        clip: 0.5,
        honest: h,
        survivors: 90,
        ..secagg::host::plan::DpRequest::new(
            secagg::host::plan::DpTarget::Epsilon(1.0),
            100_000,
            100,
        )
    })
    .unwrap();
    for want in [
        format!("modulus bits b = {}", dp.bits),
        format!("μ_c = {:.6}", dp.dp.noise),
        format!("central σ = {:.6}", dp.noise_std),
        format!("expected error of the mean: {:.6}", dp.mean_error),
        format!("ε spent: {:.4}", dp.epsilon),
    ] {
        assert!(out.contains(&want), "missing {want:?} in\n{out}");
    }
    assert!(dp.epsilon <= 1.0);

    let (code, out, err) = outcome(&[
        "--clients",
        "50",
        "--noise",
        "1.5",
        "--rounds",
        "10",
        "--params",
        "1000",
    ]);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(
        out.contains("noise multiplier z = 1.5") && out.contains("ε spent:"),
        "{out}"
    );
}

#[test]
fn a_dp_plan_that_cannot_fit_fails_with_a_reason() {
    // Two bits cannot carry ε = 1's noise over 100 clients.
    let (code, _, err) = outcome(&[
        "--clients",
        "100",
        "--epsilon",
        "1",
        "--params",
        "1000",
        "--bits",
        "4",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no scale fits 2^4"), "{err}");
    // Without --params the request is malformed.
    let (code, _, err) = outcome(&["--clients", "100", "--epsilon", "1"]);
    assert_eq!(code, Some(2), "{err}");
    // Colluders that fill T leave no honest survivor to rest the noise on.
    let (code, _, err) = outcome(&[
        "--clients",
        "10",
        "--neighbors",
        "9",
        "--threshold",
        "6",
        "--colluders",
        "6",
        "--adversary",
        "curious",
        "--epsilon",
        "1",
        "--params",
        "100",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no honest input"), "{err}");
}
