//! The real processes under faults, checked like Jepsen does: concurrent clients write
//! unique values and read strongly over a handful of keys while a nemesis, one fault at a
//! time, kill -9s and restarts nodes of every role (the client API too), SIGSTOPs and
//! resumes the leader, cuts nodes off through the transport's fault switch (both ways, one
//! way, or the cluster split in two), and restarts the whole cluster. After healing, every key is read once
//! more; the recorded history must be linearizable (`common::linearizability`), and every
//! acknowledged write to a key of its own must still be there.
//!
//! `NEMESIS_SECONDS` (default 40) sets how long the nemesis runs; `NEMESIS_SEED` replays a
//! fault schedule (the clients' timing still varies from run to run).

mod support;

use common::linearizability::{check, Event, Operation};
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{exclusive, Outcome, TestCluster};

const KEYS: [&str; 3] = ["x", "y", "z"];
const CLIENTS: usize = 4;

/// What the clients recorded: the history, and the writes to keys of their own (each
/// written once), with whether the write was acknowledged.
#[derive(Default)]
struct Record {
    history: Vec<Event>,
    own_key_writes: Vec<(String, String, bool)>,
}

async fn client_loop(
    cluster: Arc<TestCluster>,
    client: usize,
    started: Instant,
    until: Instant,
    record: Arc<Mutex<Record>>,
) {
    let mut random = rand::rngs::StdRng::seed_from_u64(client as u64);
    let mut count = 0u64;
    while Instant::now() < until {
        let write = random.random_bool(0.5);
        // A quarter of the writes go to a key of their own, read back at the end: an
        // acknowledged one that is missing then is a lost write, whatever else happened.
        let own_key = write && random.random_bool(0.25);
        let key = match own_key {
            true => format!("own-{client}-{}", count + 1),
            false => KEYS[random.random_range(0..KEYS.len())].to_string(),
        };
        let invoked_at = started.elapsed().as_micros() as u64;
        let (operation, outcome) = if write {
            count += 1;
            let value = format!("c{client}-{count}");
            let outcome = cluster.write(&key, &value).await;
            let operation = Operation::Write { key, value };
            (operation, outcome)
        } else {
            let outcome = cluster.read(&key, "strong").await;
            let value = match &outcome {
                Outcome::Ok(body) => body["value"].as_str().map(String::from),
                _ => None,
            };
            (Operation::Read { key, value }, outcome)
        };
        let completed_at = match outcome {
            Outcome::Ok(_) => Some(started.elapsed().as_micros() as u64),
            Outcome::Failed(status, body) if status < 500 => {
                panic!("client error {status} {body}")
            }
            _ => None,
        };
        if completed_at.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut record = record.lock().unwrap();
        if let (true, Operation::Write { key, value }) = (own_key, &operation) {
            record
                .own_key_writes
                .push((key.clone(), value.clone(), completed_at.is_some()));
        }
        record.history.push(Event {
            operation,
            invoked_at,
            completed_at,
        });
    }
}

/// The faults the nemesis injects, one at a time, each healed before the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    KillAcceptor,
    KillLeader,
    KillLearner,
    KillClientApi,
    PauseLeader,
    RestartEverything,
    IsolateNode,
    IsolateLeader,
    LeaderCannotSend,
    LeaderCannotHear,
    SplitCluster,
}

const FAULTS: [Fault; 11] = [
    Fault::KillAcceptor,
    Fault::KillLeader,
    Fault::KillLearner,
    Fault::KillClientApi,
    Fault::PauseLeader,
    Fault::RestartEverything,
    Fault::IsolateNode,
    Fault::IsolateLeader,
    Fault::LeaderCannotSend,
    Fault::LeaderCannotHear,
    Fault::SplitCluster,
];

/// Injects `fault`; returns what it did and the nodes to bring back when healing.
fn inject(
    cluster: &TestCluster,
    fault: Fault,
    leader: &str,
    random: &mut rand::rngs::StdRng,
) -> (String, Vec<String>) {
    let names = cluster.node_names();
    let servers: Vec<String> = names
        .iter()
        .filter(|name| *name != "client1")
        .cloned()
        .collect();
    match fault {
        Fault::KillAcceptor => {
            let acceptor = format!("acceptor{}", random.random_range(1..=3));
            cluster.kill(&acceptor);
            (format!("kill -9 {acceptor}"), vec![acceptor])
        }
        Fault::KillLeader => {
            cluster.kill(leader);
            (format!("kill -9 leader {leader}"), vec![leader.to_string()])
        }
        Fault::KillLearner => {
            let learner = format!("learner{}", random.random_range(1..=2));
            cluster.kill(&learner);
            (format!("kill -9 {learner}"), vec![learner])
        }
        Fault::KillClientApi => {
            cluster.kill("client1");
            ("kill -9 the client API".into(), vec!["client1".to_string()])
        }
        Fault::PauseLeader => {
            cluster.pause(leader);
            (format!("SIGSTOP leader {leader}"), vec![leader.to_string()])
        }
        Fault::RestartEverything => {
            for name in &names {
                cluster.kill(name);
            }
            ("kill -9 every node".into(), names)
        }
        Fault::IsolateNode => {
            let victim = servers[random.random_range(0..servers.len())].clone();
            cluster.isolate(&victim);
            (format!("cut {victim} off"), Vec::new())
        }
        Fault::IsolateLeader => {
            cluster.isolate(leader);
            (format!("cut leader {leader} off"), Vec::new())
        }
        Fault::LeaderCannotSend => {
            cluster.set_fault_rules(leader, "out *");
            (
                format!("leader {leader} hears but is not heard"),
                Vec::new(),
            )
        }
        Fault::LeaderCannotHear => {
            cluster.set_fault_rules(leader, "in *");
            (
                format!("leader {leader} is heard but hears nothing"),
                Vec::new(),
            )
        }
        Fault::SplitCluster => {
            let side: Vec<String> = names
                .iter()
                .filter(|_| random.random_bool(0.5))
                .cloned()
                .collect();
            cluster.split(&side);
            (
                format!("split the cluster: {side:?} | the rest"),
                Vec::new(),
            )
        }
    }
}

fn heal(cluster: &TestCluster, fault: Fault, stopped: &[String]) {
    cluster.heal_network();
    for name in stopped {
        match fault {
            Fault::PauseLeader => cluster.resume(name),
            _ if !cluster.is_running(name) => cluster.start_node(name),
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_concurrent_history_under_faults_is_linearizable() {
    let _guard = exclusive();
    let seconds: u64 = std::env::var("NEMESIS_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(40);
    let seed: u64 = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("nemesis seed {seed} (replay the schedule with NEMESIS_SEED={seed})");
    // A short request timeout, so that some operations end without an answer and the
    // checker has to place writes of unknown outcome.
    let cluster =
        Arc::new(TestCluster::start_configured(3, &[("client1", "REQUEST_TIMEOUT", "1500")]).await);
    let record = Arc::new(Mutex::new(Record::default()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            tokio::spawn(client_loop(
                cluster.clone(),
                client,
                started,
                until,
                record.clone(),
            ))
        })
        .collect();

    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let mut faults: BTreeMap<Fault, u32> = BTreeMap::new();
    while Instant::now() + Duration::from_secs(3) < until {
        tokio::time::sleep(Duration::from_millis(random.random_range(300..1000))).await;
        let leader = cluster.wait_for_leader(Duration::from_secs(20)).await;
        let fault = FAULTS[random.random_range(0..FAULTS.len())];
        let (description, stopped) = inject(&cluster, fault, &leader, &mut random);
        tokio::time::sleep(Duration::from_millis(random.random_range(500..2000))).await;
        heal(&cluster, fault, &stopped);
        eprintln!("nemesis: {description}, healed");
        *faults.entry(fault).or_default() += 1;
    }
    for client in clients {
        client.await.unwrap();
    }

    // Healed: read every key once more, and every key of its own an acknowledged write had.
    cluster.wait_until_writable(Duration::from_secs(30)).await;
    let own_key_writes = record.lock().unwrap().own_key_writes.clone();
    let mut lost_writes = Vec::new();
    let final_keys = KEYS
        .iter()
        .map(|key| key.to_string())
        .chain(own_key_writes.iter().map(|(key, _, _)| key.clone()));
    for key in final_keys {
        let invoked_at = started.elapsed().as_micros() as u64;
        let value = cluster.strong_value(&key).await;
        let completed_at = Some(started.elapsed().as_micros() as u64);
        if let Some((_, written, true)) = own_key_writes.iter().find(|(own, _, _)| *own == key) {
            if value.as_ref() != Some(written) {
                lost_writes.push(format!("{key} = {written} (read {value:?})"));
            }
        }
        record.lock().unwrap().history.push(Event {
            operation: Operation::Read { key, value },
            invoked_at,
            completed_at,
        });
    }

    let history = record.lock().unwrap().history.clone();
    let completed = history
        .iter()
        .filter(|event| event.completed_at.is_some())
        .count();
    let acknowledged_writes = history
        .iter()
        .filter(|event| {
            event.completed_at.is_some() && matches!(event.operation, Operation::Write { .. })
        })
        .count();
    let mut keys: Vec<String> = history
        .iter()
        .map(|event| match &event.operation {
            Operation::Write { key, .. } | Operation::Read { key, .. } => key.clone(),
        })
        .collect();
    keys.sort();
    keys.dedup();
    let anomalies: Vec<String> =
        keys.iter()
            .filter_map(|key| {
                let events: Vec<Event> = history
                    .iter()
                    .filter(|event| match &event.operation {
                        Operation::Write { key: other, .. }
                        | Operation::Read { key: other, .. } => other == key,
                    })
                    .cloned()
                    .collect();
                check(&events).err().map(|violation| violation.to_string())
            })
            .collect();
    eprintln!(
        "history: {} operations, {completed} completed ({acknowledged_writes} acknowledged \
         writes), {} indeterminate; {} faults injected {faults:?}; {} anomalies, {} lost \
         acknowledged writes (of {} checked on keys of their own)",
        history.len(),
        history.len() - completed,
        faults.values().sum::<u32>(),
        anomalies.len(),
        lost_writes.len(),
        own_key_writes
            .iter()
            .filter(|(_, _, acknowledged)| *acknowledged)
            .count()
    );
    assert!(
        acknowledged_writes > 20,
        "too few writes completed to mean anything"
    );
    assert!(
        faults.len() >= 3,
        "too few kinds of fault were injected: {faults:?}"
    );
    assert!(
        lost_writes.is_empty(),
        "seed {seed}: acknowledged writes lost: {lost_writes:?}"
    );
    assert!(
        anomalies.is_empty(),
        "seed {seed}: {}",
        anomalies.join("\n")
    );
}
