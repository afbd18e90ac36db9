//! Real partitions: one network namespace per node, joined by veth pairs to a bridge in the
//! harness's namespace, and nftables rules inside a node's namespace that drop its packets to
//! and from chosen peers. Dropped packets are what a partition is: TCP retransmits, sessions
//! stall, heartbeats go missing, and everything sent arrives if the heal comes in time.
//!
//! Needs root (`ip netns`, `nft`). The harness and the fake provider stay in the harness's
//! namespace, reachable from every node through the bridge, so a partition cuts only the
//! links between nodes.

use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The namespaces, the bridge and the addresses of one run.
pub struct Netns {
    /// Third octet of the run's 10.213.X.0/24 subnet (also names its interfaces).
    id: u8,
    /// Node count.
    n: usize,
}

fn run(args: &[&str], input: Option<&str>) -> Result<()> {
    let mut child = Command::new(args[0])
        .args(&args[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", args.join(" ")))?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin.write_all(text.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Why real partitions are not available here, or None when they are.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces and nftables)".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok();
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

impl Netns {
    /// Creates `n` namespaces on a bridge; `salt` picks the subnet (10.213.X.0/24).
    pub fn create(n: usize, salt: u64) -> Result<Self> {
        if let Some(why) = unavailable() {
            bail!("real partitions unavailable: {why}");
        }
        // A subnet (and interface names) no other run on this machine is using.
        let mut id = (salt % 200) as u8 + 20;
        for _ in 0..200 {
            let taken = Command::new("ip")
                .args(["link", "show", &format!("achb{id}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !taken {
                break;
            }
            id = id.wrapping_add(1).max(20);
        }
        let net = Self { id, n };
        net.build().inspect_err(|_| net.teardown())?;
        Ok(net)
    }

    fn build(&self) -> Result<()> {
        let bridge = self.bridge();
        run(&["ip", "link", "add", &bridge, "type", "bridge"], None)?;
        run(
            &[
                "ip",
                "addr",
                "add",
                &format!("{}/24", self.host()),
                "dev",
                &bridge,
            ],
            None,
        )?;
        run(&["ip", "link", "set", &bridge, "up"], None)?;
        for i in 0..self.n {
            let ns = self.ns(i);
            let veth = format!("achv{}n{i}", self.id);
            run(&["ip", "netns", "add", &ns], None)?;
            run(
                &[
                    "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns",
                    &ns,
                ],
                None,
            )?;
            run(&["ip", "link", "set", &veth, "master", &bridge], None)?;
            run(&["ip", "link", "set", &veth, "up"], None)?;
            let inside = |args: &[&str]| {
                let mut all = vec!["ip", "netns", "exec", &ns];
                all.extend_from_slice(args);
                run(&all, None)
            };
            inside(&["ip", "link", "set", "lo", "up"])?;
            inside(&[
                "ip",
                "addr",
                "add",
                &format!("{}/24", self.addr(i)),
                "dev",
                "eth0",
            ])?;
            inside(&["ip", "link", "set", "eth0", "up"])?;
        }
        Ok(())
    }

    fn bridge(&self) -> String {
        format!("achb{}", self.id)
    }

    /// Node `i`'s namespace.
    pub fn ns(&self, i: usize) -> String {
        format!("aimesh-chaos-{}-n{}", self.id, i + 1)
    }

    /// Node `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.id, i as u8 + 1)
    }

    /// The harness's address on the bridge (the fake provider's proxies listen here).
    pub fn host(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.id, 254)
    }

    /// Cuts node `i` off from `peers`, both directions; the harness still reaches it.
    pub fn partition(&self, i: usize, peers: &[usize]) -> Result<()> {
        let set: Vec<String> = peers.iter().map(|p| self.addr(*p).to_string()).collect();
        let set = set.join(", ");
        let rules = format!(
            "table inet aimesh_chaos {{\n\
             \tchain input {{ type filter hook input priority 0; policy accept; ip saddr {{ {set} }} drop; }}\n\
             \tchain output {{ type filter hook output priority 0; policy accept; ip daddr {{ {set} }} drop; }}\n\
             }}\n"
        );
        run(
            &["ip", "netns", "exec", &self.ns(i), "nft", "-f", "-"],
            Some(&rules),
        )
    }

    /// Removes node `i`'s partition rules (nothing to remove is fine).
    pub fn heal(&self, i: usize) -> Result<()> {
        let _ = run(
            &[
                "ip",
                "netns",
                "exec",
                &self.ns(i),
                "nft",
                "delete",
                "table",
                "inet",
                "aimesh_chaos",
            ],
            None,
        );
        Ok(())
    }

    fn teardown(&self) {
        for i in 0..self.n {
            let _ = run(&["ip", "netns", "del", &self.ns(i)], None);
        }
        let _ = run(&["ip", "link", "del", &self.bridge()], None);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::print_stderr)]
mod tests {
    use super::*;

    /// Whether `from`'s namespace (None: the harness's) can open a TCP connection to `to`.
    fn connects(net: &Netns, from: Option<usize>, to: std::net::SocketAddrV4) -> bool {
        let probe = format!(
            "import socket,sys\ns=socket.socket()\ns.settimeout(1)\n\
             try:\n    s.connect(('{}',{}))\nexcept OSError:\n    sys.exit(1)\n",
            to.ip(),
            to.port()
        );
        let mut cmd = match from {
            Some(i) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &net.ns(i), "python3"]);
                c
            }
            None => Command::new("python3"),
        };
        cmd.args(["-c", &probe]).status().is_ok_and(|s| s.success())
    }

    #[test]
    fn a_partition_drops_peer_traffic_and_the_heal_restores_it() {
        if let Some(why) = unavailable() {
            eprintln!("skipped: {why}");
            return;
        }
        let net = Netns::create(2, 7).unwrap();
        // A listener in n2's namespace.
        let server = std::net::SocketAddrV4::new(net.addr(1), 9000);
        let script = format!(
            "import socket,time\ns=socket.socket()\ns.bind(('{}',{}))\ns.listen(16)\n\
             while True:\n    c,_=s.accept()\n",
            server.ip(),
            server.port()
        );
        let mut listener = Command::new("ip")
            .args(["netns", "exec", &net.ns(1), "python3", "-c", &script])
            .spawn()
            .unwrap();
        let up = (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            connects(&net, None, server)
        });
        assert!(
            up,
            "the listener in n2's namespace is reachable from the harness"
        );
        assert!(connects(&net, Some(0), server), "n1 reaches n2");
        net.partition(0, &[1]).unwrap();
        assert!(
            !connects(&net, Some(0), server),
            "partitioned: n1 cannot reach n2"
        );
        assert!(connects(&net, None, server), "the harness still reaches n2");
        net.heal(0).unwrap();
        assert!(
            connects(&net, Some(0), server),
            "healed: n1 reaches n2 again"
        );
        let _ = listener.kill();
        let _ = listener.wait();
        let ns = net.ns(0);
        drop(net);
        let left = Command::new("ip").args(["netns", "list"]).output().unwrap();
        assert!(
            !String::from_utf8_lossy(&left.stdout).contains(&ns),
            "namespaces removed on drop"
        );
    }
}
