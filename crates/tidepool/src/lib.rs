//! tidepool: a self-hosted PostgreSQL connection pooler and data proxy for serverless apps.
//!
//! Layout: [`config`] (data, validated) → [`app`] (pools, users, cancel keys, metrics) →
//! [`pool`] (the one pool core every front end leases from, and [`checkin`], the one policy for
//! giving connections back) → [`upstream`] (server connections) ←
//! [`frontend`] (protocol translation only; API-key requests route through [`target`]) ; [`admin`] serves `/metrics` and `/healthz`;
//! [`cluster`] shares each pool's budget and cancels across nodes over Redis;
//! [`run`] wires listeners, signals and graceful drain; [`dev`] is `tidepool dev`.

pub mod admin;
pub mod app;
pub mod auth_throttle;
pub mod cache;
pub mod cancel;
pub mod checkin;
pub mod clients;
pub mod cluster;
pub mod config;
pub mod db_metrics;
pub mod dev;
pub mod frontend;
pub mod keys;
pub mod listen;
pub mod net;
pub mod pins;
pub mod pool;
pub mod reload;
pub mod run;
pub mod servers;
pub mod stats;
pub mod target;
pub mod upstream;
pub mod users;

pub use app::App;
pub use config::Config;
