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
mod ledger;
mod matching;
mod plugins;
mod policies;
mod s3;
mod supply;
mod trading;
