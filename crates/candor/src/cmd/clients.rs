//! `candor clients`: OAuth clients of an account.

use candor_gateway::{Identity, NewClient, StoreError};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(crate) enum ClientCommand {
    /// Create a client; prints its id and secret (the secret only now).
    Add {
        /// Owning account.
        #[arg(long)]
        account: String,
        /// Scopes it may be granted, space- or comma-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Token lifetime: a duration such as 300s, 5m or 24h, from 30s to 1d; a bare
        /// number is seconds (README: Configuration, Durations).
        #[arg(long, default_value = "5m", value_name = "DURATION")]
        lifetime: String,
        /// Require a TOTP second factor at the token endpoint.
        #[arg(long)]
        second_factor: bool,
    },
    /// List clients.
    List,
    /// Show one client (never its secret).
    Show {
        /// client_id
        id: String,
    },
    /// Register the public keys (a JWK set file) the client signs JWT-bearer assertions with.
    SetKeys {
        /// client_id
        id: String,
        /// A JWK set: {"keys": [...]} with Ed25519 (OKP), P-256 (EC) or RSA public keys.
        #[arg(long)]
        jwks: PathBuf,
    },
    /// Give a client a new secret; prints it once. The old one stops working.
    Rotate {
        /// client_id
        id: String,
    },
    /// Delete a client.
    Delete {
        /// client_id
        id: String,
    },
}

pub(crate) fn print_client(c: &candor_gateway::Client) {
    println!(
        "{:<22} account {:<16} lifetime {:>5} s  second factor {:<3}  scopes: {}",
        c.client_id,
        c.account_id,
        c.token_lifetime,
        if c.totp_secret.is_some() { "yes" } else { "no" },
        if c.scopes.is_empty() {
            "(none)".to_owned()
        } else {
            c.scopes.join(" ")
        }
    );
}

pub(crate) fn clients(identity: &Identity, command: ClientCommand) -> Result<(), StoreError> {
    match command {
        ClientCommand::Add {
            account,
            scopes,
            lifetime,
            second_factor,
        } => {
            let scopes = scopes
                .split([' ', ','])
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            let lifetime = candor_gateway::duration::TOKEN_LIFETIME
                .parse(&lifetime)
                .map_err(|reason| StoreError::Invalid {
                    field: "--lifetime",
                    reason,
                })?;
            let (client, secret) = identity.add_client(NewClient {
                account_id: account,
                scopes,
                token_lifetime: lifetime.as_secs() as i64,
                second_factor,
            })?;
            print_client(&client);
            println!("client_id:     {}", client.client_id);
            println!("client_secret: {secret}");
            if let Some(totp) = &client.totp_secret {
                println!("totp_secret:   {totp}   (base32, for an authenticator app)");
            }
            println!(
                "The secret is shown only now; store it. `candor clients rotate` makes a new one."
            );
            Ok(())
        }
        ClientCommand::List => {
            let snap = identity.snapshot();
            let mut all: Vec<_> = snap.clients.values().collect();
            all.sort_by(|a, b| a.client_id.cmp(&b.client_id));
            all.into_iter().for_each(print_client);
            Ok(())
        }
        ClientCommand::Show { id } => {
            let snap = identity.snapshot();
            let c = snap.clients.get(&id).ok_or(StoreError::NotFound {
                resource: "Client",
                id: id.clone(),
            })?;
            print_client(c);
            println!("created: {}", c.created_at);
            Ok(())
        }
        ClientCommand::SetKeys { id, jwks } => {
            let text = std::fs::read_to_string(&jwks).map_err(|e| StoreError::Invalid {
                field: "jwks",
                reason: format!("cannot read {}: {e}", jwks.display()),
            })?;
            let n = identity.set_client_keys(&id, &text)?;
            println!(
                "client {id}: {n} assertion key{} registered; it may use the jwt-bearer grant",
                if n == 1 { "" } else { "s" }
            );
            Ok(())
        }
        ClientCommand::Rotate { id } => {
            let secret = identity.rotate_client_secret(&id)?;
            println!("client_id:     {id}");
            println!("client_secret: {secret}");
            println!("The old secret no longer works. The new one is shown only now.");
            Ok(())
        }
        ClientCommand::Delete { id } => {
            identity.delete_client(&id)?;
            println!("deleted client {id}");
            Ok(())
        }
    }
}
