//! The command line: `up` runs and stops cleanly, bad configuration is one clear error.

use std::process::Command;
use std::time::Duration;

use crate::support::{Api, binary, cluster_file, eventually, free_port, spawn};

fn interrupt(pid: u32) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
}

#[test]
fn up_serves_until_ctrl_c_then_exits_cleanly() {
    let port = free_port();
    let (_dir, config) = cluster_file(&[("solo", port)], "");
    let mut up = spawn(&["up", "--config", config.to_str().unwrap()]);
    let api = Api::new(port);
    api.wait_healthy();
    interrupt(up.0.id());
    let status = eventually(Duration::from_secs(15), "up to exit", || {
        up.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
}

#[test]
fn up_with_several_nodes_runs_each_as_a_process_and_stops_them_all() {
    let (a, b) = (free_port(), free_port());
    let (_dir, config) = cluster_file(&[("a", a), ("b", b)], "");
    let mut up = spawn(&["up", "--config", config.to_str().unwrap()]);
    Api::new(a).wait_healthy();
    Api::new(b).wait_healthy();
    interrupt(up.0.id());
    let status = eventually(Duration::from_secs(20), "up to exit", || {
        up.0.try_wait().unwrap()
    });
    assert!(status.success(), "{status:?}");
    // Both nodes are gone with it.
    for port in [a, b] {
        eventually(Duration::from_secs(10), "the node to stop", || {
            std::net::TcpStream::connect(("127.0.0.1", port))
                .is_err()
                .then_some(())
        });
    }
}

#[test]
fn a_bad_cluster_file_is_one_clear_error_naming_the_key() {
    let (_dir, config) = cluster_file(&[("n1", 1)], "[memory]\nshards = 0\n");
    let out = Command::new(binary())
        .args(["up", "--config", config.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("memory.shards"), "{stderr}");
    assert!(stderr.contains("cluster.toml"), "{stderr}");

    let out = Command::new(binary())
        .args([
            "node",
            "--config",
            config.to_str().unwrap(),
            "--name",
            "ghost",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let (_dir, config) = cluster_file(&[("n1", port)], "");
    let out = Command::new(binary())
        .args(["node", "--config", config.to_str().unwrap(), "--name", "n1"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
