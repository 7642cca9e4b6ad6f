//! One module per `hoop` command.

pub mod audit;
pub mod completion;
pub mod connect;
pub mod connections;
pub mod exec;
pub mod login;
pub mod logout;
pub mod replay;
pub mod reviews;
pub mod sessions;
pub mod ssh;
pub mod whoami;
