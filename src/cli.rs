//! `paxos put | get | watch | status`: the command-line client of the REST API.
//!
//! Every command talks to one client API (`--endpoint`, default http://127.0.0.1:8000,
//! or PAXOS_ENDPOINT) and prints a readable answer, or with `--output json` the API's
//! JSON (for `watch`, one JSON object per line). Exit codes: 0 success, 1 the request
//! failed (the message says why), 2 wrong usage, 3 `get` of a key that has no value.

use crate::api::{Api, Failure, Output};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Value as Json};
use std::fmt::Write as _;
use std::process::ExitCode;

/// Exit code of a failed request.
const FAILED: u8 = 1;
/// Exit code of `get` for a key never written.
const NOT_FOUND: u8 = 3;

/// Where the client API is and how to print.
#[derive(Args, Debug, Clone)]
pub struct Connection {
    /// The client API's base URL.
    #[arg(
        long,
        env = "PAXOS_ENDPOINT",
        default_value = "http://127.0.0.1:8000",
        value_name = "URL"
    )]
    endpoint: String,
    /// Print readable text or the API's JSON.
    #[arg(long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// A read's consistency level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Consistency {
    /// Linearizable.
    Strong,
    /// Sees the session's own writes (needs --session-id).
    Session,
    /// Whatever a learner has applied now.
    Eventual,
}

impl Consistency {
    fn name(self) -> &'static str {
        match self {
            Consistency::Strong => "strong",
            Consistency::Session => "session",
            Consistency::Eventual => "eventual",
        }
    }
}

/// The client commands of `paxos`.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Write VALUE to KEY; returns once the write is decided.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Tie the write to a session (for later session reads).
        #[arg(long)]
        session_id: Option<String>,
        /// A UUID that makes retries exactly-once (a fresh one by default).
        #[arg(long)]
        request_id: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Read KEY.
    Get {
        /// The key.
        key: String,
        /// strong (linearizable), session (your own writes) or eventual.
        #[arg(long, value_enum, default_value_t = Consistency::Strong)]
        consistency: Consistency,
        /// The session of a session read.
        #[arg(long)]
        session_id: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Follow the writes to keys matching PATTERN (globs with * and ?), as they are
    /// decided; reconnects and resumes after the last write seen. Ctrl-C stops.
    Watch {
        /// Key patterns, such as 'user/*' or a literal key.
        #[arg(required = true, value_name = "PATTERN")]
        patterns: Vec<String>,
        /// Start after this slot (or event id) instead of now; 0 replays from slot 1 (if
        /// the learners still hold it; else the error names the oldest slot they hold).
        #[arg(long, value_name = "SLOT")]
        from_slot: Option<String>,
        #[command(flatten)]
        connection: Connection,
    },
    /// Show the cluster: every node with its role and health, the leader, the learners.
    Status {
        #[command(flatten)]
        connection: Connection,
    },
}

/// Runs `command` and returns the process's exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    let output = match &command {
        ClientCommand::Put { connection, .. }
        | ClientCommand::Get { connection, .. }
        | ClientCommand::Watch { connection, .. }
        | ClientCommand::Status { connection } => connection.output,
    };
    match runtime.block_on(execute(command)) {
        Ok(code) => code,
        Err(failure) => {
            match output {
                Output::Json => {
                    let body = failure
                        .body
                        .unwrap_or_else(|| json!({ "error": failure.message }));
                    println!("{body}");
                }
                Output::Text => {}
            }
            eprintln!("error: {}", failure.message);
            ExitCode::from(FAILED)
        }
    }
}

async fn execute(command: ClientCommand) -> Result<ExitCode, Failure> {
    match command {
        ClientCommand::Put {
            key,
            value,
            session_id,
            request_id,
            connection,
        } => {
            let mut body = json!({ "key": key, "value": value });
            if let Some(session_id) = session_id {
                body["session_id"] = json!(session_id);
            }
            if let Some(request_id) = request_id {
                body["request_id"] = json!(request_id);
            }
            let answer = Api::new(&connection.endpoint)?.post("/write", body).await?;
            match connection.output {
                Output::Json => println!("{answer}"),
                Output::Text => println!(
                    "OK {} = {} (slot {}, request {})",
                    answer["key"].as_str().unwrap_or_default(),
                    answer["value"].as_str().unwrap_or_default(),
                    answer["slot"],
                    answer["request_id"].as_str().unwrap_or_default()
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        ClientCommand::Get {
            key,
            consistency,
            session_id,
            connection,
        } => get(key, consistency, session_id, connection).await,
        ClientCommand::Watch {
            patterns,
            from_slot,
            connection,
        } => crate::watch::watch(
            Api::new(&connection.endpoint)?,
            patterns,
            from_slot,
            connection.output,
        )
        .await
        .map(|()| ExitCode::SUCCESS)
        .map_err(Failure::new),
        ClientCommand::Status { connection } => {
            let status = Api::new(&connection.endpoint)?.get("/status").await?;
            match connection.output {
                Output::Json => println!("{status}"),
                Output::Text => print!("{}", status_table(&status)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn get(
    key: String,
    consistency: Consistency,
    session_id: Option<String>,
    connection: Connection,
) -> Result<ExitCode, Failure> {
    if consistency == Consistency::Session && session_id.is_none() {
        return Err(Failure::new(
            "--consistency session needs --session-id (the session whose writes to see)",
        ));
    }
    let mut body = json!({ "key": key, "consistency": consistency.name() });
    if let Some(session_id) = session_id {
        body["session_id"] = json!(session_id);
    }
    let answer = Api::new(&connection.endpoint)?.post("/read", body).await?;
    let found = answer["value"].is_string();
    match connection.output {
        Output::Json => println!("{answer}"),
        Output::Text => match answer["value"].as_str() {
            Some(value) => println!("{value}"),
            None => eprintln!(
                "{key:?} has no value (read {} at slot {})",
                consistency.name(),
                answer["slot"]
            ),
        },
    }
    Ok(if found {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(NOT_FOUND)
    })
}

/// `/status` as a table.
fn status_table(status: &Json) -> String {
    let mut text = String::new();
    let leader = match status["leader"]["proposer"].as_u64() {
        Some(id) => format!(
            "proposer{id} (ballot {})",
            status["leader"]["ballot"].as_str().unwrap_or("?")
        ),
        None => "none".to_string(),
    };
    let quorum = &status["quorum"];
    let _ = writeln!(
        text,
        "leader: {leader}    quorum: {} of {} acceptors healthy, {} needed ({})",
        quorum["healthy_acceptors"],
        quorum["acceptors"],
        quorum["majority"],
        if quorum["available"].as_bool() == Some(true) {
            "available"
        } else {
            "UNAVAILABLE"
        }
    );
    let mut rows = vec![[
        "NODE".to_string(),
        "ROLE".to_string(),
        "ADDRESS".to_string(),
        "HEALTH".to_string(),
        "STATE".to_string(),
    ]];
    for node in status["nodes"].as_array().into_iter().flatten() {
        let healthy = node["healthy"].as_bool() == Some(true);
        rows.push([
            node["name"].as_str().unwrap_or("?").to_string(),
            node["role"].as_str().unwrap_or("?").to_string(),
            node["address"].as_str().unwrap_or("?").to_string(),
            if healthy { "up" } else { "DOWN" }.to_string(),
            if healthy {
                node_state(node)
            } else {
                "-".to_string()
            },
        ]);
    }
    let widths: Vec<usize> = (0..4)
        .map(|column| rows.iter().map(|row| row[column].len()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let _ = writeln!(
            text,
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3],
        );
    }
    text
}

fn node_state(node: &Json) -> String {
    match node["role"].as_str() {
        Some("acceptor") => format!(
            "promised {}, accepted up to slot {}",
            node["promised_ballot"].as_str().unwrap_or("?"),
            node["accepted_slot_max"]
        ),
        Some("proposer") => format!(
            "{}, ballot {}, decided up to slot {}",
            node["state"].as_str().unwrap_or("?"),
            node["ballot"].as_str().unwrap_or("?"),
            node["decided_slot_max"]
        ),
        Some("learner") => format!(
            "applied slot {} (known {}), {} keys",
            node["applied_slot"], node["known_slot_max"], node["key_count"]
        ),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_table_lines_up_and_marks_down_nodes() {
        let status = json!({
            "leader": {"proposer": 1, "ballot": "3.1"},
            "quorum": {"acceptors": 3, "healthy_acceptors": 2, "majority": 2, "available": true},
            "nodes": [
                {"name": "acceptor1", "role": "acceptor", "address": "127.0.0.1:7001",
                 "healthy": true, "promised_ballot": "3.1", "accepted_slot_max": 9},
                {"name": "acceptor2", "role": "acceptor", "address": "127.0.0.1:7002",
                 "healthy": false},
                {"name": "learner1", "role": "learner", "address": "127.0.0.1:7201",
                 "healthy": true, "applied_slot": 9, "known_slot_max": 9, "key_count": 4},
            ]
        });
        let table = status_table(&status);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            lines[0],
            "leader: proposer1 (ballot 3.1)    quorum: 2 of 3 acceptors healthy, 2 needed (available)"
        );
        assert_eq!(
            lines[1],
            "NODE       ROLE      ADDRESS         HEALTH  STATE"
        );
        assert_eq!(lines[3], "acceptor2  acceptor  127.0.0.1:7002  DOWN    -");
        assert!(lines[4].ends_with("applied slot 9 (known 9), 4 keys"));
    }
}
