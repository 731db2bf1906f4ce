//! What the simulated clients did and saw: the history the end-of-run checks judge.
//!
//! Times are the simulation's event clock (one number per handled event, so the order of
//! any two events is known exactly), ticks are simulated time.

use common::ballot::Slot;
use common::value::RequestId;

/// The read levels of the client API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Consistency {
    /// Read index at the leader, then a learner that applied it: linearizable.
    Strong,
    /// A learner that applied the session's highest written or read slot.
    Session,
    /// Any learner, at once.
    Eventual,
}

/// What a client asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// Set `key` to `value` (unique per write), with a request id kept across retries.
    Write {
        /// The key.
        key: String,
        /// The value, never written by any other operation.
        value: String,
        /// The same on every attempt.
        request_id: RequestId,
    },
    /// Read `key`.
    Read {
        /// The key.
        key: String,
        /// The read level.
        consistency: Consistency,
    },
}

impl Request {
    /// The key the request is about.
    pub fn key(&self) -> &str {
        match self {
            Request::Write { key, .. } | Request::Read { key, .. } => key,
        }
    }
}

/// How an operation ended.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Still running.
    Pending,
    /// The write took effect at revision `slot`.
    Written {
        /// The revision the acknowledgement named.
        slot: Slot,
    },
    /// The read returned `value` from a learner that had applied `applied_slot`.
    Read {
        /// The value (None: never written).
        value: Option<String>,
        /// The value's mod revision, as the read reported it.
        mod_revision: Option<Slot>,
        /// The answering learner's applied slot.
        applied_slot: Slot,
    },
    /// The client gave up at its deadline: a write may or may not take effect.
    Unknown,
    /// The write was refused as reusing the request id of a command applied at
    /// `revision`: never right in the simulation, whose clients never reuse one.
    RequestIdTaken {
        /// The revision the answer named.
        revision: Slot,
    },
}

/// One client operation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Operation {
    /// The client (and session) that ran it.
    pub client: u32,
    /// What it asked.
    pub request: Request,
    /// Event time of the invocation.
    pub invoked_at: u64,
    /// Tick of the invocation.
    pub invoked_tick: u64,
    /// Event time of the answer, if one came.
    pub completed_at: Option<u64>,
    /// Tick of the answer or of giving up.
    pub completed_tick: Option<u64>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Every operation of a run, in invocation order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct History {
    /// The operations.
    pub operations: Vec<Operation>,
}

impl History {
    /// Records the start of an operation; returns its index.
    pub fn invoke(&mut self, client: u32, request: Request, time: u64, tick: u64) -> usize {
        self.operations.push(Operation {
            client,
            request,
            invoked_at: time,
            invoked_tick: tick,
            completed_at: None,
            completed_tick: None,
            outcome: Outcome::Pending,
        });
        self.operations.len() - 1
    }

    /// Records the answer to operation `index`.
    pub fn complete(&mut self, index: usize, outcome: Outcome, time: u64, tick: u64) {
        let operation = &mut self.operations[index];
        assert_eq!(
            operation.outcome,
            Outcome::Pending,
            "an operation completes once"
        );
        operation.completed_at = Some(time);
        operation.completed_tick = Some(tick);
        operation.outcome = outcome;
    }

    /// Records that the client gave up on operation `index` at `tick`.
    pub fn give_up(&mut self, index: usize, tick: u64) {
        let operation = &mut self.operations[index];
        assert_eq!(
            operation.outcome,
            Outcome::Pending,
            "an operation ends once"
        );
        operation.completed_tick = Some(tick);
        operation.outcome = Outcome::Unknown;
    }

    /// Counts operations by how they ended: (acknowledged writes, writes of unknown
    /// outcome, completed reads per level [strong, session, eventual], reads given up).
    pub fn counts(&self) -> HistoryCounts {
        let mut counts = HistoryCounts::default();
        for operation in &self.operations {
            match (&operation.request, &operation.outcome) {
                (Request::Write { .. }, Outcome::Written { .. }) => counts.writes_acknowledged += 1,
                (Request::Write { .. }, _) => counts.writes_unknown += 1,
                (Request::Read { consistency, .. }, Outcome::Read { .. }) => match consistency {
                    Consistency::Strong => counts.strong_reads += 1,
                    Consistency::Session => counts.session_reads += 1,
                    Consistency::Eventual => counts.eventual_reads += 1,
                },
                (Request::Read { .. }, _) => counts.reads_given_up += 1,
            }
        }
        counts
    }
}

/// Operation counts of a history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct HistoryCounts {
    /// Writes the cluster acknowledged.
    pub writes_acknowledged: u64,
    /// Writes whose client gave up (outcome unknown).
    pub writes_unknown: u64,
    /// Strong reads answered.
    pub strong_reads: u64,
    /// Session reads answered.
    pub session_reads: u64,
    /// Eventual reads answered.
    pub eventual_reads: u64,
    /// Reads whose client gave up.
    pub reads_given_up: u64,
}
