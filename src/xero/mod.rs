//! The Xero Accounting client: OAuth2 (custom connection and authorization code with PKCE),
//! contacts, batched idempotent invoices, email, limits. (Issue: Xero.) Depends on `domain`, `store`.

mod config;

pub use config::XeroConfig;
