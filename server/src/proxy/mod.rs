//! Protocol adapters. Each one serves an authorised tunnel stream (`crate::tunnel`) and turns
//! its traffic into policy decisions; adding a protocol means adding a folder here. A protocol
//! module never reaches into another.

pub mod postgres;
pub mod ssh;
