//! Integration tests: the real server over HTTP and the real binary, on SQLite and PostgreSQL.

mod support;

mod accounts;
mod cli;
mod cli_plugins;
mod client;
mod compute;
mod crash;
mod delivery;
mod demand;
mod docs;
mod envelope;
mod fuzz;
mod gateway;
mod gateway_e2e;
mod identifiers;
mod layers;
mod ledger;
mod matching;
mod migrations;
mod notifications;
mod plugins;
mod policies;
mod provider;
mod roles;
mod s3;
mod store_writes;
mod subscriptions;
mod supply;
mod trading;
