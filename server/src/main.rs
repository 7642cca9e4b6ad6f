fn main() -> std::process::ExitCode {
    hoop_server::cmd::main()
}
