//! `candor accounts`: customer accounts.

use candor_gateway::{Account, AccountStatus, Identity, NewAccount, StoreError, TokenSlot};
use clap::Subcommand;

#[derive(Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account.
    Add {
        /// Display name.
        #[arg(long)]
        name: String,
        /// Id (default: generated). Letters, digits, '-' and '_'.
        #[arg(long)]
        id: Option<String>,
        /// Requests per day (UTC).
        #[arg(long)]
        quota_per_day: Option<i64>,
        /// Requests per calendar month (UTC).
        #[arg(long)]
        quota_per_month: Option<i64>,
    },
    /// List accounts.
    List,
    /// Show one account and its clients.
    Show {
        /// Account id.
        id: String,
    },
    /// Suspend an account: its tokens stop working at once.
    Suspend {
        /// Account id.
        id: String,
    },
    /// Reactivate a suspended account.
    Activate {
        /// Account id.
        id: String,
    },
    /// Delete an account (its id is kept so it is never reused).
    Delete {
        /// Account id.
        id: String,
    },
    /// Issue the account's primary or backup token (`Authorization: TOK: <token>` on routes
    /// with auth = "account_token"), replacing the one in that slot; the other slot's token
    /// keeps working, so clients move to it while this one is rotated. Printed once.
    Token {
        /// Account id.
        id: String,
        /// Which token: primary or backup.
        #[arg(value_parser = ["primary", "backup"])]
        slot: String,
    },
}

pub(crate) fn print_account(a: &Account) {
    println!(
        "{:<24} {:<10} {:<28} {}",
        a.id,
        a.status.as_str(),
        a.name,
        match (a.quota_per_day, a.quota_per_month) {
            (None, None) => "no quota".to_owned(),
            (Some(d), None) => format!("{d} requests/day"),
            (None, Some(m)) => format!("{m} requests/month"),
            (Some(d), Some(m)) => format!("{d} requests/day, {m} requests/month"),
        }
    );
}

pub(crate) fn accounts(identity: &Identity, command: AccountCommand) -> Result<(), StoreError> {
    let status = |id: &str, s: AccountStatus| {
        identity
            .set_account_status(id, s)
            .map(|a| print_account(&a))
    };
    match command {
        AccountCommand::Add {
            name,
            id,
            quota_per_day,
            quota_per_month,
        } => {
            let a = identity.add_account(NewAccount {
                id,
                name,
                quota_per_day,
                quota_per_month,
            })?;
            print_account(&a);
            Ok(())
        }
        AccountCommand::List => {
            let snap = identity.snapshot();
            let mut all: Vec<&Account> = snap.accounts.values().collect();
            all.sort_by(|a, b| a.id.cmp(&b.id));
            println!("{:<24} {:<10} {:<28} QUOTA", "ID", "STATUS", "NAME");
            all.into_iter().for_each(print_account);
            Ok(())
        }
        AccountCommand::Show { id } => {
            let snap = identity.snapshot();
            let a = snap.accounts.get(&id).ok_or(StoreError::NotFound {
                resource: "Account",
                id: id.clone(),
            })?;
            print_account(a);
            println!("created: {}", a.created_at);
            let mut clients: Vec<&String> = snap
                .clients
                .values()
                .filter(|c| c.account_id == id)
                .map(|c| &c.client_id)
                .collect();
            clients.sort();
            println!(
                "clients: {}",
                if clients.is_empty() {
                    "none".to_owned()
                } else {
                    clients
                        .iter()
                        .map(|c| c.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            Ok(())
        }
        AccountCommand::Suspend { id } => status(&id, AccountStatus::Suspended),
        AccountCommand::Activate { id } => status(&id, AccountStatus::Active),
        AccountCommand::Delete { id } => status(&id, AccountStatus::Deleted),
        AccountCommand::Token { id, slot } => {
            let slot = TokenSlot::from_word(&slot).unwrap_or(TokenSlot::Primary);
            let token = identity.issue_account_token(&id, slot)?;
            println!("{token}");
            eprintln!(
                "the {} token of account {id}: shown once; send it as `Authorization: TOK: {token}` (the {} token, if set, keeps working)",
                slot.as_str(),
                if slot == TokenSlot::Primary {
                    "backup"
                } else {
                    "primary"
                }
            );
            Ok(())
        }
    }
}
