//! Real `custody node` processes on 127.0.0.1, driven through the CLI.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use custody::Config;

use crate::util::wait_for;

const BIN: &str = env!("CARGO_BIN_EXE_custody");

/// A `custody node` child process, killed when dropped.
struct NodeProcess {
    child: Child,
    addr: SocketAddr,
}

impl NodeProcess {
    /// Starts a node on a free port and waits for its ready line.
    fn start(name: &str, join: Option<SocketAddr>) -> NodeProcess {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--listen", "127.0.0.1:0", "--name", name]);
        if let Some(seed) = join {
            cmd.args(["--join", &seed.to_string()]);
        }
        let mut child = cmd
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("custody binary runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line).expect("ready line");
        let prefix = format!("custody node {name} listening on ");
        let addr = line
            .trim_end()
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("unexpected ready line {line:?}"))
            .parse()
            .expect("an address");
        NodeProcess { child, addr }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `custody members --node ADDR --json`, parsed: (addr, state) per member.
fn members(node: SocketAddr) -> Option<Vec<(SocketAddr, String, u64)>> {
    let out = Command::new(BIN).args(["members", "--node", &node.to_string(), "--json"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("members --json prints JSON");
    let list = doc["members"].as_array().expect("a members array");
    Some(
        list.iter()
            .map(|m| {
                assert!(m["name"].is_string(), "member without a name: {m}");
                (
                    m["addr"].as_str().expect("addr").parse().expect("an address"),
                    m["state"].as_str().expect("state").to_string(),
                    m["incarnation"].as_u64().expect("incarnation"),
                )
            })
            .collect(),
    )
}

fn state_of(viewer: SocketAddr, addr: SocketAddr) -> Option<String> {
    members(viewer)?.into_iter().find(|(a, _, _)| *a == addr).map(|(_, s, _)| s)
}

#[tokio::test]
async fn three_processes_detect_a_sigkill_and_see_a_sigterm_leave() {
    let a = NodeProcess::start("a", None);
    let b = NodeProcess::start("b", Some(a.addr));
    let mut c = NodeProcess::start("c", Some(a.addr));
    let all = [a.addr, b.addr, c.addr];
    wait_for(Duration::from_secs(5), "3 processes converge", || async move {
        all.iter()
            .all(|&n| members(n).is_some_and(|m| m.len() == 3 && m.iter().all(|(_, s, _)| s == "alive")))
            .then_some(())
    })
    .await;

    // SIGKILL: no goodbye. The survivors must mark it down within the
    // failure-detection bound of the timings the binary runs with (the
    // default `lan` profile), plus the CLI's own round trips.
    c.child.kill().expect("SIGKILL");
    c.child.wait().expect("reaped");
    let bound = Config::lan().failure_detection_bound(3) + Duration::from_secs(1);
    let (_, took) = wait_for(bound, "SIGKILLed node marked down by both survivors", || async move {
        [a.addr, b.addr].iter().all(|&n| state_of(n, c.addr).as_deref() == Some("down")).then_some(())
    })
    .await;
    eprintln!("SIGKILL detected in {took:?} (bound {bound:?})");

    // SIGTERM: the node leaves gracefully and exits 0; the other sees it
    // within a second.
    let mut b = b;
    b.signal("-TERM");
    let (_, took) = wait_for(Duration::from_secs(1), "SIGTERMed node seen down", || async move {
        (state_of(a.addr, b.addr).as_deref() == Some("down")).then_some(())
    })
    .await;
    eprintln!("SIGTERM leave seen in {took:?}");
    let status = b.child.wait().expect("exits");
    assert!(status.success(), "custody node exited with {status} after SIGTERM");

    // `custody leave` stops the last one, which exits 0 as well.
    let out = Command::new(BIN).args(["leave", "--node", &a.addr.to_string()]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut a = a;
    let status = a.child.wait().expect("exits");
    assert!(status.success());
}

#[test]
fn cli_errors_say_what_went_wrong_and_exit_2() {
    // Nobody listens on this port: the CLI times out with a hint.
    let out = Command::new(BIN).args(["members", "--node", "127.0.0.1:9"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:9") && stderr.contains("is it running?"), "{stderr}");

    let out = Command::new(BIN).args(["node", "--listen", "not-an-address"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
}
