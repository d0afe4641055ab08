//! Loads `wiremock-fixtures/*.json` (WireMock stub mappings) into wiremock-rs servers, matching
//! and answering as a standalone WireMock server does with the same files: method, `urlPath` or
//! `urlPathPattern`, `queryParameters` (`equalTo`), `bodyPatterns` (`contains`,
//! `doesNotContain`), and response templating of `{{request.baseUrl}}` in stubs that ask for the
//! `response-template` transformer.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use serde_json::Value;
use wiremock::matchers::{body_string_contains, method, path, path_regex, query_param};
use wiremock::{Match, Mock, MockServer, Request, ResponseTemplate};

/// WireMock's template for the server's own URL (scheme, host and port, no trailing slash).
pub const BASE_URL_TEMPLATE: &str = "{{request.baseUrl}}";

/// Where the fixtures live.
pub fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("wiremock-fixtures")
}

/// Every fixture, as `(name relative to wiremock-fixtures/, stub)`, sorted by name.
pub fn all() -> Vec<(String, Value)> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "json") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(&dir(), &mut files);
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let name = p
                .strip_prefix(dir())
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let stub = load(&name);
            (name, stub)
        })
        .collect()
}

/// Whether the stub's response is templated (WireMock's `response-template` transformer).
pub fn templated(stub: &Value) -> bool {
    stub["response"]["transformers"]
        .as_array()
        .is_some_and(|t| t.iter().any(|x| x == "response-template"))
}

/// The stub's response, templated as WireMock does for `{{request.baseUrl}}` (= `base`).
pub fn response(stub: &Value, base: &str) -> ResponseTemplate {
    let r = &stub["response"];
    let mut t = ResponseTemplate::new(r["status"].as_u64().unwrap_or(200) as u16);
    for (k, v) in r["headers"].as_object().into_iter().flatten() {
        t = t.insert_header(k.as_str(), v.as_str().unwrap_or(""));
    }
    if let Some(body) = r.get("jsonBody") {
        let mut text = body.to_string();
        if templated(stub) {
            text = text.replace(BASE_URL_TEMPLATE, base.trim_end_matches('/'));
        }
        assert!(
            !text.contains("{{"),
            "a template this loader does not fill (or a stub without the response-template transformer): {text}"
        );
        t = t.set_body_raw(text, "application/json");
    }
    t
}

pub fn load(name: &str) -> Value {
    let p = dir().join(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// WireMock's `doesNotContain` body pattern.
struct BodyLacks(String);

impl Match for BodyLacks {
    fn matches(&self, request: &Request) -> bool {
        !String::from_utf8_lossy(&request.body).contains(&self.0)
    }
}

/// A `Mock` for the stub (method, path or path pattern, query `equalTo`, body patterns).
pub fn mock(name: &str, base: &str) -> Mock {
    let stub = load(name);
    let req = &stub["request"];
    let m = req["method"].as_str().unwrap_or("GET");
    let mut builder = match (req.get("urlPath"), req.get("urlPathPattern")) {
        (Some(p), _) => Mock::given(method(m)).and(path(p.as_str().unwrap_or("/"))),
        (None, Some(p)) => {
            Mock::given(method(m)).and(path_regex(format!("^{}$", p.as_str().unwrap_or(".*"))))
        }
        _ => Mock::given(method(m)),
    };
    for (k, v) in req["queryParameters"].as_object().into_iter().flatten() {
        let eq = v["equalTo"]
            .as_str()
            .unwrap_or_else(|| panic!("fixture {name}: only equalTo query matchers are loaded"));
        builder = builder.and(query_param(k.as_str(), eq));
    }
    for p in req["bodyPatterns"].as_array().into_iter().flatten() {
        builder = match (p["contains"].as_str(), p["doesNotContain"].as_str()) {
            (Some(s), None) => builder.and(body_string_contains(s)),
            (None, Some(s)) => builder.and(BodyLacks(s.to_string())),
            _ => panic!("fixture {name}: only contains/doesNotContain body patterns are loaded"),
        };
    }
    builder.respond_with(response(&stub, base))
}

pub async fn mount(server: &MockServer, name: &str) {
    mock(name, &server.uri()).mount(server).await;
}
