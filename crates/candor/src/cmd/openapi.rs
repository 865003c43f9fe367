//! `candor openapi`: the catalog's errors as OpenAPI 3.1 components, or an API's OpenAPI
//! document with the error responses the gateway gives on each operation.

use candor_gateway::Config;
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

pub(crate) fn openapi(config: Option<&Path>, spec: Option<&Path>) -> ExitCode {
    let loaded = match (config, spec) {
        (Some(c), _) => Config::load(c),
        // The document alone: its operations as the gateway would route them.
        (None, Some(s)) => {
            let text = format!(
                "[[openapi]]\ndocument = {}\nupstream = \"http://127.0.0.1:9\"\nunsupported = \"warn\"\n",
                serde_json::to_string(&s.display().to_string()).unwrap_or_default()
            );
            Config::parse("<the document's routes>", &text, Path::new("."))
        }
        (None, None) => Ok(Config::empty()),
    };
    let config = match loaded {
        Ok(c) => c,
        Err(report) => {
            eprint!("{report}");
            return ExitCode::FAILURE;
        }
    };
    let doc = match spec {
        None => candor_gateway::openapi::error_components(
            &config.catalog,
            &config.server.public_base_url,
        ),
        Some(s) => match candor_gateway::openapi::annotate(s, &config) {
            Ok((doc, unanswered)) => {
                for op in unanswered {
                    eprintln!(
                        "candor openapi: no route of the configuration answers {op}; its responses are as the document has them"
                    );
                }
                doc
            }
            Err(e) => {
                eprintln!("candor openapi: {e}");
                return ExitCode::FAILURE;
            }
        },
    };
    let mut out = std::io::stdout().lock();
    match serde_json::to_writer_pretty(&mut out, &doc).map(|()| writeln!(out)) {
        // A reader that stops early (`| head`) is no failure of the command.
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) if e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("candor openapi: {e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("candor openapi: {e}");
            ExitCode::FAILURE
        }
    }
}
