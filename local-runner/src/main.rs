fn main() -> std::process::ExitCode {
    local_runner::main()
}
