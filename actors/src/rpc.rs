//! Calls between actors, always with a timeout.

use std::time::Duration;

use ractor::rpc::CallResult;
use ractor::{ActorRef, Message, RpcReplyPort};

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The callee did not answer in time.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The callee is not running (stopped, restarting, or dropped the reply).
    #[error("the actor is not running")]
    Gone,
}

/// Sends the message `build` makes and waits at most `timeout` for the reply.
pub async fn ask<M, R>(
    actor: &ActorRef<M>,
    timeout: Duration,
    build: impl FnOnce(RpcReplyPort<R>) -> M,
) -> Result<R, CallError>
where
    M: Message,
    R: Send + 'static,
{
    match actor.call(build, Some(timeout)).await {
        Ok(CallResult::Success(r)) => Ok(r),
        Ok(CallResult::Timeout) => Err(CallError::Timeout(timeout)),
        Ok(CallResult::SenderError) | Err(_) => Err(CallError::Gone),
    }
}
