//! IO-free code that both `hoop` and `hoopd` need: the API's types, the audit record format
//! with its verification, the asciicast v2 terminal-recording format, and a report-at-most-once-per-interval
//! counter. Nothing here opens a socket or a file.

pub mod api;
pub mod asciicast;
pub mod audit;
pub mod exec;
pub mod throttle;
