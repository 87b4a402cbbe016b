//! A host service that embeds custody: a tiny bank behind a line protocol.
//!
//! Every instance runs a custody node and a TCP service. A client sends lines
//! such as `deposit alice 10`, `withdraw alice 3` or `balance alice` to *any*
//! instance; each line becomes a task on the resource `account:alice`, which
//! custody runs at that account's custodian, one task at a time, whichever
//! instance received it. The handler applies the task to the account's row in
//! a store that stands for an external database, as a conditional write keyed
//! on the fencing token: a write whose token is not above the row's last one
//! (sent by a former custodian that was paused or cut off) is rejected.
//!
//! ```text
//! cargo run --example embed                 # 3 instances in this process, a demo burst, a report, leave
//! cargo run --example embed -- --serve      # the same, then keep serving until Ctrl-C
//!
//! # or one instance per terminal:
//! cargo run --example embed -- --single --node-port 7101 --service-port 8101
//! cargo run --example embed -- --single --node-port 7102 --service-port 8102 --join 127.0.0.1:7101
//! cargo run --example embed -- --single --node-port 7103 --service-port 8103 --join 127.0.0.1:7101
//! nc 127.0.0.1 8102                       # then type: deposit alice 10 / withdraw alice 3 / balance alice
//! ```
//!
//! A reply reads `ok balance=7 node=bank-2 token=(3,2)`: the result, the node
//! that ran the task and its fencing token `(epoch, seq)`. With `--single`,
//! each process keeps its own in-memory store, so a balance survives only
//! while its account's custodian does not change; a real service points
//! `Store` at a shared database. Ctrl-C makes every instance leave gracefully.

// An example drives real time and reads the clock.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use custody::engine::{Outcome, Task, Token};
use custody::runtime::{ExecCtx, Handler};
use custody::{Cluster, Config, Error, MemberStatus};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
#[command(about = "A bank service that embeds custody (three instances in one process by default)")]
struct Args {
    /// Run one instance in this process (start it once per terminal).
    #[arg(long)]
    single: bool,
    /// custody's UDP port; with three instances the first, the others take the next two.
    #[arg(long, default_value_t = 7101)]
    node_port: u16,
    /// The service's TCP port; with three instances the first, the others take the next two.
    #[arg(long, default_value_t = 8101)]
    service_port: u16,
    /// With --single: the custody address of a running instance to join (none: start a new cluster).
    #[arg(long, requires = "single")]
    join: Option<SocketAddr>,
    /// With three instances: keep serving after the demo until Ctrl-C.
    #[arg(long)]
    serve: bool,
}

/// One operation on an account.
#[derive(Debug, Clone, Copy)]
enum Op {
    Deposit(i64),
    Withdraw(i64),
    Balance,
}

/// Parses a request line, which is also the task's payload: `deposit alice 10`.
fn parse(line: &str) -> Result<(&str, Op), String> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let amount = |n: &str| n.parse().ok().filter(|n| *n > 0).ok_or_else(|| format!("{n:?} is not a positive amount"));
    match words[..] {
        ["deposit", account, n] => Ok((account, Op::Deposit(amount(n)?))),
        ["withdraw", account, n] => Ok((account, Op::Withdraw(amount(n)?))),
        ["balance", account] => Ok((account, Op::Balance)),
        _ => Err("usage: deposit NAME AMOUNT | withdraw NAME AMOUNT | balance NAME".into()),
    }
}

/// One account's row: its balance and the fencing token of the last write.
#[derive(Debug, Default)]
struct Row {
    balance: i64,
    last_token: Option<Token>,
}

/// Stands for an external database that every instance writes to.
#[derive(Clone, Default)]
struct Store(Arc<Mutex<Db>>);

#[derive(Default)]
struct Db {
    rows: BTreeMap<String, Row>,
    /// Operations applied, by the name of the node that ran them.
    applied_by: BTreeMap<String, u64>,
}

impl Store {
    /// Applies `op` to `account` as one conditional write, as a database would run
    /// `UPDATE accounts SET balance = $new, last_token = $token WHERE name = $account AND last_token < $token`.
    fn apply(&self, account: &str, token: Token, node: &str, op: Op) -> Result<i64, String> {
        let mut guard = self.0.lock().expect("store lock");
        let db = &mut *guard;
        let row = db.rows.entry(account.to_string()).or_default();
        // The fencing check. custody's tokens of one resource increase in
        // execution order, across custodians, so a token not above the last one
        // applied belongs to an execution that custody has since superseded (a
        // former custodian paused past its lease, say), or to a task run again
        // after a cancelled run whose write landed: refuse its write.
        if let Some(last) = row.last_token
            && token <= last
        {
            return Err(format!("stale token rejected (last applied {})", fmt_token(last)));
        }
        row.balance = match op {
            Op::Deposit(n) => row.balance.checked_add(n).ok_or("the balance would overflow")?,
            Op::Withdraw(n) if n > row.balance => return Err(format!("insufficient funds (balance {})", row.balance)),
            Op::Withdraw(n) => row.balance - n,
            Op::Balance => row.balance,
        };
        row.last_token = Some(token); // every accepted operation (reads too, for simplicity) raises the fence
        *db.applied_by.entry(node.to_string()).or_default() += 1;
        Ok(row.balance)
    }
}

/// Runs the account tasks at their custodian.
struct Bank(Store);

impl Handler for Bank {
    async fn execute(&self, ctx: ExecCtx, payload: Vec<u8>) -> Outcome {
        let account = ctx.resource.strip_prefix("account:").unwrap_or(&ctx.resource);
        let op = parse(&String::from_utf8_lossy(&payload)).map(|(_, op)| op);
        // ctx.token is this execution's fencing token: the store checks it.
        let text = match op.and_then(|op| self.0.apply(account, ctx.token, &ctx.node, op)) {
            Ok(balance) => format!("ok balance={balance} node={}", ctx.node),
            Err(e) => format!("err {e} node={}", ctx.node),
        };
        // A refused operation is still a task that ran: the answer says why.
        Outcome::Ok(text.into_bytes())
    }
}

fn fmt_token(t: Token) -> String {
    format!("({},{})", t.epoch, t.seq)
}

/// The value of `key=value` in a reply line.
fn field<'a>(reply: &'a str, key: &str) -> Option<&'a str> {
    reply.split_whitespace().find_map(|w| w.strip_prefix(key))
}

/// Starts one instance: its custody node, then its service.
async fn start(name: String, ports: (u16, u16), join: Option<SocketAddr>, store: Store) -> anyhow::Result<Cluster> {
    let (node_port, service_port) = ports;
    let service = TcpListener::bind(("127.0.0.1", service_port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{service_port} (taken? try --service-port)"))?;
    let cluster = Cluster::builder()
        .listen(SocketAddr::from(([127, 0, 0, 1], node_port)))
        .name(name.clone())
        .join(join)
        .config(Config::fast()) // quick convergence on one host; Config::lan() on a real network
        .handler(Bank(store))
        .start()
        .await
        .with_context(|| format!("cannot start {name} on 127.0.0.1:{node_port} (taken? try --node-port)"))?;
    println!("{name}: custody on {}, service on 127.0.0.1:{service_port}", cluster.local_addr());
    tokio::spawn(serve(service, cluster.clone()));
    Ok(cluster)
}

/// Accepts clients; answers each request line with one reply line.
async fn serve(listener: TcpListener, cluster: Cluster) {
    // Task ids: unique across the cluster and across restarts (the incarnation).
    let prefix = format!("{}-{}", cluster.id().name, cluster.id().incarnation);
    let next = Arc::new(AtomicU64::new(0));
    while let Ok((socket, _)) = listener.accept().await {
        let (cluster, next, prefix) = (cluster.clone(), next.clone(), prefix.clone());
        tokio::spawn(async move {
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if line.trim().is_empty() {
                    continue;
                }
                let id = format!("{prefix}-{}", next.fetch_add(1, Ordering::Relaxed));
                let reply = request(&cluster, &line, id).await;
                if write.write_all(format!("{reply}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
        });
    }
}

/// Runs one request line as a task on its account and words the answer.
async fn request(cluster: &Cluster, line: &str, task_id: String) -> String {
    let account = match parse(line) {
        Ok((account, _)) => account,
        Err(e) => return format!("err {e}"),
    };
    let task = Task { id: task_id, resource: format!("account:{account}"), payload: line.as_bytes().to_vec() };
    // A just-formed or changing cluster may still be handing the account off.
    // Retrying with the same task id is safe: custody runs one id once.
    let mut backoff = Duration::from_millis(50);
    let done = loop {
        match cluster.submit_and_wait(task.clone()).await {
            Ok(done) => break done,
            Err(Error::Unavailable(_) | Error::Busy) if backoff < Duration::from_secs(1) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
            Err(e) => return format!("err {e}"),
        }
    };
    // done.token is the fencing token the task ran with; done.custodian the node's address.
    let token = fmt_token(done.token);
    match done.outcome {
        Some(Outcome::Ok(text)) => format!("{} token={token}", String::from_utf8_lossy(&text)),
        Some(Outcome::Failed(e)) => format!("err {e} token={token}"),
        None => format!("ok (ran before; its outcome is no longer kept) token={token}"),
    }
}

/// Waits until every node knows the same epoch, with all of them active in
/// it, a lease, and no range waiting for a handoff.
async fn wait_ready(nodes: &[Cluster]) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let mut epochs = Vec::new();
        let mut ready = true;
        for node in nodes {
            let s = node.status().await?;
            epochs.push(s.epoch);
            ready &= s.members.len() == nodes.len()
                && s.members.iter().all(|m| m.status == MemberStatus::Active)
                && s.lease_remaining_ms > 0
                && s.custody.ranges_unavailable == 0;
        }
        epochs.dedup();
        if let (true, [epoch]) = (ready, &epochs[..]) {
            println!("all {} nodes agree on epoch {epoch} after {:.1?}", nodes.len(), start.elapsed());
            return Ok(());
        }
        if start.elapsed() > Duration::from_secs(30) {
            bail!("the nodes did not agree on an epoch with all of them within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A client of the service: one connection, one reply line per request line.
struct Client(Lines<BufReader<OwnedReadHalf>>, OwnedWriteHalf);

impl Client {
    async fn connect(port: u16) -> anyhow::Result<Client> {
        let (read, write) = TcpStream::connect(("127.0.0.1", port)).await?.into_split();
        Ok(Client(BufReader::new(read).lines(), write))
    }

    async fn ask(&mut self, line: &str) -> anyhow::Result<String> {
        self.1.write_all(format!("{line}\n").as_bytes()).await?;
        self.0.next_line().await?.context("the service closed the connection")
    }
}

/// One client per instance, all at once, each sending every account a mix of
/// deposits and withdrawals; then a report. Returns whether every check held.
async fn demo(ports: &[u16], store: &Store) -> anyhow::Result<bool> {
    const ACCOUNTS: [&str; 6] = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let mut clients = Vec::new();
    for (i, &port) in ports.iter().enumerate() {
        clients.push(tokio::spawn(async move {
            let mut client = Client::connect(port).await?;
            let mut log = Vec::new();
            for round in 0..10 {
                for (a, account) in ACCOUNTS.into_iter().enumerate() {
                    let line = match (round + i + a) % 3 {
                        2 => format!("withdraw {account} {}", 4 + round),
                        _ => format!("deposit {account} {}", 5 + i + a),
                    };
                    log.push((port, account, client.ask(&line).await?, line));
                }
            }
            anyhow::Ok(log)
        }));
    }
    // Per account: the nodes that ran its tasks and the sum of the applied operations.
    let mut ran_on: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut expected: BTreeMap<&str, i64> = BTreeMap::new();
    for client in clients {
        for (n, (port, account, reply, line)) in client.await??.into_iter().enumerate() {
            if n < 2 {
                println!("  :{port} <- {line:<18} -> {reply}");
            }
            ran_on.entry(account).or_default().extend(field(&reply, "node=").map(str::to_string));
            *expected.entry(account).or_default() += match parse(&line) {
                Ok((_, Op::Deposit(n))) if reply.starts_with("ok") => n,
                Ok((_, Op::Withdraw(n))) if reply.starts_with("ok") => -n,
                _ => 0,
            };
        }
    }
    let requests = ports.len() * 10 * ACCOUNTS.len();
    println!("  ... {requests} requests, {} clients at once\n", ports.len());

    let mut client = Client::connect(ports[0]).await?;
    let mut all_good = true;
    for account in ACCOUNTS {
        let reply = client.ask(&format!("balance {account}")).await?;
        let balance: Option<i64> = field(&reply, "balance=").and_then(|b| b.parse().ok());
        let nodes = &ran_on[account];
        let sum = expected.get(account).copied().unwrap_or(0);
        let good = nodes.len() == 1 && balance == Some(sum);
        all_good &= good;
        let nodes = nodes.iter().cloned().collect::<Vec<_>>().join(", ");
        let balance = balance.map_or("?".into(), |b| b.to_string());
        let verdict = if good { "ok" } else { "MISMATCH" };
        println!("{account:<6} ran on {nodes:<8} balance {balance:>4} = sum of applied operations {sum:>4}  {verdict}");
    }
    let applied = store.0.lock().expect("store lock").applied_by.clone();
    println!("operations applied per node: {applied:?}");

    // A write that reaches the store late, from an execution custody has since
    // superseded (a former custodian that was paused, say), carries a token not
    // above the row's last one: the conditional write refuses it.
    let last = store.0.lock().expect("store lock").rows["alice"].last_token.expect("alice was written");
    let old = Token { epoch: last.epoch, seq: last.seq.saturating_sub(1) };
    let late = store.apply("alice", old, "a-paused-node", Op::Deposit(1_000_000));
    println!("a late write to alice with token {}: {}", fmt_token(old), late.err().unwrap_or_else(|| "APPLIED".into()));
    Ok(all_good)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(std::io::stderr().is_terminal()).init();
    let args = Args::parse();

    if args.single {
        let name = format!("bank-{}", args.node_port);
        let node = start(name, (args.node_port, args.service_port), args.join, Store::default()).await?;
        println!("try: nc 127.0.0.1 {}, then type: deposit alice 10", args.service_port);
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = node.stopped() => bail!("the node stopped"),
        }
        node.leave().await?;
        println!("{} left", node.id().name);
        return Ok(());
    }

    // Three instances in one process; one store stands for the shared database.
    let store = Store::default();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let seed = nodes.first().map(Cluster::local_addr);
        let ports = (args.node_port + i, args.service_port + i);
        nodes.push(start(format!("bank-{}", i + 1), ports, seed, store.clone()).await?);
    }
    let ports: Vec<u16> = (0..3).map(|i| args.service_port + i).collect();
    let run = async {
        wait_ready(&nodes).await?;
        let good = demo(&ports, &store).await?;
        if args.serve {
            println!("serving on 127.0.0.1:{}-{}; Ctrl-C to stop", ports[0], ports[2]);
            std::future::pending::<()>().await;
        }
        anyhow::Ok(good)
    };
    let result = tokio::select! {
        result = run => result,
        _ = tokio::signal::ctrl_c() => Ok(true),
    };
    // Leave one at a time, the last joined first: each leave commits two epochs.
    for node in nodes.iter().rev() {
        node.leave().await?;
        println!("{} left", node.id().name);
    }
    if !result? {
        bail!("a check failed: an account ran on more than one node or its balance is off");
    }
    Ok(())
}
