//! Ports for the node processes that benchmarks and tests start on 127.0.0.1.
//!
//! A port from `bind(127.0.0.1:0)` comes from the kernel's ephemeral range, the same range
//! outgoing connections take their local ports from. Between the moment such a port is chosen
//! and the moment a freshly started node binds it, any connection on the machine (a peer
//! dialling, an HTTP client) may be given it, and the node then fails to start. [`free_port`]
//! hands out ports below that range instead, which outgoing connections never use, and never
//! the same one twice in a process.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU32, Ordering};

/// The lowest port handed out.
const LOW: u32 = 10_000;

/// The kernel's ephemeral port range (Linux; the usual default elsewhere).
fn ephemeral_range() -> (u32, u32) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(str::parse::<u32>);
            Some((it.next()?.ok()?, it.next()?.ok()?))
        })
        .unwrap_or((32_768, 60_999))
}

/// A TCP port free on 127.0.0.1 right now, outside the ephemeral range when the range leaves
/// room below it (from the kernel otherwise), and not handed out before by this process.
pub fn free_port() -> std::io::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (ephemeral_low, _) = ephemeral_range();
    let span = ephemeral_low.saturating_sub(LOW);
    if span >= 1_000 {
        // Processes that run at once start at different places.
        let start = std::process::id() % span;
        loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            if n >= span {
                break;
            }
            let Ok(port) = u16::try_from(LOW + (start + n) % span) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_below_the_ephemeral_range_and_never_repeat() {
        let (low, _) = ephemeral_range();
        let ports: Vec<u16> = (0..50).map(|_| free_port().unwrap()).collect();
        let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len(), "{ports:?}");
        for p in ports {
            if low >= LOW + 1_000 {
                assert!(u32::from(p) >= LOW && u32::from(p) < low, "{p} vs {low}");
            }
            TcpListener::bind(("127.0.0.1", p)).expect("still free");
        }
    }
}
