//! End-to-end tests: real `hoopd`/`hoop` binaries against real PostgreSQL, OpenSSH and an
//! OIDC provider (see the `hoop_tests` library for the harness).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod attack_local;
mod attack_masking;
mod attack_reviews;
mod attack_sql;
mod attack_ssh;
mod audit;
mod demo;
mod exec;
mod harness;
mod identity;
mod policy;
mod postgres;
mod reviews;
mod sql_oracle;
mod ssh;
mod tls;
