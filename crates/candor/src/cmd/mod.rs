//! One module per command; `main.rs` holds only the command line.

mod accounts;
mod api_keys;
mod blocks;
mod catalog;
mod check;
mod clients;
mod docs;
mod docs_page;
mod explain;
mod logging;
mod openapi;
mod serve;
mod signing_keys;
mod store;
#[cfg(unix)]
mod supervisor;

pub(crate) use accounts::*;
pub(crate) use api_keys::*;
pub(crate) use blocks::*;
pub(crate) use catalog::*;
pub(crate) use check::*;
pub(crate) use clients::*;
pub(crate) use docs::*;
pub(crate) use explain::*;
pub(crate) use logging::LogFormat;
pub(crate) use openapi::*;
pub(crate) use serve::*;
pub(crate) use signing_keys::*;
pub(crate) use store::*;
