//! Calls one path of an API behind candor and shows what an error says.
//!
//! ```text
//! cargo run -p candor-client --example quickstart -- /v1/customers/acme/devices
//! ```
//!
//! Settings from the environment: `CANDOR_URL` (default `http://127.0.0.1:8080`), and for
//! a protected route `CANDOR_CLIENT_ID`, `CANDOR_CLIENT_SECRET` (`candor clients add`) and,
//! for a client made with `--second-factor`, `CANDOR_TOTP_SECRET`.

use candor_client::{Client, ErrorClass, Retry};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let base = std::env::var("CANDOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let path = std::env::args().nth(1).unwrap_or_else(|| "/".into());
    let mut builder = Client::builder(base).on_retry(|r| {
        eprintln!(
            "attempt {} failed ({}); retrying in {:?}{}",
            r.attempt,
            r.error,
            r.delay,
            if r.reauthenticate {
                " with a new token"
            } else {
                ""
            }
        )
    });
    if let (Ok(id), Ok(secret)) = (
        std::env::var("CANDOR_CLIENT_ID"),
        std::env::var("CANDOR_CLIENT_SECRET"),
    ) {
        builder = builder.client_credentials(id, secret, "/oauth/token");
        if let Ok(totp) = std::env::var("CANDOR_TOTP_SECRET") {
            builder = builder.totp_secret(&totp);
        }
    }
    let client = match builder.build() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match client.get(&path).send().await {
        Ok(resp) => {
            println!("{} after {} attempt(s)", resp.status(), resp.attempts());
            println!("{}", resp.text());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            let what = match (e.class, e.retry) {
                (ErrorClass::Network, _) => "no answer from the server",
                (ErrorClass::Content, Retry::Never) => "the request must change",
                (ErrorClass::Content, Retry::AfterReauth) => "the credentials must change",
                (ErrorClass::Content, _) => "the request can be sent again later",
                (ErrorClass::Server, _) => "the server side failed",
            };
            eprintln!("{what}: {e}");
            for f in &e.fields {
                eprintln!(
                    "  {} {}: {}",
                    f.location.as_deref().unwrap_or("field"),
                    f.name.as_deref().or(f.pointer.as_deref()).unwrap_or("?"),
                    f.message
                );
            }
            if let Some(url) = &e.troubleshooting_url {
                eprintln!("  what it means and what to check: {url}");
            }
            if let Some(id) = &e.request_id {
                eprintln!("  `candor explain {id}` tells this request's story");
            }
            std::process::ExitCode::FAILURE
        }
    }
}
