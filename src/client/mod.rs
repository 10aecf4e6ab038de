//! The client pair behind `stampd request` and `stampd verify`, and the decoded facts of
//! requests and tokens the web pages show.

pub mod http;
pub mod inspect;
pub mod verify;
