//! The properties the simulation checks, by name.
//!
//! After every step ([`Ledger`]):
//! - **agreement**: no two values are chosen for one slot (a value is chosen once a quorum
//!   of acceptors durably accepted it under one ballot), no two learners decide different
//!   values for one slot, and a learner decides only a chosen value;
//! - **validity**: only commands some client proposed, or no-ops, are decided;
//! - **in-order application**: every learner's applied state is the state after a prefix
//!   of the one agreed log;
//! - **exactly-once**: no learner applies a write twice (a retried write decided in two
//!   slots takes effect in the first only);
//! - **recoverability**: an acceptor forgets slots (trimming) only up to a slot that
//!   `trim_copies` learners held in their durable state (as each last reported it to
//!   itself, the highest since the run began: a learner's disk lost later is the one
//!   failure the rule tolerates).
//!
//! At the end of a run ([`check_history`]): no acknowledged write is lost; writes and
//! strong reads are linearizable per key; session reads see their session's writes and
//! never go back; eventual reads return only written values; every learner converges on
//! the final state.

use crate::history::{Consistency, History, Outcome, Request};
use crate::{Property, Violation};
use common::ballot::{Ballot, Slot};
use common::linearizability::{self, Event};
use common::message::AcceptedEntry;
use common::value::{Command, Operation, RequestId, Value};
use learner::core::Learner;
use std::collections::{BTreeMap, BTreeSet};

/// The key and value of the put `command` is (the simulation's clients only put).
fn put_of(command: &Command) -> (&String, &String) {
    match &command.operation {
        Operation::Put { key, value } | Operation::UnversionedPut { key, value } => (key, value),
    }
}

/// A learner's state as it should be: the agreed log applied with exactly-once.
#[derive(Clone, Default)]
struct Shadow {
    applied_slot: Slot,
    key_values: BTreeMap<String, String>,
    /// Each key's (create revision, mod revision, version), from the same log.
    revisions: BTreeMap<String, (Slot, Slot, u64)>,
    applied_requests: BTreeSet<RequestId>,
    /// The same prefix applied without exactly-once, to name the property a mismatch breaks.
    key_values_with_duplicates: BTreeMap<String, String>,
}

/// What the cluster has chosen and decided so far, for the checks after every step.
pub struct Ledger {
    acceptor_quorum: usize,
    /// Every command a client sent, by request id.
    proposed: BTreeMap<RequestId, Command>,
    /// Durable votes: (slot, ballot) -> (value, acceptors).
    votes: BTreeMap<(Slot, Ballot), (Value, BTreeSet<u32>)>,
    /// The value chosen per slot, and the ballot that chose it first.
    chosen: BTreeMap<Slot, (Ballot, Value)>,
    /// The first value any learner decided per slot: the one log every learner must agree on.
    agreed: BTreeMap<Slot, Value>,
    /// Per learner: the slots up to here were checked against `agreed` and can no longer
    /// change (they are applied).
    checked_through: BTreeMap<u32, Slot>,
    shadows: BTreeMap<u32, Shadow>,
    keys: Vec<String>,
    /// How many learners must hold a slot durably before an acceptor may forget it.
    trim_copies: usize,
    /// Per learner, the highest durable slot it has had.
    learner_durable_slots: BTreeMap<u32, Slot>,
}

impl Ledger {
    /// A ledger for a cluster whose acceptor quorum is `acceptor_quorum`, over `keys`.
    pub fn new(acceptor_quorum: usize, keys: Vec<String>, trim_copies: usize) -> Self {
        Ledger {
            acceptor_quorum,
            proposed: BTreeMap::new(),
            votes: BTreeMap::new(),
            chosen: BTreeMap::new(),
            agreed: BTreeMap::new(),
            checked_through: BTreeMap::new(),
            shadows: BTreeMap::new(),
            keys,
            trim_copies,
            learner_durable_slots: BTreeMap::new(),
        }
    }

    /// Notes a command a client sent.
    pub fn proposed(&mut self, command: &Command) {
        self.proposed
            .entry(command.request_id)
            .or_insert_with(|| command.clone());
    }

    /// Counts a vote acceptor `acceptor` made durable; checks **agreement** among chosen
    /// values when the vote completes a quorum.
    pub fn accepted(&mut self, acceptor: u32, entry: &AcceptedEntry) -> Result<(), Violation> {
        let (value, acceptors) = self
            .votes
            .entry((entry.slot, entry.ballot))
            .or_insert_with(|| (entry.value.clone(), BTreeSet::new()));
        if *value != entry.value {
            return Err(Violation::new(
                Property::Agreement,
                format!(
                    "two values accepted in slot {} under one ballot {}: {:?} and {:?}",
                    entry.slot, entry.ballot, value, entry.value
                ),
            ));
        }
        acceptors.insert(acceptor);
        if acceptors.len() < self.acceptor_quorum {
            return Ok(());
        }
        match self.chosen.get(&entry.slot) {
            Some((ballot, chosen)) if *chosen != entry.value => Err(Violation::new(
                Property::Agreement,
                format!(
                    "two values chosen in slot {}: {:?} under ballot {ballot}, then {:?} under \
                     ballot {} by acceptors {:?}",
                    entry.slot, chosen, entry.value, entry.ballot, acceptors
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.chosen
                    .insert(entry.slot, (entry.ballot, entry.value.clone()));
                Ok(())
            }
        }
    }

    /// Checks **recoverability** when acceptor `acceptor` durably forgot every slot up
    /// to `trimmed_slot`.
    pub fn trimmed(&self, acceptor: u32, trimmed_slot: Slot) -> Result<(), Violation> {
        let holders = self
            .learner_durable_slots
            .values()
            .filter(|durable| **durable >= trimmed_slot)
            .count();
        if holders >= self.trim_copies.max(1) {
            return Ok(());
        }
        Err(Violation::new(
            Property::Recoverability,
            format!(
                "acceptor{acceptor} forgot the slots up to {trimmed_slot}, which only {holders} \
                 learners held durably (durable slots {:?}; {} needed)",
                self.learner_durable_slots, self.trim_copies
            ),
        ))
    }

    /// Forgets what was checked of learner `id`, which restarted from its log.
    pub fn learner_restarted(&mut self, id: u32) {
        self.checked_through.remove(&id);
        self.shadows.remove(&id);
    }

    /// The checks after a step for learner `id`: **agreement** and **validity** of every
    /// slot it decided since last time, then **in-order application** and
    /// **exactly-once** of its applied state.
    pub fn check_learner(&mut self, id: u32, learner: &Learner) -> Result<(), Violation> {
        let durable = self.learner_durable_slots.entry(id).or_insert(0);
        *durable = (*durable).max(learner.durable_slot());
        let checked_through = self.checked_through.get(&id).copied().unwrap_or(0);
        for slot in checked_through + 1..=learner.known_slot_max() {
            let Some(value) = learner.decided_value(slot) else {
                continue;
            };
            self.check_decided(id, slot, value)?;
        }
        self.checked_through.insert(id, learner.applied_slot());
        self.check_applied_state(id, learner)
    }

    fn check_decided(&mut self, id: u32, slot: Slot, value: &Value) -> Result<(), Violation> {
        match self.chosen.get(&slot) {
            Some((_, chosen)) if chosen == value => {}
            Some((ballot, chosen)) => {
                return Err(Violation::new(
                    Property::Agreement,
                    format!(
                        "learner{id} decided {value:?} in slot {slot}, but {chosen:?} was chosen \
                         (ballot {ballot})"
                    ),
                ))
            }
            None => {
                return Err(Violation::new(
                    Property::Agreement,
                    format!(
                        "learner{id} decided {value:?} in slot {slot}, which no quorum of \
                         acceptors accepted"
                    ),
                ))
            }
        }
        match self.agreed.get(&slot) {
            Some(agreed) if agreed == value => Ok(()),
            Some(agreed) => Err(Violation::new(
                Property::Agreement,
                format!(
                    "learners disagree on slot {slot}: {agreed:?}, but learner{id} decided \
                     {value:?}"
                ),
            )),
            None => {
                for command in value.commands() {
                    if self.proposed.get(&command.request_id) != Some(command) {
                        return Err(Violation::new(
                            Property::Validity,
                            format!("slot {slot} holds {command:?}, which no client proposed"),
                        ));
                    }
                }
                self.agreed.insert(slot, value.clone());
                Ok(())
            }
        }
    }

    fn check_applied_state(&mut self, id: u32, learner: &Learner) -> Result<(), Violation> {
        let applied_slot = learner.applied_slot();
        let shadow = self.shadows.entry(id).or_default();
        if applied_slot == shadow.applied_slot && applied_slot > 0 {
            return Ok(()); // nothing applied since the last check
        }
        if applied_slot < shadow.applied_slot {
            *shadow = Shadow::default();
        }
        for slot in shadow.applied_slot + 1..=applied_slot {
            let Some(value) = self.agreed.get(&slot) else {
                return Err(Violation::new(
                    Property::InOrderApplication,
                    format!(
                        "learner{id} applied slot {slot} (up to {applied_slot}) without \
                         having it decided"
                    ),
                ));
            };
            for command in value.commands() {
                let (key, written) = put_of(command);
                if shadow.applied_requests.insert(command.request_id) {
                    shadow.key_values.insert(key.clone(), written.clone());
                    let revisions = match shadow.revisions.get(key) {
                        Some((create, _, version)) => (*create, slot, version + 1),
                        None => (slot, slot, 1),
                    };
                    shadow.revisions.insert(key.clone(), revisions);
                }
                shadow
                    .key_values_with_duplicates
                    .insert(key.clone(), written.clone());
            }
        }
        shadow.applied_slot = applied_slot;
        for key in &self.keys {
            let expected = shadow.key_values.get(key).map(String::as_str);
            let actual = learner.value_of(key);
            if actual == expected {
                let revisions = learner
                    .versioned_value_of(key)
                    .map(|value| (value.create_revision, value.mod_revision, value.version));
                let expected_revisions = shadow.revisions.get(key).copied();
                if revisions != expected_revisions {
                    return Err(Violation::new(
                        Property::Revisions,
                        format!(
                            "learner{id} gives {key} (create, mod, version) {revisions:?} after \
                             applying slots 1..={applied_slot}, but the agreed log gives \
                             {expected_revisions:?}"
                        ),
                    ));
                }
                continue;
            }
            let property = if actual
                == shadow
                    .key_values_with_duplicates
                    .get(key)
                    .map(String::as_str)
            {
                Property::ExactlyOnce
            } else {
                Property::InOrderApplication
            };
            return Err(Violation::new(
                property,
                format!(
                    "learner{id} holds {key} = {actual:?} after applying slots 1..={applied_slot}, \
                     but the agreed log applied once per write gives {expected:?}"
                ),
            ));
        }
        Ok(())
    }

    /// The agreed log from slot 1 up to the first hole.
    pub fn agreed_prefix(&self) -> Vec<(Slot, &Value)> {
        let mut prefix = Vec::new();
        for (slot, value) in &self.agreed {
            if *slot != prefix.len() as Slot + 1 {
                break;
            }
            prefix.push((*slot, value));
        }
        prefix
    }

    /// The highest slot any learner decided (0 if none).
    pub fn agreed_slot_max(&self) -> Slot {
        self.agreed.keys().next_back().copied().unwrap_or(0)
    }

    /// The highest slot a quorum of acceptors chose (0 if none).
    pub fn chosen_slot_max(&self) -> Slot {
        self.chosen.keys().next_back().copied().unwrap_or(0)
    }

    /// Slots chosen by a quorum of acceptors so far.
    pub fn chosen_count(&self) -> usize {
        self.chosen.len()
    }
}

/// Per key, the writes that took effect, in log order: (slot, value, request id).
struct Reference {
    writes: BTreeMap<String, Vec<(Slot, String, RequestId)>>,
    effective_slot: BTreeMap<RequestId, Slot>,
    final_slot: Slot,
}

impl Reference {
    fn build(prefix: &[(Slot, &Value)]) -> Self {
        let mut reference = Reference {
            writes: BTreeMap::new(),
            effective_slot: BTreeMap::new(),
            final_slot: prefix.last().map_or(0, |(slot, _)| *slot),
        };
        for (slot, value) in prefix {
            for command in value.commands() {
                if let std::collections::btree_map::Entry::Vacant(first) =
                    reference.effective_slot.entry(command.request_id)
                {
                    first.insert(*slot);
                    let (key, written) = put_of(command);
                    reference.writes.entry(key.clone()).or_default().push((
                        *slot,
                        written.clone(),
                        command.request_id,
                    ));
                }
            }
        }
        reference
    }

    /// The slots `[from, to)` during which `key` held `value` (None: before its first
    /// write), or None if `value` never took effect.
    fn interval(&self, key: &str, value: Option<&str>) -> Option<(Slot, Slot)> {
        let writes = self.writes.get(key).map(Vec::as_slice).unwrap_or(&[]);
        match value {
            None => Some((0, writes.first().map_or(Slot::MAX, |(slot, _, _)| *slot))),
            Some(value) => {
                let index = writes.iter().position(|(_, written, _)| written == value)?;
                let until = writes
                    .get(index + 1)
                    .map_or(Slot::MAX, |(slot, _, _)| *slot);
                Some((writes[index].0, until))
            }
        }
    }

    fn final_value(&self, key: &str) -> Option<&str> {
        self.writes
            .get(key)
            .and_then(|writes| writes.last())
            .map(|(_, value, _)| value.as_str())
    }
}

/// The end-of-run checks of the client-visible history against the agreed log, and of
/// every learner's final state.
pub fn check_history(
    history: &History,
    ledger: &Ledger,
    learners: &[(u32, &Learner)],
) -> Result<(), Violation> {
    let prefix = ledger.agreed_prefix();
    let reference = Reference::build(&prefix);
    check_no_acknowledged_write_lost(history, &reference)?;
    check_read_revisions(history, &reference)?;
    check_linearizable(history)?;
    check_sessions(history, &reference)?;
    check_eventual_reads(history, &reference)?;
    check_convergence(ledger, &reference, learners)
}

/// Every value read carries the mod revision of the write that put it there.
fn check_read_revisions(history: &History, reference: &Reference) -> Result<(), Violation> {
    for operation in &history.operations {
        let (
            Request::Read { key, .. },
            Outcome::Read {
                value,
                mod_revision,
                ..
            },
        ) = (&operation.request, &operation.outcome)
        else {
            continue;
        };
        let Some(value) = value else {
            if mod_revision.is_some() {
                return Err(Violation::new(
                    Property::Revisions,
                    format!("{:?} found no value but a mod revision", operation.request),
                ));
            }
            continue;
        };
        let writes = reference.writes.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let matches = writes
            .iter()
            .any(|(slot, written, _)| Some(*slot) == *mod_revision && written == value);
        if !matches {
            return Err(Violation::new(
                Property::Revisions,
                format!(
                    "{:?} read {value:?} with mod revision {mod_revision:?}, but no write of \
                     that value took effect at that revision",
                    operation.request
                ),
            ));
        }
    }
    Ok(())
}

fn check_no_acknowledged_write_lost(
    history: &History,
    reference: &Reference,
) -> Result<(), Violation> {
    for operation in &history.operations {
        if let Outcome::RequestIdTaken { revision } = operation.outcome {
            return Err(Violation::new(
                Property::Revisions,
                format!(
                    "{:?} was refused as reusing the request id of a command applied at \
                     revision {revision}, but no client reused it",
                    operation.request
                ),
            ));
        }
        if let (Request::Write { request_id, .. }, Outcome::Written { slot }) =
            (&operation.request, &operation.outcome)
        {
            match reference.effective_slot.get(request_id) {
                Some(effective) if effective == slot => {}
                Some(effective) => {
                    return Err(Violation::new(
                        Property::Revisions,
                        format!(
                            "{:?} was acknowledged at revision {slot} but took effect at \
                             revision {effective}",
                            operation.request
                        ),
                    ))
                }
                None => {
                    return Err(Violation::new(
                        Property::LostAcknowledgedWrite,
                        format!(
                            "{:?} was acknowledged in slot {slot} but is not in the agreed log",
                            operation.request
                        ),
                    ))
                }
            }
        }
    }
    Ok(())
}

/// Writes (acknowledged, or of unknown outcome) and completed strong reads, per key,
/// through the Wing & Gong / Lowe checker.
fn check_linearizable(history: &History) -> Result<(), Violation> {
    let events: Vec<Event> = history
        .operations
        .iter()
        .filter_map(|operation| match (&operation.request, &operation.outcome) {
            (Request::Write { key, value, .. }, outcome) => Some(Event {
                operation: linearizability::Operation::Write {
                    key: key.clone(),
                    value: value.clone(),
                },
                invoked_at: operation.invoked_at,
                completed_at: match outcome {
                    Outcome::Written { .. } => operation.completed_at,
                    _ => None,
                },
            }),
            (
                Request::Read {
                    key,
                    consistency: Consistency::Strong,
                },
                Outcome::Read { value, .. },
            ) => Some(Event {
                operation: linearizability::Operation::Read {
                    key: key.clone(),
                    value: value.clone(),
                },
                invoked_at: operation.invoked_at,
                completed_at: operation.completed_at,
            }),
            _ => None,
        })
        .collect();
    linearizability::check(&events)
        .map_err(|violation| Violation::new(Property::Linearizability, violation.to_string()))
}

/// Per session (client), in its order: a session read returns a value that was still
/// current at or after the highest slot the session wrote or read before, and then the
/// session has observed at least the slot where that value took effect.
fn check_sessions(history: &History, reference: &Reference) -> Result<(), Violation> {
    let mut required: BTreeMap<u32, Slot> = BTreeMap::new();
    for operation in &history.operations {
        let session_slot = required.entry(operation.client).or_default();
        match (&operation.request, &operation.outcome) {
            (Request::Write { request_id, .. }, Outcome::Written { .. }) => {
                let effective = reference.effective_slot[request_id];
                *session_slot = (*session_slot).max(effective);
            }
            (
                Request::Read {
                    key,
                    consistency: Consistency::Session,
                },
                Outcome::Read { value, .. },
            ) => {
                let Some((from, until)) = reference.interval(key, value.as_deref()) else {
                    return Err(Violation::new(
                        Property::SessionGuarantee,
                        format!(
                            "client{} read {key} = {value:?} in its session: a value that never \
                             took effect",
                            operation.client
                        ),
                    ));
                };
                if until <= *session_slot {
                    return Err(Violation::new(
                        Property::SessionGuarantee,
                        format!(
                            "client{} read {key} = {value:?} in its session, a value overwritten \
                             in slot {until}, after the session had written or read slot {}",
                            operation.client, *session_slot
                        ),
                    ));
                }
                *session_slot = (*session_slot).max(from);
            }
            _ => {}
        }
    }
    Ok(())
}

/// An eventual read returns None or a value that took effect and whose write was invoked
/// before the read completed.
fn check_eventual_reads(history: &History, reference: &Reference) -> Result<(), Violation> {
    let invoked: BTreeMap<(&str, &str), u64> = history
        .operations
        .iter()
        .filter_map(|operation| match &operation.request {
            Request::Write { key, value, .. } => {
                Some(((key.as_str(), value.as_str()), operation.invoked_at))
            }
            _ => None,
        })
        .collect();
    for operation in &history.operations {
        let (
            Request::Read {
                key,
                consistency: Consistency::Eventual,
            },
            Outcome::Read { value, .. },
        ) = (&operation.request, &operation.outcome)
        else {
            continue;
        };
        let Some(value) = value else { continue };
        let written_before = invoked
            .get(&(key.as_str(), value.as_str()))
            .is_some_and(|invoked_at| Some(*invoked_at) < operation.completed_at);
        if !written_before || reference.interval(key, Some(value)).is_none() {
            return Err(Violation::new(
                Property::EventualRead,
                format!(
                    "client{} read {key} = {value:?}: not a value written before the read",
                    operation.client
                ),
            ));
        }
    }
    Ok(())
}

/// Once faults stopped and the cluster settled, every learner applied the whole agreed log
/// and holds its final state.
fn check_convergence(
    ledger: &Ledger,
    reference: &Reference,
    learners: &[(u32, &Learner)],
) -> Result<(), Violation> {
    if reference.final_slot < ledger.agreed_slot_max() {
        return Err(Violation::new(
            Property::Convergence,
            format!(
                "the agreed log has a hole: slots up to {} are contiguous, but slot {} is decided",
                reference.final_slot,
                ledger.agreed_slot_max()
            ),
        ));
    }
    for (id, learner) in learners {
        if learner.applied_slot() != reference.final_slot {
            return Err(Violation::new(
                Property::Convergence,
                format!(
                    "learner{id} applied up to slot {}, the agreed log goes to {}",
                    learner.applied_slot(),
                    reference.final_slot
                ),
            ));
        }
        for key in &ledger.keys {
            if learner.value_of(key) != reference.final_value(key) {
                return Err(Violation::new(
                    Property::Convergence,
                    format!(
                        "learner{id} holds {key} = {:?}, the final state has {:?}",
                        learner.value_of(key),
                        reference.final_value(key)
                    ),
                ));
            }
        }
    }
    Ok(())
}
