//! A model provider: one wire format behind one trait.

use async_trait::async_trait;

use super::{ModelError, ModelRequest, ModelResponse};

/// Something that answers model calls.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// Its name: `offline`, `anthropic`, ...
    fn name(&self) -> &str;

    /// Answers one call. Runs in a task the gateway owns; the gateway applies the timeout.
    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError>;
}
