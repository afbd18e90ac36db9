//! Response and request bodies: reading a request body with a size limit,
//! and building an answer's body with the wire-level faults applied
//! (malformed data, a slow first byte, chunk delays, a stall or a cut).

use std::io;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use futures::{StreamExt, stream};
use tokio::sync::watch;

use super::wire::Refusal;

/// Largest request body read (Anthropic's documented limit is 32 MB).
const MAX_BODY: usize = 32 * 1024 * 1024;

/// How the answer's frames go out.
#[derive(Default)]
pub(crate) struct BodyPlan {
    pub first_delay: Duration,
    pub stop: Option<(usize, Ending)>,
    pub malformed: bool,
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Ending {
    Stall,
    Cut,
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
pub(crate) async fn read_body(body: Body) -> Result<Bytes, Refusal> {
    let mut chunks = body.into_data_stream();
    let mut first = Bytes::new();
    let mut rest: Vec<u8> = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|err| {
            Refusal::bad_request(format!("could not read the request body: {err}"))
        })?;
        if first.len() + rest.len() + chunk.len() > MAX_BODY {
            return Err(Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body exceeds the maximum of {MAX_BODY} bytes"),
            ));
        }
        if first.is_empty() && rest.is_empty() {
            first = chunk;
        } else {
            if rest.is_empty() {
                rest.extend_from_slice(&first);
            }
            rest.extend_from_slice(&chunk);
        }
    }
    Ok(if rest.is_empty() { first } else { rest.into() })
}

/// Builds the body of an answer from its frames under `plan`. `garbage` is
/// the format's malformed stream frame; `chunk_delay` separates frames.
pub(crate) fn build(
    mut frames: Vec<Bytes>,
    stream: bool,
    plan: &BodyPlan,
    garbage: &'static [u8],
    chunk_delay: Duration,
    shutdown: watch::Receiver<bool>,
) -> Body {
    let mut stall = false;
    if plan.malformed {
        if stream {
            frames.insert(frames.len().min(1), Bytes::from_static(garbage));
        } else {
            let whole = frames.concat();
            let mut broken = whole[..whole.len() / 2].to_vec();
            broken.extend_from_slice(b"<<malformed>>");
            frames = vec![broken.into()];
        }
    }
    if let Some((after, ending)) = plan.stop {
        if stream {
            frames.truncate(after.min(frames.len().saturating_sub(1)));
        } else {
            let whole = Bytes::from(frames.concat());
            frames = vec![whole.slice(..whole.len() / 2)];
        }
        stall = ending == Ending::Stall;
    }
    if !stream && !stall && plan.first_delay.is_zero() && frames.len() == 1 {
        Body::from(frames.swap_remove(0))
    } else if !stall && plan.first_delay.is_zero() && chunk_delay.is_zero() {
        Body::from_stream(stream::iter(frames.into_iter().map(Ok::<_, io::Error>)))
    } else {
        let feed = Feed {
            frames: frames.into_iter(),
            first_delay: plan.first_delay,
            chunk_delay,
            stall,
            sent: 0,
            shutdown,
            done: false,
        };
        Body::from_stream(stream::unfold(feed, Feed::next))
    }
}

/// A body that fails at once (the `reset` fault outside a real server).
pub(crate) fn failing() -> Body {
    Body::from_stream(stream::once(async {
        Err::<Bytes, _>(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "reset fault",
        ))
    }))
}

/// A body stream with delays and an optional stall at the end.
struct Feed {
    frames: std::vec::IntoIter<Bytes>,
    first_delay: Duration,
    chunk_delay: Duration,
    stall: bool,
    sent: usize,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

impl Feed {
    async fn next(mut self) -> Option<(io::Result<Bytes>, Self)> {
        if self.done {
            return None;
        }
        let delay = if self.sent == 0 {
            self.first_delay
        } else {
            self.chunk_delay
        };
        match self.frames.next() {
            Some(frame) => {
                if !delay.is_zero() && !sleep_unless_shutdown(delay, &mut self.shutdown).await {
                    self.done = true;
                    return Some((Err(shutdown_error()), self));
                }
                self.sent += 1;
                Some((Ok(frame), self))
            }
            None if self.stall => {
                let _ = self.shutdown.wait_for(|stop| *stop).await;
                self.done = true;
                Some((Err(shutdown_error()), self))
            }
            None => None,
        }
    }
}

fn shutdown_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::ConnectionAborted,
        "fake provider shutting down",
    )
}

/// Sleeps for `delay`; returns false if the server began shutting down first.
pub(crate) async fn sleep_unless_shutdown(
    delay: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        () = tokio::time::sleep(delay) => true,
        _ = shutdown.wait_for(|stop| *stop) => false,
    }
}
