//! SIGKILL at 100 seeded random moments (issue 13): `rebilld run` and `rebilld push` are killed
//! again and again at pseudo-random moments (a fixed seed: the same moments every time), each
//! followed at once by another process, in fresh worlds while kills remain; when a world's work is
//! done (or the kills are over), runs finish it. Every invoice, email and
//! charge then exists exactly once, nothing is lost, and reconcile is clean.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rebill::domain::Period;
use rebill::sandbox::Fault;

use crate::common::TestApp;
use crate::common::world::build;
use crate::crash::{env, remote_state};

/// A small seeded generator (SplitMix64): the kill moments are the same on every run.
struct Moments(u64);

impl Moments {
    fn next_below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn rebilld(env: &[(&'static str, String)], args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rebilld"));
    c.env_remove("RUST_LOG")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

const RUN: [&str; 3] = ["run", "--period", "2026-11"];
const PUSH: [&str; 1] = ["push"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_100_seeded_random_moments_then_restarts_leave_everything_once() {
    let kills: usize = std::env::var("REBILL_TEST_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let period = Period::parse("2026-11").unwrap();
    let mut moments = Moments(0x5EED_2026_1128);
    let started = Instant::now();
    let (mut killed, mut processes, mut worlds) = (0, 0, 0);
    while killed < kills {
        // A fresh world while kills remain; it is finished and checked once its work is done.
        let app = TestApp::sqlite().await;
        let w = build(&app).await;
        worlds += 1;
        let env = env(&w, &app.database_url);
        // Every remote write is slow (it lands 250 ms after it is sent), so that more of the
        // moments fall while a request is in flight: the moment a duplicate is made.
        for _ in 0..10 {
            let late = || Fault::LateApply(Duration::from_millis(250));
            w.sandboxes.autotask.faults.push("POST", "/Charges", late());
            w.sandboxes.xero.faults.push("PUT", "/Invoices", late());
            w.sandboxes.xero.faults.push("POST", "/Email", late());
        }
        for i in 0.. {
            if killed >= kills
                || (i > 0
                    && app.store.period_done(period).await.unwrap()
                    && app.store.outbox(None).await.unwrap().is_empty())
            {
                break;
            }
            // Every fifth process is a run (it records, under the period lease), the others push.
            let args: &[&str] = if i % 5 == 0 { &RUN } else { &PUSH };
            let mut child = rebilld(&env, args).spawn().unwrap();
            processes += 1;
            assert!(processes < 20 * kills.max(5), "the kills never land");
            let at = Duration::from_millis(moments.next_below(400));
            tokio::time::sleep(at).await;
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL
                killed += 1;
            }
            child.wait().unwrap();
        }
        // The dead processes' claims, lease and unsettled creates expire (1 s each); runs finish.
        let mut finished = false;
        for _ in 0..10 {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            let out = tokio::task::block_in_place(|| rebilld(&env, &RUN).output().unwrap());
            assert!(out.status.success(), "world {worlds}: a clean run failed");
            if app.store.outbox(None).await.unwrap().is_empty() {
                finished = true;
                break;
            }
        }
        assert!(finished, "world {worlds}: the outbox never emptied");
        let (invoices, emails, charges) = remote_state(&w);
        let mut refs: Vec<&String> = invoices.iter().map(|(r, _)| r).collect();
        refs.dedup();
        assert_eq!(
            (invoices.len(), refs.len()),
            (2, 2),
            "world {worlds}: each invoice once: {invoices:?}"
        );
        assert_eq!(emails, 1, "world {worlds}: one email");
        let mut markers: Vec<&String> = charges.iter().map(|(m, _)| m).collect();
        markers.dedup();
        assert_eq!(
            (charges.len(), markers.len()),
            (2, 2),
            "world {worlds}: each charge once: {charges:?}"
        );
        let report = rebill::pipeline::reconcile(&w.pipeline, period)
            .await
            .unwrap();
        assert!(report.is_clean(), "world {worlds}: {report:#?}");
    }
    eprintln!(
        "{killed} processes killed at seeded moments ({processes} started, {worlds} worlds) in {:?}",
        started.elapsed()
    );
}
