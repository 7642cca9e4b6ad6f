//! One module per `hoop` command.

pub mod completion;
pub mod connections;
pub mod login;
pub mod logout;
pub mod whoami;
