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
        let log = std::env::var("CUSTODY_TEST_LOG").unwrap_or_else(|_| "warn".into());
        Self::spawn(name, join, extra, &log, Stdio::inherit())
    }

    /// Starts a node like [`NodeProcess::start_with`], logging at info level;
    /// its stderr lines come through the receiver (and are echoed to the
    /// test's stderr).
    fn start_logged(
        name: &str,
        join: Option<SocketAddr>,
        extra: &[&str],
    ) -> (NodeProcess, std::sync::mpsc::Receiver<String>) {
        let mut node = Self::spawn(name, join, extra, "custody=info", Stdio::piped());
        let stderr = node.child.stderr.take().expect("piped");
        let (tx, rx) = std::sync::mpsc::channel();
        let name = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[{name}] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        (node, rx)
    }

    fn spawn(name: &str, join: Option<SocketAddr>, extra: &[&str], log: &str, stderr: Stdio) -> NodeProcess {
        let mut cmd = Command::new(BIN);
        cmd.args(["node", "--listen", "127.0.0.1:0", "--name", name]).args(extra);
        if let Some(seed) = join {
            cmd.args(["--join", &seed.to_string()]);
        }
        let mut child = cmd
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
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

/// A file in the temporary directory, removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(what: &str) -> TempFile {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_nanos();
        TempFile(std::env::temp_dir().join(format!("custody-{what}-{}-{nanos}", std::process::id())))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Waits until every node agrees on one configuration of `n` members and
/// holds the state of every range it owns.
async fn wait_for_custody(nodes: &[SocketAddr], n: usize) {
    let nodes = nodes.to_vec();
    wait_for(Duration::from_secs(15), "one configuration everywhere, every range held", || {
        let nodes = nodes.clone();
        async move {
            let statuses: Vec<serde_json::Value> = nodes.iter().map(|&a| status_of(a)).collect::<Option<_>>()?;
            let first = &statuses[0];
            statuses
                .iter()
                .all(|s| {
                    s["epoch"] == first["epoch"]
                        && s["epoch_hash"] == first["epoch_hash"]
                        && s["members"].as_array().is_some_and(|m| m.len() == n)
                        && s["custody"]["ranges_owned"].as_u64().is_some_and(|r| r > 0)
                        && s["custody"]["ranges_unavailable"] == 0
                        && s["custody"]["ranges_sealing"] == 0
                })
                .then_some(())
        }
    })
    .await;
}

/// `custody submit ...` with `args`: exit code and stdout parsed as JSON.
fn submit(args: &[&str]) -> (Option<i32>, serde_json::Value) {
    let out = Command::new(BIN).arg("submit").args(args).output().expect("custody submit runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let doc = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("submit {args:?} printed no JSON ({e}): {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code(), doc)
}

#[tokio::test]
async fn a_load_over_three_processes_runs_each_task_once_and_one_at_a_time_per_resource() {
    let log = TempFile::new("exec-log");
    let flags = ["--profile", "fast", "--task-ms", "5", "--exec-log", log.path()];
    let a = NodeProcess::start_with("l0", None, &flags);
    let b = NodeProcess::start_with("l1", Some(a.addr), &flags);
    let c = NodeProcess::start_with("l2", Some(a.addr), &flags);
    let nodes = [a.addr, b.addr, c.addr];
    wait_for_custody(&nodes, 3).await;

    let started = std::time::Instant::now();
    let node = a.addr.to_string();
    let (code, summary) =
        submit(&["--node", &node, "--count", "300", "--resources", "20", "--hot-fraction", "0.5", "--json"]);
    eprintln!("load of 300 tasks in {:?}: {summary}", started.elapsed());
    assert_eq!(code, Some(0), "{summary}");
    let keys: Vec<&str> = summary.as_object().expect("an object").keys().map(String::as_str).collect();
    let mut expected =
        vec!["submitted", "acknowledged", "completed", "busy", "errors", "throughput_per_s", "latency_ms"];
    expected.sort_unstable();
    assert_eq!(keys, expected, "{summary}");
    assert_eq!(summary["submitted"], 300, "{summary}");
    assert_eq!(summary["completed"], 300, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert!(summary["latency_ms"]["p50"].as_f64().is_some_and(|p50| p50 > 0.0), "{summary}");
    assert!(summary["latency_ms"]["p99"].as_f64() >= summary["latency_ms"]["p50"].as_f64(), "{summary}");

    // The merged execution log of the three nodes.
    let text = std::fs::read_to_string(&log.0).expect("the execution log exists");
    let lines: Vec<serde_json::Value> =
        text.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad log line {l:?}: {e}"))).collect();
    let mut ids = std::collections::BTreeMap::<&str, usize>::new();
    let mut by_resource = std::collections::BTreeMap::<&str, Vec<(u64, u64, u64)>>::new();
    let mut by_node = std::collections::BTreeSet::new();
    for l in &lines {
        *ids.entry(l["task_id"].as_str().expect("task_id")).or_default() += 1;
        let (start, end) = (l["start_ns"].as_u64().expect("start_ns"), l["end_ns"].as_u64().expect("end_ns"));
        assert!(start <= end, "{l}");
        assert_eq!(l["attempt"], 1, "{l}");
        by_resource.entry(l["resource"].as_str().expect("resource")).or_default().push((
            start,
            end,
            l["seq"].as_u64().expect("seq"),
        ));
        by_node.insert(l["node"].as_str().expect("node"));
    }
    assert_eq!(ids.len(), 300, "distinct task ids in the log");
    assert!(ids.iter().all(|(_, &n)| n == 1), "tasks ran more than once: {:?}", ids.iter().filter(|(_, n)| **n > 1));
    assert_eq!(by_resource.len(), 20, "resources in the log: {:?}", by_resource.keys());
    assert_eq!(by_resource["r0"].len(), 150, "half the tasks go to the hot resource");
    assert!(by_node.len() >= 2, "only {by_node:?} ran tasks");
    for (resource, runs) in &mut by_resource {
        runs.sort_unstable();
        for pair in runs.windows(2) {
            let ((_, end, seq), (start, _, next_seq)) = (pair[0], pair[1]);
            assert!(end <= start, "{resource}: seq {seq} ran until {end}, seq {next_seq} started at {start}");
            assert!(seq < next_seq, "{resource}: seq {next_seq} started after seq {seq}");
        }
    }

    // The status JSON has the custody counters at the top level too.
    let executed: u64 =
        nodes.iter().map(|&n| status_of(n).expect("status")["tasks_executed"].as_u64().expect("tasks_executed")).sum();
    assert_eq!(executed, 300);
}

#[tokio::test]
async fn exec_runs_a_shell_command_with_the_task_in_its_environment() {
    let seen = TempFile::new("exec-env");
    let command = format!(
        "read -r payload; \
         printf '%s %s %s %s\\n' \"$CUSTODY_RESOURCE\" \"$CUSTODY_TOKEN_SEQ\" \"$CUSTODY_ATTEMPT\" \"$payload\" >> '{}'; \
         if [ \"$payload\" = fail ]; then echo broken >&2; exit 3; fi; \
         echo \"ran $CUSTODY_TASK_ID\"",
        seen.path()
    );
    let node = NodeProcess::start_with("x", None, &["--profile", "fast", "--exec", &command]);
    wait_for_custody(&[node.addr], 1).await;
    let addr = node.addr.to_string();

    let (code, done) =
        submit(&["--node", &addr, "--resource", "acct-7", "--id", "t1", "--payload", "one", "--wait", "--json"]);
    assert_eq!(code, Some(0), "{done}");
    assert_eq!(done["outcome"], serde_json::json!({ "ok": true, "result": "ran t1\n" }), "{done}");
    assert_eq!(done["token"]["seq"], 1, "{done}");

    let (code, done) = submit(&["--node", &addr, "--resource", "acct-7", "--payload", "fail", "--wait", "--json"]);
    assert_eq!(code, Some(1), "a task that ran and failed exits 1: {done}");
    let error = done["outcome"]["error"].as_str().unwrap_or_default();
    assert!(done["outcome"]["ok"] == false && error.contains("exit status: 3") && error.contains("broken"), "{done}");

    // Without --wait: accepted, then run.
    let (code, accepted) = submit(&["--node", &addr, "--resource", "acct-7", "--payload", "three", "--json"]);
    assert_eq!(code, Some(0), "{accepted}");
    assert_eq!(accepted["seq"], 3, "{accepted}");
    let (lines, _) = wait_for(Duration::from_secs(5), "the third task ran", || async {
        let text = std::fs::read_to_string(&seen.0).unwrap_or_default();
        (text.lines().count() == 3).then_some(text)
    })
    .await;
    assert_eq!(lines, "acct-7 1 1 one\nacct-7 2 1 fail\nacct-7 3 1 three\n");
}

#[tokio::test]
async fn a_second_sigterm_stops_a_leaving_node_at_once() {
    // Two nodes, two voters. With one of them gone, the epoch store cannot
    // commit the other's removal, so a graceful leave waits its whole bound
    // (2·stable_after + lease + handoff_timeout: 39 s with the default lan
    // profile).
    let config = Config::lan();
    let leave_bound = config.stable_after * 2 + config.lease + config.handoff_timeout;
    let (mut a, log) = NodeProcess::start_logged("t0", None, &[]);
    let mut b = NodeProcess::start("t1", Some(a.addr));
    wait_for_custody(&[a.addr, b.addr], 2).await;
    b.child.kill().expect("SIGKILL");
    b.child.wait().expect("reaped");

    a.signal("-TERM");
    // The first SIGTERM is handled (the leave has begun) before the second
    // is sent: two signals sent back to back may be delivered as one.
    let seen = |what: &str, limit: Duration| {
        let give_up = std::time::Instant::now() + limit;
        loop {
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {what:?} within {limit:?} ({e})"),
            }
        }
    };
    let first = seen("SIGTERM: leaving the cluster", Duration::from_secs(10));
    assert!(first.contains("again to stop at once"), "{first}");
    assert!(a.child.try_wait().expect("try_wait").is_none(), "the leave cannot commit: the node must still run");

    a.signal("-TERM");
    // Generous, and still well below the leave's own bound.
    let limit = Duration::from_secs(10);
    assert!(limit * 3 < leave_bound);
    let status = a.wait_exit(limit);
    assert_eq!(status.code(), Some(143), "a second SIGTERM exits with 128 + 15, got {status}");
    seen("second SIGTERM: stopping at once", Duration::from_secs(1));
}
