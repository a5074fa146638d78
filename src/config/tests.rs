//! Configuration parsing: defaults, and every refusal names its field (AUD-7, BEP-1, BEP-2,
//! BUN-20, ID-9, FC-01 b).

use super::*;
use serde_json::{json, Value};

fn base() -> Value {
    json!({
        "issuer": "https://as.example.com",
        "token_paths": ["/token"],
        "trust_domains": {
            "example.org": {
                "bundle_endpoint": {
                    "cluster": "bundle_example_org",
                    "authority": "bundle.example.org",
                    "path": "/bundle.json"
                }
            }
        },
        "clients": [
            {"spiffe_id": "spiffe://example.org/demo-client", "client_id": "demo-client"},
            {"spiffe_id": "spiffe://example.org/self-named"}
        ]
    })
}

fn parse(v: &Value) -> Result<Config, ConfigError> {
    Config::parse(v.to_string().as_bytes())
}

fn refused(v: &Value) -> ConfigError {
    match parse(v) {
        Ok(_) => panic!("accepted: {v}"),
        Err(e) => e,
    }
}

fn with(path: &[&str], value: Value) -> Value {
    let mut v = base();
    let mut cur = &mut v;
    for (i, p) in path.iter().enumerate() {
        if i + 1 == path.len() {
            cur[*p] = value.clone();
        } else {
            cur = &mut cur[*p];
        }
    }
    v
}

#[test]
fn minimal_config_and_defaults() {
    let c = parse(&base()).unwrap();
    assert_eq!(c.issuer, "https://as.example.com");
    assert!(c.is_token_path("/token"));
    assert!(c.is_token_path("/token/"));
    assert!(!c.is_token_path("/token/x"));
    let td = TrustDomain::parse("example.org").unwrap();
    let ep = &c.trust_domains[&td].endpoint;
    assert_eq!(ep.cluster, "bundle_example_org");
    assert_eq!(ep.timeout, Duration::from_secs(5));
    let demo = SpiffeId::parse("spiffe://example.org/demo-client").unwrap();
    assert_eq!(c.clients[&demo], "demo-client");
    let selfnamed = SpiffeId::parse("spiffe://example.org/self-named").unwrap();
    assert_eq!(c.clients[&selfnamed], "spiffe://example.org/self-named");
    assert_eq!(c.identity_headers.spiffe_id, "x-spiffe-id");
    assert_eq!(c.identity_headers.client_id, "x-oauth-client-id");
    assert_eq!(c.clock_skew, Duration::from_secs(60));
    assert!(!c.require_client_id);
    assert_eq!(c.x509_client_id, X509ClientIdRule::SpiffeId);
    assert_eq!(c.limits.max_body_bytes, 65536);
    assert_eq!(c.limits.max_assertion_bytes, 16384);
    assert_eq!(c.refresh.default_refresh, Duration::from_secs(300));
    assert_eq!(c.refresh.initial_delay, Duration::from_millis(200));
    assert_eq!(c.refresh.max_staleness, Duration::from_secs(86_400));
    assert_eq!(c.refresh.hint_permille, 250);
    assert_eq!(c.refresh.jitter_permille, 100);
    assert_eq!(c.refresh.max_retry, Duration::from_secs(300));
    assert_eq!(c.refresh.max_refresh, Duration::from_secs(21_600));
    assert_eq!(c.refresh.request_wait, Duration::from_secs(3));
    assert_eq!(c.refresh.on_demand_min_interval, Duration::from_secs(10));
    assert_eq!(c.limits.max_bundle_bytes, 1024 * 1024);
    assert_eq!(c.limits.max_held_requests, 256);
    assert_eq!(c.limits.max_cached_credentials, 1024);
    assert!(ep.follow_redirects);
}

/// Rules between two fields name both, with the values in force (defaults included).
#[test]
fn two_field_rules_show_both_values() {
    let e = refused(&with(&["bundle_refresh"], json!({"retry_seconds": 600})));
    assert_eq!(e.field, "bundle_refresh.max_retry_seconds");
    assert_eq!(
        e.message,
        "300 is less than retry_seconds (600); raise it or lower retry_seconds"
    );
    let e = refused(&with(
        &["bundle_refresh"],
        json!({"default_refresh_seconds": 30}),
    ));
    assert_eq!(
        e.message,
        "30 is outside min_refresh_seconds … max_refresh_seconds (60 … 21600)"
    );
    // BEP-8: a bundle refreshed at the longest interval survives one failed fetch.
    let ok = with(
        &["bundle_refresh"],
        json!({"max_refresh_seconds": 3600, "max_retry_seconds": 300, "max_staleness_seconds": 3900}),
    );
    assert!(parse(&ok).is_ok());
}

#[test]
fn refresh_fractions_are_read_in_thousandths() {
    let v = with(
        &["bundle_refresh"],
        json!({"hint_fraction": 0.5, "jitter_fraction": 0, "request_wait_ms": 0}),
    );
    let c = parse(&v).unwrap();
    assert_eq!(c.refresh.hint_permille, 500);
    assert_eq!(c.refresh.jitter_permille, 0);
    assert_eq!(c.refresh.request_wait, Duration::ZERO);
}

/// ID-9 / BEP-1: trust domains are the configured names, compared exactly; the bundle
/// endpoint's host (`bundle.example.org`) is not a trust domain.
#[test]
fn id_9_trust_domain_lookup_is_exact() {
    let c = parse(&base()).unwrap();
    let id = |s: &str| SpiffeId::parse(s).unwrap();
    assert!(c.trust_domain_of(&id("spiffe://example.org/a")).is_some());
    assert!(c
        .trust_domain_of(&id("spiffe://example.org.evil/a"))
        .is_none());
    assert!(c
        .trust_domain_of(&id("spiffe://bundle.example.org/a"))
        .is_none());
}

/// AUD-7 / FC-01 b: no issuer, or not an https URL, is refused.
#[test]
fn aud_7_issuer_required_and_checked() {
    let mut v = base();
    v.as_object_mut().unwrap().remove("issuer");
    let e = refused(&v);
    assert!(e.message.contains("missing field `issuer`"), "{e}");
    for bad in [
        "",
        "http://as.example.com",
        "https://",
        "https://u@as.example.com",
        "https://as.example.com?x=1",
        "https://as.example.com#f",
    ] {
        let e = refused(&with(&["issuer"], json!(bad)));
        assert_eq!(e.field, "issuer", "{bad}");
    }
    assert_eq!(
        refused(&with(&["issuer"], json!(["https://as.example.com"]))).field,
        "issuer"
    );
}

#[test]
fn field_paths_name_the_offender() {
    let cases: Vec<(Value, &str)> = vec![
        (with(&["token_paths"], json!([])), "token_paths"),
        (with(&["token_paths"], json!(["token"])), "token_paths[0]"),
        (
            with(&["token_paths"], json!(["/token", "/t?x"])),
            "token_paths[1]",
        ),
        (with(&["trust_domains"], json!({})), "trust_domains"),
        (
            with(
                &["trust_domains"],
                json!({"Example.org": {"bundle_endpoint": {"cluster": "c", "authority": "a", "path": "/p"}}}),
            ),
            "trust_domains.Example.org",
        ),
        (
            with(
                &["trust_domains", "example.org", "bundle_endpoint", "path"],
                json!("bundle.json"),
            ),
            "trust_domains.example.org.bundle_endpoint.path",
        ),
        (
            with(
                &[
                    "trust_domains",
                    "example.org",
                    "bundle_endpoint",
                    "authority",
                ],
                json!("u:p@bundle.example.org"),
            ),
            "trust_domains.example.org.bundle_endpoint.authority",
        ),
        (
            with(
                &["trust_domains", "example.org", "bundle_endpoint", "cluster"],
                json!(""),
            ),
            "trust_domains.example.org.bundle_endpoint.cluster",
        ),
        (
            with(
                &[
                    "trust_domains",
                    "example.org",
                    "bundle_endpoint",
                    "timeout_ms",
                ],
                json!(0),
            ),
            "trust_domains.example.org.bundle_endpoint.timeout_ms",
        ),
        (
            with(
                &[
                    "trust_domains",
                    "example.org",
                    "bundle_endpoint",
                    "timeout_ms",
                ],
                json!("5s"),
            ),
            "trust_domains.example.org.bundle_endpoint.timeout_ms",
        ),
        (
            with(
                &["clients"],
                json!([{"spiffe_id": "spiffe://example.org/a/../b"}]),
            ),
            "clients[0].spiffe_id",
        ),
        (
            with(&["clients"], json!([{"spiffe_id": "spiffe://example.org"}])),
            "clients[0].spiffe_id",
        ),
        (
            with(
                &["clients"],
                json!([{"spiffe_id": "spiffe://example.net/a"}]),
            ),
            "clients[0].spiffe_id",
        ),
        (
            with(
                &["clients"],
                json!([{"spiffe_id": "spiffe://example.org/a"}, {"spiffe_id": "spiffe://example.org/a"}]),
            ),
            "clients[1].spiffe_id",
        ),
        (
            with(
                &["clients"],
                json!([{"spiffe_id": "spiffe://example.org/a", "client_id": ""}]),
            ),
            "clients[0].client_id",
        ),
        (
            with(&["identity_headers"], json!({"spiffe_id": "X-Spiffe-Id"})),
            "identity_headers.spiffe_id",
        ),
        (
            with(&["identity_headers"], json!({"client_id": "authorization"})),
            "identity_headers.client_id",
        ),
        (
            with(&["identity_headers"], json!({"client_id": "x-spiffe-id"})),
            "identity_headers.client_id",
        ),
        (
            with(&["clock_skew_seconds"], json!(301)),
            "clock_skew_seconds",
        ),
        (
            with(&["clock_skew_seconds"], json!(-1)),
            "clock_skew_seconds",
        ),
        (
            with(&["limits"], json!({"max_body_bytes": 10})),
            "limits.max_body_bytes",
        ),
        (
            with(&["limits"], json!({"max_assertion_bytes": 100})),
            "limits.max_assertion_bytes",
        ),
        (
            with(&["bundle_refresh"], json!({"min_refresh_seconds": 0})),
            "bundle_refresh.min_refresh_seconds",
        ),
        (
            with(&["bundle_refresh"], json!({"retry_seconds": 0})),
            "bundle_refresh.retry_seconds",
        ),
        (
            with(&["bundle_refresh"], json!({"default_refresh_seconds": 5})),
            "bundle_refresh.default_refresh_seconds",
        ),
        (
            with(&["bundle_refresh"], json!({"initial_delay_ms": 0})),
            "bundle_refresh.initial_delay_ms",
        ),
        (
            with(&["bundle_refresh"], json!({"hint_fraction": 0})),
            "bundle_refresh.hint_fraction",
        ),
        (
            with(&["bundle_refresh"], json!({"hint_fraction": 1.5})),
            "bundle_refresh.hint_fraction",
        ),
        (
            with(&["bundle_refresh"], json!({"jitter_fraction": 0.9})),
            "bundle_refresh.jitter_fraction",
        ),
        (
            with(&["bundle_refresh"], json!({"jitter_fraction": "0.1"})),
            "bundle_refresh.jitter_fraction",
        ),
        (
            with(&["bundle_refresh"], json!({"max_retry_seconds": 5})),
            "bundle_refresh.max_retry_seconds",
        ),
        (
            with(
                &["bundle_refresh"],
                json!({"max_staleness_seconds": 21_899}),
            ),
            "bundle_refresh.max_staleness_seconds",
        ),
        (
            with(&["bundle_refresh"], json!({"request_wait_ms": 30_001})),
            "bundle_refresh.request_wait_ms",
        ),
        (
            with(
                &["bundle_refresh"],
                json!({"on_demand_min_interval_ms": 99}),
            ),
            "bundle_refresh.on_demand_min_interval_ms",
        ),
        (
            with(&["limits"], json!({"max_bundle_bytes": 1023})),
            "limits.max_bundle_bytes",
        ),
        (
            with(&["limits"], json!({"max_held_requests": 100_001})),
            "limits.max_held_requests",
        ),
        (
            with(&["limits"], json!({"max_cached_credentials": 100_001})),
            "limits.max_cached_credentials",
        ),
        (
            with(
                &[
                    "trust_domains",
                    "example.org",
                    "bundle_endpoint",
                    "follow_redirects",
                ],
                json!("yes"),
            ),
            "trust_domains.example.org.bundle_endpoint.follow_redirects",
        ),
        (with(&["audience"], json!("x")), "audience"),
        (with(&["x509_client_id"], json!("equal")), "x509_client_id"),
        (
            with(&["trust_domains", "example.org", "url"], json!("https://x")),
            "trust_domains.example.org.url",
        ),
    ];
    for (v, field) in cases {
        let e = refused(&v);
        assert_eq!(e.field, field, "{e}");
        assert!(!e.message.is_empty());
    }
}

/// Unknown fields are refused so a typo never silently drops a setting.
#[test]
fn unknown_field_message() {
    let e = refused(&with(&["audience"], json!("x")));
    assert!(e.message.contains("unknown field `audience`"), "{e}");
}

/// BUN-20: a trust domain configured twice is refused.
#[test]
fn bun_20_duplicate_trust_domain_refused() {
    let doc = r#"{"issuer":"https://as.example.com","token_paths":["/token"],"clients":[],
        "trust_domains":{"example.org":{"bundle_endpoint":{"cluster":"a","authority":"a","path":"/a"}},
                         "example.org":{"bundle_endpoint":{"cluster":"b","authority":"b","path":"/b"}}}}"#;
    let e = Config::parse(doc.as_bytes()).unwrap_err();
    assert!(
        e.message.contains("duplicate member name \"example.org\""),
        "{e}"
    );
}

#[test]
fn not_json_or_not_an_object() {
    assert!(Config::parse(b"").is_err());
    assert!(Config::parse(b"[]").is_err());
    assert!(Config::parse(b"{\"issuer\":").is_err());
}

#[test]
fn display_names_field() {
    let e = refused(&with(&["token_paths"], json!([])));
    assert_eq!(
        e.to_string(),
        "configuration field token_paths: must list at least one path"
    );
}

/// EDGE-1 / FC-21: every `-`/`_` spelling of the identity headers (and of the dry-run verdict
/// header, which no client may set either) is known, to be removed.
#[test]
fn identity_header_spellings() {
    let c = parse(&base()).unwrap();
    let s = &c.identity_headers.spellings;
    assert_eq!(s.len(), 4 + 8 + 8 + 2 + 4);
    assert!(s.iter().any(|n| n == "client_cert_chain"));
    for name in [
        "x-spiffe-id",
        "x_spiffe_id",
        "x-spiffe_id",
        "x_oauth_client_id",
        "x-oauth_client-id",
        "x-spiffe-oauth-verdict",
        "x_spiffe_oauth_verdict",
    ] {
        assert!(s.iter().any(|n| n == name), "{name}");
    }
}

/// Token paths match in canonical form (`//token`, `/TOKEN`, `/token;x`, …).
#[test]
fn token_paths_match_canonical_spellings() {
    let c = parse(&with(&["token_paths"], json!(["/oauth2/token"]))).unwrap();
    for p in [
        "/oauth2/token",
        "//oauth2//token",
        "/OAuth2/Token",
        "/oauth2/token;jsessionid=1",
        "/oauth2/%74oken?x",
    ] {
        assert!(c.is_token_path(p), "{p}");
    }
    assert!(!c.is_token_path("/token"));
    assert!(!c.is_token_path("/oauth2/tokens"));
}

#[test]
fn cid_5_x509_client_id_rule() {
    let c = parse(&with(&["x509_client_id"], json!("registered"))).unwrap();
    assert_eq!(c.x509_client_id, X509ClientIdRule::Registered);
}

/// BEP-2: the bundle endpoint's authority is a host (and port) without userinfo or path;
/// https and the server certificate check are the Envoy cluster's TLS settings.
#[test]
fn bep_2_endpoint_authority_refusals() {
    let field = "trust_domains.example.org.bundle_endpoint.authority";
    for bad in [
        "",
        "u:p@bundle.example.org",
        "bundle.example.org/x",
        "https://bundle.example.org",
    ] {
        let e = refused(&with(
            &[
                "trust_domains",
                "example.org",
                "bundle_endpoint",
                "authority",
            ],
            json!(bad),
        ));
        assert_eq!(e.field, field, "{bad}");
    }
}

/// FC-27 / CIMD-2 / CIMD-3 / §4.6 (4.6): a `spiffe_id` ending in `/*` registers a path
/// prefix; a `*` anywhere else is a configuration error.
#[test]
fn fc_27_prefix_registrations() {
    let clients = json!([
        {"spiffe_id": "spiffe://example.org/my-oauth-client"},
        {"spiffe_id": "spiffe://example.org/workloads/*"},
        {"spiffe_id": "spiffe://example.org/workloads/batch/*", "client_id": "batch"},
        {"spiffe_id": "spiffe://example.org/workloads/exact", "client_id": "exact"}
    ]);
    let c = parse(&with(&["clients"], clients)).unwrap();
    let lookup = |id: &str| c.client_id_for(&SpiffeId::parse(id).unwrap());
    for (id, want) in [
        (
            "spiffe://example.org/my-oauth-client",
            Some(id_str("spiffe://example.org/my-oauth-client")),
        ),
        (
            "spiffe://example.org/workloads/a",
            Some(id_str("spiffe://example.org/workloads/a")),
        ),
        (
            "spiffe://example.org/workloads/a/b",
            Some(id_str("spiffe://example.org/workloads/a/b")),
        ),
        // The longest prefix decides; an exact registration beats every prefix.
        (
            "spiffe://example.org/workloads/batch/1",
            Some("batch".to_owned()),
        ),
        (
            "spiffe://example.org/workloads/exact",
            Some("exact".to_owned()),
        ),
        ("spiffe://example.org/workloads-evil/a", None),
        ("spiffe://example.org/workloads", None),
        ("spiffe://example.org/workloadsx", None),
        ("spiffe://example.org/my-oauth-client/x", None),
        ("spiffe://example.org", None),
    ] {
        assert_eq!(lookup(id), want, "{id}");
    }
    // The whole trust domain.
    let all = parse(&with(
        &["clients"],
        json!([{"spiffe_id": "spiffe://example.org/*"}]),
    ))
    .unwrap();
    let any = SpiffeId::parse("spiffe://example.org/anything").unwrap();
    assert_eq!(all.client_id_for(&any).as_deref(), Some(any.as_str()));
    assert!(!all.is_registered(&SpiffeId::parse("spiffe://example.org").unwrap()));

    for bad in [
        "spiffe://example.org/client*",
        "spiffe://example.org/*/x",
        "spiffe://example.org/a*b",
        "spiffe://example.org/*/*",
        "spiffe://example.org/**",
        "spiffe://*/x",
        "spiffe://example.org/workloads/",
        "spiffe://example.org/workloads//*",
        "spiffe://example.org/a/../*",
        "spiffe://example.net/*",
        "SPIFFE://example.org/*",
    ] {
        let e = refused(&with(&["clients"], json!([{ "spiffe_id": bad }])));
        assert_eq!(e.field, "clients[0].spiffe_id", "{bad}: {e}");
    }
    let twice = json!([{"spiffe_id": "spiffe://example.org/w/*"}, {"spiffe_id": "spiffe://example.org/w/*"}]);
    assert_eq!(
        refused(&with(&["clients"], twice)).field,
        "clients[1].spiffe_id"
    );
    let empty = json!([{"spiffe_id": "spiffe://example.org/w/*", "client_id": ""}]);
    assert_eq!(
        refused(&with(&["clients"], empty)).field,
        "clients[0].client_id"
    );
}

/// CID-1, FC-27: a configured client_id that is another registration's SPIFFE ID (and so its
/// default client id) would merge two identities into one client: refused, exactly or through
/// a prefix; sharing a plain client_id stays allowed.
#[test]
fn cid_1_client_id_collisions_refused() {
    let through_prefix = json!([
        {"spiffe_id": "spiffe://example.org/ns/*"},
        {"spiffe_id": "spiffe://example.org/billing", "client_id": "spiffe://example.org/ns/billing"}
    ]);
    let e = refused(&with(&["clients"], through_prefix));
    assert_eq!(e.field, "clients[1].client_id", "{e}");
    let exact = json!([
        {"spiffe_id": "spiffe://example.org/a"},
        {"spiffe_id": "spiffe://example.org/b", "client_id": "spiffe://example.org/a"}
    ]);
    assert_eq!(
        refused(&with(&["clients"], exact)).field,
        "clients[1].client_id"
    );
    let shared = json!([
        {"spiffe_id": "spiffe://example.org/team/*", "client_id": "shared"},
        {"spiffe_id": "spiffe://example.org/admin", "client_id": "shared"},
        {"spiffe_id": "spiffe://example.org/c", "client_id": "spiffe://example.org/c"},
        {"spiffe_id": "spiffe://example.org/d", "client_id": "spiffe://example.org/nobody"}
    ]);
    assert!(parse(&with(&["clients"], shared)).is_ok());
}

fn id_str(s: &str) -> String {
    s.to_owned()
}

/// Dry run: off by default; on, with the verdict header named; the verdict header may not be
/// an identity header (in any spelling).
#[test]
fn dry_run() {
    assert_eq!(parse(&base()).unwrap().dry_run, None);
    let on = parse(&with(&["dry_run"], json!({"enabled": true}))).unwrap();
    assert_eq!(on.dry_run.as_deref(), Some("x-spiffe-oauth-verdict"));
    let named = with(
        &["dry_run"],
        json!({"enabled": true, "verdict_header": "x-verdict"}),
    );
    assert_eq!(parse(&named).unwrap().dry_run.as_deref(), Some("x-verdict"));
    let clash = with(&["dry_run"], json!({"verdict_header": "x_spiffe_id"}));
    assert_eq!(refused(&clash).field, "dry_run.verdict_header");
    let unknown = with(&["dry_run"], json!({"enable": true}));
    assert_eq!(refused(&unknown).field, "dry_run.enable");
}

/// META-1: metadata rewriting is off by default (no paths) and names only enforced methods.
#[test]
fn as_metadata() {
    let c = parse(&base()).unwrap();
    assert!(c.as_metadata.paths.is_empty());
    assert_eq!(c.as_metadata.auth_methods, ["spiffe_jwt"]);
    assert!(!c.is_metadata_path("/.well-known/oauth-authorization-server"));
    let on = with(
        &["as_metadata"],
        json!({"paths": ["/.well-known/oauth-authorization-server"],
               "auth_methods": ["spiffe_jwt", "spiffe_x509"]}),
    );
    let c = parse(&on).unwrap();
    assert!(c.is_metadata_path("/.well-known/oauth-authorization-server?x=1"));
    assert!(!c.is_metadata_path("/.well-known/oauth-authorization-server/x"));
    for (value, field) in [
        (
            json!({"auth_methods": ["spiffe_wit"]}),
            "as_metadata.auth_methods[0]",
        ),
        (
            json!({"auth_methods": ["spiffe_jwt", "spiffe_jwt"]}),
            "as_metadata.auth_methods[1]",
        ),
        (json!({"auth_methods": []}), "as_metadata.auth_methods"),
        (json!({"paths": ["relative"]}), "as_metadata.paths[0]"),
        (json!({"max_bytes": 10}), "as_metadata.max_bytes"),
    ] {
        assert_eq!(refused(&with(&["as_metadata"], value)).field, field);
    }
}

/// `check-config` reports every problem of a configuration that deserializes, in field order;
/// the filter refuses it at the first (the same as `Config::parse`).
#[test]
fn every_problem_is_reported() {
    let mut v = base();
    v["issuer"] = json!("http://as.example.com");
    v["token_paths"] = json!(["/token", "relative"]);
    v["clients"] = json!([{"spiffe_id": "spiffe://example.org/a"},
                          {"spiffe_id": "spiffe://nowhere.example/b"},
                          {"spiffe_id": "spiffe://example.org/a"}]);
    v["identity_headers"] = json!({"spiffe_id": "x-id", "client_id": "x_id"});
    v["clock_skew_seconds"] = json!(100000);
    let bytes = serde_json::to_vec(&v).unwrap();
    let fields: Vec<String> = Config::check(&bytes)
        .unwrap_err()
        .into_iter()
        .map(|e| e.field)
        .collect();
    assert_eq!(
        fields,
        [
            "issuer",
            "token_paths[1]",
            "clients[1].spiffe_id",
            "clients[2].spiffe_id",
            "identity_headers.client_id",
            "clock_skew_seconds",
        ]
    );
    assert_eq!(Config::parse(&bytes).unwrap_err().field, "issuer");
}
