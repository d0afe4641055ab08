//! rebill: rebills wholesale VoIP and hosted-network services every month, through Autotask PSA
//! contract charges or Xero invoices, with a local ledger to reconcile against. See ARCHITECTURE.md.

pub mod autotask;
pub mod cdr;
pub mod cli;
pub mod clock;
pub mod config;
pub mod crash;
pub mod daemon;
pub mod domain;
pub mod http;
pub mod pipeline;
pub mod sandbox;
pub mod settings;
pub mod store;
pub mod table;
pub mod telemetry;
pub mod xero;
