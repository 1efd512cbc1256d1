//! Integration tests of relaycb-server, one binary: handlers through
//! `oneshot` (no socket), and a real server on `127.0.0.1:0` for what
//! crosses the network (peer address, concurrency, shutdown, restart), and
//! several servers sharing one PostgreSQL database.

mod api;
mod callback;
mod common;
mod fixtures;
mod hostile;
mod logs;
mod nats;
mod postgres;
mod server;
