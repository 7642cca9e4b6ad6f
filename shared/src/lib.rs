//! IO-free code that both `hoop` and `hoopd` need: the API's types and the audit record format
//! with its verification. Nothing here opens a socket or a file.

pub mod api;
pub mod audit;
pub mod exec;
