//! Real `custody node` and `custody local-cluster` processes on 127.0.0.1,
//! driven through the CLI.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use custody::Config;

use crate::util::{PROMPT, formation, leave_bound, limit, wait_for};

const BIN: &str = env!("CARGO_BIN_EXE_custody");

/// The last lines of a process's stderr kept for a failure message.
const STDERR_TAIL_LINES: usize = 200;

/// A `custody` child process, killed when dropped. Its stdout comes line by
/// line through a channel (at most the few lines the CLI prints); its stderr
/// is echoed to the test's captured output, shown if the test fails, and
/// its last lines go into the test's failure messages.
struct Process {
    what: String,
    child: Child,
    stdout: Receiver<String>,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_reader: Option<JoinHandle<()>>,
}

impl Process {
    /// Runs `custody ARGS` with `RUST_LOG=log`; each stderr line also goes
    /// to `stderr_lines` if given.
    fn spawn(what: &str, args: &[&str], log: &str, stderr_lines: Option<Sender<String>>) -> Process {
        let mut child = Command::new(BIN)
            .args(args)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("custody binary runs");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped");
        std::thread::spawn(move || {
            // Read to the end even once nobody listens: a full pipe would
            // block the process.
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_LINES)));
        let err = child.stderr.take().expect("piped");
        let (tail, prefix) = (stderr_tail.clone(), what.to_string());
        let stderr_reader = std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("[{prefix}] {line}");
                {
                    let mut tail = tail.lock().expect("not poisoned");
                    if tail.len() == STDERR_TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line.clone());
                }
                if let Some(lines) = &stderr_lines {
                    let _ = lines.send(line);
                }
            }
        });
        Process { what: what.to_string(), child, stdout, stderr_tail, stderr_reader: Some(stderr_reader) }
    }

    /// The next stdout line, if one comes within `limit`.
    fn try_line(&mut self, limit: Duration) -> Option<String> {
        self.stdout.recv_timeout(limit).ok()
    }

    /// The next stdout line; fails the test with the process's stderr if
    /// none comes within `limit`.
    fn line(&mut self, limit: Duration, what: &str) -> String {
        match self.stdout.recv_timeout(limit) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Timeout) => self.fail(&format!("no {what} on stdout within {limit:?}")),
            Err(mpsc::RecvTimeoutError::Disconnected) => self.fail(&format!("stdout ended before {what}")),
        }
    }

    /// Kills the process and fails the test with `message` and the end of
    /// its stderr.
    fn fail(&mut self, message: &str) -> ! {
        let _ = self.child.kill();
        let status = self.child.wait().map_or_else(|e| format!("wait failed: {e}"), |s| s.to_string());
        self.read_all_stderr();
        panic!("{}: {message} ({status}); the end of its stderr:\n{}", self.what, self.stderr_tail())
    }

    /// Waits until the reader has taken all of the process's stderr: call
    /// only once the process has exited.
    fn read_all_stderr(&mut self) {
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
    }

    fn stderr_tail(&self) -> String {
        self.stderr_tail.lock().expect("not poisoned").iter().map(|l| format!("  {l}\n")).collect()
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill runs");
        assert!(status.success());
    }

    /// SIGKILL, and reaped.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reaped");
    }

    /// Whether the process has exited, without waiting.
    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits for the process to exit; fails the test with its stderr after
    /// `limit`.
    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if start.elapsed() >= limit {
                self.fail(&format!("did not exit within {limit:?}"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The node processes' log filter: `CUSTODY_TEST_LOG`, else warnings.
fn test_log() -> String {
    std::env::var("CUSTODY_TEST_LOG").unwrap_or_else(|_| "warn".into())
}

/// A `custody node` child process and the address it listens on.
struct NodeProcess {
    process: Process,
    addr: SocketAddr,
}

impl NodeProcess {
    /// Starts a node on a free port and waits for its ready line.
    fn start(name: &str, join: Option<SocketAddr>) -> NodeProcess {
        Self::start_with(name, join, &[])
    }

    fn start_with(name: &str, join: Option<SocketAddr>, extra: &[&str]) -> NodeProcess {
        Self::spawn(name, join, extra, &test_log(), None)
    }

    /// Starts a node like [`NodeProcess::start_with`], logging at info level;
    /// its stderr lines come through the receiver too.
    fn start_logged(name: &str, join: Option<SocketAddr>, extra: &[&str]) -> (NodeProcess, Receiver<String>) {
        let (tx, rx) = mpsc::channel();
        (Self::spawn(name, join, extra, "custody=info", Some(tx)), rx)
    }

    fn spawn(
        name: &str,
        join: Option<SocketAddr>,
        extra: &[&str],
        log: &str,
        stderr_lines: Option<Sender<String>>,
    ) -> NodeProcess {
        let seed = join.map(|seed| seed.to_string());
        let mut args = vec!["node", "--listen", "127.0.0.1:0", "--name", name];
        args.extend_from_slice(extra);
        if let Some(seed) = &seed {
            args.extend_from_slice(&["--join", seed]);
        }
        let mut process = Process::spawn(name, &args, log, stderr_lines);
        // Printed once the node has bound its port, before it joins.
        let line = process.line(PROMPT, "ready line");
        let prefix = format!("custody node {name} listening on ");
        let addr = match line.trim_end().strip_prefix(&prefix).map(str::parse) {
            Some(Ok(addr)) => addr,
            _ => process.fail(&format!("unexpected ready line {line:?}")),
        };
        NodeProcess { process, addr }
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
    // The binary's default profile.
    let config = Config::lan();
    let a = NodeProcess::start("a", None);
    let b = NodeProcess::start("b", Some(a.addr));
    let mut c = NodeProcess::start("c", Some(a.addr));
    let all = [a.addr, b.addr, c.addr];
    wait_for(limit(formation(&config, 3)), "3 processes converge", || async move {
        all.iter()
            .all(|&n| members(n).is_some_and(|m| m.len() == 3 && m.iter().all(|(_, s, _)| s == "alive")))
            .then_some(())
    })
    .await;

    // SIGKILL: no goodbye. The survivors mark it down; on an idle machine
    // within the failure-detection bound of the timings the binary runs
    // with, which is printed next to the time it took.
    c.process.kill();
    let bound = config.failure_detection_bound(3);
    let (_, took) = wait_for(limit(bound), "SIGKILLed node marked down by both survivors", || async move {
        [a.addr, b.addr].iter().all(|&n| state_of(n, c.addr).as_deref() == Some("down")).then_some(())
    })
    .await;
    eprintln!("SIGKILL detected in {took:?} (bound {bound:?})");

    // SIGTERM: the node leaves gracefully: the store removes it from the
    // configuration (one batching window), then it leaves SWIM and exits 0,
    // and the other sees it at once, not after a failure timeout.
    let mut b = b;
    let signalled = Instant::now();
    b.process.signal("-TERM");
    let status = b.process.wait_exit(limit(leave_bound(&config)));
    assert!(status.success(), "custody node exited with {status} after SIGTERM");
    eprintln!("SIGTERM: removed and exited in {:?}", signalled.elapsed());
    let (_, took) = wait_for(limit(bound), "SIGTERMed node seen down", || async move {
        (state_of(a.addr, b.addr).as_deref() == Some("down")).then_some(())
    })
    .await;
    eprintln!("SIGTERM leave seen {took:?} after the exit (a crash: up to {bound:?})");
    let status = status_of(a.addr).expect("a answers");
    let names: Vec<&str> =
        status["members"].as_array().expect("members").iter().filter_map(|m| m["name"].as_str()).collect();
    assert!(!names.contains(&"b"), "the leaver is still a member: {status}");

    // `custody leave` stops the last one, which exits 0 as well.
    let out = Command::new(BIN).args(["leave", "--node", &a.addr.to_string()]).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut a = a;
    let status = a.process.wait_exit(limit(leave_bound(&config)));
    assert!(status.success(), "custody node exited with {status} after a leave request");
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
    let (leader, _) = wait_for(limit(formation(&config, 5)), "5 members, 3 voters and a leader everywhere", || {
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
    nodes.remove(index).process.kill();
    let survivors: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();

    // A new leader commits the epoch that removes it; every survivor shows
    // the same epoch and hash. On an idle machine within the failure
    // detector's bound, a batching window and two leases (the old leader's
    // to run out, the new one's to be granted).
    let bound = config.failure_detection_bound(5) + config.stable_after + config.lease * 2;
    let (epoch, took) = wait_for(limit(bound), "survivors agree on the removal epoch under a new leader", || {
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
    eprintln!("leader {leader} killed: removal epoch {epoch} agreed by all survivors in {took:?} (bound {bound:?})");
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

/// Waits until every node (running with `config`) agrees on one
/// configuration of `n` members and holds the state of every range it owns.
async fn wait_for_custody(config: &Config, nodes: &[SocketAddr], n: usize) {
    let nodes = nodes.to_vec();
    wait_for(limit(formation(config, n)), "one configuration everywhere, every range held", || {
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
    wait_for_custody(&Config::fast(), &nodes, 3).await;

    let started = Instant::now();
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
    let config = Config::fast();
    wait_for_custody(&config, &[node.addr], 1).await;
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
    let (lines, _) = wait_for(limit(config.d_max), "the third task ran", || async {
        let text = std::fs::read_to_string(&seen.0).unwrap_or_default();
        (text.lines().count() == 3).then_some(text)
    })
    .await;
    assert_eq!(lines, "acct-7 1 1 one\nacct-7 2 1 fail\nacct-7 3 1 three\n");
}

#[tokio::test]
async fn a_second_sigterm_stops_a_leaving_node_at_once() {
    // Two nodes, two voters. With one of them gone, the epoch store cannot
    // commit the other's removal, so a graceful leave waits until it gives
    // up (2·stable_after + lease, 9 s with the default lan profile) and then
    // exits 0.
    let config = Config::lan();
    let (mut a, log) = NodeProcess::start_logged("t0", None, &[]);
    let mut b = NodeProcess::start("t1", Some(a.addr));
    wait_for_custody(&config, &[a.addr, b.addr], 2).await;
    b.process.kill();

    a.process.signal("-TERM");
    // The first SIGTERM is handled (the leave has begun) before the second
    // is sent: two signals sent back to back may be delivered as one.
    let seen = |what: &str| {
        let give_up = Instant::now() + PROMPT;
        loop {
            let left = give_up.saturating_duration_since(Instant::now());
            match log.recv_timeout(left) {
                Ok(line) if line.contains(what) => return line,
                Ok(_) => {}
                Err(e) => panic!("no log line with {what:?} within {PROMPT:?} ({e})"),
            }
        }
    };
    let first = seen("SIGTERM: leaving the cluster");
    assert!(first.contains("again to stop at once"), "{first}");
    assert!(a.process.exited().is_none(), "the leave cannot commit: the node must still run");

    a.process.signal("-TERM");
    // The exit status tells a stop at once (128 + 15) from the end of the
    // leave (0), whenever the exit comes: no stopwatch needed.
    let signalled = Instant::now();
    let status = a.process.wait_exit(limit(leave_bound(&config)));
    assert_eq!(status.code(), Some(143), "a second SIGTERM exits with 128 + 15, got {status}");
    eprintln!("stopped {:?} after the second SIGTERM", signalled.elapsed());
    // Its stderr has ended: the line is in the channel, or never comes.
    seen("second SIGTERM: stopping at once");
}

/// A port `p` with `p .. p + n` free for UDP on 127.0.0.1 right now (the
/// probing sockets are closed again).
fn free_udp_ports(n: u16) -> u16 {
    for _ in 0..100 {
        let first = UdpSocket::bind("127.0.0.1:0").expect("a free port");
        let port = first.local_addr().expect("bound").port();
        let Some(last) = port.checked_add(n - 1) else { continue };
        let rest: Result<Vec<UdpSocket>, _> = (port + 1..=last).map(|p| UdpSocket::bind(("127.0.0.1", p))).collect();
        if rest.is_ok() {
            return port;
        }
    }
    panic!("no {n} consecutive free UDP ports on 127.0.0.1");
}

/// Starts `custody local-cluster --nodes n --profile fast` on free
/// consecutive ports; returns the process and its nodes' addresses once
/// each has printed its ready line. Between probing the ports and binding
/// them another process may take one: then it starts again on others.
fn start_local_cluster(config: &Config, n: u16) -> (Process, Vec<SocketAddr>) {
    let ready = limit(formation(config, n.into()));
    for _ in 0..3 {
        let port = free_udp_ports(n);
        let args = ["local-cluster", "--nodes", &n.to_string(), "--port", &port.to_string(), "--profile", "fast"];
        let mut process = Process::spawn("local-cluster", &args, &test_log(), None);
        let Some(line) = process.try_line(ready) else {
            if process.exited().is_some() {
                process.read_all_stderr();
                if process.stderr_tail().contains("is the port taken") {
                    continue;
                }
            }
            process.fail(&format!("no ready line within {ready:?}"));
        };
        let mut lines = vec![line];
        while lines.len() < usize::from(n) {
            lines.push(process.line(ready, "ready line"));
        }
        let addrs: Vec<SocketAddr> = (0..n).map(|i| SocketAddr::from(([127, 0, 0, 1], port + i))).collect();
        for (i, (line, addr)) in lines.iter().zip(&addrs).enumerate() {
            assert_eq!(*line, format!("custody node node-{} ready on {addr}", i + 1), "ready lines: {lines:?}");
        }
        return (process, addrs);
    }
    panic!("local-cluster found its ports taken three times");
}

#[tokio::test]
async fn local_cluster_runs_its_nodes_in_one_process_and_leaves_on_sigterm() {
    let config = Config::fast();
    let (mut cluster, addrs) = start_local_cluster(&config, 3);

    // It shows how to ask the cluster; the command it shows works.
    let hint = loop {
        let line = cluster.line(PROMPT, "the usage lines");
        if line.contains(" members --node ") {
            break line;
        }
    };
    let words: Vec<&str> = hint.split_whitespace().collect();
    let first = addrs[0].to_string();
    assert!(
        words.len() == 4 && words[0].ends_with("/custody") && words[1..] == ["members", "--node", &first],
        "{hint}"
    );
    let out = Command::new(words[0]).args(&words[1..]).output().expect("the shown command runs");
    assert!(out.status.success(), "{hint}: {}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).matches(" alive ").count(), 3, "{hint}");

    // Every node sees the three alive.
    wait_for(limit(formation(&config, 3)), "every node sees 3 alive members", || {
        let addrs = addrs.clone();
        async move {
            addrs
                .iter()
                .all(|&n| members(n).is_some_and(|m| m.len() == 3 && m.iter().all(|(_, s, _)| s == "alive")))
                .then_some(())
        }
    })
    .await;

    // SIGTERM: each node leaves in turn, the last started first, and the
    // process exits 0.
    let signalled = Instant::now();
    cluster.signal("-TERM");
    let status = cluster.wait_exit(limit(leave_bound(&config) * 3));
    assert!(status.success(), "custody local-cluster exited with {status} after SIGTERM");
    eprintln!("local-cluster of 3 left and exited {:?} after SIGTERM", signalled.elapsed());
    let mut rest = Vec::new();
    while let Some(line) = cluster.try_line(PROMPT) {
        rest.push(line);
    }
    let left: Vec<&str> = rest.iter().filter(|l| l.ends_with(" left")).map(String::as_str).collect();
    assert_eq!(left, ["custody node node-3 left", "custody node node-2 left", "custody node node-1 left"], "{rest:?}");
}
