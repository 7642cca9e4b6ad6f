//! hoopd, the hoop access gateway, as a library: `main.rs` only calls [`cmd::main`], and tests
//! build a [`server::Gateway`] and serve it on their own listener.

pub mod api;
pub mod audit;
pub mod auth;
pub mod cmd;
pub mod config;
pub mod dev;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod recording;
pub mod reviews;
pub mod server;
pub mod store;
pub mod tls;
pub mod tunnel;
pub mod util;
pub mod webhooks;
