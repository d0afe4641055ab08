//! The integration tests, one binary (the crate is linked once, not once per file). Each module is
//! a behaviour area; `common` is the harness: a fresh database per test on SQLite and PostgreSQL,
//! the stand-ins, and the sample world.

#[macro_use]
mod common;

mod adjustments;
mod autotask_choices;
mod autotask_client;
mod autotask_errors;
mod autotask_requests;
mod billing_run;
mod bulk_assign;
mod bulk_reads;
mod cdr_import;
mod cdr_rating;
mod cdr_strict;
mod cdr_unmatched;
mod cli_core;
mod config;
mod core_lifecycle;
mod crash;
mod daemon;
mod demo;
mod duplicates;
mod exit_status;
mod extension_pricing;
mod extra_email;
mod faults;
mod health;
mod idle;
mod installation;
mod invoice_actions;
mod invoice_void;
mod kills;
mod limits;
mod money_model;
mod ops_cli;
mod outage;
mod outbox_control;
mod prices;
mod shared_limits;
mod shutdown;
mod stale_actions;
mod tenant_limits;
mod two_daemons;
mod who_owes_what;
mod wiremock_fixtures;
mod xero_client;
