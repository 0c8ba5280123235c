//! The local runner as a binary of the conformance crate, so `cargo test -p conformance`
//! builds it and the suite can spawn it through `CARGO_BIN_EXE_edge-chat-local-runner`.

use std::process::ExitCode;

fn main() -> ExitCode {
    local_runner::main()
}
