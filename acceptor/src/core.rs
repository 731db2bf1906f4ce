//! The acceptor's protocol as a plain state machine: a message in, effects out.
//!
//! An acceptor is the memory of Paxos. It keeps two things, and both must survive a crash:
//! the highest ballot it promised (phase 1) and, per slot, the last value it accepted with
//! its ballot (phase 2). Safety rests on an acceptor never going back on either, so every
//! answer that reveals a state change comes after an [`Effect::Persist`] of that change in
//! the effect list; the service makes the persists durable (fsync) before it sends anything.
//!
//! No I/O, clock or logging here: the service feeds messages in and carries effects out, and
//! tests drive the same code directly.
//!
//! What comes from the network is validated before it can change anything: a Prepare,
//! Accept or Confirm must come from the proposer that owns its ballot, with a round at most
//! [`MAX_ROUND_LEAD`] above the promise (so that no peer can exhaust the rounds), and an
//! Accept must name a plausible slot and may not carry a second value for a slot under a
//! ballot already accepted there. A refused message changes nothing, is not answered, and
//! raises an alarm ([`Acceptor::alarms`]), the core's only record since it does not log.
//!
//! Its memory is bounded by the live window of the log, not by its history: the leader
//! sends a trim point (`Trim`), the slot up to which enough learners hold the decided
//! state durably; the acceptor persists it, then forgets every slot at or below it, and
//! answers a request for a forgotten slot with `Trimmed` (docs/PROTOCOL.md, "Trimming").
//! Answers that could grow with the log (Promise, AcceptedValues to a learner catching
//! up) are paged by [`common::value::PAGE_BYTES_MAX`].

use common::alarm::{Alarm, Alarms};
use common::ballot::{is_plausible_slot, Ballot, Slot, MAX_PLAUSIBLE_SLOT, MAX_ROUND_LEAD};
use common::message::{AcceptedEntry, Message, RoleStatus};
use common::node::{NodeId, Role};
use common::ready::{Core, Destination, Event, Outgoing, Ready};
use common::value::{fits_in_page, Value};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The most entries one `AcceptedValues` answer to `SyncAccepted` carries, so that a learner
/// far behind catches up in bounded messages (it asks again for the rest).
pub const SYNC_ENTRIES_MAX: usize = 4096;

/// One durable change of the acceptor's state, as written to its log.
///
/// Replaying the records in order (see [`Acceptor::recover`]) rebuilds the state exactly.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    /// The acceptor promised this ballot: it will ignore every lower one.
    Promised(Ballot),
    /// The acceptor accepted this value in this slot under this ballot. It also implies a
    /// promise of that ballot, so an Accept that raises the promise needs no second record.
    Accepted(AcceptedEntry),
    /// Every slot `<= trimmed_slot` is decided and durable at enough learners: forgotten,
    /// and never accepted again. Written before the slots are dropped from the log.
    Trimmed(Slot),
}

/// What the service must do, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Effect {
    /// Make this record durable. Every `Persist` comes before the sends that reveal it, and
    /// the service syncs all persists of a batch before sending any message.
    Persist(Record),
    /// Send `message` to the node `to`.
    Send {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message,
    },
    /// Send `message` to every connected learner (phase 2b votes).
    SendToLearners(Message),
    /// Send `message` to `to` at once, even while earlier records wait for space: it
    /// reveals only what is durable already (a `NoSpace` refusal, or the confirmation of a
    /// durable promise).
    SendUnheld {
        /// The receiver.
        to: NodeId,
        /// The message.
        message: Message,
    },
}

/// One acceptor's state: the promise and the accepted value of every slot.
///
/// Two acceptors are equal when their protocol state is (id, promise, accepted values,
/// storage fault); their alarms and message counts are diagnostics and do not count, so
/// that an acceptor equals its own recovery.
#[derive(Clone, Debug)]
pub struct Acceptor {
    id: u32,
    promised_ballot: Ballot,
    accepted: BTreeMap<Slot, (Ballot, Value)>,
    /// Every slot `<= trimmed_slot` is forgotten: `accepted` holds only slots above it.
    trimmed_slot: Slot,
    /// Why this acceptor refuses to vote (its log is corrupt); None while it votes.
    storage_fault: Option<String>,
    /// What it refused from the network, and why.
    alarms: Alarms,
    /// Messages handled so far: the clock of the alarms, since an acceptor has no ticks.
    messages_handled: u64,
    /// Whether its log cannot make records durable now (quota reached, disk full): new
    /// votes are then refused with `NoSpace`.
    storage_full: bool,
    /// The promise as of the last sync: what a `Confirmed` may reveal while the log is
    /// full (a promise raised since may not survive a crash).
    durable_promised_ballot: Ballot,
}

impl PartialEq for Acceptor {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
            && self.promised_ballot == other.promised_ballot
            && self.accepted == other.accepted
            && self.trimmed_slot == other.trimmed_slot
            && self.storage_fault == other.storage_fault
    }
}

impl Eq for Acceptor {}

impl Acceptor {
    /// A fresh acceptor number `id` that has promised nothing and accepted nothing.
    pub fn new(id: u32) -> Self {
        Acceptor {
            id,
            promised_ballot: Ballot::ZERO,
            accepted: BTreeMap::new(),
            trimmed_slot: 0,
            storage_fault: None,
            alarms: Alarms::new(),
            messages_handled: 0,
            storage_full: false,
            durable_promised_ballot: Ballot::ZERO,
        }
    }

    /// Acceptor `id` whose log is corrupt for `reason`. It cannot know what it promised or
    /// accepted, and any answer could break a promise it forgot, so it answers nothing: it
    /// only keeps running so that its status (and its operator) can say why. Its quorum
    /// is made of the other acceptors.
    pub fn refusing(id: u32, reason: String) -> Self {
        Acceptor {
            storage_fault: Some(reason),
            ..Acceptor::new(id)
        }
    }

    /// Rebuilds acceptor `id` from the records it persisted, replayed in order.
    ///
    /// The promise is the highest ballot among all records: an `Accepted` record stands for
    /// a promise of its ballot too (see [`Record::Accepted`]).
    pub fn recover(id: u32, records: impl IntoIterator<Item = Record>) -> Self {
        let mut acceptor = Acceptor::new(id);
        for record in records {
            match record {
                Record::Promised(ballot) => {
                    acceptor.promised_ballot = acceptor.promised_ballot.max(ballot);
                }
                Record::Accepted(entry) => {
                    acceptor.promised_ballot = acceptor.promised_ballot.max(entry.ballot);
                    if entry.slot > acceptor.trimmed_slot {
                        acceptor
                            .accepted
                            .insert(entry.slot, (entry.ballot, entry.value));
                    }
                }
                Record::Trimmed(slot) => acceptor.forget_through(slot),
            }
        }
        acceptor.assert_accepted_ballots_within_promise();
        acceptor.durable_promised_ballot = acceptor.promised_ballot;
        acceptor
    }

    /// PLANTED BUG, for the simulation only (feature `planted-bugs`): rebuilds the acceptor
    /// from its `Accepted` records alone, forgetting every promise it persisted. An acceptor
    /// that does this can accept a lower ballot after a restart, which lets two values be
    /// chosen for one slot; `sim` must catch it.
    #[cfg(feature = "planted-bugs")]
    pub fn recover_forgetting_promises(id: u32, records: impl IntoIterator<Item = Record>) -> Self {
        let mut acceptor = Acceptor::new(id);
        for record in records {
            if let Record::Accepted(entry) = record {
                acceptor
                    .accepted
                    .insert(entry.slot, (entry.ballot, entry.value));
            }
        }
        acceptor
    }

    /// Handles `message` from the node `from` and returns what to do, persists first.
    ///
    /// `from` is trusted (the network authenticated it); the message's contents are not: a
    /// Prepare, Accept or Confirm that fails [`Acceptor::ballot_refusal`], or an Accept that
    /// fails the checks of `on_accept`, gives no effects and raises an alarm. Messages an
    /// acceptor does not serve (including `StatusRequest`, which the service answers with
    /// [`Acceptor::status`]) give no effects.
    pub fn handle(&mut self, from: NodeId, message: Message) -> Vec<Effect> {
        self.messages_handled = self.messages_handled.saturating_add(1);
        if self.storage_fault.is_some() {
            return Vec::new(); // refuses to vote: see `Acceptor::refusing`
        }
        let ballot_refusal = match &message {
            Message::Prepare { ballot, .. } => self.ballot_refusal(from, "Prepare", *ballot),
            Message::Accept { ballot, .. } => self.ballot_refusal(from, "Accept", *ballot),
            Message::Confirm { ballot, .. } => self.ballot_refusal(from, "Confirm", *ballot),
            _ => None,
        };
        if let Some(reason) = ballot_refusal {
            self.raise_alarm(reason);
            return Vec::new();
        }
        match message {
            Message::Prepare { ballot, from_slot } => self.on_prepare(from, ballot, from_slot),
            Message::Accept {
                ballot,
                slot,
                value,
            } => self.on_accept(from, ballot, slot, value),
            Message::Confirm { ballot, sequence } => self.on_confirm(from, ballot, sequence),
            Message::SyncAccepted { from_slot, to_slot } => {
                self.on_sync_accepted(from, from_slot, to_slot)
            }
            Message::Trim { trimmed_slot } => self.on_trim(from, trimmed_slot),
            _ => Vec::new(),
        }
    }

    /// Why a Prepare, Accept or Confirm (`kind`) for `ballot` from `from` must be refused,
    /// if it must: only a proposer sends them, only under its own ballots, and never with a
    /// round more than [`MAX_ROUND_LEAD`] above the promise (an honest round grows by one
    /// per election; a huge one would leave honest proposers no ballot above it).
    fn ballot_refusal(&self, from: NodeId, kind: &str, ballot: Ballot) -> Option<String> {
        if from.role != Role::Proposer {
            return Some(format!("{from} sent a {kind}, which only proposers send"));
        }
        if ballot.proposer_id != from.id {
            return Some(format!(
                "proposer {} sent a {kind} under ballot {ballot}, which belongs to proposer {}",
                from.id, ballot.proposer_id
            ));
        }
        if !ballot.is_plausible_after(self.promised_ballot.round) {
            return Some(format!(
                "proposer {} sent a {kind} under ballot {ballot}, more than {MAX_ROUND_LEAD} \
                 rounds above the promised ballot {}",
                from.id, self.promised_ballot
            ));
        }
        None
    }

    fn raise_alarm(&mut self, text: String) {
        self.alarms.raise(self.messages_handled, text);
    }

    /// Phase 1: promise `ballot` unless a higher one is promised. An equal ballot gets its
    /// Promise again, because a proposer retransmits a lost Prepare and never reuses a
    /// ballot for a different one.
    fn on_prepare(&mut self, from: NodeId, ballot: Ballot, from_slot: Slot) -> Vec<Effect> {
        if ballot < self.promised_ballot {
            return vec![self.rejection(from, ballot)];
        }
        let mut effects = Vec::with_capacity(2);
        if ballot > self.promised_ballot {
            self.promised_ballot = ballot;
            effects.push(Effect::Persist(Record::Promised(ballot)));
        }
        let (accepted, next_from_slot) = self.page(from_slot, Slot::MAX, usize::MAX);
        effects.push(Effect::Send {
            to: from,
            message: Message::Promise {
                ballot,
                accepted,
                trimmed_slot: self.trimmed_slot,
                next_from_slot,
            },
        });
        effects
    }

    /// The accepted entries of `[from_slot, to_slot)` above the trim point, at most
    /// `entries_max` of them and one page of bytes, and the slot where the rest starts if
    /// some are left out.
    fn page(
        &self,
        from_slot: Slot,
        to_slot: Slot,
        entries_max: usize,
    ) -> (Vec<AcceptedEntry>, Option<Slot>) {
        let from_slot = from_slot.max(self.trimmed_slot.saturating_add(1));
        let mut entries = Vec::new();
        let mut used_bytes = 0;
        if from_slot >= to_slot {
            return (entries, None);
        }
        for (slot, (ballot, value)) in self.accepted.range(from_slot..to_slot) {
            let size_bytes = value.size_bytes();
            if entries.len() == entries_max || !fits_in_page(used_bytes, size_bytes) {
                return (entries, Some(*slot));
            }
            used_bytes += size_bytes;
            entries.push(AcceptedEntry {
                slot: *slot,
                ballot: *ballot,
                value: value.clone(),
            });
        }
        (entries, None)
    }

    /// The leader's trim point: every slot `<= trimmed_slot` is decided and durable at
    /// enough learners. Persisted first, then the slots are forgotten. Only a proposer
    /// sends it, for a plausible slot; an older trim point changes nothing.
    fn on_trim(&mut self, from: NodeId, trimmed_slot: Slot) -> Vec<Effect> {
        if from.role != Role::Proposer || !is_plausible_slot(trimmed_slot) {
            self.raise_alarm(format!(
                "{from} sent a Trim of slot {trimmed_slot}: ignored (only proposers send it, \
                 for slots in [1, {MAX_PLAUSIBLE_SLOT}])"
            ));
            return Vec::new();
        }
        if trimmed_slot <= self.trimmed_slot {
            return Vec::new();
        }
        self.forget_through(trimmed_slot);
        vec![Effect::Persist(Record::Trimmed(trimmed_slot))]
    }

    /// Forgets every slot `<= slot` (its trim point rises to `slot`).
    fn forget_through(&mut self, slot: Slot) {
        if slot <= self.trimmed_slot {
            return;
        }
        self.trimmed_slot = slot;
        self.accepted = self.accepted.split_off(&(slot.saturating_add(1)));
    }

    /// The trim point: every slot up to here is forgotten (0: none).
    pub fn trimmed_slot(&self) -> Slot {
        self.trimmed_slot
    }

    /// Phase 2: accept `value` in `slot` unless a higher ballot is promised. Accepting also
    /// promises `ballot`, since the leader that sent it won phase 1 with it.
    ///
    /// Refused with an alarm, before anything changes: a slot outside `[1,
    /// MAX_PLAUSIBLE_SLOT]`, and a second value for a slot under the ballot already accepted
    /// there (a ballot carries one value per slot; accepting the second could let two
    /// values be chosen).
    fn on_accept(&mut self, from: NodeId, ballot: Ballot, slot: Slot, value: Value) -> Vec<Effect> {
        if !is_plausible_slot(slot) {
            self.raise_alarm(format!(
                "proposer {} sent an Accept for slot {slot}, outside [1, {MAX_PLAUSIBLE_SLOT}]",
                from.id
            ));
            return Vec::new();
        }
        if ballot < self.promised_ballot {
            return vec![self.rejection(from, ballot)];
        }
        if slot <= self.trimmed_slot {
            // Decided and durable at the learners: the leader learns it need not ask.
            return vec![Effect::Send {
                to: from,
                message: Message::Trimmed {
                    trimmed_slot: self.trimmed_slot,
                },
            }];
        }
        let retransmitted = match self.accepted.get(&slot) {
            Some((accepted_ballot, accepted_value)) if *accepted_ballot == ballot => {
                if *accepted_value != value {
                    self.raise_alarm(format!(
                        "proposer {} sent a second value for slot {slot} under ballot {ballot}",
                        from.id
                    ));
                    return Vec::new();
                }
                true
            }
            _ => false,
        };
        if self.storage_full && !retransmitted {
            // Nothing more can be made durable: refuse rather than vote in memory only.
            return vec![Effect::SendUnheld {
                to: from,
                message: Message::NoSpace { ballot, slot },
            }];
        }
        self.promised_ballot = ballot;
        let entry = AcceptedEntry {
            slot,
            ballot,
            value,
        };
        let mut effects = Vec::with_capacity(3);
        if !retransmitted {
            // A retransmitted Accept is already durable: only the answers are repeated.
            self.store(&entry, &mut effects);
        }
        effects.push(Effect::Send {
            to: from,
            message: Message::Accepted { ballot, slot },
        });
        effects.push(Effect::SendToLearners(Message::AcceptedValues {
            entries: vec![entry],
        }));
        effects
    }

    fn store(&mut self, entry: &AcceptedEntry, effects: &mut Vec<Effect>) {
        debug_assert!(
            entry.ballot <= self.promised_ballot,
            "invariant violated: an accepted ballot never exceeds the promise"
        );
        self.accepted
            .insert(entry.slot, (entry.ballot, entry.value.clone()));
        effects.push(Effect::Persist(Record::Accepted(entry.clone())));
    }

    /// A leader proving it still leads (for linearizable reads): it does as long as nothing
    /// higher was promised. Nothing changes, so nothing is persisted.
    ///
    /// While the log is full, a confirmation of the promise as last synced leaves at once
    /// (it reveals nothing that is not durable), so the leader keeps leading and strong
    /// reads go on; any other answer waits behind the writes held.
    fn on_confirm(&self, from: NodeId, ballot: Ballot, sequence: u64) -> Vec<Effect> {
        if ballot < self.promised_ballot {
            return vec![self.rejection(from, ballot)];
        }
        let message = Message::Confirmed { ballot, sequence };
        if self.storage_full && ballot == self.durable_promised_ballot {
            return vec![Effect::SendUnheld { to: from, message }];
        }
        vec![Effect::Send { to: from, message }]
    }

    /// A learner filling a gap: the accepted entries of `[from_slot, to_slot)`, at most
    /// [`SYNC_ENTRIES_MAX`] of them and one page of bytes (the learner asks again for the
    /// rest). An empty answer is still sent so the learner knows. Slots at or below the
    /// trim point are forgotten: `Trimmed` says so first, and the learner takes them from
    /// a peer.
    fn on_sync_accepted(&self, from: NodeId, from_slot: Slot, to_slot: Slot) -> Vec<Effect> {
        let mut effects = Vec::with_capacity(2);
        if from_slot <= self.trimmed_slot && from_slot < to_slot {
            effects.push(Effect::Send {
                to: from,
                message: Message::Trimmed {
                    trimmed_slot: self.trimmed_slot,
                },
            });
        }
        let (entries, _) = self.page(from_slot, to_slot, SYNC_ENTRIES_MAX);
        effects.push(Effect::Send {
            to: from,
            message: Message::AcceptedValues { entries },
        });
        effects
    }

    fn rejection(&self, to: NodeId, ballot: Ballot) -> Effect {
        Effect::Send {
            to,
            message: Message::Rejected {
                ballot,
                promised: self.promised_ballot,
            },
        }
    }

    /// The whole state as records, for log compaction: `recover` of these equals `self`.
    pub fn snapshot(&self) -> Vec<Record> {
        self.snapshot_records().collect()
    }

    /// [`Acceptor::snapshot`] one record at a time, so that a compaction holds one
    /// record's copy at a time instead of a copy of the whole state.
    pub fn snapshot_records(&self) -> impl Iterator<Item = Record> + '_ {
        let trim = (self.trimmed_slot > 0).then_some(Record::Trimmed(self.trimmed_slot));
        let promise =
            (self.promised_ballot > Ballot::ZERO).then_some(Record::Promised(self.promised_ballot));
        trim.into_iter()
            .chain(promise)
            .chain(self.accepted.iter().map(|(slot, (ballot, value))| {
                Record::Accepted(AcceptedEntry {
                    slot: *slot,
                    ballot: *ballot,
                    value: value.clone(),
                })
            }))
    }

    /// What this acceptor refused from the network and why, one line per distinct alarm
    /// with its count (at most [`common::alarm::ALARMS_MAX`] lines, plus one saying how
    /// many older ones were evicted). The service shows them on `/status`.
    pub fn alarms(&self) -> Vec<String> {
        self.alarms.texts()
    }

    /// The alarms with their counts and first and last occurrence, in messages handled.
    pub fn alarm_entries(&self) -> &[Alarm] {
        self.alarms.entries()
    }

    /// The acceptor's part of a `/status` report.
    pub fn status(&self) -> RoleStatus {
        RoleStatus::Acceptor {
            promised_ballot: self.promised_ballot,
            accepted_slot_max: self.accepted_slot_max(),
            accepted_slot_count: self.accepted.len() as u64,
            trimmed_slot: self.trimmed_slot,
            storage_fault: self.storage_fault.clone(),
        }
    }

    /// Why this acceptor refuses to vote, if it does.
    pub fn storage_fault(&self) -> Option<&str> {
        self.storage_fault.as_deref()
    }

    /// This acceptor's id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The highest ballot promised ([`Ballot::ZERO`] if none).
    pub fn promised_ballot(&self) -> Ballot {
        self.promised_ballot
    }

    /// The ballot and value accepted in `slot`, if any.
    pub fn accepted(&self, slot: Slot) -> Option<(Ballot, &Value)> {
        self.accepted
            .get(&slot)
            .map(|(ballot, value)| (*ballot, value))
    }

    /// The highest slot with an accepted value (the trim point if none is left, 0 if none
    /// ever was).
    pub fn accepted_slot_max(&self) -> Slot {
        self.accepted
            .keys()
            .next_back()
            .copied()
            .unwrap_or(self.trimmed_slot)
    }

    /// How many slots hold an accepted value.
    pub fn accepted_slot_count(&self) -> usize {
        self.accepted.len()
    }

    fn assert_accepted_ballots_within_promise(&self) {
        for (slot, (ballot, _)) in &self.accepted {
            assert!(
                *ballot <= self.promised_ballot,
                "invariant violated: an accepted ballot never exceeds the promise \
                 (slot {slot} accepted under {ballot}, promised {})",
                self.promised_ballot
            );
        }
    }
}

/// The acceptor under the one contract of every role (see [`common::ready`]): each record
/// is appended and must be durable (one sync per batch) before any answer leaves, so every
/// answer is a persisted message; the votes for learners of a whole batch leave as one
/// `AcceptedValues` (the learners count entries, not messages).
impl Core for Acceptor {
    type Record = Record;

    fn on_event(&mut self, event: Event, ready: &mut Ready<Record>) {
        let Event::Message(from, message) = event else {
            return; // connections carry no protocol for an acceptor
        };
        for effect in self.handle(from, message) {
            match effect {
                Effect::Persist(record) => {
                    ready.append(record);
                    ready.require_sync();
                }
                Effect::Send { to, message } => ready.send_after_persist(to, message),
                Effect::SendUnheld { to, message } => ready.send_unheld(to, message),
                Effect::SendToLearners(Message::AcceptedValues { entries }) => {
                    merge_votes(ready, entries)
                }
                Effect::SendToLearners(message) => ready.persisted_messages.push(Outgoing {
                    to: Destination::Role(Role::Learner),
                    message,
                }),
            }
        }
    }

    fn on_tick(&mut self, _ready: &mut Ready<Record>) {}

    fn on_storage_full(&mut self, full: bool) {
        self.storage_full = full;
    }

    fn on_synced(&mut self) {
        self.durable_promised_ballot = self.promised_ballot;
    }

    fn status(&self) -> RoleStatus {
        Acceptor::status(self)
    }

    fn alarms(&self) -> Vec<String> {
        Acceptor::alarms(self)
    }
}

/// Adds `entries` to the batch's one `AcceptedValues` for every learner.
fn merge_votes(ready: &mut Ready<Record>, mut entries: Vec<AcceptedEntry>) {
    let to_learners = Destination::Role(Role::Learner);
    for outgoing in &mut ready.persisted_messages {
        if let (true, Message::AcceptedValues { entries: batch }) =
            (outgoing.to == to_learners, &mut outgoing.message)
        {
            batch.append(&mut entries);
            return;
        }
    }
    ready.persisted_messages.push(Outgoing {
        to: to_learners,
        message: Message::AcceptedValues { entries },
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::value::{Command, RequestId};

    fn proposer(id: u32) -> NodeId {
        NodeId::proposer(id)
    }

    fn value(text: &str) -> Value {
        Value::Batch(vec![Command::put(
            RequestId(text.len() as u128),
            "key",
            text,
        )])
    }

    fn prepare(round: u64, proposer_id: u32, from_slot: Slot) -> Message {
        Message::Prepare {
            ballot: Ballot::new(round, proposer_id),
            from_slot,
        }
    }

    fn accept(round: u64, proposer_id: u32, slot: Slot, text: &str) -> Message {
        Message::Accept {
            ballot: Ballot::new(round, proposer_id),
            slot,
            value: value(text),
        }
    }

    fn sends(effects: &[Effect]) -> Vec<Message> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Send { message, .. } => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn persisted(effects: &[Effect]) -> Vec<Record> {
        effects
            .iter()
            .filter_map(|effect| match effect {
                Effect::Persist(record) => Some(record.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn acceptor_promises_then_rejects_a_lower_ballot() {
        let mut acceptor = Acceptor::new(1);
        let effects = acceptor.handle(proposer(2), prepare(3, 2, 1));
        assert_eq!(
            effects,
            vec![
                Effect::Persist(Record::Promised(Ballot::new(3, 2))),
                Effect::Send {
                    to: proposer(2),
                    message: Message::Promise {
                        ballot: Ballot::new(3, 2),
                        accepted: vec![],
                        trimmed_slot: 0,
                        next_from_slot: None,
                    }
                }
            ]
        );
        let effects = acceptor.handle(proposer(1), prepare(3, 1, 1));
        assert_eq!(
            effects,
            vec![Effect::Send {
                to: proposer(1),
                message: Message::Rejected {
                    ballot: Ballot::new(3, 1),
                    promised: Ballot::new(3, 2)
                }
            }]
        );
        assert_eq!(acceptor.promised_ballot(), Ballot::new(3, 2));
    }

    #[test]
    fn acceptor_promises_a_retransmitted_prepare_again_without_persisting() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), prepare(1, 1, 1));
        let effects = acceptor.handle(proposer(1), prepare(1, 1, 1));
        assert!(persisted(&effects).is_empty());
        assert!(matches!(
            sends(&effects)[..],
            [Message::Promise { ballot, .. }] if ballot == Ballot::new(1, 1)
        ));
    }

    #[test]
    fn acceptor_accepts_at_the_promised_ballot() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), prepare(1, 1, 1));
        let effects = acceptor.handle(proposer(1), accept(1, 1, 5, "a"));
        let entry = AcceptedEntry {
            slot: 5,
            ballot: Ballot::new(1, 1),
            value: value("a"),
        };
        assert_eq!(
            effects,
            vec![
                Effect::Persist(Record::Accepted(entry.clone())),
                Effect::Send {
                    to: proposer(1),
                    message: Message::Accepted {
                        ballot: Ballot::new(1, 1),
                        slot: 5
                    }
                },
                Effect::SendToLearners(Message::AcceptedValues {
                    entries: vec![entry]
                }),
            ]
        );
        assert_eq!(acceptor.accepted(5), Some((Ballot::new(1, 1), &value("a"))));
    }

    #[test]
    fn acceptor_rejects_accept_below_its_promise() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(2), prepare(2, 2, 1));
        let effects = acceptor.handle(proposer(1), accept(1, 1, 1, "old"));
        assert_eq!(
            sends(&effects),
            vec![Message::Rejected {
                ballot: Ballot::new(1, 1),
                promised: Ballot::new(2, 2)
            }]
        );
        assert!(persisted(&effects).is_empty());
        assert_eq!(acceptor.accepted(1), None);
    }

    #[test]
    fn accept_above_the_promise_raises_the_promise() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), prepare(1, 1, 1));
        acceptor.handle(proposer(2), accept(4, 2, 1, "b"));
        assert_eq!(acceptor.promised_ballot(), Ballot::new(4, 2));
        let effects = acceptor.handle(proposer(1), prepare(3, 1, 1));
        assert!(matches!(
            sends(&effects)[..],
            [Message::Rejected { promised, .. }] if promised == Ballot::new(4, 2)
        ));
    }

    #[test]
    fn promise_carries_accepted_entries_from_the_requested_slot_on_in_slot_order() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), prepare(1, 1, 1));
        for (slot, text) in [(3, "c"), (1, "a"), (2, "b"), (7, "g")] {
            acceptor.handle(proposer(1), accept(1, 1, slot, text));
        }
        let effects = acceptor.handle(proposer(2), prepare(2, 2, 2));
        let [Message::Promise { accepted, .. }] = &sends(&effects)[..] else {
            panic!("expected one Promise, got {effects:?}");
        };
        let slots: Vec<Slot> = accepted.iter().map(|entry| entry.slot).collect();
        assert_eq!(slots, vec![2, 3, 7]);
        assert!(accepted
            .iter()
            .all(|entry| entry.ballot == Ballot::new(1, 1)));
        assert_eq!(accepted[1].value, value("c"));
    }

    #[test]
    fn a_duplicated_accept_is_answered_again_without_a_second_persist() {
        let mut acceptor = Acceptor::new(1);
        let first = acceptor.handle(proposer(1), accept(1, 1, 1, "a"));
        let second = acceptor.handle(proposer(1), accept(1, 1, 1, "a"));
        assert_eq!(persisted(&first).len(), 1);
        assert!(persisted(&second).is_empty());
        assert_eq!(sends(&first), sends(&second));
        assert_eq!(
            first[1..],
            second[..],
            "same answers, to proposer and learners"
        );
    }

    #[test]
    fn a_prepare_arriving_after_a_higher_accept_is_rejected_and_the_vote_kept() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(2), accept(5, 2, 1, "new"));
        let effects = acceptor.handle(proposer(1), prepare(4, 1, 1));
        assert_eq!(
            sends(&effects),
            vec![Message::Rejected {
                ballot: Ballot::new(4, 1),
                promised: Ballot::new(5, 2)
            }]
        );
        let effects = acceptor.handle(proposer(1), accept(4, 1, 1, "old"));
        assert!(matches!(sends(&effects)[..], [Message::Rejected { .. }]));
        assert_eq!(
            acceptor.accepted(1),
            Some((Ballot::new(5, 2), &value("new")))
        );
    }

    #[test]
    fn a_higher_ballot_replaces_the_value_accepted_in_a_slot() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), accept(1, 1, 1, "first"));
        acceptor.handle(proposer(2), accept(2, 2, 1, "second"));
        assert_eq!(
            acceptor.accepted(1),
            Some((Ballot::new(2, 2), &value("second")))
        );
        assert_eq!(acceptor.accepted_slot_count(), 1);
    }

    #[test]
    fn an_accept_with_a_second_value_under_the_same_ballot_is_refused_with_an_alarm() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(2), accept(1, 2, 2, "a"));
        for _ in 0..3 {
            let effects = acceptor.handle(proposer(2), accept(1, 2, 2, "b"));
            assert!(effects.is_empty(), "no persist, no Accepted: {effects:?}");
        }
        assert_eq!(acceptor.accepted(2), Some((Ballot::new(1, 2), &value("a"))));
        assert_eq!(
            acceptor.alarms(),
            ["proposer 2 sent a second value for slot 2 under ballot 1.2 (3 times)"]
        );
        // The first value is still answered when retransmitted.
        let effects = acceptor.handle(proposer(2), accept(1, 2, 2, "a"));
        assert!(matches!(sends(&effects)[..], [Message::Accepted { .. }]));
    }

    #[test]
    fn a_prepare_accept_or_confirm_under_another_proposers_ballot_is_refused_with_an_alarm() {
        let mut acceptor = Acceptor::new(1);
        for message in [
            prepare(5, 2, 1),
            accept(5, 2, 1, "a"),
            Message::Confirm {
                ballot: Ballot::new(5, 2),
                sequence: 1,
            },
        ] {
            assert!(acceptor.handle(proposer(3), message).is_empty());
        }
        assert_eq!(acceptor, Acceptor::new(1), "nothing changed");
        assert_eq!(
            acceptor.alarms(),
            [
                "proposer 3 sent a Prepare under ballot 5.2, which belongs to proposer 2 (once)",
                "proposer 3 sent a Accept under ballot 5.2, which belongs to proposer 2 (once)",
                "proposer 3 sent a Confirm under ballot 5.2, which belongs to proposer 2 (once)",
            ]
        );
    }

    #[test]
    fn a_prepare_accept_or_confirm_from_a_node_that_is_not_a_proposer_is_refused_with_an_alarm() {
        let mut acceptor = Acceptor::new(1);
        for from in [NodeId::client(1), NodeId::learner(1), NodeId::acceptor(1)] {
            assert!(acceptor.handle(from, prepare(1, 1, 1)).is_empty());
            assert!(acceptor.handle(from, accept(1, 1, 1, "a")).is_empty());
        }
        assert_eq!(acceptor, Acceptor::new(1));
        assert_eq!(
            acceptor.alarms()[0],
            "client1 sent a Prepare, which only proposers send (once)"
        );
        assert_eq!(acceptor.alarms().len(), 6);
    }

    #[test]
    fn a_prepare_of_round_u64_max_is_refused_and_a_later_normal_prepare_still_wins() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), prepare(3, 1, 1));
        assert!(acceptor
            .handle(proposer(2), prepare(u64::MAX, 2, 1))
            .is_empty());
        assert!(acceptor
            .handle(proposer(2), accept(u64::MAX, 2, 1, "a"))
            .is_empty());
        assert!(acceptor
            .handle(proposer(2), prepare(3 + MAX_ROUND_LEAD + 1, 2, 1))
            .is_empty());
        assert_eq!(acceptor.promised_ballot(), Ballot::new(3, 1));
        assert_eq!(acceptor.accepted(1), None);
        assert_eq!(
            acceptor.alarms()[0],
            format!(
                "proposer 2 sent a Prepare under ballot {}.2, more than 4294967296 rounds above \
                 the promised ballot 3.1 (once)",
                u64::MAX
            )
        );
        let effects = acceptor.handle(proposer(2), prepare(4, 2, 1));
        assert_eq!(
            persisted(&effects),
            vec![Record::Promised(Ballot::new(4, 2))]
        );
        // The largest plausible step is still taken.
        let effects = acceptor.handle(proposer(1), prepare(4 + MAX_ROUND_LEAD, 1, 1));
        assert!(matches!(sends(&effects)[..], [Message::Promise { .. }]));
    }

    #[test]
    fn an_accept_for_slot_zero_or_an_implausibly_high_slot_is_refused_with_an_alarm() {
        let mut acceptor = Acceptor::new(1);
        for slot in [0, MAX_PLAUSIBLE_SLOT + 1, Slot::MAX] {
            assert!(acceptor
                .handle(proposer(1), accept(1, 1, slot, "a"))
                .is_empty());
        }
        assert_eq!(acceptor, Acceptor::new(1));
        assert_eq!(
            acceptor.alarms()[0],
            "proposer 1 sent an Accept for slot 0, outside [1, 4611686018427387904] (once)"
        );
        let effects = acceptor.handle(proposer(1), accept(1, 1, MAX_PLAUSIBLE_SLOT, "a"));
        assert_eq!(persisted(&effects).len(), 1);
    }

    #[test]
    fn confirm_is_granted_at_or_above_the_promise_and_persists_nothing() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), prepare(2, 1, 1));
        let granted = acceptor.handle(
            proposer(1),
            Message::Confirm {
                ballot: Ballot::new(2, 1),
                sequence: 9,
            },
        );
        assert_eq!(
            granted,
            vec![Effect::Send {
                to: proposer(1),
                message: Message::Confirmed {
                    ballot: Ballot::new(2, 1),
                    sequence: 9
                }
            }]
        );
        let refused = acceptor.handle(
            proposer(2),
            Message::Confirm {
                ballot: Ballot::new(1, 2),
                sequence: 3,
            },
        );
        assert_eq!(
            sends(&refused),
            vec![Message::Rejected {
                ballot: Ballot::new(1, 2),
                promised: Ballot::new(2, 1)
            }]
        );
        assert_eq!(acceptor.promised_ballot(), Ballot::new(2, 1));
    }

    #[test]
    fn sync_accepted_answers_the_half_open_range_bounded_in_size() {
        let mut acceptor = Acceptor::new(1);
        for slot in 1..=(SYNC_ENTRIES_MAX as Slot + 10) {
            acceptor.handle(proposer(1), accept(1, 1, slot, "v"));
        }
        let learner = NodeId::learner(1);
        let effects = acceptor.handle(
            learner,
            Message::SyncAccepted {
                from_slot: 3,
                to_slot: 6,
            },
        );
        let [Effect::Send {
            to,
            message: Message::AcceptedValues { entries },
        }] = &effects[..]
        else {
            panic!("expected one AcceptedValues, got {effects:?}");
        };
        assert_eq!(*to, learner);
        let slots: Vec<Slot> = entries.iter().map(|entry| entry.slot).collect();
        assert_eq!(slots, vec![3, 4, 5]);
        let effects = acceptor.handle(
            learner,
            Message::SyncAccepted {
                from_slot: 1,
                to_slot: Slot::MAX,
            },
        );
        let [Message::AcceptedValues { entries }] = &sends(&effects)[..] else {
            panic!("expected one AcceptedValues");
        };
        assert_eq!(entries.len(), SYNC_ENTRIES_MAX);
        assert_eq!(entries[0].slot, 1);
        let effects = acceptor.handle(
            learner,
            Message::SyncAccepted {
                from_slot: 9,
                to_slot: 2,
            },
        );
        assert_eq!(
            sends(&effects),
            vec![Message::AcceptedValues { entries: vec![] }]
        );
    }

    #[test]
    fn messages_an_acceptor_does_not_serve_are_ignored() {
        let mut acceptor = Acceptor::new(1);
        for message in [
            Message::StatusRequest { request_id: 1 },
            Message::Heartbeat {
                ballot: Ballot::new(9, 9),
                decided_slot_max: 4,
            },
            Message::Promise {
                ballot: Ballot::new(9, 9),
                accepted: vec![],
                trimmed_slot: 0,
                next_from_slot: None,
            },
        ] {
            assert!(acceptor.handle(proposer(1), message).is_empty());
        }
        assert_eq!(acceptor, Acceptor::new(1));
    }

    #[test]
    fn persistence_precedes_every_send() {
        let mut acceptor = Acceptor::new(1);
        let messages = [
            prepare(1, 1, 1),
            accept(1, 1, 1, "a"),
            accept(2, 2, 2, "b"),
            prepare(3, 1, 1),
            accept(3, 1, 1, "c"),
        ];
        for message in messages {
            let owner = match &message {
                Message::Prepare { ballot, .. } | Message::Accept { ballot, .. } => {
                    ballot.proposer_id
                }
                _ => 1,
            };
            let effects = acceptor.handle(proposer(owner), message);
            let first_send = effects
                .iter()
                .position(|effect| !matches!(effect, Effect::Persist(_)))
                .unwrap_or(effects.len());
            assert!(
                effects[first_send..]
                    .iter()
                    .all(|effect| !matches!(effect, Effect::Persist(_))),
                "a Persist after a send: {effects:?}"
            );
        }
    }

    #[test]
    fn an_acceptor_that_crashes_after_promising_keeps_the_promise() {
        let mut acceptor = Acceptor::new(2);
        let mut log = Vec::new();
        for (sender, message) in [
            (1, prepare(1, 1, 1)),
            (1, accept(1, 1, 1, "a")),
            (1, accept(1, 1, 2, "b")),
            (2, prepare(2, 2, 1)),
        ] {
            log.extend(persisted(&acceptor.handle(proposer(sender), message)));
        }
        let recovered = Acceptor::recover(2, log.clone());
        assert_eq!(recovered, acceptor);
        assert_eq!(recovered.promised_ballot(), Ballot::new(2, 2));
        let mut recovered = recovered;
        let effects = recovered.handle(proposer(1), prepare(1, 1, 1));
        assert!(matches!(sends(&effects)[..], [Message::Rejected { .. }]));
        assert_eq!(Acceptor::recover(2, acceptor.snapshot()), acceptor);
    }

    #[test]
    fn recovery_takes_the_promise_implied_by_an_accepted_record() {
        let entry = AcceptedEntry {
            slot: 4,
            ballot: Ballot::new(7, 3),
            value: Value::Noop,
        };
        let acceptor = Acceptor::recover(
            1,
            [Record::Promised(Ballot::new(2, 1)), Record::Accepted(entry)],
        );
        assert_eq!(acceptor.promised_ballot(), Ballot::new(7, 3));
        assert_eq!(
            acceptor.status(),
            RoleStatus::Acceptor {
                promised_ballot: Ballot::new(7, 3),
                accepted_slot_max: 4,
                accepted_slot_count: 1,
                trimmed_slot: 0,
                storage_fault: None
            }
        );
    }

    #[test]
    fn an_acceptor_with_a_corrupt_log_answers_nothing_and_says_why() {
        let mut acceptor = Acceptor::refusing(3, "log is corrupt at byte 16".into());
        for message in [
            prepare(1, 1, 1),
            accept(1, 1, 1, "a"),
            Message::Confirm {
                ballot: Ballot::new(1, 1),
                sequence: 1,
            },
            Message::SyncAccepted {
                from_slot: 1,
                to_slot: 10,
            },
        ] {
            assert!(acceptor.handle(proposer(1), message).is_empty());
        }
        assert_eq!(acceptor.storage_fault(), Some("log is corrupt at byte 16"));
        assert!(matches!(
            acceptor.status(),
            RoleStatus::Acceptor {
                storage_fault: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn a_trim_is_persisted_then_the_slots_at_or_below_it_are_forgotten_and_refused() {
        let mut acceptor = Acceptor::new(1);
        for slot in 1..=5 {
            acceptor.handle(proposer(1), accept(1, 1, slot, "v"));
        }
        let effects = acceptor.handle(proposer(2), Message::Trim { trimmed_slot: 3 });
        assert_eq!(persisted(&effects), vec![Record::Trimmed(3)]);
        assert!(sends(&effects).is_empty(), "a trim is not answered");
        assert_eq!(acceptor.trimmed_slot(), 3);
        assert_eq!(acceptor.accepted_slot_count(), 2, "slots 4 and 5 are left");
        assert!(acceptor.accepted(3).is_none());
        // An older trim point changes nothing.
        assert!(acceptor
            .handle(proposer(1), Message::Trim { trimmed_slot: 2 })
            .is_empty());
        // An Accept of a forgotten slot is answered "trimmed", not voted.
        let effects = acceptor.handle(proposer(1), accept(1, 1, 2, "late"));
        assert!(persisted(&effects).is_empty());
        assert_eq!(sends(&effects), vec![Message::Trimmed { trimmed_slot: 3 }]);
        // A Promise carries the trim point and only the slots above it.
        let effects = acceptor.handle(proposer(2), prepare(2, 2, 1));
        let [Message::Promise {
            accepted,
            trimmed_slot,
            next_from_slot,
            ..
        }] = &sends(&effects)[..]
        else {
            panic!("expected a Promise: {effects:?}")
        };
        assert_eq!(*trimmed_slot, 3);
        assert_eq!(*next_from_slot, None);
        assert_eq!(
            accepted.iter().map(|entry| entry.slot).collect::<Vec<_>>(),
            vec![4, 5]
        );
        // A learner asking for forgotten slots hears so first, then gets the rest.
        let effects = acceptor.handle(
            NodeId::learner(1),
            Message::SyncAccepted {
                from_slot: 1,
                to_slot: 10,
            },
        );
        let answers = sends(&effects);
        assert_eq!(answers[0], Message::Trimmed { trimmed_slot: 3 });
        assert!(matches!(&answers[1], Message::AcceptedValues { entries }
            if entries.iter().map(|entry| entry.slot).collect::<Vec<_>>() == vec![4, 5]));
        // The trim point survives recovery, and compaction keeps it.
        let records = acceptor.snapshot();
        assert_eq!(records[0], Record::Trimmed(3));
        assert_eq!(Acceptor::recover(1, records), acceptor);
    }

    #[test]
    fn a_trim_from_a_node_that_is_not_a_proposer_or_of_an_implausible_slot_is_refused() {
        let mut acceptor = Acceptor::new(1);
        acceptor.handle(proposer(1), accept(1, 1, 1, "v"));
        for (from, slot) in [
            (NodeId::learner(1), 1),
            (NodeId::client(1), 1),
            (proposer(1), u64::MAX),
        ] {
            assert!(acceptor
                .handle(from, Message::Trim { trimmed_slot: slot })
                .is_empty());
        }
        assert_eq!(acceptor.trimmed_slot(), 0);
        assert_eq!(acceptor.accepted_slot_count(), 1);
        assert_eq!(acceptor.alarms().len(), 3);
    }

    #[test]
    fn a_long_promise_comes_in_pages_of_bounded_bytes() {
        let mut acceptor = Acceptor::new(1);
        let large = "x".repeat(1024 * 1024);
        for slot in 1..=10 {
            acceptor.handle(
                proposer(1),
                Message::Accept {
                    ballot: Ballot::new(1, 1),
                    slot,
                    value: Value::Batch(vec![Command::put(
                        RequestId(u128::from(slot)),
                        "k",
                        large.clone(),
                    )]),
                },
            );
        }
        let mut from_slot = 1;
        let mut slots = Vec::new();
        let mut pages = 0;
        loop {
            let effects = acceptor.handle(proposer(2), prepare(2, 2, from_slot));
            let [Message::Promise {
                accepted,
                next_from_slot,
                ..
            }] = &sends(&effects)[..]
            else {
                panic!("expected a Promise")
            };
            pages += 1;
            let bytes: usize = accepted.iter().map(|entry| entry.value.size_bytes()).sum();
            assert!(
                bytes <= common::value::PAGE_BYTES_MAX,
                "{bytes} bytes in a page"
            );
            slots.extend(accepted.iter().map(|entry| entry.slot));
            match next_from_slot {
                Some(next) => from_slot = *next,
                None => break,
            }
        }
        assert_eq!(
            slots,
            (1..=10).collect::<Vec<_>>(),
            "every slot once, in order"
        );
        assert_eq!(pages, 4, "three values of 1 MiB a page");
        let effects = acceptor.handle(
            NodeId::learner(1),
            Message::SyncAccepted {
                from_slot: 1,
                to_slot: 11,
            },
        );
        assert!(
            matches!(&sends(&effects)[..], [Message::AcceptedValues { entries }]
            if entries.len() == 3)
        );
    }
}
