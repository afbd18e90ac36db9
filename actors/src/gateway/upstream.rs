//! An upstream: one actor per configured provider, supervised by the gateway, registered as
//! `<node>/gateway/<provider>`.
//!
//! It runs each call's I/O as an owned task (so a slow provider never blocks its mailbox),
//! parses whole answers in its own handler (a parser bug is a crash of this actor: the gateway
//! restarts it and moves the calls it held to the next link of their chains), and reports every
//! outcome to the gateway. Streamed answers are decoded in the task, piece by piece, straight to
//! the client's sink.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster_derive::RactorMessage;

use super::catalog::{Backend, ProviderSpec};
use super::http::{HttpClient, RawAnswer};
use super::sink::DeltaSink;
use super::wire::{self, Completion, Endpoint, ProviderRequest};
use super::{ChatMessage, GatewayMsg, ModelError, ModelRequest, Provider};
use crate::owned::OwnedTask;

/// Messages to an upstream.
#[derive(RactorMessage)]
pub enum UpstreamMsg {
    /// Run a call; its outcome goes to the gateway as [`GatewayMsg::Outcome`].
    Call(Box<UpstreamCall>),
    /// Abandon a call (its deadline passed).
    Cancel(u64),
    /// Internal: a call's I/O ended.
    Io(u64, Result<Io, ModelError>),
}

/// One call for an upstream.
pub struct UpstreamCall {
    /// The gateway's call id.
    pub id: u64,
    /// The request in provider terms.
    pub request: ProviderRequest,
    /// Where streamed pieces go, for a streamed call.
    pub sink: Option<DeltaSink>,
    /// Time limit for this attempt.
    pub timeout: Duration,
    /// Sent to the provider as `x-aimesh-idempotency-key`.
    pub idempotency_key: Option<String>,
    /// Sent to the provider as `traceparent`.
    pub traceparent: Option<String>,
}

/// What a call's I/O produced.
pub enum Io {
    /// A whole answer, to parse.
    Raw(RawAnswer),
    /// An answer already decoded (streams, in-process providers).
    Done(Completion),
}

/// What an upstream starts with.
#[derive(Clone)]
pub struct UpstreamArgs {
    /// The provider.
    pub spec: ProviderSpec,
    /// Where outcomes go.
    pub gateway: ActorRef<GatewayMsg>,
}

enum Exec {
    Http(Arc<HttpClient>),
    Local(Arc<dyn Provider>),
}

/// An upstream's state.
pub struct UpstreamState {
    /// Its counters in the actor directory.
    counters: std::sync::Arc<crate::directory::Counters>,
    name: String,
    exec: Exec,
    gateway: ActorRef<GatewayMsg>,
    running: HashMap<u64, OwnedTask>,
}

/// The upstream actor.
pub struct Upstream;

impl Actor for Upstream {
    type Msg = UpstreamMsg;
    type State = UpstreamState;
    type Arguments = UpstreamArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<UpstreamMsg>,
        args: UpstreamArgs,
    ) -> Result<UpstreamState, ActorProcessingErr> {
        let spec = args.spec;
        let exec = match spec.backend {
            Backend::Http {
                kind,
                base_url,
                api_key,
            } => {
                let format = wire::format(&kind)
                    .ok_or_else(|| format!("provider {}: unknown kind {kind:?}", spec.name))?;
                Exec::Http(Arc::new(HttpClient::new(
                    &spec.name,
                    format,
                    Endpoint { base_url, api_key },
                    spec.max_response_bytes,
                    spec.stall_timeout,
                )?))
            }
            Backend::Local(p) => Exec::Local(p),
        };
        Ok(UpstreamState {
            counters: crate::directory::counters(&_myself.get_name().unwrap_or_default()),
            name: spec.name,
            exec,
            gateway: args.gateway,
            running: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<UpstreamMsg>,
        msg: UpstreamMsg,
        state: &mut UpstreamState,
    ) -> Result<(), ActorProcessingErr> {
        state.counters.message();
        match msg {
            UpstreamMsg::Call(call) => state.start(*call, &myself),
            UpstreamMsg::Cancel(id) => {
                state.running.remove(&id);
            }
            UpstreamMsg::Io(id, io) => {
                if state.running.remove(&id).is_some() {
                    let result = io.and_then(|io| state.parse(io));
                    let _ = state.gateway.cast(GatewayMsg::Outcome {
                        id,
                        provider: state.name.clone(),
                        result,
                    });
                }
            }
        }
        Ok(())
    }
}

impl UpstreamState {
    fn start(&mut self, call: UpstreamCall, myself: &ActorRef<UpstreamMsg>) {
        let UpstreamCall {
            id,
            request,
            sink,
            timeout,
            idempotency_key,
            traceparent,
        } = call;
        let me = myself.clone();
        let name = self.name.clone();
        let task = match &self.exec {
            Exec::Http(client) => {
                let client = client.clone();
                OwnedTask::spawn(async move {
                    let io = async {
                        let meta = super::http::CallMeta {
                            idempotency_key: idempotency_key.as_deref(),
                            traceparent: traceparent.as_deref(),
                        };
                        match &sink {
                            Some(sink) => client.stream(&request, meta, sink).await.map(Io::Done),
                            None => client.complete(&request, meta).await.map(Io::Raw),
                        }
                    };
                    let result = tokio::time::timeout(timeout, io).await.unwrap_or(Err(
                        ModelError::Timeout {
                            provider: name,
                            after: timeout,
                        },
                    ));
                    let _ = me.cast(UpstreamMsg::Io(id, result));
                })
            }
            Exec::Local(provider) => {
                let provider = provider.clone();
                OwnedTask::spawn(async move {
                    let local = local_request(&request, timeout);
                    let io = async {
                        let r = provider.complete(&local).await?;
                        if let Some(sink) = &sink {
                            for piece in pieces(&r.text) {
                                if !sink.send(piece.to_owned()).await {
                                    return Err(ModelError::Transport {
                                        provider: provider.name().to_owned(),
                                        message: "the client went away".into(),
                                    });
                                }
                            }
                        }
                        Ok(Io::Done(Completion {
                            text: r.text,
                            model: r.model,
                            usage: r.usage,
                            finish_reason: r.finish_reason,
                        }))
                    };
                    let result = tokio::time::timeout(timeout, io).await.unwrap_or(Err(
                        ModelError::Timeout {
                            provider: name,
                            after: timeout,
                        },
                    ));
                    let _ = me.cast(UpstreamMsg::Io(id, result));
                })
            }
        };
        self.running.insert(id, task);
    }

    /// Parses a whole answer. Runs in the actor: a bug here is this actor's crash.
    fn parse(&self, io: Io) -> Result<Completion, ModelError> {
        match (io, &self.exec) {
            (Io::Done(c), _) => Ok(c),
            (Io::Raw(raw), Exec::Http(client)) => {
                client
                    .wire()
                    .parse(&self.name, raw.status, &raw.headers, &raw.body)
            }
            (Io::Raw(_), Exec::Local(_)) => Err(ModelError::Malformed {
                provider: self.name.clone(),
                message: "an in-process provider produced raw HTTP".into(),
            }),
        }
    }
}

fn local_request(r: &ProviderRequest, timeout: Duration) -> ModelRequest {
    let mut m = ModelRequest::new(
        &r.model,
        r.messages
            .iter()
            .map(|c| ChatMessage::new(c.role, c.content.clone()))
            .collect(),
    );
    m.max_tokens = r.max_tokens;
    m.temperature = r.temperature.unwrap_or(m.temperature);
    m.top_p = r.top_p;
    m.stop = r.stop.clone();
    m.timeout = timeout;
    m
}

/// Splits text into stream pieces of a few words, keeping every byte.
pub fn pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len();
        let mut spaces = 0;
        for (i, c) in rest.char_indices() {
            if c == ' ' || c == '\n' {
                spaces += 1;
                if spaces == 4 {
                    end = i + c.len_utf8();
                    break;
                }
            }
        }
        let (head, tail) = rest.split_at(end);
        rest = tail;
        Some(head)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_keep_every_byte() {
        let text = "Héllo wörld, this is a streamed answer\nwith lines and ünïcode.";
        let joined: String = pieces(text).collect();
        assert_eq!(joined, text);
        assert!(pieces(text).count() > 2);
        assert_eq!(pieces("").count(), 0);
    }
}
