//! The failure rounds: a node (or the network's owner) SIGKILLed mid-batch, and the times
//! until it is declared dead, its work runs again, and every task ends.

use super::procs::*;
use super::*;

pub(super) fn terminal(task: &Value) -> bool {
    matches!(
        task["status"].as_str(),
        Some("completed" | "failed" | "cancelled")
    )
}

pub(super) fn subtasks(task: &Value) -> impl Iterator<Item = &Value> {
    task["subtasks"].as_array().into_iter().flatten()
}

pub(super) fn open_sub(sub: &Value) -> bool {
    matches!(sub["status"].as_str(), Some("pending" | "running"))
}

pub(super) fn on(sub: &Value, node: &str) -> bool {
    sub["node"].as_str() == Some(node)
}

/// Which node is killed in a failure round.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Victim {
    /// A node other than the network's owner: its subtasks are redelivered.
    NotOwner,
    /// The owner: the survivors adopt its network from the shared store.
    Owner,
}

#[derive(Default)]
pub(super) struct Failure {
    pub(super) victim: String,
    pub(super) owner: String,
    /// Kill → first survivor reports the victim suspect / dead; every survivor reports it dead.
    pub(super) suspect: Option<Duration>,
    pub(super) dead: Option<Duration>,
    pub(super) all_dead: Option<Duration>,
    pub(super) affected_tasks: usize,
    pub(super) affected_subtasks: usize,
    /// Kill → every affected subtask redelivered (attempt up) / started on a live node (or its
    /// task ended).
    pub(super) redelivered: Option<Duration>,
    pub(super) running: Option<Duration>,
    /// Owner round: kill → a survivor serves the network; → every unfinished task progresses.
    pub(super) served: Option<(Duration, String)>,
    pub(super) first_start: Option<Duration>,
    pub(super) resumed: Option<Duration>,
    /// Where the moved work ran: redelivered subtasks (non-owner round) or subtasks started
    /// after the kill (owner round), by node.
    pub(super) moved_to: BTreeMap<String, usize>,
    pub(super) stuck: usize,
    /// Every task of the batch at the end, by status ("lost": never ended or not found).
    pub(super) statuses: BTreeMap<String, usize>,
    pub(super) ended: Duration,
}

/// Polls the survivors' health every 10 ms until each reports `victim` dead (at most 15 s).
pub(super) async fn detect(
    c: &Cluster,
    survivors: &[usize],
    victim: &str,
    killed: Instant,
    f: &mut Failure,
) {
    let mut first_suspect: Vec<Option<Duration>> = vec![None; survivors.len()];
    let mut first_dead: Vec<Option<Duration>> = vec![None; survivors.len()];
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while first_dead.iter().any(Option::is_none) && killed.elapsed() < Duration::from_secs(15) {
        tick.tick().await;
        let healths = futures::future::join_all(survivors.iter().map(|&s| c.health(s))).await;
        let at = killed.elapsed();
        for (k, h) in healths.iter().enumerate() {
            let members = h.as_ref().and_then(|h| h["cluster"]["members"].as_array());
            let status = members
                .into_iter()
                .flatten()
                .find(|m| m["name"] == victim)
                .and_then(|m| m["status"].as_str());
            if matches!(status, Some("suspect" | "dead")) && first_suspect[k].is_none() {
                first_suspect[k] = Some(at);
            }
            if status == Some("dead") && first_dead[k].is_none() {
                first_dead[k] = Some(at);
            }
        }
    }
    f.suspect = first_suspect.iter().flatten().min().copied();
    f.dead = first_dead.iter().flatten().min().copied();
    f.all_dead = first_dead
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|v| v.into_iter().max());
}

/// Open subtasks on a node, by task: subtask id → its delivery attempt.
type OpenOn = BTreeMap<String, BTreeMap<String, u64>>;

/// Non-owner round: polls the affected tasks until each affected subtask was redelivered
/// (its attempt went up; the store names the new node only once the subtask starts there) and
/// started on a live node, or its task ended (at most 30 s).
pub(super) async fn redelivery(
    c: &Cluster,
    via: usize,
    net: &str,
    affected: &OpenOn,
    victim: &str,
    killed: Instant,
    f: &mut Failure,
) {
    let ids: Vec<String> = affected.keys().cloned().collect();
    let mut redelivered: BTreeMap<&str, Duration> = BTreeMap::new();
    let mut started: BTreeMap<&str, Duration> = BTreeMap::new();
    while started.len() < ids.len() && killed.elapsed() < Duration::from_secs(30) {
        let tasks = c.tasks(via, net, &ids).await;
        let at = killed.elapsed();
        f.moved_to.clear();
        for (id, task) in ids.iter().zip(&tasks) {
            let (Some(task), Some(subs)) = (task, affected.get(id)) else {
                continue;
            };
            let mine = || {
                subtasks(task).filter_map(|s| {
                    let base = subs.get(s["subtask_id"].as_str()?)?;
                    Some((s, *base))
                })
            };
            let live = |s: &Value| !open_sub(s) || (s["status"] == "running" && !on(s, victim));
            for (s, _) in mine().filter(|(s, _)| !on(s, victim)) {
                let node = s["node"].as_str().unwrap_or("(none)");
                *f.moved_to.entry(node.to_owned()).or_default() += 1;
            }
            let ended = terminal(task);
            if ended || mine().all(|(s, base)| live(s) || s["attempts"].as_u64() > Some(base)) {
                redelivered.entry(id).or_insert(at);
            }
            if ended || mine().all(|(s, _)| live(s)) {
                started.entry(id).or_insert(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let all = |m: &BTreeMap<&str, Duration>| {
        (m.len() == ids.len()).then(|| m.values().max().copied().unwrap_or_default())
    };
    f.redelivered = all(&redelivered);
    f.running = all(&started);
    f.stuck = ids.len() - started.len();
}

/// Owner round: polls until a survivor serves the network, then until every task unfinished at
/// the kill is progressing again: ended, or a subtask started after the kill with none left open
/// on the dead node (at most 30 s).
pub(super) async fn takeover(
    c: &Cluster,
    survivors: &[usize],
    net: &str,
    unfinished: &[String],
    victim: &str,
    killed: (Instant, OffsetDateTime),
    f: &mut Failure,
) {
    let deadline = Duration::from_secs(30);
    while f.served.is_none() && killed.0.elapsed() < deadline {
        for &s in survivors {
            let r = Reply::from(c.poll.get(c.url(s, &format!("/networks/{net}")))).await;
            if let Ok(r) = r
                && r.status.is_success()
                && r.node.as_deref().is_some_and(|n| n != victim)
            {
                f.served = Some((killed.0.elapsed(), r.node.unwrap_or_default()));
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after = |s: &Value| {
        s["started_at"]
            .as_str()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())
            .is_some_and(|t| t > killed.1)
    };
    let mut resumed: BTreeMap<&str, Duration> = BTreeMap::new();
    while resumed.len() < unfinished.len() && killed.0.elapsed() < deadline {
        let tasks = c.tasks(survivors[0], net, unfinished).await;
        let at = killed.0.elapsed();
        f.moved_to.clear();
        for s in tasks
            .iter()
            .flatten()
            .flat_map(subtasks)
            .filter(|s| after(s))
        {
            let node = s["node"].as_str().unwrap_or("(none)");
            *f.moved_to.entry(node.to_owned()).or_default() += 1;
            let started = s["started_at"]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
            if let Some(since) = started.and_then(|t| Duration::try_from(t - killed.1).ok()) {
                f.first_start = Some(f.first_start.map_or(since, |d| d.min(since)));
            }
        }
        for (id, task) in unfinished.iter().zip(&tasks) {
            let Some(task) = task else { continue };
            let progressing =
                subtasks(task).any(after) && !subtasks(task).any(|s| open_sub(s) && on(s, victim));
            if terminal(task) || progressing {
                resumed.entry(id).or_insert(at);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f.resumed = (resumed.len() == unfinished.len())
        .then(|| resumed.values().max().copied().unwrap_or_default());
    f.stuck = unfinished.len() - resumed.len();
}

pub(super) async fn failure(
    c: &mut Cluster,
    args: &ClusterArgs,
    kind: Victim,
) -> anyhow::Result<Failure> {
    let (net, owner) = c.network().await?;
    let ids: Vec<String> = futures::stream::iter(0..args.failure_tasks)
        .map(|i| c.submit(i % NAMES.len(), &net, i))
        .buffered(16)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    // Wait until subtasks run on every node.
    let started = Instant::now();
    let snapshot = loop {
        let tasks: Vec<Value> = c
            .tasks(owner, &net, &ids)
            .await
            .into_iter()
            .flatten()
            .collect();
        let running = |n: &str| {
            tasks
                .iter()
                .flat_map(subtasks)
                .filter(|s| s["status"] == "running" && on(s, n))
                .count()
        };
        if NAMES.iter().all(|n| running(n) > 0) {
            break tasks;
        }
        if started.elapsed() > Duration::from_secs(30) {
            let per: Vec<String> = NAMES
                .iter()
                .map(|n| format!("{n}: {}", running(n)))
                .collect();
            bail!(
                "subtasks never ran on all three nodes at once (running: {})",
                per.join(", ")
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let open_on = |tasks: &[Value], n: &str| -> OpenOn {
        tasks
            .iter()
            .map(|t| {
                let subs: BTreeMap<String, u64> = subtasks(t)
                    .filter(|s| open_sub(s) && on(s, n))
                    .filter_map(|s| {
                        let id = s["subtask_id"].as_str()?.to_owned();
                        Some((id, s["attempts"].as_u64().unwrap_or(0)))
                    })
                    .collect();
                (t["task_id"].as_str().unwrap_or_default().to_owned(), subs)
            })
            .filter(|(_, s)| !s.is_empty())
            .collect()
    };
    let victim = match kind {
        Victim::Owner => owner,
        Victim::NotOwner => (0..NAMES.len())
            .filter(|&i| i != owner)
            .max_by_key(|&i| {
                open_on(&snapshot, NAMES[i])
                    .values()
                    .map(BTreeMap::len)
                    .sum::<usize>()
            })
            .unwrap_or((owner + 1) % NAMES.len()),
    };
    let name = NAMES[victim];
    let survivors: Vec<usize> = (0..NAMES.len()).filter(|&i| i != victim).collect();
    let mut f = Failure {
        victim: name.to_owned(),
        owner: NAMES[owner].to_owned(),
        ..Failure::default()
    };
    let killed = c.kill(victim).await?;
    let c = &*c;
    match kind {
        Victim::NotOwner => {
            // The owner still shows the dead node's subtasks as they were at the kill.
            let mut affected = open_on(&snapshot, name);
            let now: Vec<Value> = c
                .tasks(owner, &net, &ids)
                .await
                .into_iter()
                .flatten()
                .collect();
            for (task, subs) in open_on(&now, name) {
                let known = affected.entry(task).or_default();
                for (sub, attempt) in subs {
                    known.entry(sub).or_insert(attempt);
                }
            }
            f.affected_tasks = affected.len();
            f.affected_subtasks = affected.values().map(BTreeMap::len).sum();
            let (mut d, mut r) = (Failure::default(), Failure::default());
            tokio::join!(
                detect(c, &survivors, name, killed.0, &mut d),
                redelivery(c, survivors[0], &net, &affected, name, killed.0, &mut r),
            );
            (f.suspect, f.dead, f.all_dead) = (d.suspect, d.dead, d.all_dead);
            (f.redelivered, f.running, f.stuck) = (r.redelivered, r.running, r.stuck);
            f.moved_to = r.moved_to;
        }
        Victim::Owner => {
            let unfinished: Vec<String> = snapshot
                .iter()
                .filter(|t| !terminal(t))
                .filter_map(|t| t["task_id"].as_str().map(str::to_owned))
                .collect();
            f.affected_tasks = unfinished.len();
            let (mut d, mut r) = (Failure::default(), Failure::default());
            tokio::join!(
                detect(c, &survivors, name, killed.0, &mut d),
                takeover(c, &survivors, &net, &unfinished, name, killed, &mut r),
            );
            (f.suspect, f.dead, f.all_dead) = (d.suspect, d.dead, d.all_dead);
            (f.served, f.resumed, f.stuck) = (r.served, r.resumed, r.stuck);
            (f.first_start, f.moved_to) = (r.first_start, r.moved_to);
        }
    }
    // Every task of the batch must still end.
    let deadline = Duration::from_secs(90);
    let last = loop {
        let tasks = c.tasks(survivors[0], &net, &ids).await;
        if tasks.iter().all(|t| t.as_ref().is_some_and(terminal)) || killed.0.elapsed() > deadline {
            break tasks;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    f.ended = killed.0.elapsed();
    for t in &last {
        let status = match t {
            Some(t) if terminal(t) => t["status"].as_str().unwrap_or("?"),
            _ => "lost",
        };
        *f.statuses.entry(status.to_owned()).or_default() += 1;
    }
    Ok(f)
}

pub(super) fn fmt_s(d: Option<Duration>) -> String {
    d.map_or_else(
        || "never (within the deadline)".into(),
        |d| format!("{:.2} s", secs(d)),
    )
}

pub(super) fn counts(m: &BTreeMap<String, usize>) -> String {
    m.iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn print_failure(
    out: &mut impl Write,
    f: &Failure,
    args: &ClusterArgs,
) -> anyhow::Result<()> {
    let within = |d: Option<Duration>, target: f64| verdict(d.is_some_and(|d| secs(d) <= target));
    writeln!(
        out,
        "   SIGKILLed {} (owner {}); {} tasks in flight",
        f.victim, f.owner, args.failure_tasks
    )?;
    writeln!(
        out,
        "   detection (kill → a survivor's /health says dead; polled every 10 ms), target ≤ 1.5 s:"
    )?;
    writeln!(
        out,
        "     suspect after {}, dead after {} ({}); every survivor agrees after {}",
        fmt_s(f.suspect),
        fmt_s(f.dead),
        within(f.dead, 1.5),
        fmt_s(f.all_dead)
    )?;
    let moved = f
        .moved_to
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ");
    let stuck = |what: &str| {
        if f.stuck > 0 {
            format!(" — {} {what}", f.stuck)
        } else {
            String::new()
        }
    };
    if f.victim == f.owner {
        writeln!(
            out,
            "   takeover (kill → a survivor answers for the network; → the new owner starts a subtask; → each of the {} unfinished tasks ended or has a subtask started after the kill, none open on {}):",
            f.affected_tasks, f.victim
        )?;
        let served = f.served.as_ref().map_or_else(
            || "never (within 30 s)".into(),
            |(d, n)| format!("{:.2} s (by {n})", secs(*d)),
        );
        writeln!(
            out,
            "     network answered again after {served}; first resumed subtask started after {}; all tasks processing again after {}{}",
            fmt_s(f.first_start),
            fmt_s(f.resumed),
            stuck("did not resume")
        )?;
        writeln!(
            out,
            "     subtasks started after the kill, by node: {moved}"
        )?;
    } else {
        writeln!(
            out,
            "   redelivery ({} tasks had {} open subtasks on {}; kill → each redelivered (attempt up), and running on a live node or its task ended), target ≤ 5 s:",
            f.affected_tasks, f.affected_subtasks, f.victim
        )?;
        writeln!(
            out,
            "     all redelivered after {}; all running again after {} ({}){}",
            fmt_s(f.redelivered),
            fmt_s(f.running),
            within(f.running, 5.0),
            stuck("tasks still stuck")
        )?;
        writeln!(out, "     redelivered subtasks ran on: {moved}")?;
    }
    let lost = f.statuses.get("lost").copied().unwrap_or(0);
    writeln!(
        out,
        "   every task ends (none lost): {} of {} ({}), {:.1} s after the kill — {}",
        args.failure_tasks - lost,
        args.failure_tasks,
        counts(&f.statuses),
        secs(f.ended),
        if lost == 0 { "ok" } else { "TASKS LOST" }
    )?;
    Ok(())
}
