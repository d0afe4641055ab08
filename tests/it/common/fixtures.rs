//! Loads `wiremock-fixtures/*.json` (WireMock stub mappings) into wiremock-rs servers.
#![allow(dead_code)]

use serde_json::Value;
use wiremock::matchers::{method, path, path_regex, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// The stub's response, with `{{base}}` replaced by the server's URL.
pub fn response(stub: &Value, base: &str) -> ResponseTemplate {
    let r = &stub["response"];
    let mut t = ResponseTemplate::new(r["status"].as_u64().unwrap_or(200) as u16);
    for (k, v) in r["headers"].as_object().into_iter().flatten() {
        t = t.insert_header(k.as_str(), v.as_str().unwrap_or(""));
    }
    if let Some(body) = r.get("jsonBody") {
        let text = body.to_string().replace("{{base}}", base);
        t = t.set_body_raw(text, "application/json");
    }
    t
}

pub fn load(name: &str) -> Value {
    let text = std::fs::read_to_string(format!("wiremock-fixtures/{name}"))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// A `Mock` for the stub (method, path or path pattern, query equalTo matchers).
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
        if let Some(eq) = v["equalTo"].as_str() {
            builder = builder.and(query_param(k.as_str(), eq));
        }
    }
    builder.respond_with(response(&stub, base))
}

pub async fn mount(server: &MockServer, name: &str) {
    mock(name, &server.uri()).mount(server).await;
}
