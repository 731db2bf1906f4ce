//! Builders and filters the proposer core's unit tests share.

pub(super) use super::{Effect, Proposer, ProposerOptions, MAX_PROMISE_SPAN_SLOTS};
pub(super) use common::ballot::{Ballot, Slot, MAX_PLAUSIBLE_SLOT};
pub(super) use common::message::{AcceptedEntry, Message, ProposerState, RoleStatus};
pub(super) use common::node::NodeId;
pub(super) use common::value::{Command, RequestId, Value};

pub(super) const QUORUM: usize = 2;

pub(super) fn proposer(id: u32) -> Proposer {
    let mut options = ProposerOptions::new(id, QUORUM, 10, 100);
    options.max_slots_in_flight = 2;
    Proposer::new(options, 0)
}

pub(super) fn command(number: u128, key: &str, value: &str) -> Command {
    Command::put(RequestId(number), key, value)
}

pub(super) fn tick_until_candidate(proposer: &mut Proposer) -> (Ballot, Slot, Vec<Effect>) {
    for _ in 0..1000 {
        let effects = proposer.tick();
        for effect in &effects {
            if let Effect::Broadcast {
                message: Message::Prepare { ballot, from_slot },
                ..
            } = effect
            {
                return (*ballot, *from_slot, effects.clone());
            }
        }
    }
    panic!("no election within 1000 ticks");
}

pub(super) fn elect(
    proposer: &mut Proposer,
    accepted: Vec<Vec<AcceptedEntry>>,
) -> (Ballot, Vec<Effect>) {
    let (ballot, _, _) = tick_until_candidate(proposer);
    let mut effects = Vec::new();
    for (index, entries) in accepted.into_iter().enumerate() {
        effects.extend(proposer.handle(
            NodeId::acceptor(index as u32 + 1),
            Message::Promise {
                ballot,
                trimmed_slot: 0,
                next_from_slot: None,
                accepted: entries,
            },
        ));
    }
    assert!(proposer.is_leader());
    (ballot, effects)
}

pub(super) fn accepts(effects: &[Effect]) -> Vec<(Slot, Value)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Broadcast {
                message: Message::Accept { slot, value, .. },
                ..
            } => Some((*slot, value.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn sent(effects: &[Effect]) -> Vec<(NodeId, Message)> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::Send { to, message } => Some((*to, message.clone())),
            _ => None,
        })
        .collect()
}

/// Proposer 2, following proposer 1 after its heartbeat, and a client's write.
pub(super) fn follower_of_proposer_1_and_a_write() -> (Proposer, NodeId, Message) {
    let mut proposer = proposer(2);
    proposer.handle(
        NodeId::proposer(1),
        Message::Heartbeat {
            ballot: Ballot::new(1, 1),
            decided_slot_max: 0,
        },
    );
    let client = NodeId::client(1);
    let write = Message::Write {
        command: command(1, "k", "v"),
        client,
    };
    (proposer, client, write)
}

pub(super) fn candidate_1() -> (Proposer, Ballot) {
    let mut proposer = proposer(1);
    let (ballot, _, _) = tick_until_candidate(&mut proposer);
    (proposer, ballot)
}

pub(super) fn entry(slot: Slot, ballot: Ballot, text: &str) -> AcceptedEntry {
    AcceptedEntry {
        slot,
        ballot,
        value: Value::Batch(vec![command(slot as u128, "k", text)]),
    }
}

/// Client API 1 writes `k = v` under request id `number`; what the proposer does.
pub(super) fn client_write(proposer: &mut Proposer, number: u128) -> Vec<Effect> {
    let client = NodeId::client(1);
    proposer.handle(
        client,
        Message::Write {
            command: command(number, "k", "v"),
            client,
        },
    )
}
