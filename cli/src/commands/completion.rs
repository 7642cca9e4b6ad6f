//! `hoop completion <shell>`: shell completions on stdout. `completions/` in the repository
//! holds their output, and a test proves it current.

use clap::CommandFactory;
use clap_complete::Shell;

use crate::exit::CliResult;
use crate::ui::out;

/// The completion script for `shell`.
pub fn script(shell: Shell) -> String {
    let mut cmd = crate::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hoop", &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Runs `hoop completion`.
pub fn run(shell: Shell) -> CliResult<()> {
    out(&script(shell))
}

/// File name of each shell's script in `completions/`.
pub fn file_name(shell: Shell) -> &'static str {
    match shell {
        Shell::Bash => "hoop.bash",
        Shell::Zsh => "_hoop",
        Shell::Fish => "hoop.fish",
        Shell::PowerShell => "_hoop.ps1",
        Shell::Elvish => "hoop.elv",
        _ => "hoop.unknown",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;

    /// The committed scripts match the CLI. Regenerate with
    /// `UPDATE_COMPLETIONS=1 cargo test -p hoop-cli completions_are_current`.
    #[test]
    fn completions_are_current() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../completions");
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish, Shell::PowerShell] {
            let path = dir.join(file_name(shell));
            let want = script(shell);
            if std::env::var_os("UPDATE_COMPLETIONS").is_some() {
                std::fs::write(&path, &want).unwrap();
                continue;
            }
            let have = std::fs::read_to_string(&path).unwrap_or_default();
            if have != want {
                panic!(
                    "{} is stale: run `UPDATE_COMPLETIONS=1 cargo test -p hoop-cli completions_are_current`",
                    path.display()
                );
            }
        }
    }
}
