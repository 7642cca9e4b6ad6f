//! End-to-end test harness for hoop: real components, no mocks.
//!
//! * [`proc`]: loopback ports, readiness waits, child processes that are killed on drop
//!   and whose output is captured in log files for error messages, and the location of
//!   the workspace's built `hoop`/`hoopd` binaries.
//! * [`oidc`]: a real OpenID Connect provider (npm `oidc-provider`, run with `node`) with
//!   fixed users, a device-flow client, a client-credentials client, JWT access tokens
//!   with audience `hoop`, and a driver for its login pages.
//! * [`jwt`]: minting tokens with the provider's committed test key (and with wrong keys,
//!   wrong algorithms, no signature) for negative tests.
//! * [`postgres`]: a throwaway PostgreSQL cluster on a loopback port.
//! * [`wire`]: a raw PostgreSQL wire client, over TCP or a unix socket, for tests that speak
//!   the protocol as an attacker would: any message sequence and any query bytes, every
//!   answer as it came, or the CommandComplete tags, error and rows of one simple Query.
//! * [`sshd`]: a real OpenSSH sshd on a loopback port, and the OpenSSH clients driven with a
//!   password through `SSH_ASKPASS`.
//!
//! Everything here is test code: panicking helpers are acceptable.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod gateway;
pub mod jwt;
pub mod oidc;
pub mod postgres;
pub mod proc;
pub mod sshd;
pub mod wire;

pub use gateway::{CliUser, Gateway, LoginPrompt};
pub use jwt::Signer;
pub use oidc::{OidcOptions, OidcProvider, TestUser, USERS};
pub use postgres::{PasswordKind, Postgres};
pub use proc::{ChildGuard, bin_path, free_port, wait_for_tcp};

/// Path of the workspace root (the parent of the `tests` crate).
pub fn workspace_root() -> std::path::PathBuf {
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Path of `tests/fixtures`.
pub fn fixtures_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}
