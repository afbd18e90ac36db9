//! Integration tests: real `aimesh` processes on free 127.0.0.1 ports, driven over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod admin;
mod cli;
mod cluster;
mod deploy;
mod durability;
mod embeddings;
mod gateway;
mod seed;
mod support;
mod tracing;
