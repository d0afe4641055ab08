//! `rebilld xero connect`: the authorization-code flow with PKCE. It prints the consent URL, then
//! takes the redirect either on a loopback port or pasted on standard input (a headless server),
//! exchanges the code, stores the tokens and picks the organisation from `/connections`.

use std::sync::{Arc, Mutex};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use chrono::{Duration, Utc};
use oauth2::basic::BasicClient;
use oauth2::{AuthorizationCode, CsrfToken, PkceCodeChallenge, RedirectUrl, Scope, TokenResponse};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use super::{XeroClient, XeroConfig, XeroError, auth};
use crate::store::Store;
use crate::store::xero::XeroTokenRow;

/// What was connected.
pub struct Connected {
    pub tenant_id: String,
    pub grant: String,
}

/// The code of a pasted redirect URL (or its query), once its `state` is this attempt's.
fn code_from(url_or_query: &str, state: &str) -> Result<String, XeroError> {
    let query = url_or_query
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or(url_or_query);
    let query = query.split_whitespace().next().unwrap_or(query);
    let pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    code_of(&pairs, state)
}

/// The code among a redirect's query parameters: refused when Xero reports an `error`, when the
/// `state` is not this attempt's, or when there is no `code`.
fn code_of(pairs: &[(String, String)], state: &str) -> Result<String, XeroError> {
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if let Some(e) = get("error") {
        return Err(XeroError::Auth(format!("Xero refused the consent: {e}")));
    }
    if get("state").as_deref() != Some(state) {
        return Err(XeroError::Auth(
            "the redirect's state does not match this connect attempt".into(),
        ));
    }
    get("code").ok_or_else(|| XeroError::Auth("the redirect carries no code".into()))
}

type Handover = (
    oneshot::Sender<Result<String, XeroError>>,
    oneshot::Sender<()>,
);

/// Serves the loopback redirect on `listener`: one route, `/callback`, whose `code`, `state` and
/// `error` query parameters are checked against this attempt's `state`. The browser gets a short
/// page; the outcome is handed over and the server shuts down after answering.
async fn receive_redirect(
    listener: tokio::net::TcpListener,
    state: String,
) -> Result<String, XeroError> {
    let (outcome_tx, outcome_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let handover: Arc<Mutex<Option<Handover>>> = Arc::new(Mutex::new(Some((outcome_tx, stop_tx))));
    let router = axum::Router::new().route(
        "/callback",
        get(move |Query(pairs): Query<Vec<(String, String)>>| {
            let outcome = code_of(&pairs, &state);
            let page = match &outcome {
                Ok(_) => (
                    StatusCode::OK,
                    "rebilld has Xero's authorization and is finishing the connection; the terminal \
                     says when it is connected to Xero. You can close this tab.\n"
                        .to_string(),
                ),
                Err(e) => (
                    StatusCode::BAD_REQUEST,
                    format!("rebilld did not accept this redirect: {e}\n"),
                ),
            };
            if let Some((outcome_tx, stop_tx)) = handover.lock().ok().and_then(|mut h| h.take()) {
                let _ = outcome_tx.send(outcome);
                let _ = stop_tx.send(());
            }
            async move { page }
        }),
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = stop_rx.await;
        })
        .await
        .map_err(|e| XeroError::Transport(format!("the redirect listener failed: {e}")))?;
    outcome_rx.await.map_err(|_| {
        XeroError::Transport("the redirect listener stopped without a redirect".into())
    })?
}

/// Runs the flow. `print` shows the consent URL to the person at the terminal.
pub async fn connect(
    cfg: &XeroConfig,
    store: &Store,
    print: impl Fn(&str),
) -> Result<Connected, XeroError> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| XeroError::Transport(e.to_string()))?;
    if cfg.grant == super::XeroGrant::CustomConnection {
        // Nothing to consent to: check that the credentials work and find the organisation.
        let t = auth::client_credentials(cfg, &http).await?;
        auth::save_grant(
            cfg,
            store,
            &XeroTokenRow {
                grant_type: "custom_connection".into(),
                access_token: Some(t.access_token),
                access_expires_at: Some(t.expires_at),
                refresh_token: None,
                tenant_id: None,
                refresh_count: 0,
            },
        )
        .await?;
        let tenant = XeroClient::new(cfg, store.clone()).await?.tenant().await?;
        return Ok(Connected {
            tenant_id: tenant,
            grant: cfg.grant.to_string(),
        });
    }
    let id = cfg
        .client_id
        .clone()
        .ok_or_else(|| XeroError::NotConfigured("xero.client_id is not set".into()))?;
    let secret = cfg
        .client_secret
        .as_ref()
        .ok_or_else(|| XeroError::NotConfigured("xero.client_secret is not set".into()))?;
    let redirect = format!("http://localhost:{}/callback", cfg.redirect_port);
    let client = BasicClient::new(oauth2::ClientId::new(id))
        .set_client_secret(oauth2::ClientSecret::new(
            secrecy::ExposeSecret::expose_secret(secret).to_string(),
        ))
        .set_auth_uri(
            oauth2::AuthUrl::new(cfg.authorize_url.clone())
                .map_err(|e| XeroError::NotConfigured(e.to_string()))?,
        )
        .set_token_uri(
            oauth2::TokenUrl::new(cfg.token_url.clone())
                .map_err(|e| XeroError::NotConfigured(e.to_string()))?,
        )
        .set_redirect_uri(
            RedirectUrl::new(redirect.clone())
                .map_err(|e| XeroError::NotConfigured(e.to_string()))?,
        );
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut req = client.authorize_url(CsrfToken::new_random);
    for s in cfg.scopes.split_whitespace() {
        req = req.add_scope(Scope::new(s.to_string()));
    }
    let (url, state) = req.set_pkce_challenge(challenge).url();
    print(&format!(
        "Open this URL, sign in to Xero and allow access:\n\n  {url}\n\nWaiting for the redirect on {redirect} …\n\
         (On a headless server, paste the URL your browser was redirected to, then press Enter.)"
    ));
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.redirect_port))
        .await
        .ok();
    let listening = listener.is_some();
    let from_browser = async {
        match listener {
            Some(l) => receive_redirect(l, state.secret().clone()).await,
            // The port is taken: the pasted URL is the only way in.
            None => std::future::pending().await,
        }
    };
    let from_paste = async {
        let mut line = String::new();
        let n = BufReader::new(tokio::io::stdin())
            .read_line(&mut line)
            .await
            .map_err(|e| XeroError::Transport(e.to_string()))?;
        // stdin closed (run from a script, or `< /dev/null`): nothing will be pasted, so wait
        // for the browser's redirect alone, if we could listen for it.
        if n == 0 {
            if listening {
                return std::future::pending::<Result<String, XeroError>>().await;
            }
            return Err(XeroError::Auth(format!(
                "stdin is closed and port {} is busy: nothing can bring the redirect back; \
                 free the port (xero.redirect_port) or run `rebilld xero connect` at a terminal",
                cfg.redirect_port
            )));
        }
        code_from(line.trim(), state.secret())
    };
    let code: String = tokio::select! {
        r = from_browser => r?,
        r = from_paste => r?,
        _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => return Err(XeroError::Auth("no redirect within 10 minutes".into())),
    };
    let token = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .map_err(|e| XeroError::Auth(format!("exchanging the code failed: {e}")))?;
    let expires = Utc::now()
        + Duration::seconds(
            token
                .expires_in()
                .map(|d| d.as_secs() as i64)
                .unwrap_or(1800),
        );
    auth::save_grant(
        cfg,
        store,
        &XeroTokenRow {
            grant_type: "authorization_code".into(),
            access_token: Some(token.access_token().secret().clone()),
            access_expires_at: Some(expires),
            refresh_token: token.refresh_token().map(|r| r.secret().clone()),
            tenant_id: cfg.tenant_id.clone(),
            refresh_count: 0,
        },
    )
    .await?;
    let tenant = XeroClient::new(cfg, store.clone()).await?.tenant().await?;
    Ok(Connected {
        tenant_id: tenant,
        grant: cfg.grant.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    #[test]
    fn the_code_comes_from_a_pasted_redirect_with_the_right_state() {
        let url = "http://localhost:8765/callback?code=abc123&scope=x&state=s1";
        assert_eq!(code_from(url, "s1").unwrap(), "abc123");
        assert!(code_from(url, "other").is_err());
        assert!(code_from("GET /callback?error=access_denied&state=s1 HTTP/1.1", "s1").is_err());
        assert_eq!(code_from("/callback?code=zz&state=s1", "s1").unwrap(), "zz");
    }

    /// Starts the listener for `state`, sends `parts` one write at a time with a pause between
    /// them (as a request split across packets arrives), and returns the raw answer and the outcome.
    async fn redirect_in_parts(state: &str, parts: &[&str]) -> (String, Result<String, XeroError>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let waiting = tokio::spawn(receive_redirect(listener, state.to_string()));
        let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            sock.write_all(part.as_bytes()).await.unwrap();
            sock.flush().await.unwrap();
        }
        let mut answer = String::new();
        sock.read_to_string(&mut answer).await.unwrap();
        (answer, waiting.await.unwrap())
    }

    #[tokio::test]
    async fn a_redirect_whose_request_arrives_in_two_parts_is_read_whole() {
        let (answer, outcome) = redirect_in_parts(
            "s1",
            &[
                "GET /callback?code=abc",
                "123&state=s1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            ],
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.contains("connected to Xero"), "{answer}");
        assert_eq!(outcome.unwrap(), "abc123");
    }

    #[tokio::test]
    async fn a_redirect_with_another_state_is_refused() {
        let (answer, outcome) = redirect_in_parts(
            "s1",
            &["GET /callback?code=abc123&state=forged HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"],
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(
            answer.contains("does not match this connect attempt"),
            "{answer}"
        );
        let e = outcome.unwrap_err();
        assert!(e.to_string().contains("state does not match"), "{e}");
    }

    #[tokio::test]
    async fn a_consent_refused_in_xero_ends_the_wait_with_xeros_reason() {
        let (answer, outcome) = redirect_in_parts(
            "s1",
            &["GET /callback?error=access_denied&state=s1 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"],
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(outcome.unwrap_err().to_string().contains("access_denied"));
    }
}
