//! Obtains tokens with a signed JWT assertion (RFC 7523) instead of a client secret.
//!
//! ```text
//! # once: make a key and register its public half with the gateway
//! openssl genpkey -algorithm ed25519 -out client.pem
//! cargo run -p candor-client --example jwt_assertion -- client.pem CLIENT_ID --jwks > client.jwks.json
//! candor clients set-keys CLIENT_ID --jwks client.jwks.json
//! # then
//! cargo run -p candor-client --example jwt_assertion -- client.pem CLIENT_ID /v1/customers/acme/devices
//! ```
//!
//! `CANDOR_URL` names the gateway (default `http://127.0.0.1:8080`).

use candor_client::{AssertionKey, Client};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [pem_path, client_id, what] = args.as_slice() else {
        eprintln!("usage: jwt_assertion KEY.pem CLIENT_ID (--jwks | PATH)");
        return std::process::ExitCode::FAILURE;
    };
    let key = match std::fs::read_to_string(pem_path)
        .map_err(|e| format!("{pem_path}: {e}"))
        .and_then(|pem| AssertionKey::from_pem(&pem).map_err(|e| format!("{pem_path}: {e}")))
    {
        Ok(k) => k.with_kid(format!("{client_id}-1")),
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    if what == "--jwks" {
        println!("{}", key.public_jwks());
        return std::process::ExitCode::SUCCESS;
    }
    let base = std::env::var("CANDOR_URL").unwrap_or_else(|_| "http://127.0.0.1:8080".into());
    let client = match Client::builder(base)
        .jwt_assertion(client_id.clone(), key, "/oauth/token")
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match client.get(what).send().await {
        Ok(resp) => {
            println!("{}", resp.text());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("{e}");
            std::process::ExitCode::FAILURE
        }
    }
}
