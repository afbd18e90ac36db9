//! The HTTP side of a provider: one pooled reqwest client per provider (keep-alive, HTTP/2
//! where the server offers it, TCP_NODELAY), bounded answers, and streams read with a stall
//! timeout so a provider that stops sending cannot hold a call forever.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use super::ModelError;
use super::sink::DeltaSink;
use super::wire::{Completion, Endpoint, ProviderRequest, StreamEvent, WireFormat};

/// A whole answer as it came off the wire.
#[derive(Debug)]
pub struct RawAnswer {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Headers a call carries beside its provider's own.
#[derive(Debug, Clone, Copy, Default)]
pub struct CallMeta<'a> {
    /// Sent as `x-aimesh-idempotency-key`.
    pub idempotency_key: Option<&'a str>,
    /// Sent as `traceparent` (W3C Trace Context).
    pub traceparent: Option<&'a str>,
}

/// One provider's HTTP client.
pub struct HttpClient {
    name: String,
    client: reqwest::Client,
    /// Parsed URLs by their text: a provider calls a handful of URLs, parsing each once.
    urls: dashmap::DashMap<String, reqwest::Url>,
    endpoint: Endpoint,
    wire: Arc<dyn WireFormat>,
    max_response_bytes: usize,
    stall_timeout: Duration,
}

impl HttpClient {
    /// A client for provider `name` speaking `wire` at `endpoint`.
    pub fn new(
        name: &str,
        wire: Arc<dyn WireFormat>,
        endpoint: Endpoint,
        max_response_bytes: usize,
        stall_timeout: Duration,
    ) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(256)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("aimesh/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("provider {name}: cannot build an HTTP client: {e}"))?;
        Ok(Self {
            name: name.to_owned(),
            client,
            urls: dashmap::DashMap::new(),
            endpoint,
            wire,
            max_response_bytes,
            stall_timeout,
        })
    }

    /// The wire format.
    pub fn wire(&self) -> &Arc<dyn WireFormat> {
        &self.wire
    }

    fn transport(&self, e: &reqwest::Error) -> ModelError {
        if e.is_timeout() {
            return ModelError::Timeout {
                provider: self.name.clone(),
                after: self.stall_timeout,
            };
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            message = format!("{message}: {s}");
            source = s.source();
        }
        ModelError::Transport {
            provider: self.name.clone(),
            message: message.chars().take(300).collect(),
        }
    }

    fn url(&self, text: &str) -> Result<reqwest::Url, ModelError> {
        if let Some(u) = self.urls.get(text) {
            return Ok(u.clone());
        }
        let url = reqwest::Url::parse(text).map_err(|e| ModelError::BadRequest {
            provider: self.name.clone(),
            message: format!("invalid URL {text:?}: {e}"),
        })?;
        if self.urls.len() < 1024 {
            self.urls.insert(text.to_owned(), url.clone());
        }
        Ok(url)
    }

    async fn send(
        &self,
        request: &ProviderRequest,
        meta: CallMeta<'_>,
    ) -> Result<reqwest::Response, ModelError> {
        let call = self.wire.build(&self.endpoint, request);
        let url = self.url(&call.url)?;
        let mut builder = self.client.post(url).body(call.body);
        if let Some(key) = meta.idempotency_key {
            builder = builder.header("x-aimesh-idempotency-key", key);
        }
        if let Some(traceparent) = meta.traceparent {
            builder = builder.header("traceparent", traceparent);
        }
        for (k, v) in &call.headers {
            builder = builder.header(k, v);
        }
        builder.send().await.map_err(|e| self.transport(&e))
    }

    async fn read_body(&self, mut response: reqwest::Response) -> Result<Bytes, ModelError> {
        let mut body = BytesMut::new();
        loop {
            let chunk = tokio::time::timeout(self.stall_timeout, response.chunk())
                .await
                .map_err(|_| ModelError::Timeout {
                    provider: self.name.clone(),
                    after: self.stall_timeout,
                })?
                .map_err(|e| self.transport(&e))?;
            let Some(chunk) = chunk else {
                return Ok(body.freeze());
            };
            if body.len() + chunk.len() > self.max_response_bytes {
                return Err(ModelError::Malformed {
                    provider: self.name.clone(),
                    message: format!("answer larger than {} bytes", self.max_response_bytes),
                });
            }
            body.extend_from_slice(&chunk);
        }
    }

    /// POSTs `body` to `url` with `headers` and reads the whole answer (any status), bounded like
    /// a model call's. For requests that are not chat calls (the embedding APIs).
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<RawAnswer, ModelError> {
        let mut builder = self.client.post(self.url(url)?).body(body);
        for (k, v) in headers {
            builder = builder.header(k, v);
        }
        let response = builder.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self.read_body(response).await?;
        Ok(RawAnswer {
            status,
            headers,
            body,
        })
    }

    /// Sends a call and reads the whole answer (any status).
    pub async fn complete(
        &self,
        request: &ProviderRequest,
        meta: CallMeta<'_>,
    ) -> Result<RawAnswer, ModelError> {
        let response = self.send(request, meta).await?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = self.read_body(response).await?;
        Ok(RawAnswer {
            status,
            headers,
            body,
        })
    }

    /// Sends a streamed call, forwarding text pieces to `sink` as they arrive.
    pub async fn stream(
        &self,
        request: &ProviderRequest,
        meta: CallMeta<'_>,
        sink: &DeltaSink,
    ) -> Result<Completion, ModelError> {
        let mut response = self.send(request, meta).await?;
        let status = response.status().as_u16();
        if !(200..300).contains(&status) {
            let headers = response.headers().clone();
            let body = self.read_body(response).await?;
            return self.wire.parse(&self.name, status, &headers, &body);
        }
        let mut decoder = self.wire.decoder(&self.name);
        let mut events = Vec::new();
        let mut received = 0usize;
        loop {
            let chunk = tokio::time::timeout(self.stall_timeout, response.chunk())
                .await
                .map_err(|_| ModelError::Timeout {
                    provider: self.name.clone(),
                    after: self.stall_timeout,
                })?
                .map_err(|e| self.transport(&e))?;
            let Some(chunk) = chunk else {
                return decoder.finish();
            };
            received += chunk.len();
            if received > self.max_response_bytes {
                return Err(ModelError::Malformed {
                    provider: self.name.clone(),
                    message: format!("stream larger than {} bytes", self.max_response_bytes),
                });
            }
            decoder.feed(&chunk, &mut events)?;
            for StreamEvent::Delta(text) in events.drain(..) {
                if !sink.send(text).await {
                    return Err(ModelError::Transport {
                        provider: self.name.clone(),
                        message: "the client went away".into(),
                    });
                }
            }
        }
    }
}
