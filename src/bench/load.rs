//! A small HTTP/1.1 load generator for the gateway benchmark: keep-alive connections with
//! TCP_NODELAY, closed-loop (N connections back to back) or open-loop (requests started at a
//! constant rate whatever the answers do, latency counted from each request's intended start
//! time, so a stall cannot hide itself by delaying the requests behind it).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use tokio::sync::{Mutex, mpsc};

/// What to send.
#[derive(Clone)]
pub struct Target {
    /// Where.
    pub addr: SocketAddr,
    /// The request path.
    pub path: String,
    /// The JSON body.
    pub body: Bytes,
    /// True when the answer is an event stream: time to first token is measured to the first
    /// body piece carrying content.
    pub stream: bool,
}

/// What one run measured.
#[derive(Debug, Default, Clone)]
pub struct Run {
    /// Answers with a 2xx status.
    pub ok: u64,
    /// Failures (non-2xx, connection errors).
    pub errors: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Latency of each successful request (to the end of its answer).
    pub latency: Vec<Duration>,
    /// Time to the first content piece of each successful streamed request.
    pub first_token: Vec<Duration>,
}

impl Run {
    /// Successful requests per second.
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Merges another run's samples into this one.
    pub fn merge(&mut self, other: Run) {
        self.ok += other.ok;
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.latency.extend(other.latency);
        self.first_token.extend(other.first_token);
    }
}

/// The `p` quantile (0..=1) of `samples`, in milliseconds.
pub fn quantile_ms(samples: &mut [Duration], p: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_unstable();
    let i = ((samples.len() - 1) as f64 * p).round() as usize;
    samples[i.min(samples.len() - 1)].as_secs_f64() * 1000.0
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn has_content(piece: &[u8]) -> bool {
    // A streamed chunk with text: `"content":"` followed by something other than a quote.
    piece
        .windows(12)
        .any(|w| w.starts_with(b"\"content\":\"") && w[11] != b'"')
}

/// One request; `Ok((first_token, total))` measured from `start`.
async fn once(
    sender: &mut SendRequest<Full<Bytes>>,
    target: &Target,
    start: Instant,
) -> anyhow::Result<(Duration, Duration)> {
    let req = hyper::Request::post(target.path.as_str())
        .header(HOST, "127.0.0.1")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(target.body.clone()))?;
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let ok = resp.status().is_success();
    let mut body = resp.into_body();
    let mut first = None;
    while let Some(frame) = body.frame().await {
        let frame = frame?;
        if let Some(data) = frame.data_ref()
            && first.is_none()
            && (!target.stream || has_content(data))
        {
            first = Some(start.elapsed());
        }
    }
    anyhow::ensure!(ok, "non-2xx answer");
    let total = start.elapsed();
    Ok((first.unwrap_or(total), total))
}

/// `conns` connections, each sending back to back, for `duration`.
pub async fn closed(target: &Target, conns: usize, duration: Duration) -> anyhow::Result<Run> {
    let started = Instant::now();
    let end = started + duration;
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let target = target.clone();
        let mut sender = connect(target.addr).await?;
        tasks.push(tokio::spawn(async move {
            let mut run = Run::default();
            while Instant::now() < end {
                let t0 = Instant::now();
                match once(&mut sender, &target, t0).await {
                    Ok((first, total)) => {
                        run.ok += 1;
                        run.latency.push(total);
                        if target.stream {
                            run.first_token.push(first);
                        }
                    }
                    Err(_) => {
                        run.errors += 1;
                        match connect(target.addr).await {
                            Ok(s) => sender = s,
                            Err(_) => break,
                        }
                    }
                }
            }
            run
        }));
    }
    let mut total = Run::default();
    for t in tasks {
        let mut run = t.await?;
        run.elapsed = Duration::ZERO;
        total.merge(run);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}

/// Requests started at `rate` per second for `duration`, over at most `max_conns`
/// connections; latency counts from each request's intended start.
pub async fn open(
    target: &Target,
    rate: f64,
    duration: Duration,
    max_conns: usize,
) -> anyhow::Result<Run> {
    let count = (rate * duration.as_secs_f64()).round() as u64;
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-9));
    let (tx, rx) = mpsc::channel::<Instant>(65_536);
    let rx = Arc::new(Mutex::new(rx));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..max_conns.max(1) {
        let target = target.clone();
        let rx = rx.clone();
        let mut sender = connect(target.addr).await?;
        workers.push(tokio::spawn(async move {
            let mut run = Run::default();
            loop {
                let next = rx.lock().await.recv().await;
                let Some(intended) = next else {
                    break;
                };
                match once(&mut sender, &target, intended).await {
                    Ok((first, total)) => {
                        run.ok += 1;
                        run.latency.push(total);
                        if target.stream {
                            run.first_token.push(first);
                        }
                    }
                    Err(_) => {
                        run.errors += 1;
                        match connect(target.addr).await {
                            Ok(s) => sender = s,
                            Err(_) => break,
                        }
                    }
                }
            }
            run
        }));
    }
    let t0 = Instant::now();
    for i in 0..count {
        let intended = t0 + interval.mul_f64(i as f64);
        tokio::time::sleep_until(intended.into()).await;
        if tx.send(intended).await.is_err() {
            break;
        }
    }
    drop(tx);
    let mut total = Run::default();
    for w in workers {
        let mut run = w.await?;
        run.elapsed = Duration::ZERO;
        total.merge(run);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
