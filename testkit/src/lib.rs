//! What liutong's integration tests (`tests/integration`) and benchmarks (`host/benches`)
//! share, so that both speak to the same PostgreSQL, build the guest plugins the same way and
//! encrypt with age the same way a client does.

pub mod age;
pub mod guests;
pub mod moto;
pub mod postgres;
