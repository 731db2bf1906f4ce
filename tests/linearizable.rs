//! Concurrent clients write unique values and read them back strongly while a nemesis
//! kills, pauses and restarts nodes of every role; the recorded history must be
//! linearizable and no acknowledged write may be lost.

mod support;

use common::linearizability::{check, Event, Operation};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{exclusive, Outcome, TestCluster};

const KEYS: [&str; 3] = ["x", "y", "z"];
const CLIENTS: usize = 4;

async fn client_loop(
    cluster: Arc<TestCluster>,
    client: usize,
    started: Instant,
    until: Instant,
    history: Arc<Mutex<Vec<Event>>>,
) {
    let mut random = rand::rngs::StdRng::seed_from_u64(client as u64);
    let mut count = 0u64;
    while Instant::now() < until {
        let key = KEYS[random.random_range(0..KEYS.len())];
        let write = random.random_bool(0.5);
        let invoked_at = started.elapsed().as_micros() as u64;
        let (operation, outcome) = if write {
            count += 1;
            let value = format!("c{client}-{count}");
            let outcome = cluster.write(key, &value).await;
            let operation = Operation::Write {
                key: key.to_string(),
                value,
            };
            (operation, outcome)
        } else {
            let outcome = cluster.read(key, "strong").await;
            let value = match &outcome {
                Outcome::Ok(body) => body["value"].as_str().map(String::from),
                _ => None,
            };
            let operation = Operation::Read {
                key: key.to_string(),
                value,
            };
            (operation, outcome)
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
        history.lock().unwrap().push(Event {
            operation,
            invoked_at,
            completed_at,
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_concurrent_history_under_faults_is_linearizable() {
    let _guard = exclusive();
    let seconds: u64 = std::env::var("NEMESIS_SECONDS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("NEMESIS_SEED")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("nemesis seed {seed} (replay the schedule with NEMESIS_SEED={seed})");
    let cluster = Arc::new(TestCluster::start().await);
    let history = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            tokio::spawn(client_loop(
                cluster.clone(),
                client,
                started,
                until,
                history.clone(),
            ))
        })
        .collect();

    // The nemesis: one fault at a time, each healed before the next.
    let mut random = rand::rngs::StdRng::seed_from_u64(seed);
    let mut faults = Vec::new();
    while Instant::now() + Duration::from_secs(3) < until {
        tokio::time::sleep(Duration::from_millis(random.random_range(300..1000))).await;
        let leader = cluster.wait_for_leader(Duration::from_secs(15)).await;
        let fault = random.random_range(0..6);
        let (name, description) = match fault {
            0 => {
                let acceptor = format!("acceptor{}", random.random_range(1..=3));
                cluster.kill(&acceptor);
                (acceptor.clone(), format!("kill -9 {acceptor}"))
            }
            1 | 2 => {
                cluster.kill(&leader);
                (leader.clone(), format!("kill -9 leader {leader}"))
            }
            3 => {
                let learner = format!("learner{}", random.random_range(1..=2));
                cluster.kill(&learner);
                (learner.clone(), format!("kill -9 {learner}"))
            }
            4 => {
                cluster.pause(&leader);
                (leader.clone(), format!("SIGSTOP leader {leader}"))
            }
            _ => {
                for name in cluster.node_names() {
                    if name != "client1" {
                        cluster.kill(&name);
                    }
                }
                (
                    "all".to_string(),
                    "kill -9 every node but the client API".to_string(),
                )
            }
        };
        tokio::time::sleep(Duration::from_millis(random.random_range(500..2000))).await;
        match fault {
            4 => cluster.resume(&name),
            5 => {
                for node in cluster.node_names() {
                    if !cluster.is_running(&node) {
                        cluster.start_node(&node);
                    }
                }
            }
            _ => cluster.start_node(&name),
        }
        eprintln!("nemesis: {description}, healed");
        faults.push(description);
    }
    for client in clients {
        client.await.unwrap();
    }
    cluster.wait_until_writable(Duration::from_secs(30)).await;
    for key in KEYS {
        let invoked_at = started.elapsed().as_micros() as u64;
        let body = cluster.read(key, "strong").await.ok();
        history.lock().unwrap().push(Event {
            operation: Operation::Read {
                key: key.to_string(),
                value: body["value"].as_str().map(String::from),
            },
            invoked_at,
            completed_at: Some(started.elapsed().as_micros() as u64),
        });
    }
    let history = history.lock().unwrap().clone();
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
    eprintln!(
        "history: {} operations, {completed} completed ({acknowledged_writes} acknowledged writes), \
         {} indeterminate; {} faults injected",
        history.len(),
        history.len() - completed,
        faults.len()
    );
    assert!(
        acknowledged_writes > 20,
        "too few writes completed to mean anything"
    );
    if let Err(violation) = check(&history) {
        panic!("seed {seed}: {violation}");
    }
}
