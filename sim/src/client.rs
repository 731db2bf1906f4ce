//! A simulated client API node: the same protocol as `client/src/cluster.rs`, counted in
//! ticks instead of milliseconds.
//!
//! - A write goes to the proposer believed to lead, with a request id kept on every
//!   attempt; a refusal with a hint is followed (the first at once, later ones after a
//!   pause), a refusal without one or a silent attempt moves to another proposer. At the
//!   deadline the client gives up and the write's outcome is unknown.
//! - A strong read asks the leader for a read index (a fresh read id per attempt), then
//!   reads at a learner with `min_slot` = that index. A session read reads at a learner
//!   with `min_slot` = the session's highest written or read slot (a session not known yet
//!   reads strongly, as the API does). An eventual read reads with `min_slot` 0.
//!
//! Each client runs one operation at a time (a Jepsen "process") and is its own session.

use crate::history::{Consistency, History, Outcome, Request};
use crate::network::Envelope;
use common::ballot::Slot;
use common::message::Message;
use common::node::NodeId;
use common::value::{Command, RequestId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

/// A client's timing, in ticks.
#[derive(Clone, Copy, Debug)]
pub struct ClientTiming {
    /// The longest wait for one node's answer before trying another (ATTEMPT_TIMEOUT).
    pub attempt_timeout_ticks: u64,
    /// The longest an operation runs before the client gives up (REQUEST_TIMEOUT).
    pub request_timeout_ticks: u64,
    /// The pause before a retry, `[low, high]`.
    pub retry_pause_ticks: (u64, u64),
    /// The longest pause between two operations.
    pub think_ticks_max: u64,
}

/// What a client sees of the cluster when it acts.
pub struct View<'a> {
    /// The tick.
    pub now: u64,
    /// The event time.
    pub time: u64,
    /// Proposers the client is connected to (not crashed), by id.
    pub proposers: &'a [u32],
    /// Learners the client is connected to, by id.
    pub learners: &'a [u32],
}

#[derive(Debug)]
enum Attempt {
    /// The next attempt goes out at `retry_at`.
    Idle { retry_at: u64 },
    /// Waiting for `target` to answer the attempt keyed `read_id` (0 for a write, whose
    /// key is its request id) until `until`.
    Waiting {
        target: u32,
        read_id: u64,
        until: u64,
    },
}

#[derive(Debug)]
enum Stage {
    /// Asking the leader: a write, or the read index of a strong read.
    Leader {
        attempt: Attempt,
        preferred: Option<u32>,
        last_tried: Option<u32>,
        hints_followed: u32,
    },
    /// Reading at a learner that applied `min_slot`.
    Learner {
        min_slot: Slot,
        attempt: Attempt,
        last_tried: Option<u32>,
        /// For a strong read: learner attempts left before asking the leader for a fresh
        /// read index (the slot it named may never be decided if that leader was deposed
        /// before deciding it; a fresh index is just as valid for this read).
        attempts_left: Option<usize>,
    },
}

#[derive(Debug)]
struct Pending {
    operation: usize,
    request: Request,
    deadline: Option<u64>,
    stage: Stage,
}

/// One simulated client API node with its session.
pub struct Client {
    /// Its id (node `client<id>`).
    pub id: u32,
    node: NodeId,
    timing: ClientTiming,
    believed_leader: Option<u32>,
    /// The session's highest written or read slot; None until the session wrote or read.
    session_slot: Option<Slot>,
    next_read_id: u64,
    writes_issued: u64,
    learner_cursor: usize,
    idle_until: u64,
    pending: Option<Pending>,
    /// Requests to run before any random one (the final reads).
    queued: VecDeque<Request>,
}

impl Client {
    /// Client `id` with `timing`.
    pub fn new(id: u32, timing: ClientTiming) -> Self {
        Client {
            id,
            node: NodeId::client(id),
            timing,
            believed_leader: None,
            session_slot: None,
            next_read_id: 1,
            writes_issued: 0,
            learner_cursor: id as usize,
            idle_until: 0,
            pending: None,
            queued: VecDeque::new(),
        }
    }

    /// The proposer this client believes leads, if any.
    pub fn believed_leader(&self) -> Option<u32> {
        self.believed_leader
    }

    /// Whether an operation is running.
    pub fn is_busy(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the client has nothing running and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.pending.is_none() && self.queued.is_empty()
    }

    /// Lets the running operation take as long as it needs (faults have stopped: it must
    /// now complete, which the liveness check measures).
    pub fn remove_deadline(&mut self) {
        if let Some(pending) = &mut self.pending {
            pending.deadline = None;
        }
    }

    /// The client API process crashed and restarted: its running operation ends without an
    /// answer (a write's outcome is unknown), and it forgets its sessions and the leader.
    /// A session it forgot reads strongly next time, which observes at least as much.
    pub fn restart(&mut self, history: &mut History, now: u64) {
        if let Some(pending) = self.pending.take() {
            history.give_up(pending.operation, now);
        }
        self.session_slot = None;
        self.believed_leader = None;
        self.idle_until = now;
    }

    /// Queues `request` to run next.
    pub fn queue(&mut self, request: Request) {
        self.queued.push_back(request);
    }

    /// A random operation over `keys` keys: 40% writes, 30% strong reads, 15% session
    /// reads, 15% eventual reads.
    pub fn random_request(&mut self, keys: u32, random: &mut ChaCha8Rng) -> Request {
        let key = format!("k{}", random.random_range(0..keys));
        match random.random_range(0..100) {
            0..40 => {
                self.writes_issued += 1;
                Request::Write {
                    key,
                    value: format!("c{}.{}", self.id, self.writes_issued),
                    request_id: RequestId((u128::from(self.id) << 64) | self.writes_issued as u128),
                }
            }
            40..70 => Request::Read {
                key,
                consistency: Consistency::Strong,
            },
            70..85 => Request::Read {
                key,
                consistency: Consistency::Session,
            },
            _ => Request::Read {
                key,
                consistency: Consistency::Eventual,
            },
        }
    }

    /// Advances the client to tick `view.now`: gives up on an operation past its
    /// deadline, retries attempts that timed out or were paused, and starts a queued or
    /// (if `workload`) a random operation when idle.
    pub fn tick(
        &mut self,
        view: &View,
        workload: Option<u32>,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        if let Some(pending) = &self.pending {
            if pending
                .deadline
                .is_some_and(|deadline| view.now >= deadline)
            {
                history.give_up(pending.operation, view.now);
                self.pending = None;
                self.rest(view.now, random);
            }
        }
        if self.pending.is_none() && view.now >= self.idle_until {
            let request = match (self.queued.pop_front(), workload) {
                (Some(request), _) => Some(request),
                (None, Some(keys)) => Some(self.random_request(keys, random)),
                (None, None) => None,
            };
            if let Some(request) = request {
                self.start(request, view, history);
            }
        }
        self.drive(view, random, outbox);
    }

    fn start(&mut self, request: Request, view: &View, history: &mut History) {
        let operation = history.invoke(self.id, request.clone(), view.time, view.now);
        let stage = match (&request, self.session_slot) {
            (
                Request::Read {
                    consistency: Consistency::Session,
                    ..
                },
                Some(slot),
            ) => Self::learner_stage(slot, view.now, None),
            (
                Request::Read {
                    consistency: Consistency::Eventual,
                    ..
                },
                _,
            ) => Self::learner_stage(0, view.now, None),
            // Writes, strong reads, and session reads of a session not known yet.
            _ => Self::leader_stage(view.now),
        };
        self.pending = Some(Pending {
            operation,
            request,
            deadline: Some(view.now + self.timing.request_timeout_ticks),
            stage,
        });
    }

    fn learner_stage(min_slot: Slot, now: u64, attempts_left: Option<usize>) -> Stage {
        Stage::Learner {
            min_slot,
            attempt: Attempt::Idle { retry_at: now },
            last_tried: None,
            attempts_left,
        }
    }

    fn leader_stage(retry_at: u64) -> Stage {
        Stage::Leader {
            attempt: Attempt::Idle { retry_at },
            preferred: None,
            last_tried: None,
            hints_followed: 0,
        }
    }

    fn rest(&mut self, now: u64, random: &mut ChaCha8Rng) {
        self.idle_until = now + random.random_range(0..=self.timing.think_ticks_max);
    }

    fn pause(&self, now: u64, random: &mut ChaCha8Rng) -> u64 {
        let (low, high) = self.timing.retry_pause_ticks;
        now + random.random_range(low..=high)
    }

    /// Sends the next attempt if one is due, and times out a silent one.
    fn drive(&mut self, view: &View, random: &mut ChaCha8Rng, outbox: &mut Vec<Envelope>) {
        let retry_pause = self.pause(view.now, random);
        let Some(pending) = &mut self.pending else {
            return;
        };
        match &mut pending.stage {
            Stage::Leader {
                attempt,
                preferred,
                last_tried,
                ..
            } => match *attempt {
                Attempt::Waiting { target, until, .. } if view.now >= until => {
                    if self.believed_leader == Some(target) {
                        self.believed_leader = None;
                    }
                    *attempt = Attempt::Idle {
                        retry_at: retry_pause,
                    };
                }
                Attempt::Idle { retry_at } if view.now >= retry_at => {
                    let target = preferred.take().or_else(|| {
                        self.believed_leader
                            .filter(|leader| Some(*leader) != *last_tried)
                    });
                    let Some(proposer) = choose(view.proposers, target, *last_tried) else {
                        *attempt = Attempt::Idle {
                            retry_at: retry_pause,
                        };
                        return;
                    };
                    *last_tried = Some(proposer);
                    let (message, read_id) = match &pending.request {
                        Request::Write {
                            key,
                            value,
                            request_id,
                        } => (
                            Message::Write {
                                command: Command {
                                    request_id: *request_id,
                                    key: key.clone(),
                                    value: value.clone(),
                                },
                                client: self.node,
                            },
                            0,
                        ),
                        Request::Read { .. } => {
                            let read_id = self.next_read_id;
                            self.next_read_id += 1;
                            (Message::ReadIndex { read_id }, read_id)
                        }
                    };
                    outbox.push(Envelope {
                        from: self.node,
                        to: NodeId::proposer(proposer),
                        message,
                    });
                    *attempt = Attempt::Waiting {
                        target: proposer,
                        read_id,
                        until: view.now + self.timing.attempt_timeout_ticks,
                    };
                }
                _ => {}
            },
            Stage::Learner {
                min_slot,
                attempt,
                last_tried,
                ..
            } => match *attempt {
                Attempt::Waiting { until, .. } if view.now >= until => {
                    learner_attempt_failed(&mut pending.stage, retry_pause);
                }
                Attempt::Idle { retry_at } if view.now >= retry_at => {
                    let learner = match last_tried {
                        Some(_) => choose(view.learners, None, *last_tried),
                        None if view.learners.is_empty() => None,
                        None => {
                            self.learner_cursor += 1;
                            Some(view.learners[self.learner_cursor % view.learners.len()])
                        }
                    };
                    let Some(learner) = learner else {
                        *attempt = Attempt::Idle {
                            retry_at: retry_pause,
                        };
                        return;
                    };
                    *last_tried = Some(learner);
                    let read_id = self.next_read_id;
                    self.next_read_id += 1;
                    outbox.push(Envelope {
                        from: self.node,
                        to: NodeId::learner(learner),
                        message: Message::Read {
                            read_id,
                            key: pending.request.key().to_string(),
                            min_slot: *min_slot,
                        },
                    });
                    *attempt = Attempt::Waiting {
                        target: learner,
                        read_id,
                        until: view.now + self.timing.attempt_timeout_ticks,
                    };
                }
                _ => {}
            },
        }
    }

    /// Handles an answer from `from`. Answers nobody waits for are dropped, as the client
    /// API's mailbox does.
    pub fn on_message(
        &mut self,
        from: NodeId,
        message: Message,
        view: &View,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        let retry_pause = self.pause(view.now, random);
        let Some(pending) = &mut self.pending else {
            return;
        };
        // What the running attempt waits for; any other message is not for it.
        let (asked_leader, target, waiting_read_id) = match &pending.stage {
            Stage::Leader {
                attempt:
                    Attempt::Waiting {
                        target, read_id, ..
                    },
                ..
            } => (true, *target, *read_id),
            Stage::Learner {
                attempt:
                    Attempt::Waiting {
                        target, read_id, ..
                    },
                ..
            } => (false, *target, *read_id),
            _ => return,
        };
        let mut completed = None;
        if asked_leader {
            let ours = match (&pending.request, &message) {
                (
                    Request::Write { request_id, .. },
                    Message::WriteDecided { request_id: id, .. }
                    | Message::WriteRefused { request_id: id, .. },
                ) => id == request_id,
                (
                    Request::Read { .. },
                    Message::ReadIndexGranted { read_id, .. }
                    | Message::ReadIndexRefused { read_id, .. },
                ) => *read_id == waiting_read_id,
                _ => false,
            };
            if !ours {
                return;
            }
            match message {
                Message::WriteDecided { slot, .. } => {
                    self.believed_leader = Some(from.id);
                    self.session_slot = Some(self.session_slot.unwrap_or(0).max(slot));
                    completed = Some(Outcome::Written { slot });
                }
                Message::ReadIndexGranted { slot, .. } => {
                    self.believed_leader = Some(from.id);
                    let attempts = view.learners.len().max(1);
                    pending.stage = Self::learner_stage(slot, view.now, Some(attempts));
                }
                Message::WriteRefused {
                    leader_hint: Some(hint),
                    ..
                }
                | Message::ReadIndexRefused {
                    leader_hint: Some(hint),
                    ..
                } => {
                    self.believed_leader = Some(hint);
                    if let Stage::Leader {
                        attempt,
                        preferred,
                        hints_followed,
                        ..
                    } = &mut pending.stage
                    {
                        *preferred = Some(hint);
                        *hints_followed += 1;
                        // A first hint is followed at once; hints that keep pointing
                        // around (an election in progress) after a pause.
                        let retry_at = if hint == target || *hints_followed > 1 {
                            retry_pause
                        } else {
                            view.now
                        };
                        *attempt = Attempt::Idle { retry_at };
                    }
                }
                _ => {
                    if self.believed_leader == Some(target) {
                        self.believed_leader = None;
                    }
                    set_attempt(&mut pending.stage, retry_pause);
                }
            }
        } else {
            match message {
                Message::ReadReply {
                    read_id,
                    value,
                    applied_slot,
                } if read_id == waiting_read_id => {
                    let min_slot = match &pending.stage {
                        Stage::Learner { min_slot, .. } => *min_slot,
                        Stage::Leader { .. } => unreachable!("a learner was asked"),
                    };
                    if applied_slot >= min_slot {
                        completed = Some(Outcome::Read {
                            value,
                            applied_slot,
                        });
                    } else {
                        learner_attempt_failed(&mut pending.stage, retry_pause);
                    }
                }
                Message::ReadTimedOut { read_id, .. } if read_id == waiting_read_id => {
                    learner_attempt_failed(&mut pending.stage, retry_pause);
                }
                _ => return,
            }
        }
        if let Some(outcome) = completed {
            if let (
                Request::Read {
                    consistency: Consistency::Session,
                    ..
                },
                Outcome::Read { applied_slot, .. },
            ) = (&pending.request, &outcome)
            {
                self.session_slot = Some(self.session_slot.unwrap_or(0).max(*applied_slot));
            }
            history.complete(pending.operation, outcome, view.time, view.now);
            self.pending = None;
            self.rest(view.now, random);
            return;
        }
        self.drive(view, random, outbox);
    }
}

/// A learner did not answer a read in time: try the next learner at `retry_at`, or, for a
/// strong read that tried every learner, ask the leader for a fresh read index.
fn learner_attempt_failed(stage: &mut Stage, retry_at: u64) {
    if let Stage::Learner {
        attempts_left: Some(attempts_left),
        ..
    } = stage
    {
        *attempts_left = attempts_left.saturating_sub(1);
        if *attempts_left == 0 {
            *stage = Client::leader_stage(retry_at);
            return;
        }
    }
    set_attempt(stage, retry_at);
}

/// Makes the next attempt of `stage` go out at `retry_at`.
fn set_attempt(stage: &mut Stage, retry_at: u64) {
    match stage {
        Stage::Leader { attempt, .. } | Stage::Learner { attempt, .. } => {
            *attempt = Attempt::Idle { retry_at }
        }
    }
}

/// The node to try next, as the client API chooses: `preferred` if connected, else the
/// connected node after `last_tried` in id order (wrapping around), else the first.
fn choose(connected: &[u32], preferred: Option<u32>, last_tried: Option<u32>) -> Option<u32> {
    if let Some(id) = preferred.filter(|id| connected.contains(id)) {
        return Some(id);
    }
    let after = last_tried.unwrap_or(0);
    connected
        .iter()
        .find(|id| **id > after)
        .or_else(|| connected.first())
        .copied()
}
