//! IO-free code that both `hoop` and `hoopd` need: the API's types, the audit record format
//! with its verification, and the asciicast v2 terminal-recording format. Nothing here opens a socket or a file.

pub mod api;
pub mod asciicast;
pub mod audit;
pub mod exec;
