//! The client pair behind `stampd request` and `stampd verify`.

pub mod http;
pub mod verify;
