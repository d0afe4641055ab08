//! The tenant's limits are shared by every process on the database (issue 13): two Autotask
//! clients (two daemons) with `autotask.max_concurrent = 2` each never have more than 2 requests
//! in flight on one endpoint together. Before, each took its own 2 against Autotask's 3.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use rebill::autotask::AutotaskClient;
use rebill::autotask::query::Filter;
use serde_json::{Value, json};

use crate::common::TestApp;

#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    most: AtomicUsize,
    served: AtomicUsize,
}

async fn two_processes_share_the_tenants_threads(app: TestApp) {
    let seen = Arc::new(InFlight::default());
    let router = Router::new().route(
        "/ATServicesRest/V1.0/Companies/query",
        post({
            let seen = seen.clone();
            move || {
                let seen = seen.clone();
                async move {
                    let n = seen.now.fetch_add(1, Ordering::SeqCst) + 1;
                    seen.most.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    seen.now.fetch_sub(1, Ordering::SeqCst);
                    seen.served.fetch_add(1, Ordering::SeqCst);
                    axum::Json(json!({"items": [{"id": 1}], "pageDetails": {"count": 1, "requestCount": 500, "prevPageUrl": null, "nextPageUrl": null}}))
                }
            }
        }),
    );
    let (addr, server) = rebill::http::serve(router, SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{addr}");
    let mut cfg = rebill::sandbox::autotask_config(&base);
    cfg.max_concurrent = 2;
    // The zone is known (cached in the database): no look-up.
    app.store
        .save_autotask_zone(
            cfg.username.as_deref().unwrap(),
            &format!("{base}/ATServicesRest/"),
        )
        .await
        .unwrap();
    let a = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
    let b = AutotaskClient::new(&cfg, app.store.clone()).await.unwrap();
    let queries = (0..8).map(|i| {
        let client = if i % 2 == 0 { a.clone() } else { b.clone() };
        async move {
            let got: Vec<Value> = client
                .query("Companies", &Filter::eq("id", 1))
                .await
                .unwrap();
            got.len()
        }
    });
    let got = futures::future::join_all(queries).await;
    assert_eq!(got, vec![1; 8]);
    assert_eq!(seen.served.load(Ordering::SeqCst), 8);
    let most = seen.most.load(Ordering::SeqCst);
    assert!(
        most <= 2,
        "{most} requests in flight at once: the tenant's 2 threads are shared"
    );
    server.abort();
}

backend_tests!(two_processes_share_the_tenants_threads);
