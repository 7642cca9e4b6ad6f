fn main() -> std::process::ExitCode {
    hoop_cli::main()
}
