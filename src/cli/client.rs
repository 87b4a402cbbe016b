//! The requests to a running node: `members`, `status`, `owner`, `leave`, and
//! `submit` of one task.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use custody::engine::wire::{Request, Response};
use custody::engine::{Outcome, Task};

use super::args::SubmitArgs;
use super::render;

/// How long the CLI waits for a node's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

async fn ask(node: SocketAddr, request: Request) -> Result<Response> {
    let response = custody::runtime::request(node, request, REQUEST_TIMEOUT)
        .await
        .with_context(|| format!("asking the node at {node}"))?;
    match response {
        Response::Error(reason) => bail!("the node at {node} refused: {reason}"),
        Response::Busy => bail!("the node at {node} is busy; retry in a moment"),
        response => Ok(response),
    }
}

pub(crate) async fn members(node: SocketAddr, json: bool) -> Result<()> {
    let Response::Members(members) = ask(node, Request::Members).await? else {
        bail!("the node at {node} answered with something other than a member list");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &serde_json::json!({ "members": members }))?;
        writeln!(out)?;
    } else {
        // Voters by address: a name may repeat (a member that left, a
        // clashing join refused), an address does not.
        let voters = match ask(node, Request::Status).await? {
            Response::Status(status) => status.members.iter().filter(|m| m.voter).map(|m| m.addr).collect(),
            _ => Vec::new(),
        };
        write!(out, "{}", render::members_table(&members, &voters))?;
    }
    Ok(())
}

pub(crate) async fn status(node: SocketAddr, json: bool) -> Result<()> {
    let Response::Status(status) = ask(node, Request::Status).await? else {
        bail!("the node at {node} answered with something other than a status");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &render::status_json(&status)?)?;
        writeln!(out)?;
        return Ok(());
    }
    write!(out, "{}", render::status_text(&status))?;
    Ok(())
}

pub(crate) async fn owner(node: SocketAddr, resource: String, json: bool) -> Result<()> {
    let Response::Owner(owner) = ask(node, Request::Owner { resource: resource.clone() }).await? else {
        bail!("the node at {node} answered with something other than an owner");
    };
    let Some(owner) = owner else {
        bail!("the node at {node} knows no committed configuration yet; retry once it has joined");
    };
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer(&mut out, &owner)?;
        writeln!(out)?;
    } else {
        writeln!(
            out,
            "{resource}: custodian {} ({}) at epoch {}, range {}, replicas {}",
            owner.custodian,
            owner.addr,
            owner.epoch,
            owner.range,
            owner.replicas.join(", ")
        )?;
    }
    Ok(())
}

pub(crate) async fn leave(node: SocketAddr) -> Result<()> {
    match ask(node, Request::Leave).await? {
        Response::Leaving => {
            println!("the node at {node} is leaving the cluster");
            Ok(())
        }
        _ => bail!("the node at {node} answered with something other than a leave acknowledgement"),
    }
}

/// Sends one submit; the answer as it came (busy, unavailable and refusals
/// included), or an error if none came.
async fn send_submit(node: SocketAddr, task: Task, wait: bool, timeout: Duration) -> Result<Response> {
    custody::runtime::request(node, Request::Submit { task, wait }, timeout)
        .await
        .with_context(|| format!("submitting through the node at {node}"))
}

/// `custody submit` of one task.
pub(crate) async fn submit(args: SubmitArgs) -> Result<()> {
    let node = args.node;
    let task = Task {
        id: args.id.unwrap_or_default(),
        resource: args.resource.context("give the resource (--resource NAME)")?,
        payload: args.payload.into_bytes(),
    };
    let answer = send_submit(node, task, args.wait, Duration::from_secs(args.timeout)).await?;
    let mut out = std::io::stdout().lock();
    match answer {
        Response::Submitted(s) => {
            if args.json {
                writeln!(out, "{}", render::submitted_json(&s))?;
            } else {
                write!(out, "{}", render::submitted_text(&s))?;
            }
            Ok(())
        }
        Response::Completed(c) => {
            if args.json {
                writeln!(out, "{}", render::completed_json(&c))?;
            } else {
                write!(out, "{}", render::completed_text(&c))?;
            }
            out.flush()?;
            if matches!(c.outcome, Some(Outcome::Failed(_))) {
                // Ran, and failed: not the CLI's error (2), the task's.
                std::process::exit(1);
            }
            Ok(())
        }
        Response::Busy => bail!("the node at {node} is busy (its queues are full); nothing was accepted, retry later"),
        Response::Unavailable(reason) => bail!("unavailable: {reason}; nothing was accepted"),
        Response::Error(reason) => bail!("the node at {node} refused: {reason}"),
        _ => bail!("the node at {node} answered with something other than a submit answer"),
    }
}
