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
        Self::start_with(name, join, &[])
    }

    fn start_with(name: &str, join: Option<SocketAddr>, extra: &[&str]) -> NodeProcess {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--listen", "127.0.0.1:0", "--name", name]).args(extra);
        if let Some(seed) = join {
            cmd.args(["--join", &seed.to_string()]);
        }
        let mut child = cmd
            .env("RUST_LOG", std::env::var("CUSTODY_TEST_LOG").unwrap_or_else(|_| "warn".into()))
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

    /// Waits for the process to exit, at most `limit`.
    fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        let start = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(start.elapsed() < limit, "the node did not exit within {limit:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
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

/// `custody status --node ADDR --json`, parsed.
fn status_of(node: SocketAddr) -> Option<serde_json::Value> {
    let out = Command::new(BIN).args(["status", "--node", &node.to_string(), "--json"]).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(serde_json::from_slice(&out.stdout).expect("status --json prints JSON"))
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

    // SIGTERM: the node leaves gracefully: the store removes it from the
    // configuration (one batching window), then it leaves SWIM and exits 0,
    // and the other sees it within a second of its exit.
    let mut b = b;
    let config = Config::lan();
    let signalled = std::time::Instant::now();
    b.signal("-TERM");
    let status = b.wait_exit(config.stable_after * 2 + config.lease + Duration::from_secs(1));
    assert!(status.success(), "custody node exited with {status} after SIGTERM");
    eprintln!("SIGTERM: removed and exited in {:?}", signalled.elapsed());
    let (_, took) = wait_for(Duration::from_secs(1), "SIGTERMed node seen down", || async move {
        (state_of(a.addr, b.addr).as_deref() == Some("down")).then_some(())
    })
    .await;
    eprintln!("SIGTERM leave seen {took:?} after the exit");
    let status = status_of(a.addr).expect("a answers");
    let names: Vec<&str> =
        status["members"].as_array().expect("members").iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(!names.contains(&"b"), "the leaver is still a member: {status}");

    // `custody leave` stops the last one, which exits 0 as well.
    let out = Command::new(BIN).args(["leave", "--node", &a.addr.to_string()]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut a = a;
    let status = a.child.wait().expect("exits");
    assert!(status.success());
}

#[tokio::test]
async fn killing_the_epoch_leader_elects_a_new_one_that_commits_the_removal() {
    let config = Config::fast();
    let fast = ["--profile", "fast"];
    let first = NodeProcess::start_with("p0", None, &fast);
    let mut nodes = vec![first];
    for i in 1..5 {
        let seed = nodes[0].addr;
        nodes.push(NodeProcess::start_with(&format!("p{i}"), Some(seed), &fast));
    }
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();

    // Formation: one epoch with all five, three voters, a leader.
    let (leader, _) = wait_for(Duration::from_secs(15), "5 members, 3 voters and a leader everywhere", || {
        let addrs = addrs.clone();
        async move {
            let statuses: Vec<serde_json::Value> = addrs.iter().map(|&a| status_of(a)).collect::<Option<_>>()?;
            let first = &statuses[0];
            let agreed = statuses.iter().all(|s| {
                s["epoch"] == first["epoch"]
                    && s["epoch_hash"] == first["epoch_hash"]
                    && s["leader"] == first["leader"]
                    && s["members"].as_array().is_some_and(|m| m.len() == 5)
                    && s["voters"].as_array().is_some_and(|v| v.len() == 3)
            });
            (agreed && first["leader"].is_string()).then(|| first["leader"].as_str().expect("a name").to_string())
        }
    })
    .await;

    // Kill the leader.
    let index: usize = leader.trim_start_matches('p').parse().expect("pN");
    let mut killed = nodes.remove(index);
    killed.child.kill().expect("SIGKILL");
    killed.child.wait().expect("reaped");
    let survivors: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();

    // A new leader commits the epoch that removes it; every survivor shows
    // the same epoch and hash.
    let limit = config.failure_detection_bound(5) + config.stable_after + config.lease * 2 + Duration::from_secs(3);
    let (epoch, took) = wait_for(limit, "survivors agree on the removal epoch under a new leader", || {
        let survivors = survivors.clone();
        let leader = leader.clone();
        async move {
            let statuses: Vec<serde_json::Value> = survivors.iter().map(|&a| status_of(a)).collect::<Option<_>>()?;
            let first = &statuses[0];
            let same = statuses.iter().all(|s| s["epoch"] == first["epoch"] && s["epoch_hash"] == first["epoch_hash"]);
            let names: Vec<&str> = first["members"].as_array()?.iter().filter_map(|m| m["name"].as_str()).collect();
            let new_leader = first["leader"].as_str().is_some_and(|l| l != leader);
            (same && new_leader && names.len() == 4 && !names.contains(&leader.as_str()))
                .then(|| first["epoch"].clone())
        }
    })
    .await;
    eprintln!("leader {leader} killed: removal epoch {epoch} agreed by all survivors in {took:?} (limit {limit:?})");
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
