//! Integration tests: the real server over HTTP and the real binary, on SQLite and PostgreSQL.

mod support;

mod accounts;
mod cli;
mod cli_plugins;
mod client;
mod crash;
mod delivery;
mod demand;
mod docs;
mod envelope;
mod fuzz;
mod layers;
mod ledger;
mod matching;
mod migrations;
mod plugins;
mod policies;
mod roles;
mod s3;
mod subscriptions;
mod supply;
mod trading;
