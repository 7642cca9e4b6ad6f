//! Terminal conventions: data to stdout, everything for humans to stderr, spinners only on a
//! TTY, JSON on request.

use std::io::{IsTerminal, Write};

use clap::ValueEnum;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::exit::{CliResult, internal};

/// `-o` on every listing.
#[derive(Debug, Clone, Copy, Default, ValueEnum, PartialEq, Eq)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// JSON for programs.
    Json,
}

/// True when a person is watching stderr.
pub fn stderr_is_tty() -> bool {
    std::io::stderr().is_terminal()
}

/// True when a person can answer prompts.
pub fn stdin_is_tty() -> bool {
    std::io::stdin().is_terminal()
}

/// A line for the person at the terminal (stderr).
pub fn note(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// A spinner on stderr when it is a terminal; nothing otherwise.
pub fn spinner(msg: impl Into<String>) -> Option<ProgressBar> {
    if !stderr_is_tty() {
        return None;
    }
    let pb = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(msg.into());
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    Some(pb)
}

/// Writes data to stdout. A closed pipe (`hoop ... | head`) is not an error.
pub fn out(text: &str) -> CliResult<()> {
    let mut o = std::io::stdout().lock();
    match o.write_all(text.as_bytes()).and_then(|_| o.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(internal(format!("cannot write to stdout: {e}"))),
    }
}

/// Pretty JSON to stdout.
pub fn out_json<T: Serialize>(v: &T) -> CliResult<()> {
    let s = serde_json::to_string_pretty(v)
        .map_err(|e| internal(format!("cannot encode JSON: {e}")))?;
    out(&format!("{s}\n"))
}

/// Aligned columns to stdout.
pub fn out_table(headers: &[&str], rows: &[Vec<String>]) -> CliResult<()> {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = *w));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut text = line(headers.to_vec());
    for r in rows {
        text.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out(&text)
}
