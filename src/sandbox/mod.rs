//! Local stand-ins for Autotask and Xero: stateful HTTP servers on loopback that keep what was
//! created and answer in the wire shapes of the official specs and `wiremock-fixtures/`. The demo
//! bills against them, `rebilld sandbox` serves them for a staging daemon, and the tests drive them
//! (with fault injection: 429, 500, timeouts, a response dropped after a create).

use std::net::SocketAddr;

/// Serves `router` on `addr` (port 0: any free port) in the background; returns the bound address.
pub async fn serve(
    router: axum::Router,
    addr: SocketAddr,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            tracing::error!(error = %e, "sandbox server stopped");
        }
    });
    Ok((bound, handle))
}
