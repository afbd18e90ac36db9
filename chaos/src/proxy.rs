//! A TCP fault proxy: forwards a listen address to an upstream and, on command, delays (with
//! jitter), drops new connections, blackholes, resets, or throttles traffic, per direction.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The fault applied to one direction of traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    /// Forward as is.
    #[default]
    None,
    /// Hold each chunk `base_ms` plus up to `jitter_ms`.
    Delay { base_ms: u64, jitter_ms: u64 },
    /// Nothing gets through while active: connections stay open, and what was sent is held
    /// and arrives after the heal, as TCP's retransmissions deliver it once a real partition
    /// heals (dropping bytes from the middle of a stream would corrupt it, which no network
    /// does; a connection that must die is `Reset`).
    Blackhole,
    /// Cut every connection (and refuse new ones) while active.
    Reset,
    /// At most `bytes_per_sec`.
    Bandwidth { bytes_per_sec: u64 },
}

/// Faults for both directions; `drop_new` refuses new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Faults {
    /// Client -> upstream.
    pub up: Fault,
    /// Upstream -> client.
    pub down: Fault,
    /// Close new connections at once.
    pub drop_new: bool,
}

/// A running proxy; dropping the handle leaves it running until the runtime ends.
#[derive(Clone)]
pub struct Proxy {
    /// The address clients dial.
    pub listen: SocketAddr,
    faults: watch::Sender<Faults>,
}

impl Proxy {
    /// Starts a proxy on `listen` (port 0: a free one) in front of `upstream`.
    pub async fn start(
        listen: SocketAddr,
        upstream: SocketAddr,
        seed: u64,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let listen = listener.local_addr()?;
        let (tx, rx) = watch::channel(Faults::default());
        let rng = Arc::new(Mutex::new(ChaCha8Rng::seed_from_u64(seed)));
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                let rx = rx.clone();
                if rx.borrow().drop_new
                    || matches!(rx.borrow().up, Fault::Reset)
                    || matches!(rx.borrow().down, Fault::Reset)
                {
                    drop(client);
                    continue;
                }
                let rng = rng.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = server.into_split();
                    let up = pump(cr, sw, rx.clone(), true, rng.clone());
                    let down = pump(sr, cw, rx, false, rng);
                    // When either direction ends (or is reset), both close.
                    tokio::select! { _ = up => {}, _ = down => {} }
                });
            }
        });
        Ok(Self { listen, faults: tx })
    }

    /// Sets the faults (applies to open and new connections).
    pub fn set(&self, faults: Faults) {
        self.faults.send_replace(faults);
    }

    /// Back to plain forwarding.
    pub fn heal(&self) {
        self.set(Faults::default());
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut rx: watch::Receiver<Faults>,
    up: bool,
    rng: Arc<Mutex<ChaCha8Rng>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let pick = |f: &Faults| if up { f.up } else { f.down };
    loop {
        let n = tokio::select! {
            r = from.read(&mut buf) => match r { Ok(0) | Err(_) => return, Ok(n) => n },
            changed = rx.changed() => {
                if changed.is_err() { return; }
                if matches!(pick(&rx.borrow()), Fault::Reset) { return; }
                continue;
            }
        };
        let mut fault = pick(&rx.borrow());
        while fault == Fault::Blackhole {
            if rx.changed().await.is_err() {
                return;
            }
            fault = pick(&rx.borrow());
        }
        match fault {
            Fault::None | Fault::Blackhole => {}
            Fault::Reset => return,
            Fault::Delay { base_ms, jitter_ms } => {
                let extra = if jitter_ms == 0 {
                    0
                } else {
                    rng.lock()
                        .map(|mut r| r.random_range(0..=jitter_ms))
                        .unwrap_or(0)
                };
                tokio::time::sleep(Duration::from_millis(base_ms + extra)).await;
            }
            Fault::Bandwidth { bytes_per_sec } => {
                let ms = (n as u64).saturating_mul(1000) / bytes_per_sec.max(1);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::time::Instant;

    async fn echo() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = l.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut b = [0u8; 4096];
                    loop {
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => {
                                if s.write_all(&b[..n]).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
            }
        });
        addr
    }

    async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg).await?;
        let mut out = vec![0u8; msg.len()];
        s.read_exact(&mut out).await?;
        Ok(out)
    }

    #[tokio::test]
    async fn forwards_delays_blackholes_and_resets() {
        let up = echo().await;
        let p = Proxy::start("127.0.0.1:0".parse().unwrap(), up, 1)
            .await
            .unwrap();
        let mut s = TcpStream::connect(p.listen).await.unwrap();
        assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");

        p.set(Faults {
            up: Fault::Delay {
                base_ms: 200,
                jitter_ms: 50,
            },
            ..Faults::default()
        });
        let t = Instant::now();
        assert_eq!(round_trip(&mut s, b"slow").await.unwrap(), b"slow");
        assert!(
            t.elapsed() >= Duration::from_millis(200),
            "{:?}",
            t.elapsed()
        );

        p.set(Faults {
            down: Fault::Blackhole,
            ..Faults::default()
        });
        s.write_all(b"lost").await.unwrap();
        let mut b = [0u8; 4];
        assert!(
            tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut b))
                .await
                .is_err()
        );

        p.heal();
        // What was sent into the blackhole arrives after the heal, as after a real partition.
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&b, b"lost");
        let mut s2 = TcpStream::connect(p.listen).await.unwrap();
        assert_eq!(round_trip(&mut s2, b"again").await.unwrap(), b"again");

        p.set(Faults {
            up: Fault::Reset,
            ..Faults::default()
        });
        // The open connection is cut: a read sees EOF or an error.
        let r = tokio::time::timeout(Duration::from_secs(2), s2.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
        // New connections are refused (closed at once).
        let mut s3 = TcpStream::connect(p.listen).await.unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), s3.read(&mut b))
            .await
            .unwrap();
        assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    }

    #[tokio::test]
    async fn bandwidth_limits_throughput() {
        let up = echo().await;
        let p = Proxy::start("127.0.0.1:0".parse().unwrap(), up, 2)
            .await
            .unwrap();
        p.set(Faults {
            up: Fault::Bandwidth {
                bytes_per_sec: 10_000,
            },
            ..Faults::default()
        });
        let mut s = TcpStream::connect(p.listen).await.unwrap();
        let t = Instant::now();
        let msg = vec![7u8; 3_000];
        assert_eq!(round_trip(&mut s, &msg).await.unwrap(), msg);
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
    }
}
