//! [`Client`], its builder, requests and responses, and the retry loop.

use crate::auth::{AssertionKey, Grant, TokenSource, Totp};
use crate::error::ApiError;
use crate::retry::{Budget, delay};
use crate::transport::{Answer, Transport};
use bytes::Bytes;
use candor_catalog::{Retry, RetryRules};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One retry about to be made, handed to the [`ClientBuilder::on_retry`] observer.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct RetryEvent {
    /// The attempt that failed (1 for the first).
    pub attempt: u32,
    /// The wait before the next attempt.
    pub delay: Duration,
    /// Whether new credentials are obtained before it (`after_reauth`).
    pub reauthenticate: bool,
    /// What the failed attempt got.
    pub error: ApiError,
}

type Observer = Arc<dyn Fn(&RetryEvent) + Send + Sync>;

/// Counters of a client since it was built.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Requests sent to the API, retries included.
    pub attempts: u64,
    /// Retries after a wait (`after_delay`, `with_backoff`, network errors).
    pub retries: u64,
    /// Requests to the token endpoint.
    pub token_requests: u64,
    /// Tokens re-acquired because the API refused one (`after_reauth`).
    pub reauths: u64,
    /// Retries refused because the retry budget was spent.
    pub budget_refusals: u64,
    /// Retries left in the budget now.
    pub budget_left: u32,
}

struct Inner {
    base: String,
    transport: Transport,
    tokens: Option<TokenSource>,
    rules: RetryRules,
    max_retries: Option<u32>,
    budget: Budget,
    on_retry: Option<Observer>,
    headers: HeaderMap,
    rng: Mutex<fastrand::Rng>,
    attempts: AtomicU64,
    retries: AtomicU64,
    reauths: AtomicU64,
    budget_refusals: AtomicU64,
}

/// An async client for an API behind candor.
///
/// Cheap to clone (one connection pool, token cache and retry budget shared by the clones).
///
/// ```no_run
/// # async fn run() -> Result<(), candor_client::ApiError> {
/// use candor_client::{Client, ErrorClass};
/// let client = Client::builder("https://api.example.com")
///     .client_credentials("my-client-id", "my-secret", "/oauth/token")
///     .build()?;
/// match client.get("/v1/customers/acme/devices").send().await {
///     Ok(resp) => println!("{}", resp.text()),
///     Err(e) if e.class == ErrorClass::Content => {
///         for f in &e.fields {
///             eprintln!("fix {:?}: {}", f.name, f.message);
///         }
///     }
///     Err(e) => eprintln!("{e}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.inner.base)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Client`].
pub struct ClientBuilder {
    base: String,
    grant: Option<(Grant, String)>,
    scope: Option<String>,
    validity: Option<Duration>,
    totp: Option<Totp>,
    rules: Option<RetryRules>,
    max_retries: Option<u32>,
    budget: (u32, f64),
    on_retry: Option<Observer>,
    headers: HeaderMap,
    roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    connect_timeout: Duration,
    timeout: Duration,
    max_body: usize,
    error: Option<ApiError>,
}

impl Client {
    /// A builder for the API at `base_url` (`https://api.example.com`, or with a path
    /// prefix that every request path is appended to).
    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base: base_url.into().trim_end_matches('/').to_owned(),
            grant: None,
            scope: None,
            validity: None,
            totp: None,
            rules: None,
            max_retries: None,
            budget: (20, 0.1),
            on_retry: None,
            headers: HeaderMap::new(),
            roots: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(90),
            max_body: 16 * 1024 * 1024,
            error: None,
        }
    }

    /// A request with any method.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        RequestBuilder {
            client: self.clone(),
            method,
            path: path.to_owned(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            max_retries: None,
            error: None,
        }
    }

    /// A GET of `path` (relative to the base URL, with its query if any).
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// A DELETE of `path`.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    /// A POST of `body` as JSON.
    pub fn post_json<T: serde::Serialize + ?Sized>(&self, path: &str, body: &T) -> RequestBuilder {
        self.request(Method::POST, path).json(body)
    }

    /// A PUT of `body` as JSON.
    pub fn put_json<T: serde::Serialize + ?Sized>(&self, path: &str, body: &T) -> RequestBuilder {
        self.request(Method::PUT, path).json(body)
    }

    /// A PATCH of `body` as JSON.
    pub fn patch_json<T: serde::Serialize + ?Sized>(&self, path: &str, body: &T) -> RequestBuilder {
        self.request(Method::PATCH, path).json(body)
    }

    /// The access token requests carry now (obtained, or refreshed, if needed); for other
    /// channels to the same API. `None` without credentials.
    pub async fn access_token(&self) -> Result<Option<String>, ApiError> {
        match &self.inner.tokens {
            Some(t) => t
                .token(&self.inner.transport, &self.inner.rules, None)
                .await
                .map(Some),
            None => Ok(None),
        }
    }

    /// The retry rules this client follows.
    pub fn retry_rules(&self) -> &RetryRules {
        &self.inner.rules
    }

    /// Counters since the client was built.
    pub fn stats(&self) -> Stats {
        let i = &self.inner;
        Stats {
            attempts: i.attempts.load(Ordering::Relaxed),
            retries: i.retries.load(Ordering::Relaxed),
            token_requests: i
                .tokens
                .as_ref()
                .map_or(0, |t| t.requests.load(Ordering::Relaxed)),
            reauths: i.reauths.load(Ordering::Relaxed),
            budget_refusals: i.budget_refusals.load(Ordering::Relaxed),
            budget_left: i.budget.left(),
        }
    }
}

fn join(base: &str, path: &str) -> String {
    if path.starts_with("http://") || path.starts_with("https://") {
        path.to_owned()
    } else if path.starts_with('/') {
        format!("{base}{path}")
    } else {
        format!("{base}/{path}")
    }
}

impl ClientBuilder {
    /// Obtains tokens with the client-credentials grant (HTTP Basic) at `token_url`
    /// (absolute, or a path on the base URL such as `/oauth/token`).
    pub fn client_credentials(
        mut self,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
        token_url: impl Into<String>,
    ) -> Self {
        let grant = Grant::Secret {
            id: client_id.into(),
            secret: client_secret.into(),
        };
        self.grant = Some((grant, token_url.into()));
        self
    }

    /// Obtains tokens with a JWT assertion signed by `key` (RFC 7523), a fresh `jti` each
    /// time; register `key.public_jwks()` with `candor clients set-keys` first.
    pub fn jwt_assertion(
        mut self,
        client_id: impl Into<String>,
        key: AssertionKey,
        token_url: impl Into<String>,
    ) -> Self {
        let grant = Grant::Assertion {
            id: client_id.into(),
            key: Box::new(key),
        };
        self.grant = Some((grant, token_url.into()));
        self
    }

    /// Sends a one-time code with each token request (clients made with
    /// `--second-factor`): `secret` is the base32 `totp_secret`.
    pub fn totp_secret(mut self, secret: &str) -> Self {
        match Totp::from_base32(secret) {
            Ok(t) => self.totp = Some(t),
            Err(e) => self.error = Some(e),
        }
        self
    }

    /// Asks for these scopes (space-separated) instead of all the client's.
    pub fn scope(mut self, scope: impl Into<String>) -> Self {
        self.scope = Some(scope.into());
        self
    }

    /// Asks for tokens valid this long (candor's `validity` parameter) instead of the
    /// client's configured lifetime.
    pub fn token_validity(mut self, validity: Duration) -> Self {
        self.validity = Some(validity);
        self
    }

    /// Follows these rules instead of the built-in catalog's (see [`crate::rules::from_json`]).
    pub fn retry_rules(mut self, rules: RetryRules) -> Self {
        self.rules = Some(rules);
        self
    }

    /// At most `n` retries per request, whatever the class allows (0: never retry).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// The retry budget shared by all requests: `max` retries in store, `refill` of one
    /// given back by each success (defaults: 20 and 0.1, so sustained failures are retried
    /// at most once per ten successes).
    pub fn retry_budget(mut self, max: u32, refill: f64) -> Self {
        self.budget = (max, refill);
        self
    }

    /// Calls `f` before each retry (for logs and metrics).
    pub fn on_retry(mut self, f: impl Fn(&RetryEvent) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(f));
        self
    }

    /// A header sent with every request (`Api-Company`, say).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.insert(n, v);
            }
            _ => self.error = Some(ApiError::local(format!("`{name}` is not a valid header"))),
        }
        self
    }

    /// Trusts the CA certificates in `pem` besides the system's.
    pub fn add_root_certificates_pem(mut self, pem: &str) -> Self {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            match cert {
                Ok(c) => self.roots.push(c),
                Err(e) => self.error = Some(ApiError::local(format!("a PEM certificate: {e}"))),
            }
        }
        self
    }

    /// The longest a connection may take to open (default 10 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// The longest one attempt may take, answer read whole (default 90 s).
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// The largest answer body read (default 16 MiB).
    pub fn max_body_bytes(mut self, n: usize) -> Self {
        self.max_body = n;
        self
    }

    /// The client.
    pub fn build(self) -> Result<Client, ApiError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let uri: http::Uri = self
            .base
            .parse()
            .map_err(|e| ApiError::local(format!("base URL `{}`: {e}", self.base)))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(ApiError::local(format!(
                "base URL `{}` must be http:// or https:// with a host",
                self.base
            )));
        }
        let tokens = self.grant.map(|(grant, url)| {
            let mut t = TokenSource::new(join(&self.base, &url), grant);
            t.scope = self.scope;
            t.validity = self.validity;
            t.totp = self.totp;
            t
        });
        Ok(Client {
            inner: Arc::new(Inner {
                transport: Transport::new(
                    self.roots,
                    self.connect_timeout,
                    self.timeout,
                    self.max_body,
                ),
                base: self.base,
                tokens,
                rules: self
                    .rules
                    .unwrap_or_else(|| crate::rules::builtin().clone()),
                max_retries: self.max_retries,
                budget: Budget::new(self.budget.0, self.budget.1),
                on_retry: self.on_retry,
                headers: self.headers,
                rng: Mutex::new(fastrand::Rng::new()),
                attempts: AtomicU64::new(0),
                retries: AtomicU64::new(0),
                reauths: AtomicU64::new(0),
                budget_refusals: AtomicU64::new(0),
            }),
        })
    }
}

/// One request being built; [`RequestBuilder::send`] sends it, retrying as the rules say.
#[must_use = "a request does nothing until sent"]
pub struct RequestBuilder {
    client: Client,
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    max_retries: Option<u32>,
    error: Option<ApiError>,
}

impl RequestBuilder {
    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match (HeaderName::try_from(name), HeaderValue::try_from(value)) {
            (Ok(n), Ok(v)) => {
                self.headers.append(n, v);
            }
            _ => self.error = Some(ApiError::local(format!("`{name}` is not a valid header"))),
        }
        self
    }

    /// A JSON body.
    pub fn json<T: serde::Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(b) => {
                self.body = b.into();
                self.headers.insert(
                    http::header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            Err(e) => self.error = Some(ApiError::local(format!("the body is not JSON: {e}"))),
        }
        self
    }

    /// A body of any type.
    pub fn body(mut self, content_type: &str, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self.header("content-type", content_type)
    }

    /// The `Idempotency-Key` of this request (one is made up for retried POST and PATCH
    /// requests otherwise).
    pub fn idempotency_key(self, key: &str) -> Self {
        self.header("idempotency-key", key)
    }

    /// At most `n` retries for this request (0: no retry).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }

    /// Sends the request; retries network errors and answers whose class allows it
    /// (`with_backoff`, `after_delay`: waits first; `after_reauth`: once, with a new token;
    /// `never`: not at all).
    pub async fn send(self) -> Result<Response, ApiError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let inner = &self.client.inner;
        let url = join(&inner.base, &self.path);
        let cap = self.max_retries.or(inner.max_retries);
        let mut headers = inner.headers.clone();
        for (k, v) in &self.headers {
            headers.insert(k, v.clone());
        }
        let idempotent = matches!(
            self.method,
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::PUT
                | Method::DELETE
                | Method::TRACE
        );
        if !idempotent && cap != Some(0) && !headers.contains_key("idempotency-key") {
            // The same key on every attempt, so a server that saw the first can tell.
            let key = format!("{:032x}", inner.rng.lock().map_or(0, |mut r| r.u128(..)));
            headers.insert(
                "idempotency-key",
                HeaderValue::from_str(&key).expect("hex is a valid header"),
            );
        }
        let body = Full::new(self.body.clone());
        let (mut attempt, mut retries, mut reauthed) = (0u32, 0u32, false);
        let mut stale: Option<String> = None;
        loop {
            attempt += 1;
            let mut from_token = false;
            let outcome = async {
                let mut headers = headers.clone();
                let mut used = None;
                if let Some(ts) = &inner.tokens {
                    let token = ts
                        .token(&inner.transport, &inner.rules, stale.as_deref())
                        .await
                        .inspect_err(|_| from_token = true)?;
                    headers.insert(
                        http::header::AUTHORIZATION,
                        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                            ApiError::local("the token is not a header value".into())
                        })?,
                    );
                    used = Some(token);
                }
                let mut req = http::Request::builder()
                    .method(self.method.clone())
                    .uri(&url);
                if let Some(h) = req.headers_mut() {
                    *h = headers;
                }
                let req = req
                    .body(body.clone())
                    .map_err(|e| ApiError::local(format!("URL `{url}`: {e}")))?;
                inner.attempts.fetch_add(1, Ordering::Relaxed);
                let answer = inner.transport.send(req).await?;
                Ok::<_, ApiError>((answer, used))
            }
            .await;
            let (error, used) = match outcome {
                Ok((answer, _)) if answer.status.as_u16() < 400 => {
                    inner.budget.succeeded();
                    return Ok(Response::new(answer, attempt));
                }
                Ok((answer, used)) => (
                    ApiError::from_response(
                        answer.status.as_u16(),
                        &answer.headers,
                        &answer.body,
                        &inner.rules,
                    ),
                    used,
                ),
                Err(e) => (e, None),
            };
            let mut e = error;
            e.attempts = attempt;
            let give_up = |mut e: ApiError, why: String| {
                e.gave_up = Some(why);
                Err(e)
            };
            match e.retry {
                Retry::Never => return Err(e),
                Retry::AfterReauth => {
                    if from_token || inner.tokens.is_none() {
                        return give_up(e, "no credentials this client could renew".into());
                    }
                    if cap == Some(0) {
                        return give_up(e, "retries are off (max_retries 0)".into());
                    }
                    if reauthed {
                        return give_up(e, "a new token was refused too".into());
                    }
                    reauthed = true;
                    stale = used;
                    inner.reauths.fetch_add(1, Ordering::Relaxed);
                    self.notify(attempt, Duration::ZERO, true, &e);
                }
                class @ (Retry::AfterDelay | Retry::WithBackoff) => {
                    let b = inner.rules.backoff(class);
                    let max = cap.map_or(b.max_retries, |c| c.min(b.max_retries));
                    if !b.retry || retries >= max {
                        let why = format!("{retries} retries made, the most allowed");
                        return give_up(e, why);
                    }
                    let wait = match e.retry_after.filter(|_| b.honour_retry_after) {
                        Some(ra) if ra > Duration::from_millis(b.max_delay_ms) => {
                            let why = format!(
                                "the server asks to wait {} s, longer than {} s",
                                ra.as_secs(),
                                b.max_delay_ms / 1000
                            );
                            return give_up(e, why);
                        }
                        Some(ra) => ra,
                        None => {
                            let mut rng = inner.rng.lock().unwrap_or_else(|p| p.into_inner());
                            delay(&b, retries + 1, &mut rng)
                        }
                    };
                    if !inner.budget.take() {
                        inner.budget_refusals.fetch_add(1, Ordering::Relaxed);
                        return give_up(e, "the client's retry budget is spent".into());
                    }
                    retries += 1;
                    inner.retries.fetch_add(1, Ordering::Relaxed);
                    self.notify(attempt, wait, false, &e);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    fn notify(&self, attempt: u32, delay: Duration, reauthenticate: bool, error: &ApiError) {
        if let Some(f) = &self.client.inner.on_retry {
            f(&RetryEvent {
                attempt,
                delay,
                reauthenticate,
                error: error.clone(),
            });
        }
    }
}

/// A successful answer (status below 400), read whole.
#[derive(Debug)]
pub struct Response {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    attempts: u32,
}

impl Response {
    fn new(a: Answer, attempts: u32) -> Response {
        Response {
            status: a.status,
            headers: a.headers,
            body: a.body,
            attempts,
        }
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status.as_u16()
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header's value, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The request id the gateway gave (`X-Request-Id`).
    pub fn request_id(&self) -> Option<&str> {
        self.header("x-request-id")
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body decoded from JSON.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, ApiError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            let mut err = ApiError::local(format!("the answer is not the JSON expected: {e}"));
            err.request_id = self.request_id().map(str::to_owned);
            err
        })
    }

    /// How many attempts it took (1 when the first succeeded).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}
