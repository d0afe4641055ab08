//! What the HTTP edges share: serving an axum router on a bound address (the stand-ins and the
//! daemon's metrics endpoint), the one retry policy of the Xero and Autotask clients (backon,
//! honouring `Retry-After`), and decimals as exact JSON numbers. Knows nothing of Xero, Autotask
//! or billing. `pace.rs` waits for a request's turn under a remote's rate limits on an injected
//! clock (the count itself is the database's: `store::budget`); `stats.rs` counts every remote
//! request by API and status, the retries and the rate-limit waits, for `/metrics`.

pub mod json;
pub mod pace;
pub mod retry;
pub mod stats;

use std::net::SocketAddr;

pub use retry::{Failure, Retries, retry_after, retrying};

/// Serves `router` on `addr` (port 0: any free port) in the background; returns the bound address
/// and the task, which serves until it is aborted.
pub async fn serve(
    router: axum::Router,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, %bound, "HTTP server stopped");
        }
    });
    Ok((bound, handle))
}
