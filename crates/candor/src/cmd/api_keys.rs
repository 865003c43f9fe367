//! `candor keys`: API keys.

use candor_gateway::{Identity, StoreError};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum ApiKeyCommand {
    /// Create an API key; prints it once.
    Add {
        /// Owning account.
        #[arg(long)]
        account: String,
        /// Scopes it grants, space- or comma-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// Expiry from now: a duration such as 30d, 12h, 90m or 3600s, from 1s to 3650d; a
        /// bare number is seconds (README: Configuration, Durations). Default: never.
        #[arg(long, value_name = "DURATION")]
        expires_in: Option<String>,
        /// A client network the key may be used from (repeatable).
        #[arg(long = "allow-ip")]
        allow_ip: Vec<String>,
        /// A Referer pattern the key may be used with, `*` matching any text (repeatable).
        #[arg(long = "allow-referer")]
        allow_referer: Vec<String>,
    },
    /// List API keys (never their secrets).
    List,
    /// Show one API key.
    Show {
        /// The key id (the part after ck_).
        id: String,
    },
    /// Give an API key a new secret; prints it once. The old key stops working at once;
    /// account, scopes, expiry and restrictions stay.
    Rotate {
        /// The key id.
        id: String,
    },
    /// Delete an API key: it stops working at once.
    Delete {
        /// The key id.
        id: String,
    },
}

/// `--expires-in` in seconds, in the duration grammar.
fn expires_in_secs(text: &str) -> Result<i64, StoreError> {
    candor_gateway::duration::EXPIRES_IN
        .parse(text)
        .map(|d| d.as_secs() as i64)
        .map_err(|reason| StoreError::Invalid {
            field: "--expires-in",
            reason,
        })
}

pub(crate) fn print_api_key(k: &candor_gateway::ApiKey) {
    let expiry = k
        .expires_at
        .map_or("never".to_owned(), candor_gateway::rfc3339);
    println!(
        "ck_{:<12} account {:<16} expires {:<22} scopes: {}",
        k.id,
        k.account_id,
        expiry,
        if k.scopes.is_empty() {
            "(none)".to_owned()
        } else {
            k.scopes.join(" ")
        }
    );
    if !k.allowed_ips.is_empty() {
        println!("    allowed addresses: {}", k.allowed_ips.join(" "));
    }
    if !k.allowed_referers.is_empty() {
        println!("    allowed referers:  {}", k.allowed_referers.join(" "));
    }
}

pub(crate) fn api_keys(identity: &Identity, command: ApiKeyCommand) -> Result<(), StoreError> {
    match command {
        ApiKeyCommand::Add {
            account,
            scopes,
            expires_in,
            allow_ip,
            allow_referer,
        } => {
            let new = candor_gateway::NewApiKey {
                account_id: account,
                scopes: scopes
                    .split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
                expires_in: expires_in.as_deref().map(expires_in_secs).transpose()?,
                allowed_ips: allow_ip,
                allowed_referers: allow_referer,
            };
            let (key, full) = identity.add_api_key(new)?;
            print_api_key(&key);
            println!("api_key: {full}");
            println!("The key is shown only now; store it. Only a hash of it is kept.");
            Ok(())
        }
        ApiKeyCommand::List => {
            let snap = identity.snapshot();
            let mut all: Vec<_> = snap.api_keys.values().collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            if all.is_empty() {
                println!("No API keys yet: `candor keys add --account ID` makes one.");
            }
            all.into_iter().for_each(print_api_key);
            Ok(())
        }
        ApiKeyCommand::Show { id } => {
            let id = id.trim_start_matches("ck_").to_owned();
            let snap = identity.snapshot();
            let k = snap.api_keys.get(&id).ok_or(StoreError::NotFound {
                resource: "API key",
                id: id.clone(),
            })?;
            print_api_key(k);
            println!("created: {}", k.created_at);
            Ok(())
        }
        ApiKeyCommand::Rotate { id } => {
            let id = id.trim_start_matches("ck_").to_owned();
            let full = identity.rotate_api_key(&id)?;
            println!("api_key: {full}");
            println!("The key is shown only now; the previous one no longer works.");
            Ok(())
        }
        ApiKeyCommand::Delete { id } => {
            let id = id.trim_start_matches("ck_").to_owned();
            identity.delete_api_key(&id)?;
            println!("deleted API key ck_{id}");
            Ok(())
        }
    }
}
