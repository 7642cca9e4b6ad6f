//! `hoop`, the hoop CLI, as a library: `main.rs` calls [`main`], which parses flags, runs one
//! command and turns its error into a documented exit code.

pub mod auth;
pub mod commands;
pub mod exit;
pub mod gateway;
pub mod settings;
pub mod trust;
pub mod tunnel;
pub mod ui;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use clap_complete::Shell;

use exit::{CliError, CliResult, Exit};
use gateway::{Gateway, gateway_url, trust_for};
use settings::{Paths, Settings};
use ui::OutputFormat;

/// hoop: reach databases and hosts through the hoop gateway, as yourself.
#[derive(Debug, Parser)]
#[command(name = "hoop", version, about, long_about = None)]
pub struct Cli {
    /// Gateway URL (default: the one you last logged in to).
    #[arg(long, global = true, env = "HOOP_GATEWAY")]
    pub gateway: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in to a gateway (OIDC device flow) and cache the tokens.
    Login(commands::login::LoginArgs),
    /// Forget the cached tokens for the gateway.
    Logout,
    /// Show who the gateway thinks you are.
    Whoami {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// List the connections you may use.
    #[command(visible_alias = "ls")]
    Connections {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t)]
        output: OutputFormat,
    },
    /// Open a local port that tunnels to a connection through the gateway.
    Connect(commands::connect::ConnectArgs),
    /// Run a statement on a connection without a tunnel (CI, scripts, agents); never prompts.
    Exec(commands::exec::ExecArgs),
    /// List recorded sessions (`show <id>` for one session's statement log).
    Sessions(commands::sessions::SessionsArgs),
    /// Open a shell (or run a command after `--`) on an ssh connection, through the gateway.
    Ssh(commands::ssh::SshArgs),
    /// Play an SSH session's terminal recording (`--cast` prints the asciicast file instead).
    Replay(commands::replay::ReplayArgs),
    /// List reviews: yours, those you may approve, or all (`show <id>` for one).
    Reviews(commands::reviews::ReviewsArgs),
    /// Approve a review (without an id, on a terminal: pick one).
    Approve(commands::reviews::ApproveArgs),
    /// Reject a review, saying why.
    Reject(commands::reviews::RejectArgs),
    /// End an approved access grant early; live sessions under it are closed.
    Revoke(commands::reviews::IdArgs),
    /// Withdraw a pending request of your own.
    Withdraw(commands::reviews::IdArgs),
    /// The signed audit log: export it, verify an export offline, fetch the public key.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Print a shell completion script.
    Completion {
        /// The shell.
        #[arg(value_enum)]
        shell: Shell,
    },
}

/// What every command gets: where files are, the settings, and the environment's overrides.
pub struct Ctx {
    /// Config and data directories.
    pub paths: Paths,
    /// The settings file's content.
    pub settings: Settings,
    /// `--gateway` / `HOOP_GATEWAY`.
    pub gateway: Option<String>,
    /// `HOOP_TOKEN`: a machine's API key or token, used instead of the cache.
    pub token: Option<String>,
}

impl Ctx {
    /// The gateway to talk to, with its trust: `HOOP_CA_FILE` or `HOOP_FINGERPRINT` (machines
    /// without a settings file), else what the settings file remembers.
    pub fn gateway(&self) -> CliResult<Gateway> {
        let url = gateway_url(self.gateway.as_deref(), &self.settings)?;
        let ca = std::env::var_os("HOOP_CA_FILE")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from);
        let fingerprint = std::env::var("HOOP_FINGERPRINT")
            .ok()
            .filter(|v| !v.trim().is_empty());
        let trust = trust_for(&url, &self.settings, ca.as_deref(), fingerprint.as_deref())?;
        Gateway::new(url, trust)
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HOOP_LOG")
        // The platform verifier logs every refused certificate; hoop's own error says it once.
        .unwrap_or_else(|_| {
            tracing_subscriber::EnvFilter::new("warn,rustls_platform_verifier=off")
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Parses the command line (exit code 80 on a usage error) and runs it.
pub fn main() -> ExitCode {
    let cmd = Cli::command().after_long_help(exit::table_text());
    let cli = match cmd
        .try_get_matches()
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                    ExitCode::SUCCESS
                }
                clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    ExitCode::from(Exit::Usage.code())
                }
                _ => ExitCode::from(Exit::Usage.code()),
            };
        }
    };
    init_logging();
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "hoop: cannot start: {e}");
            return ExitCode::from(Exit::Internal.code());
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // An empty message was already reported (`hoop exec -o json` writes a JSON object).
            if !e.message.is_empty() {
                let _ = writeln!(std::io::stderr(), "hoop: {}", e.message);
            }
            ExitCode::from(e.exit.code())
        }
    }
}

async fn run(cli: Cli) -> CliResult<()> {
    if let Command::Completion { shell } = cli.command {
        return commands::completion::run(shell);
    }
    // Offline verification needs no gateway, settings or credentials.
    if let Command::Audit(commands::audit::AuditCommand::Verify(args)) = &cli.command {
        return commands::audit::verify(args);
    }
    let paths = Paths::discover()?;
    let settings = Settings::load(&paths.settings_file())?;
    let ctx = Ctx {
        paths,
        settings,
        gateway: cli.gateway,
        token: std::env::var("HOOP_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty()),
    };
    match cli.command {
        Command::Login(args) => commands::login::run(&ctx, args).await,
        Command::Logout => commands::logout::run(&ctx).await,
        Command::Whoami { output } => commands::whoami::run(&ctx, output).await,
        Command::Connections { output } => commands::connections::run(&ctx, output).await,
        Command::Connect(args) => commands::connect::run(&ctx, args).await,
        Command::Exec(args) => commands::exec::run(&ctx, args).await,
        Command::Sessions(args) => commands::sessions::run(&ctx, args).await,
        Command::Replay(args) => commands::replay::run(&ctx, args).await,
        Command::Ssh(args) => commands::ssh::run(&ctx, args).await,
        Command::Reviews(args) => commands::reviews::run(&ctx, args).await,
        Command::Approve(args) => commands::reviews::approve(&ctx, args).await,
        Command::Reject(args) => commands::reviews::reject(&ctx, args).await,
        Command::Revoke(args) => commands::reviews::revoke(&ctx, args).await,
        Command::Withdraw(args) => commands::reviews::withdraw(&ctx, args).await,
        Command::Audit(cmd) => commands::audit::run(&ctx, cmd).await,
        Command::Completion { .. } => Err(CliError::new(Exit::Internal, "unreachable")),
    }
}
