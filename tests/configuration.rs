//! Every role's configuration from environment variables: defaults, bounds, and errors
//! that name the variable at fault.

use acceptor::config::AcceptorConfig;
use client::config::ClientConfig;
use learner::config::LearnerConfig;
use proposer::config::ProposerConfig;
use runtime::config::AdminConfig;
use std::collections::HashMap;
use std::path::PathBuf;

/// The variables `pairs`, in insecure mode unless they say otherwise (the TLS
/// variables have tests of their own in `tls`).
fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let mut map: HashMap<String, String> = pairs
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
    map.entry("PAXOS_INSECURE".into())
        .or_insert_with(|| "true".into());
    move |name: &str| map.get(name).cloned()
}

#[test]
fn learner_defaults_to_a_majority_quorum() {
    let config = LearnerConfig::from_lookup(&lookup(&[
        ("LEARNER_ID", "2"),
        ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
    ]))
    .unwrap();
    assert_eq!(config.quorum_size, 2);
    assert_eq!(config.total_acceptors, 3);
    assert_eq!(config.listen, "127.0.0.1:7201");
}

#[test]
fn an_acceptor_belongs_to_cluster_paxos_unless_cluster_id_says_otherwise() {
    let default = AcceptorConfig::from_lookup(&lookup(&[("ACCEPTOR_ID", "1")])).unwrap();
    assert_eq!(default.cluster_id, "paxos");
    let named = AcceptorConfig::from_lookup(&lookup(&[
        ("ACCEPTOR_ID", "1"),
        ("CLUSTER_ID", " production "),
    ]))
    .unwrap();
    assert_eq!(named.cluster_id, "production");
}

#[test]
fn history_and_subscription_bounds_have_defaults_and_refuse_zero() {
    let learner = LearnerConfig::from_lookup(&lookup(&[
        ("LEARNER_ID", "1"),
        ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
    ]))
    .unwrap();
    assert_eq!(learner.retain_slots, 100_000);
    let zero = LearnerConfig::from_lookup(&lookup(&[
        ("LEARNER_ID", "1"),
        ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
        ("LEARNER_RETAIN_SLOTS", "0"),
    ]))
    .unwrap_err();
    assert_eq!(zero.variable, "LEARNER_RETAIN_SLOTS");
    let hosts = [("PROPOSER_HOSTS", "p:1"), ("LEARNER_HOSTS", "l:1")];
    let client = ClientConfig::from_lookup(&lookup(&hosts)).unwrap();
    assert_eq!(client.subscription_buffer_events, 1024);
    assert_eq!(client.data_dir, Some(PathBuf::from("paxos-data/client1")));
    let zero = ClientConfig::from_lookup(&lookup(&[
        hosts[0],
        hosts[1],
        ("SUBSCRIPTION_BUFFER_EVENTS", "0"),
    ]))
    .unwrap_err();
    assert_eq!(zero.variable, "SUBSCRIPTION_BUFFER_EVENTS");
}

#[test]
fn http_timeouts_and_the_connection_limit_have_defaults_and_refuse_zero() {
    let hosts = [("PROPOSER_HOSTS", "p:1"), ("LEARNER_HOSTS", "l:1")];
    let defaults = ClientConfig::from_lookup(&lookup(&hosts)).unwrap();
    assert_eq!(defaults.header_timeout_milliseconds, 10_000);
    assert_eq!(defaults.idle_timeout_milliseconds, 60_000);
    assert_eq!(defaults.max_connections, 10_000);
    let set = ClientConfig::from_lookup(&lookup(&[
        hosts[0],
        hosts[1],
        ("CLIENT_HEADER_TIMEOUT", "250"),
        ("CLIENT_IDLE_TIMEOUT", "750"),
        ("CLIENT_MAX_CONNECTIONS", "64"),
    ]))
    .unwrap();
    assert_eq!(
        (
            set.header_timeout_milliseconds,
            set.idle_timeout_milliseconds,
            set.max_connections
        ),
        (250, 750, 64)
    );
    for variable in [
        "CLIENT_HEADER_TIMEOUT",
        "CLIENT_IDLE_TIMEOUT",
        "CLIENT_MAX_CONNECTIONS",
    ] {
        let zero =
            ClientConfig::from_lookup(&lookup(&[hosts[0], hosts[1], (variable, "0")])).unwrap_err();
        assert_eq!(zero.variable, variable);
    }
}

#[test]
fn a_quorum_below_a_majority_is_refused_naming_the_variable() {
    let problem = LearnerConfig::from_lookup(&lookup(&[
        ("LEARNER_ID", "1"),
        ("ACCEPTOR_HOSTS", "a:1,b:2,c:3"),
        ("QUORUM_SIZE", "1"),
    ]))
    .unwrap_err();
    assert_eq!(problem.variable, "QUORUM_SIZE");
}

#[test]
fn missing_and_malformed_variables_are_named() {
    let missing = AcceptorConfig::from_lookup(&lookup(&[])).unwrap_err();
    assert_eq!(missing.variable, "ACCEPTOR_ID");
    let port =
        AcceptorConfig::from_lookup(&lookup(&[("ACCEPTOR_ID", "1"), ("ACCEPTOR_PORT", "http")]))
            .unwrap_err();
    assert_eq!(port.variable, "ACCEPTOR_PORT");
    let cluster =
        AcceptorConfig::from_lookup(&lookup(&[("ACCEPTOR_ID", "1"), ("CLUSTER_ID", "a\nb")]))
            .unwrap_err();
    assert_eq!(cluster.variable, "CLUSTER_ID");
    let hosts = ProposerConfig::from_lookup(&lookup(&[
        ("PROPOSER_ID", "1"),
        ("ACCEPTOR_HOSTS", "a:1,b"),
    ]))
    .unwrap_err();
    assert_eq!(hosts.variable, "ACCEPTOR_HOSTS");
    let timeout = ProposerConfig::from_lookup(&lookup(&[
        ("PROPOSER_ID", "1"),
        ("ACCEPTOR_HOSTS", "a:1"),
        ("HEARTBEAT_INTERVAL", "500"),
        ("LEADER_TIMEOUT", "200"),
    ]))
    .unwrap_err();
    assert_eq!(timeout.variable, "LEADER_TIMEOUT");
    assert!(timeout
        .to_string()
        .starts_with("invalid configuration: LEADER_TIMEOUT"));
}

#[test]
fn pipelining_and_batching_have_defaults_and_refuse_zero() {
    let base = [("PROPOSER_ID", "1"), ("ACCEPTOR_HOSTS", "a:1,b:2,c:3")];
    let defaults = ProposerConfig::from_lookup(&lookup(&base)).unwrap();
    assert_eq!(defaults.max_slots_in_flight, 32);
    assert_eq!(defaults.max_batch_commands, 1024);
    for variable in ["MAX_SLOTS_IN_FLIGHT", "MAX_BATCH_COMMANDS"] {
        let set =
            ProposerConfig::from_lookup(&lookup(&[base[0], base[1], (variable, "4")])).unwrap();
        assert_eq!(set.max_slots_in_flight.min(set.max_batch_commands), 4);
        let zero =
            ProposerConfig::from_lookup(&lookup(&[base[0], base[1], (variable, "0")])).unwrap_err();
        assert_eq!(zero.variable, variable);
    }
}

#[test]
fn the_admin_listener_is_off_unless_admin_port_is_set() {
    assert_eq!(
        AdminConfig::from_lookup(&lookup(&[])).unwrap(),
        AdminConfig { listen: None }
    );
    let on = AdminConfig::from_lookup(&lookup(&[
        ("ADMIN_PORT", "9000"),
        ("BIND_ADDRESS", "0.0.0.0"),
    ]))
    .unwrap();
    assert_eq!(on.listen.as_deref(), Some("0.0.0.0:9000"));
    for bad in ["0", "http", "70000"] {
        let problem = AdminConfig::from_lookup(&lookup(&[("ADMIN_PORT", bad)])).unwrap_err();
        assert_eq!(problem.variable, "ADMIN_PORT", "{bad}");
    }
}
