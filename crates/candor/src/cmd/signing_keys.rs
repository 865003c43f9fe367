//! `candor signing-keys`: the gateway's token signing keys.

use candor_gateway::{Identity, StoreError};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum KeyCommand {
    /// List signing keys.
    List,
    /// Create a new signing key; the old one keeps verifying tokens it signed.
    Rotate,
}

pub(crate) fn keys(identity: &Identity, command: KeyCommand) -> Result<(), StoreError> {
    if let KeyCommand::Rotate = command {
        let kid = identity.rotate_signing_key()?;
        println!("new signing key {kid}; earlier keys keep verifying the tokens they signed");
    }
    let snap = identity.snapshot();
    println!("{:<16} {:<6} {:<22} STATE", "KID", "ALG", "CREATED");
    for k in &snap.signing_keys {
        let state = k
            .retired_at
            .as_ref()
            .map_or("signing".to_owned(), |r| format!("retired {r}"));
        println!("{:<16} {:<6} {:<22} {state}", k.kid, k.alg, k.created_at);
    }
    Ok(())
}
