//! In-process actor tests: a real node (all its actors, the in-memory store) per test, driven
//! through [`aimesh_actors::Node`]. Each node has a unique name, so tests share the process's
//! actor registry safely.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod flow;
mod gateway;
mod memory;
mod priority;
mod supervision;
mod support;
