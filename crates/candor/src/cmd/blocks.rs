//! `candor blocks`: the client ids (each from one address) and addresses the running
//! gateway's token endpoint refuses after failed attempts, listed and lifted through its
//! admin API (`/blocks`) over the admin listener, with the admin token. Client ids and
//! other texts from the gateway are printed with their control characters escaped.

use candor_gateway::Config;
use clap::Subcommand;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use serde_json::Value;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Subcommand)]
pub(crate) enum BlockCommand {
    /// List the client ids (with the address each is blocked from) and addresses refused
    /// now: failures, limit, and when the next attempt is accepted.
    List,
    /// Lift a block at once (its failures are forgotten): `client ID` (that client id's
    /// blocks from every address), `address IP`, or --all.
    Clear {
        /// What is blocked: client or address.
        #[arg(value_parser = ["client", "address"], required_unless_present = "all")]
        kind: Option<String>,
        /// The client id (its blocks from every address are lifted), or the address (an
        /// IPv6 address stands for its /64).
        #[arg(required_unless_present = "all", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        key: Option<String>,
        /// Lift every block.
        #[arg(long, conflicts_with_all = ["kind", "key"])]
        all: bool,
    },
}

/// Where the running gateway's admin API is.
#[derive(clap::Args)]
pub(crate) struct AdminArgs {
    /// The running gateway's configuration: its server.admin_listen and admin token file.
    #[arg(long, short, global = true)]
    config: Option<PathBuf>,
    /// Without --config: the data directory holding admin.token (default: candor-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// The admin listener's address (default: server.admin_listen of --config; without
    /// --config, 127.0.0.1:9090, the demo's).
    #[arg(long, global = true, value_name = "ADDR")]
    admin: Option<SocketAddr>,
}

/// The admin listener's address and the admin token file, as `args` find them.
fn locate(args: &AdminArgs) -> Result<(SocketAddr, PathBuf), String> {
    match &args.config {
        Some(c) => {
            let config = Config::load(c).map_err(|report| report.to_string())?;
            let token = config
                .server
                .admin_token_file
                .clone()
                .unwrap_or_else(|| config.server.data_dir.join("admin.token"));
            let addr = args.admin.or(config.server.admin_listen).ok_or_else(|| {
                format!(
                    "{} sets no server.admin_listen, so the gateway serves no admin API: set it (e.g. admin_listen = \"127.0.0.1:9090\") and restart the gateway, or pass --admin ADDR",
                    c.display()
                )
            })?;
            Ok((addr, token))
        }
        None => {
            let dir = args
                .data_dir
                .clone()
                .unwrap_or_else(|| PathBuf::from("candor-data"));
            let addr = args
                .admin
                .unwrap_or_else(|| "127.0.0.1:9090".parse().expect("valid"));
            Ok((addr, dir.join("admin.token")))
        }
    }
}

/// Sends one admin API request; the status and the JSON body.
async fn call(
    addr: SocketAddr,
    token: &str,
    method: http::Method,
    path: &str,
    start: &str,
) -> Result<(u16, Value), String> {
    let unreachable = |e: &dyn std::fmt::Display| {
        format!(
            "no gateway answers on the admin listener at http://{addr} ({e}). Start it with {start}, or name its admin listener with --config FILE or --admin ADDR"
        )
    };
    let stream = tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(&"no answer within 5 s"))?
        .map_err(|e| unreachable(&e))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string())
        .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
        .header(http::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let exchange = async {
        let resp = sender.send_request(req).await?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok::<_, hyper::Error>((status, body))
    };
    let (status, body) = tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| format!("the admin listener at http://{addr} did not answer within 30 s"))?
        .map_err(|e| format!("the admin listener at http://{addr} broke off: {e}"))?;
    let json = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "http://{addr}{path} answered {status} with a body that is not JSON: is --admin the address of a candor admin listener?"
        )
    })?;
    Ok((status, json))
}

/// `s` safe to print on a terminal: control characters and other non-printables (format
/// characters such as bidi overrides, separators other than the space) as `\u{…}`, and a
/// backslash doubled, so that a client id chosen by anyone cannot drive the terminal.
fn shown(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let n = c as u32;
        let unprintable = c.is_control()
            || (c.is_whitespace() && c != ' ')
            || matches!(n, 0xad | 0x034f | 0x061c | 0x115f | 0x1160 | 0x17b4 | 0x17b5 | 0x180b..=0x180f | 0x200b..=0x200f | 0x202a..=0x202e | 0x2060..=0x206f | 0x3164 | 0xfe00..=0xfe0f | 0xfeff | 0xffa0 | 0xfff0..=0xfffb | 0xe0000..=0xe0fff)
            || (0xe000..=0xf8ff).contains(&n)
            || n >= 0xf0000;
        match c {
            '\\' => out.push_str("\\\\"),
            _ if unprintable => out.push_str(&format!("\\u{{{n:x}}}")),
            c => out.push(c),
        }
    }
    out
}

/// A JSON string field of `v`, [`shown`].
fn field(v: &Value, name: &str) -> String {
    shown(v[name].as_str().unwrap_or(""))
}

fn print_list(v: &Value) {
    let limits = &v["limits"];
    let window = limits["window"].as_i64().unwrap_or(0);
    let limits_text = format!(
        "{} failures per client_id from one address, {} per address, within {}",
        limits["per_client"],
        limits["per_address"],
        words(window)
    );
    let rows = v["data"].as_array().cloned().unwrap_or_default();
    let unlisted = v["unlisted_failures"].as_u64().unwrap_or(0);
    let incomplete = || {
        if unlisted > 0 {
            println!(
                "The list is incomplete: {unlisted} failure{} within the last {} came from client ids or addresses not listed, as {} were listed already; their blocks end by themselves, and `candor blocks clear --all` lifts them now.",
                if unlisted == 1 { "" } else { "s" },
                words(window),
                v["max_listed"]
            );
        }
    };
    // With [limits.shared]: where each block is counted, and what the shared store said.
    let shared = v.get("shared");
    let shared_note = || {
        let Some(s) = shared else { return };
        if let Some(e) = s["error"].as_str() {
            let mut e = shown(e);
            if let Some(first) = e.get_mut(..1) {
                first.make_ascii_uppercase();
            }
            println!("{e}.");
        } else if s["more"] == true {
            println!(
                "The shared store (Redis) holds more failed-attempt counts than were read ({} of each kind); `candor blocks clear --all` lifts them all.",
                v["max_listed"]
            );
        }
    };
    if rows.is_empty() {
        let here = if shared.is_some_and(|s| s.get("error").is_none()) {
            " at any gateway sharing this one's store"
        } else {
            ""
        };
        println!(
            "No blocks: the token endpoint refuses no client id or address{here} now (limits: {limits_text})."
        );
        shared_note();
        incomplete();
        return;
    }
    let counted = |b: &Value| {
        let c: Vec<&str> = b["counted_in"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        match c.as_slice() {
            ["shared"] => "shared",
            ["local", "shared"] => "here+shared",
            _ => "here",
        }
    };
    let column = |text: &str| {
        if shared.is_some() {
            format!(" {text:<12}")
        } else {
            String::new()
        }
    };
    println!(
        "{:<8} {:<40} {:<24} {:>9} {:>12}{}  UNTIL",
        "KIND",
        "KEY",
        "FROM ADDRESS",
        "FAILURES",
        "BLOCKED FOR",
        column("COUNTED")
    );
    for b in &rows {
        println!(
            "{:<8} {:<40} {:<24} {:>9} {:>12}{}  {}",
            field(b, "kind"),
            field(b, "key"),
            field(b, "address"),
            format!("{}/{}", b["failures"], b["limit"]),
            words(b["retry_after"].as_i64().unwrap_or(0)),
            column(counted(b)),
            field(b, "blocked_until"),
        );
    }
    println!(
        "Limits: {limits_text}; a client_id is counted from each address apart. Each blocked key may try again when its time is up. Lift a block now with `candor blocks clear client ID` (from every address), `candor blocks clear address IP`, or `candor blocks clear --all`."
    );
    if shared.is_some() {
        println!(
            "COUNTED: here (this gateway's own count), shared (the count in Redis of every gateway sharing [limits.shared]), or here+shared; a block in either refuses the attempt at this gateway, and a lift here lifts it in both."
        );
    }
    shared_note();
    incomplete();
}

/// "37 s", "5 min", "1 h 2 min".
fn words(s: i64) -> String {
    if s < 60 {
        format!("{s} s")
    } else if s < 3600 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else if s < 3600 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{} h {} min", s / 3600, s % 3600 / 60)
    }
}

/// Runs `candor blocks`.
pub(crate) fn blocks(command: BlockCommand, args: &AdminArgs) -> ExitCode {
    let fail = |text: String| {
        eprintln!("candor: {}", text.trim_end());
        ExitCode::FAILURE
    };
    let (addr, token_file) = match locate(args) {
        Ok(l) => l,
        Err(e) => return fail(e),
    };
    let token = match std::fs::read_to_string(&token_file) {
        Ok(t) => t.trim().to_owned(),
        Err(e) => {
            return fail(format!(
                "cannot read the admin token file {} ({e}); `candor serve` creates it on first start in its data directory (or server.admin_token_file says where), readable by the gateway's user only: pass the gateway's --config, or --data-dir",
                token_file.display()
            ));
        }
    };
    let (method, path) = match &command {
        BlockCommand::List => (http::Method::GET, "/blocks".to_owned()),
        BlockCommand::Clear { all: true, .. } => (http::Method::DELETE, "/blocks".to_owned()),
        BlockCommand::Clear { kind, key, .. } => (
            http::Method::DELETE,
            format!(
                "/blocks/{}/{}",
                kind.as_deref().unwrap_or(""),
                candor_gateway::path_segment(key.as_deref().unwrap_or(""))
            ),
        ),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start: {e}")),
    };
    let start = match &args.config {
        Some(c) => format!("`candor serve --config {}`", c.display()),
        None => "`candor serve --config FILE` (or `candor serve` for the demo)".to_owned(),
    };
    let (status, body) = match runtime.block_on(call(addr, &token, method, &path, &start)) {
        Ok(r) => r,
        Err(e) => return fail(e),
    };
    if !(200..300).contains(&status) {
        // The gateway's own catalog error.
        return fail(format!(
            "error[{}]: {}",
            shown(body["code"].as_str().unwrap_or("?")),
            shown(body["detail"].as_str().unwrap_or("(no detail)"))
        ));
    }
    let command_was_list = matches!(command, BlockCommand::List);
    match command {
        BlockCommand::List => print_list(&body),
        BlockCommand::Clear { all: true, .. } => {
            let n = body["blocks_lifted"].as_u64().unwrap_or(0);
            let which = if body["shared"]["error"].is_string() {
                "this gateway's"
            } else {
                "every"
            };
            println!(
                "Lifted {n} block{}; {which} failed-attempt count is forgotten.",
                if n == 1 { "" } else { "s" }
            );
        }
        BlockCommand::Clear { kind, key, .. } => {
            let what = match kind.as_deref() {
                Some("client") => "client_id",
                _ => "address",
            };
            let key = shown(
                &body["cleared"]["key"]
                    .as_str()
                    .map_or_else(|| key.unwrap_or_default(), str::to_owned),
            );
            let from = if what == "client_id" {
                " from every address"
            } else {
                ""
            };
            if body["was_blocked"] == true {
                println!(
                    "Lifted the block of {what} {key}{from}: its failures are forgotten and its next attempt is checked as usual."
                );
            } else {
                println!(
                    "{what} {key} was not blocked at this gateway{from}; its counted failures are forgotten."
                );
            }
        }
    }
    // (A list says what the shared store said itself.)
    if !command_was_list {
        print_shared(&body["shared"]);
    }
    // A lift the shared store did not take is not done: a script may retry it.
    if !command_was_list && body["shared"]["error"].is_string() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// What lifting did in the store shared by the gateways (`[limits.shared]`), if there is one.
fn print_shared(shared: &serde_json::Value) {
    if let Some(n) = shared["keys_deleted"].as_u64() {
        println!(
            "In the shared store (Redis): {n} count{} deleted, so it is lifted at every gateway.",
            if n == 1 { "" } else { "s" }
        );
    } else if let Some(e) = shared["error"].as_str() {
        println!("Not lifted in the shared store (Redis): {}.", shown(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_encoded_for_the_path_and_waits_in_words() {
        assert_eq!(
            candor_gateway::path_segment("2001:db8::/64"),
            "2001:db8::%2F64"
        );
        assert_eq!(candor_gateway::path_segment("cl_a b"), "cl_a%20b");
        assert_eq!(words(59), "59 s");
        assert_eq!(words(300), "5 min");
        assert_eq!(words(301), "5 min 1 s");
        assert_eq!(words(3720), "1 h 2 min");
    }

    #[test]
    fn control_characters_are_escaped_for_the_terminal() {
        assert_eq!(shown("\u{1b}[31mRED\u{1b}[0m"), "\\u{1b}[31mRED\\u{1b}[0m");
        assert_eq!(
            shown("a\u{202e}b\u{7f}c\u{9b}d\nе"),
            "a\\u{202e}b\\u{7f}c\\u{9b}d\\u{a}е"
        );
        assert_eq!(shown("cl a\\b"), "cl a\\\\b");
    }

    #[test]
    fn without_a_configuration_the_demo_is_assumed() {
        let args = AdminArgs {
            config: None,
            data_dir: None,
            admin: None,
        };
        let (addr, token) = locate(&args).unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:9090");
        assert_eq!(token, PathBuf::from("candor-data/admin.token"));
    }
}
