//! The Autotask PSA REST client: zone discovery, typed queries with paging, limits and pacing,
//! contract charges that are never pushed twice. (Issue: Autotask.) Depends on `domain`, `store`.

mod config;

pub use config::AutotaskConfig;
