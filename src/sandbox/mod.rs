//! Local stand-ins for Autotask and Xero: stateful HTTP servers on loopback that keep what was
//! created and answer in the wire shapes of the official specs and `wiremock-fixtures/`. The demo
//! bills against them, `rebilld sandbox` serves them for a staging daemon, and the tests drive them
//! (with fault injection: 429, 500, timeouts, a response dropped after a create).

pub mod autotask;
pub mod bulk;
pub mod faults;
pub mod limits;
pub mod world;
pub mod xero;

pub use faults::Fault;

use std::net::SocketAddr;

use secrecy::SecretString;

use crate::autotask::AutotaskConfig;
use crate::http::serve;
use crate::xero::XeroConfig;

/// The token key of the stand-ins' configuration (the demo and the tests): public, never for a
/// real connection.
pub const SANDBOX_TOKEN_KEY: &str = "c2FuZGJveC10b2tlbi1rZXktMzItYnl0ZXMtbG9uZyE=";

/// A Xero configuration that talks to a stand-in served at `base` (a custom connection).
pub fn xero_config(base: &str) -> XeroConfig {
    let base = base.trim_end_matches('/');
    XeroConfig {
        client_id: Some("sandbox-client".into()),
        client_secret: Some(SecretString::from("sandbox-client-secret")),
        token_key: Some(SecretString::from(SANDBOX_TOKEN_KEY)),
        api_url: format!("{base}/api.xro/2.0"),
        identity_url: base.to_string(),
        token_url: format!("{base}/connect/token"),
        authorize_url: format!("{base}/identity/connect/authorize"),
        retry_base_ms: 10,
        timeout_secs: 5,
        // The stand-ins enforce no limits unless asked to (the bench sets Xero's own).
        requests_per_minute: 1_000_000,
        requests_per_day: 1_000_000,
        ..XeroConfig::default()
    }
}

/// An Autotask configuration that talks to a stand-in served at `base`.
pub fn autotask_config(base: &str) -> AutotaskConfig {
    let base = base.trim_end_matches('/');
    AutotaskConfig {
        username: Some(autotask::USERNAME.into()),
        secret: Some(SecretString::from(autotask::SECRET)),
        integration_code: Some(SecretString::from(autotask::INTEGRATION_CODE)),
        zone_lookup_url: format!("{base}/atservicesrest/v1.0/zoneInformation"),
        retry_base_ms: 10,
        timeout_secs: 5,
        ..AutotaskConfig::default()
    }
}

/// Both stand-ins, served on loopback.
pub struct Sandboxes {
    pub xero: xero::XeroSandbox,
    pub autotask: autotask::AutotaskSandbox,
    pub xero_url: String,
    pub autotask_url: String,
    handles: Vec<tokio::task::JoinHandle<()>>,
}

impl Sandboxes {
    /// Starts both on `127.0.0.1` (port 0: any free port).
    pub async fn start(xero_port: u16, autotask_port: u16) -> std::io::Result<Sandboxes> {
        Self::start_these(
            xero::XeroSandbox::new(),
            autotask::AutotaskSandbox::new(),
            xero_port,
            autotask_port,
        )
        .await
    }

    /// Both, enforcing Xero's and Autotask's limits on `clock` (a scaled one for the bench).
    pub async fn start_limited(
        clock: std::sync::Arc<dyn crate::clock::Clock>,
    ) -> std::io::Result<Sandboxes> {
        Self::start_these(
            xero::XeroSandbox::limited(clock.clone()),
            autotask::AutotaskSandbox::limited(clock),
            0,
            0,
        )
        .await
    }

    async fn start_these(
        xero: xero::XeroSandbox,
        autotask: autotask::AutotaskSandbox,
        xero_port: u16,
        autotask_port: u16,
    ) -> std::io::Result<Sandboxes> {
        let (xa, xh) = serve(xero.router(), SocketAddr::from(([127, 0, 0, 1], xero_port))).await?;
        let (aa, ah) = serve(
            autotask.router(),
            SocketAddr::from(([127, 0, 0, 1], autotask_port)),
        )
        .await?;
        let autotask_url = format!("http://{aa}");
        autotask.set_base(&autotask_url);
        Ok(Sandboxes {
            xero,
            autotask,
            xero_url: format!("http://{xa}"),
            autotask_url,
            handles: vec![xh, ah],
        })
    }

    /// Points a configuration at the stand-ins.
    pub fn configure(&self, config: &mut crate::config::Config) {
        config.xero = xero_config(&self.xero_url);
        config.autotask = autotask_config(&self.autotask_url);
    }
}

impl Drop for Sandboxes {
    fn drop(&mut self) {
        for h in &self.handles {
            h.abort();
        }
    }
}
