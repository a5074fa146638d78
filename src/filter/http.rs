//! HTTP context: holds a token request's headers until its whole form body is read, asks the
//! core for a verdict, then forwards it with the verified identity or answers with an OAuth error.

use super::host::{self, HostSharedData};
use crate::authenticator::{self, BundleSource, HeadAction, Rejection, RequestHead, Verdict};
use crate::bundle::TrustBundle;
use crate::config::{Config, TrustDomainConfig};
use crate::oauth_error::{error_response, ErrorCode};
use crate::trust_store::{bundle_key, BundleCache};
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, BufferType, MapType};
use std::rc::Rc;
use std::sync::Arc;

/// Request head fields, owned (read once in the headers phase).
#[derive(Default)]
struct Head {
    method: String,
    path: String,
    content_type: Option<String>,
    authorization: Option<String>,
}

impl Head {
    fn view(&self) -> RequestHead<'_> {
        RequestHead {
            method: &self.method,
            path: &self.path,
            content_type: self.content_type.as_deref(),
            authorization: self.authorization.as_deref(),
        }
    }
}

pub struct TokenFilter {
    config: Option<Rc<Config>>,
    cache: Rc<BundleCache>,
    head: Head,
    /// Headers are held until the body is decided.
    holding: bool,
    body_size: usize,
}

impl TokenFilter {
    pub fn new(config: Option<Rc<Config>>, cache: Rc<BundleCache>) -> Self {
        TokenFilter {
            config,
            cache,
            head: Head::default(),
            holding: false,
            body_size: 0,
        }
    }

    fn reject(&mut self, config: &Config, rejection: &Rejection) -> Action {
        self.holding = false;
        log::info!(
            "token request rejected with {}: {}{}",
            rejection.code.as_str(),
            rejection.reason,
            rejection
                .claimed_id
                .as_deref()
                .map_or(String::new(), |id| format!(" (SPIFFE ID {id})"))
        );
        let response = error_response(
            rejection.code,
            self.head.authorization.as_deref(),
            &config.issuer,
        );
        host::send_response(response.status, &response.headers, &response.body);
        Action::Pause
    }

    /// Decides on the complete body and releases or answers the held request.
    fn decide(&mut self) -> Action {
        let Some(config) = self.config.clone() else {
            return refuse_unconfigured();
        };
        let Some(body) = host::buffer(BufferType::HttpRequestBody, self.body_size) else {
            let reason = format!(
                "the {} byte body could not be read from the host",
                self.body_size
            );
            return self.reject(&config, &Rejection::new(ErrorCode::InvalidRequest, reason));
        };
        let bundles = SharedBundles { cache: &self.cache };
        let now = host::now_ms().map(|ms| ms / 1000);
        // Client certificates are not read yet (issue 3 wires mTLS in): no chain is presented.
        match authenticator::authenticate(&config, &self.head.view(), &body, None, &bundles, now) {
            Verdict::Authenticated {
                spiffe_id,
                client_id,
            } => {
                // The headers are still held, so they may be changed here.
                let names = &config.identity_headers;
                host::set_request_header(&names.spiffe_id, Some(spiffe_id.as_str()));
                host::set_request_header(&names.client_id, Some(&client_id));
                self.holding = false;
                log::info!("{spiffe_id} authenticated as client {client_id:?}");
                Action::Continue
            }
            Verdict::PassThrough => {
                self.holding = false;
                Action::Continue
            }
            Verdict::Reject(rejection) => self.reject(&config, &rejection),
        }
    }
}

impl Context for TokenFilter {}

impl HttpContext for TokenFilter {
    fn on_http_request_headers(&mut self, _headers: usize, end_of_stream: bool) -> Action {
        let Some(config) = self.config.clone() else {
            return refuse_unconfigured();
        };
        // Only the filter speaks for the client's identity (EDGE-1, FC-21).
        host::remove_all(
            MapType::HttpRequestHeaders,
            &config.identity_headers.spellings,
        );
        self.head = Head {
            method: host::request_header(":method").unwrap_or_default(),
            path: host::request_header(":path").unwrap_or_default(),
            content_type: host::request_header("content-type"),
            authorization: host::request_header("authorization"),
        };
        match authenticator::inspect_head(&config, &self.head.view()) {
            HeadAction::PassThrough => Action::Continue,
            HeadAction::Reject(rejection) => self.reject(&config, &rejection),
            HeadAction::ReadBody if end_of_stream => self.decide(),
            HeadAction::ReadBody => {
                // Requires the plugin option allow_on_headers_stop_iteration: body callbacks
                // then keep coming while the headers wait for our verdict.
                self.holding = true;
                Action::Pause
            }
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !self.holding {
            return Action::Continue;
        }
        let Some(config) = self.config.clone() else {
            return refuse_unconfigured();
        };
        // `body_size` is everything buffered so far, not this chunk.
        self.body_size = body_size;
        if body_size > config.limits.max_body_bytes {
            let limit = config.limits.max_body_bytes;
            let reason = format!("body over limits.max_body_bytes ({limit})");
            return self.reject(&config, &Rejection::new(ErrorCode::BodyTooLarge, reason));
        }
        if end_of_stream {
            self.decide()
        } else {
            Action::Pause
        }
    }

    fn on_http_request_trailers(&mut self, _trailers: usize) -> Action {
        // Identity headers smuggled in as trailers go too (an HTTP/2 upstream would see them).
        if let Some(config) = &self.config {
            host::remove_all(
                MapType::HttpRequestTrailers,
                &config.identity_headers.spellings,
            );
        }
        // A body that ends with trailers never reports end_of_stream in the body callback.
        if self.holding {
            self.decide()
        } else {
            Action::Continue
        }
    }
}

/// Never lets a request through without a valid configuration.
fn refuse_unconfigured() -> Action {
    log::error!("no valid configuration; request refused");
    host::send_response(
        503,
        &[
            ("content-type", "application/json".to_owned()),
            ("cache-control", "no-store".to_owned()),
        ],
        r#"{"error":"server_error","error_description":"authentication filter not configured"}"#,
    );
    Action::Pause
}

/// Bundles from shared data through this VM's parse cache.
struct SharedBundles<'a> {
    cache: &'a BundleCache,
}

impl BundleSource for SharedBundles<'_> {
    fn bundle_for(&self, trust_domain: &TrustDomainConfig) -> Option<Arc<TrustBundle>> {
        self.cache.get(&HostSharedData, &bundle_key(trust_domain))
    }
}
