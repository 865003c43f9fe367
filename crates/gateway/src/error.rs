//! The gateway's one error type: it knows its catalog code, its source and its retry class,
//! and carries the values the catalog's message template needs.

use candor_catalog::{FieldError, Retry, codes};
use http::{HeaderName, HeaderValue, StatusCode};

/// Where an error came from, for logs and for deciding who can fix it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorSource {
    /// The client's request.
    Downstream,
    /// The upstream service.
    Upstream,
    /// The gateway itself.
    Internal,
}

impl ErrorSource {
    /// Lower-case name for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorSource::Downstream => "downstream",
            ErrorSource::Upstream => "upstream",
            ErrorSource::Internal => "internal",
        }
    }
}

/// An error answer on its way to the client. Rendering happens in one place,
/// [`crate::stages::respond::Renderer`], from the catalog entry named by `code`.
#[derive(Debug)]
pub struct GatewayError {
    /// The catalog code.
    pub code: &'static str,
    /// Values for the message template.
    pub params: Vec<(&'static str, String)>,
    /// Field problems for `errors[]`.
    pub fields: Vec<FieldError>,
    /// Extension members.
    pub extensions: Vec<(&'static str, serde_json::Value)>,
    /// Extra response headers (Allow, Retry-After, WWW-Authenticate...).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Status to use instead of the entry's.
    pub status: Option<StatusCode>,
    /// Retry class to use instead of the entry's.
    pub retry: Option<Retry>,
    /// Where it came from.
    pub source: ErrorSource,
    /// The client stopped or broke its message (a timeout waiting for it, a body cut short).
    client_stopped: bool,
}

impl GatewayError {
    /// An error with code `code`, caused by the request.
    pub fn new(code: &'static str) -> Self {
        GatewayError {
            code,
            params: Vec::new(),
            fields: Vec::new(),
            extensions: Vec::new(),
            headers: Vec::new(),
            status: None,
            retry: None,
            source: ErrorSource::Downstream,
            client_stopped: false,
        }
    }

    /// Marks the error as the client's stopping or breaking its message, not a refusal.
    pub(crate) fn client_stopped(mut self) -> Self {
        self.client_stopped = true;
        self
    }

    /// Who ended the exchange: the client (it stopped), the upstream, or the gateway (a
    /// rule or limit refused, or it failed itself).
    pub(crate) fn ended_by(&self) -> crate::stats::EndedBy {
        use crate::stats::EndedBy;
        match self.source {
            // The gateway's own cap on the upstream refused it; the upstream did nothing.
            ErrorSource::Upstream if self.code == codes::UPSTREAM_OVERLOADED => EndedBy::Gateway,
            ErrorSource::Upstream => EndedBy::Upstream,
            ErrorSource::Downstream
                if self.client_stopped || self.code == codes::REQUEST_TIMEOUT =>
            {
                EndedBy::Client
            }
            _ => EndedBy::Gateway,
        }
    }

    /// Supplies a template parameter.
    pub fn param(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.params.push((name, value.into()));
        self
    }

    /// Adds an extension member.
    pub fn extension(mut self, name: &'static str, value: serde_json::Value) -> Self {
        self.extensions.push((name, value));
        self
    }

    /// Adds a field problem.
    pub fn field(mut self, field: FieldError) -> Self {
        self.fields.push(field);
        self
    }

    /// Adds a response header. Values that are not valid header text are dropped.
    pub fn header(mut self, name: HeaderName, value: &str) -> Self {
        if let Ok(v) = HeaderValue::from_str(value) {
            self.headers.push((name, v));
        }
        self
    }

    /// Overrides the status.
    pub fn status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Overrides the retry class.
    pub fn retry(mut self, retry: Retry) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets the source.
    pub fn source(mut self, source: ErrorSource) -> Self {
        self.source = source;
        self
    }
}
