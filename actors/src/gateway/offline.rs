//! `offline`: the built-in deterministic model. It needs no keys and no network: it reads the
//! structured prompt agents send (see [`crate::prompt`]) and writes a task-specific answer for
//! the agent's role; any other prompt gets a short generic reply. It is the no-keys demo and the
//! test double for everything above the gateway.

pub mod compose;

use std::time::Duration;

use async_trait::async_trait;

use super::{ModelError, ModelRequest, ModelResponse, Provider, Role};
use crate::types::Usage;

/// The offline model's provider and model name.
pub const NAME: &str = "offline";

/// The offline model.
#[derive(Debug, Clone, Default)]
pub struct OfflineModel {
    /// Simulated latency per call (zero by default), to demo or load-test realistic timing.
    pub latency: Duration,
}

/// A rough token count: about four characters per token, as providers' tokenizers average.
pub fn estimate_tokens(text: &str) -> u64 {
    (text.len() as u64).div_ceil(4)
}

impl OfflineModel {
    /// Writes the answer to `request`'s messages.
    pub fn answer(&self, request: &ModelRequest) -> String {
        match crate::prompt::parse(&request.messages) {
            Some(brief) => compose::compose(&brief),
            None => {
                let system = request
                    .messages
                    .iter()
                    .find(|m| m.role == Role::System)
                    .map(|m| m.content.as_str())
                    .unwrap_or("");
                let user = request
                    .messages
                    .iter()
                    .rev()
                    .find(|m| m.role == Role::User)
                    .map(|m| m.content.as_str())
                    .unwrap_or("");
                compose::freeform(system, user)
            }
        }
    }
}

#[async_trait]
impl Provider for OfflineModel {
    fn name(&self) -> &str {
        NAME
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ModelError> {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        let text = self.answer(request);
        let input: u64 = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let output = estimate_tokens(&text).min(u64::from(request.max_tokens));
        Ok(ModelResponse {
            text,
            model: NAME.to_owned(),
            provider: NAME.to_owned(),
            usage: Usage {
                input_tokens: input,
                output_tokens: output,
                ..Usage::default()
            },
            finish_reason: Some("stop".to_owned()),
            route: Default::default(),
        })
    }
}
