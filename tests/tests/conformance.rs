//! The conformance suite's entry point: every scenario on every backend named in
//! EDGE_CHAT_BACKENDS (default `local`) that it applies to (its `backends`), as trials
//! named `<backend>::<scenario>`. A scenario that does not apply to a backend has no
//! trial there, so `--list` shows exactly what runs where.
//!
//!     cargo test -p conformance
//!     EDGE_CHAT_BACKENDS=local,wrangler cargo test -p conformance
//!     cargo test -p conformance -- local::resume       # a filter, as usual
//!     EDGE_CHAT_BACKENDS=local,wrangler cargo test -p conformance -- --list   # what runs where
//!
//! EDGE_CHAT_CONFORMANCE_LOG=1 echoes the backends' output.

use conformance::harness::{BackendKind, Suite};
use conformance::scenarios;
use libtest_mimic::{Arguments, Failed, Trial};
use std::path::PathBuf;
use std::process::ExitCode;

/// Trials mostly wait on sockets, so a few run at once even on 2 cores.
const DEFAULT_TEST_THREADS: usize = 4;

fn main() -> ExitCode {
    let mut args = Arguments::from_args();
    if args.test_threads.is_none() {
        args.test_threads = Some(DEFAULT_TEST_THREADS);
    }
    let backends = match BackendKind::from_env() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let local_bin = PathBuf::from(env!("CARGO_BIN_EXE_edge-chat-local-runner"));
    let suite = match Suite::new(local_bin) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot set up the suite: {e}");
            return ExitCode::FAILURE;
        }
    };

    let mut trials = Vec::new();
    // Scenarios in the outer loop: the long ones (own instances) start first on every
    // backend, and each shared instance is used in one stretch.
    for scenario in scenarios::all() {
        for &kind in backends.iter().filter(|&&k| scenario.runs_on(k)) {
            let name = format!("{}::{}", kind.name(), scenario.name);
            let trial_suite = suite.clone();
            let trial = Trial::test(name, move || {
                trial_suite
                    .run_trial(kind, &scenario)
                    .map_err(|e| Failed::from(e.0))
            });
            // Instances are stopped after their last trial, so count the ones that run.
            if !args.is_filtered_out(&trial) && !args.list {
                suite.expect_trial(kind, scenario.group);
            }
            trials.push(trial);
        }
    }
    let conclusion = libtest_mimic::run(&args, trials);
    suite.shutdown();
    conclusion.exit_code()
}
