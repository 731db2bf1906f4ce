//! Writes and reads: the attempts of one request until it is answered or its deadline
//! passes.
//!
//! A write, and the read index of a strong read, go to the proposer believed to lead (a
//! hint just received first, then the believed leader unless it just failed, then the next
//! connected proposer). A refusal with a hint is followed, the first at once and later ones
//! after a pause (hints that keep pointing around mean an election is running); a refusal
//! without one, a silent attempt or a disconnection moves on after a pause. A write keeps
//! its request id on every attempt: learners apply a request id at most once, so retries,
//! ours or the caller's, are exactly-once. Reads go to a learner that has applied the
//! read's `min_slot`, each read starting at a different learner to spread the load.

use super::{
    choose, Answer, AnswerKey, ClientCore, Consistency, PlantedBug, ReadOutcome, Request, Token,
    Unavailable,
};
use common::ballot::Slot;
use common::message::Message;
use common::node::{NodeId, Role};
use common::value::RequestId;
use rand::Rng;

/// One attempt of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Attempt {
    /// The next attempt goes out at `retry_at`.
    Idle { retry_at: u64 },
    /// Waiting for `target` to answer `key` until `until`.
    Waiting {
        target: NodeId,
        key: AnswerKey,
        until: u64,
    },
}

/// Counts what went wrong, for the 503 message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Attempts {
    refused: u32,
    silent: u32,
    unsent: u32,
}

impl Attempts {
    fn summary(&self, role: &str) -> String {
        let sent = self.refused + self.silent;
        if sent == 0 && self.unsent == 0 {
            return format!("no {role} is connected");
        }
        format!(
            "{sent} attempts: {} refused, {} unanswered; {} could not be sent",
            self.refused, self.silent, self.unsent
        )
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Stage {
    /// Asking the leader: a write, or the read index of a strong read.
    Leader {
        attempt: Attempt,
        preferred: Option<u32>,
        last_tried: Option<u32>,
        hints_followed: u32,
        attempts: Attempts,
    },
    /// Reading at a learner that applied `min_slot`.
    Learner {
        min_slot: Slot,
        attempt: Attempt,
        last_tried: Option<u32>,
        /// For a strong read: learner attempts left before asking the leader for a fresh
        /// read index. If no learner reaches the index, the leader that named it may have
        /// been deposed before deciding every slot up to it, and its successor decides
        /// those slots only with its next writes: rather than wait for writes that may
        /// never come, the read asks for a fresh index, just as valid for it (found by
        /// the simulation).
        attempts_left: Option<usize>,
        attempts: Attempts,
    },
}

impl Stage {
    fn leader(retry_at: u64) -> Stage {
        Stage::Leader {
            attempt: Attempt::Idle { retry_at },
            preferred: None,
            last_tried: None,
            hints_followed: 0,
            attempts: Attempts::default(),
        }
    }

    fn learner(min_slot: Slot, retry_at: u64, attempts_left: Option<usize>) -> Stage {
        Stage::Learner {
            min_slot,
            attempt: Attempt::Idle { retry_at },
            last_tried: None,
            attempts_left,
            attempts: Attempts::default(),
        }
    }

    fn attempt(&self) -> Attempt {
        match self {
            Stage::Leader { attempt, .. } | Stage::Learner { attempt, .. } => *attempt,
        }
    }

    fn set_attempt(&mut self, next: Attempt) {
        match self {
            Stage::Leader { attempt, .. } | Stage::Learner { attempt, .. } => *attempt = next,
        }
    }

    fn attempts_mut(&mut self) -> &mut Attempts {
        match self {
            Stage::Leader { attempts, .. } | Stage::Learner { attempts, .. } => attempts,
        }
    }
}

/// A running request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Pending {
    request: Request,
    /// Given up at this tick (None: runs until answered).
    pub(super) deadline: Option<u64>,
    stage: Stage,
}

impl Pending {
    /// The answer the running attempt waits for.
    pub(super) fn waiting_key(&self) -> Option<AnswerKey> {
        match self.stage.attempt() {
            Attempt::Waiting { key, .. } => Some(key),
            Attempt::Idle { .. } => None,
        }
    }

    /// Whether the running attempt waits for `node`.
    pub(super) fn waits_on(&self, node: NodeId) -> bool {
        matches!(self.stage.attempt(), Attempt::Waiting { target, .. } if target == node)
    }

    /// Whether something must happen at tick `now`: the deadline, an attempt's timeout, or
    /// the end of a pause.
    pub(super) fn is_due(&self, now: u64) -> bool {
        self.deadline.is_some_and(|deadline| now >= deadline)
            || match self.stage.attempt() {
                Attempt::Idle { retry_at } => now >= retry_at,
                Attempt::Waiting { until, .. } => now >= until,
            }
    }
}

/// How a proposer answered a write or a read index.
enum LeaderVerdict {
    Granted(Slot),
    /// The write was placed in no slot, for this reason: a definite failure.
    Failed(String),
    Refused(Option<u32>),
    Unrelated,
}

fn leader_verdict(message: &Message) -> LeaderVerdict {
    match message {
        Message::WriteDecided { slot, .. } | Message::ReadIndexGranted { slot, .. } => {
            LeaderVerdict::Granted(*slot)
        }
        Message::WriteRefused { leader_hint, .. }
        | Message::ReadIndexRefused { leader_hint, .. } => LeaderVerdict::Refused(*leader_hint),
        Message::WriteFailed { reason, .. } => LeaderVerdict::Failed(reason.clone()),
        _ => LeaderVerdict::Unrelated,
    }
}

impl ClientCore {
    pub(super) fn start_request(&mut self, token: Token, request: Request) {
        let now = self.now;
        let stage = match &request {
            Request::Write { .. } => Stage::leader(now),
            Request::Read {
                consistency: Consistency::Strong,
                ..
            } if self.has_bug(PlantedBug::StrongReadSkipsReadIndex) => Stage::learner(0, now, None),
            Request::Read {
                consistency: Consistency::Strong,
                ..
            } => Stage::leader(now),
            Request::Read {
                consistency: Consistency::Session,
                session,
                ..
            } => match session
                .as_deref()
                .and_then(|session| self.sessions.slot(session))
            {
                Some(_) if self.has_bug(PlantedBug::SessionReadIgnoresItsSlot) => {
                    Stage::learner(0, now, None)
                }
                Some(slot) => Stage::learner(slot, now, None),
                // A session this process does not know (it may have restarted): a strong
                // read observes everything the session could have seen.
                None => Stage::leader(now),
            },
            Request::Read {
                consistency: Consistency::Eventual,
                ..
            } => Stage::learner(0, now, None),
        };
        // A request starts between two ticks: one tick more makes sure it runs for at
        // least the whole timeout before it is given up.
        let deadline = Some(now + self.options.request_timeout_ticks + 1);
        let pending = Pending {
            request,
            deadline,
            stage,
        };
        if let Some(replaced) = self.requests.insert(token, pending) {
            if let Some(key) = replaced.waiting_key() {
                self.stop_waiting(key, token);
            }
        }
        self.drive(token);
    }

    /// Does what is due for request `token` now: gives it up at its deadline, ends an
    /// attempt that timed out, or sends the next attempt once its pause is over.
    pub(super) fn drive(&mut self, token: Token) {
        let now = self.now;
        let Some(pending) = self.requests.get(&token) else {
            return;
        };
        if pending.deadline.is_some_and(|deadline| now >= deadline) {
            let reason = self.give_up_reason(pending);
            self.finish(
                token,
                Answer::Unavailable(Unavailable {
                    reason,
                    placed_nowhere: false,
                }),
            );
            return;
        }
        match pending.stage.attempt() {
            Attempt::Waiting { until, .. } if now >= until => self.attempt_unanswered(token),
            Attempt::Idle { retry_at } if now >= retry_at => self.send_attempt(token),
            _ => {}
        }
    }

    fn give_up_reason(&self, pending: &Pending) -> String {
        let milliseconds = self.request_timeout_milliseconds();
        match (&pending.stage, &pending.request) {
            (Stage::Leader { attempts, .. }, Request::Write { .. }) => format!(
                "no proposer decided the write within {milliseconds} ms ({})",
                attempts.summary("proposer")
            ),
            (Stage::Leader { attempts, .. }, Request::Read { .. }) => format!(
                "no leader granted a read index within {milliseconds} ms ({})",
                attempts.summary("proposer")
            ),
            (
                Stage::Learner {
                    min_slot, attempts, ..
                },
                Request::Write { .. },
            ) => format!(
                "the write was decided in slot {min_slot}, but no learner said at which \
                 revision it took effect within {milliseconds} ms ({}); retrying with the same \
                 request_id is safe",
                attempts.summary("learner")
            ),
            (
                Stage::Learner {
                    min_slot, attempts, ..
                },
                Request::Read { .. },
            ) => format!(
                "no learner answered the read at slot {min_slot} or later within \
                 {milliseconds} ms ({})",
                attempts.summary("learner")
            ),
        }
    }

    /// Ends request `token` with `answer`.
    fn finish(&mut self, token: Token, answer: Answer) {
        if let Some(pending) = self.requests.remove(&token) {
            if let Some(key) = pending.waiting_key() {
                self.stop_waiting(key, token);
            }
        }
        self.answer(token, answer);
    }

    fn send_attempt(&mut self, token: Token) {
        let Some(pending) = self.requests.get(&token) else {
            return;
        };
        match pending.stage {
            Stage::Leader { .. } => self.send_to_leader(token),
            Stage::Learner { .. } => self.send_to_learner(token),
        }
    }

    fn send_to_leader(&mut self, token: Token) {
        let retry_pause = self.retry_at();
        let believed_leader = self.believed_leader;
        let random_id = self
            .has_bug(PlantedBug::RetryTakesNewRequestId)
            .then(|| RequestId(self.random.random()));
        let Some(pending) = self.requests.get_mut(&token) else {
            return;
        };
        let Stage::Leader {
            attempt,
            preferred,
            last_tried,
            attempts,
            ..
        } = &mut pending.stage
        else {
            return;
        };
        let target = preferred
            .take()
            .or_else(|| believed_leader.filter(|id| Some(*id) != *last_tried));
        let Some(proposer) = choose(&self.proposers, target, *last_tried) else {
            *attempt = Attempt::Idle {
                retry_at: retry_pause,
            };
            return;
        };
        let retrying = last_tried.is_some() || *attempts != Attempts::default();
        *last_tried = Some(proposer.id);
        let (key, message) = match &mut pending.request {
            Request::Write { command, .. } => {
                if let (Some(random_id), true) = (random_id, retrying) {
                    command.request_id = random_id;
                }
                (
                    AnswerKey::Write(command.request_id),
                    Message::Write {
                        command: command.clone(),
                        client: self.me,
                    },
                )
            }
            Request::Read { .. } => {
                let read_id = self.next_id;
                self.next_id += 1;
                (AnswerKey::Read(read_id), Message::ReadIndex { read_id })
            }
        };
        *attempt = Attempt::Waiting {
            target: proposer,
            key,
            until: self.now + self.options.attempt_timeout_ticks,
        };
        self.wait_for(key, token);
        self.send(proposer, message);
    }

    fn send_to_learner(&mut self, token: Token) {
        let retry_pause = self.retry_at();
        let Some(pending) = self.requests.get_mut(&token) else {
            return;
        };
        let Stage::Learner {
            min_slot,
            attempt,
            last_tried,
            ..
        } = &mut pending.stage
        else {
            return;
        };
        let learner = match last_tried {
            Some(_) => choose(&self.learners, None, *last_tried),
            None if self.learners.is_empty() => None,
            None => {
                // Start each read at a different learner to spread the load.
                let turn = self.learner_cursor;
                self.learner_cursor = self.learner_cursor.wrapping_add(1);
                Some(self.learners[turn % self.learners.len()])
            }
        };
        let Some(learner) = learner else {
            *attempt = Attempt::Idle {
                retry_at: retry_pause,
            };
            return;
        };
        *last_tried = Some(learner.id);
        let read_id = self.next_id;
        self.next_id += 1;
        let key = AnswerKey::Read(read_id);
        let min_slot = *min_slot;
        *attempt = Attempt::Waiting {
            target: learner,
            key,
            until: self.now + self.options.attempt_timeout_ticks,
        };
        let read = match &pending.request {
            Request::Read { key, .. } => Message::Read {
                read_id,
                key: key.clone(),
                min_slot,
            },
            Request::Write { command, .. } => Message::Outcome {
                read_id,
                request_id: command.request_id,
                min_slot,
            },
        };
        self.wait_for(key, token);
        self.send(learner, read);
    }

    /// An answer keyed `key` arrived: every request waiting for it gets it.
    pub(super) fn on_answer(&mut self, key: AnswerKey, from: NodeId, message: Message) {
        let Some(mut tokens) = self.waiting.remove(&key) else {
            return; // an answer nobody waits for (say, to an attempt that timed out)
        };
        let last = tokens.pop();
        for token in tokens {
            self.on_request_answer(token, from, message.clone());
        }
        if let Some(token) = last {
            self.on_request_answer(token, from, message);
        }
    }

    fn on_request_answer(&mut self, token: Token, from: NodeId, message: Message) {
        let Some(pending) = self.requests.get(&token) else {
            return;
        };
        let Attempt::Waiting { target, .. } = pending.stage.attempt() else {
            return;
        };
        match pending.stage {
            Stage::Leader { .. } => self.on_leader_answer(token, target, from, message),
            Stage::Learner { min_slot, .. } => self.on_learner_answer(token, min_slot, message),
        }
    }

    fn on_leader_answer(&mut self, token: Token, target: NodeId, from: NodeId, message: Message) {
        let now = self.now;
        let retry_pause = self.retry_at();
        let learners = self.learners.len().max(1);
        match leader_verdict(&message) {
            LeaderVerdict::Granted(slot) => {
                if from.role == Role::Proposer {
                    self.believed_leader = Some(from.id);
                }
                // A write decided in `slot` is asked about at a learner that applied it
                // (a retry decided twice took effect at the first of its slots, which
                // only a learner knows); a strong read reads there.
                let is_write = matches!(
                    self.requests.get(&token).map(|pending| &pending.request),
                    Some(Request::Write { .. })
                );
                if is_write && self.has_bug(PlantedBug::WriteAnswersTheDecidedSlot) {
                    return self.finish(token, Answer::Written { revision: slot });
                }
                let pending = self.requests.get_mut(&token).expect("a running request");
                pending.stage = Stage::learner(slot, now, Some(learners));
                self.send_to_learner(token);
            }
            LeaderVerdict::Failed(reason) => {
                if from.role == Role::Proposer {
                    self.believed_leader = Some(from.id);
                }
                let failure = Unavailable {
                    reason,
                    placed_nowhere: true,
                };
                self.finish(token, Answer::Unavailable(failure));
            }
            LeaderVerdict::Refused(Some(hint)) => {
                self.believed_leader = Some(hint);
                let pending = self.requests.get_mut(&token).expect("a running request");
                let Stage::Leader {
                    attempt,
                    preferred,
                    hints_followed,
                    attempts,
                    ..
                } = &mut pending.stage
                else {
                    return;
                };
                attempts.refused += 1;
                *preferred = Some(hint);
                *hints_followed += 1;
                // A first hint is followed at once; hints that keep pointing around (an
                // election in progress) are followed after a pause.
                let retry_at = if hint == target.id || *hints_followed > 1 {
                    retry_pause
                } else {
                    now
                };
                *attempt = Attempt::Idle { retry_at };
                if retry_at <= now {
                    self.send_to_leader(token);
                }
            }
            LeaderVerdict::Refused(None) | LeaderVerdict::Unrelated => {
                self.forget_leader(target.id);
                let pending = self.requests.get_mut(&token).expect("a running request");
                pending.stage.attempts_mut().refused += 1;
                pending.stage.set_attempt(Attempt::Idle {
                    retry_at: retry_pause,
                });
            }
        }
    }

    fn on_learner_answer(&mut self, token: Token, min_slot: Slot, message: Message) {
        // A read is answered by a ReadReply, a write by an OutcomeReply; the other is no
        // answer to it.
        let writing = matches!(
            self.requests.get(&token).map(|pending| &pending.request),
            Some(Request::Write { .. })
        );
        match message {
            Message::ReadReply {
                value,
                applied_slot,
                ..
            } if applied_slot >= min_slot && !writing => {
                if let Some(Request::Read {
                    session: Some(session),
                    ..
                }) = self.requests.get(&token).map(|pending| &pending.request)
                {
                    let session = session.clone();
                    self.sessions.observe(&session, applied_slot);
                }
                self.finish(
                    token,
                    Answer::Read(ReadOutcome {
                        value,
                        applied_slot,
                    }),
                );
            }
            Message::OutcomeReply {
                outcome: Some(applied),
                applied_slot,
                ..
            } if applied_slot >= min_slot && writing => {
                let Some(Request::Write { command, session }) =
                    self.requests.get(&token).map(|pending| &pending.request)
                else {
                    return self.learner_attempt_failed(token);
                };
                // The first slot that holds a command applies it, so an honest answer
                // names a slot in [1, min_slot]; anything else is not believed.
                let believable = applied.request_id == command.request_id
                    && (1..=min_slot).contains(&applied.slot);
                let answer = if !believable {
                    return self.learner_attempt_failed(token);
                } else if applied.is_retry_of(command.operation.fingerprint()) {
                    if let Some(session) = session.clone() {
                        self.sessions.observe(&session, applied.slot);
                    }
                    Answer::Written {
                        revision: applied.slot,
                    }
                } else {
                    Answer::RequestIdTaken {
                        revision: applied.slot,
                    }
                };
                self.finish(token, answer);
            }
            Message::OutcomeReply {
                outcome: None,
                applied_slot,
                ..
            } if applied_slot >= min_slot && writing => {
                // Decided, yet forgotten by a learner that applied its slot: more than the
                // exactly-once window of commands came since (every learner forgets the
                // same ids at the same slot). Sending it again would apply it twice.
                let reason = format!(
                    "the write was decided in slot {min_slot}, but the learners no longer \
                     remember at which revision it took effect (over a million commands were \
                     applied since); it is not sent again"
                );
                self.finish(
                    token,
                    Answer::Unavailable(Unavailable {
                        reason,
                        placed_nowhere: false,
                    }),
                );
            }
            // A learner must not answer below min_slot; such an answer could be stale, so
            // it is not used. A ReadTimedOut: that learner did not reach min_slot in time.
            _ => {
                if let Some(pending) = self.requests.get_mut(&token) {
                    pending.stage.attempts_mut().refused += 1;
                }
                self.learner_attempt_failed(token);
            }
        }
    }

    /// The running attempt of `token` timed out, or its node disconnected.
    pub(super) fn attempt_unanswered(&mut self, token: Token) {
        let retry_pause = self.retry_at();
        let Some(pending) = self.requests.get_mut(&token) else {
            return;
        };
        let Attempt::Waiting { target, key, .. } = pending.stage.attempt() else {
            return;
        };
        pending.stage.attempts_mut().silent += 1;
        self.stop_waiting(key, token);
        match self.requests[&token].stage {
            Stage::Leader { .. } => {
                self.forget_leader(target.id);
                let pending = self.requests.get_mut(&token).expect("a running request");
                pending.stage.set_attempt(Attempt::Idle {
                    retry_at: retry_pause,
                });
            }
            Stage::Learner { .. } => self.learner_attempt_failed(token),
        }
    }

    /// The running attempt of `token` could not be sent: try again after a pause.
    pub(super) fn attempt_unsent(&mut self, token: Token) {
        let retry_pause = self.retry_at();
        let Some(pending) = self.requests.get_mut(&token) else {
            return;
        };
        let Attempt::Waiting { key, .. } = pending.stage.attempt() else {
            return;
        };
        pending.stage.attempts_mut().unsent += 1;
        pending.stage.set_attempt(Attempt::Idle {
            retry_at: retry_pause,
        });
        self.stop_waiting(key, token);
    }

    /// A learner did not answer a read usefully: try the next learner after a pause, or,
    /// for a strong read that tried every learner once, ask for a fresh read index.
    fn learner_attempt_failed(&mut self, token: Token) {
        let retry_pause = self.retry_at();
        let Some(pending) = self.requests.get_mut(&token) else {
            return;
        };
        if let Attempt::Waiting { key, .. } = pending.stage.attempt() {
            self.stop_waiting(key, token);
        }
        let pending = self.requests.get_mut(&token).expect("a running request");
        if let Stage::Learner {
            attempts_left: Some(attempts_left),
            ..
        } = &mut pending.stage
        {
            *attempts_left = attempts_left.saturating_sub(1);
            if *attempts_left == 0 {
                pending.stage = Stage::leader(retry_pause);
                return;
            }
        }
        pending.stage.set_attempt(Attempt::Idle {
            retry_at: retry_pause,
        });
    }

    /// Stops believing `proposer` leads after it refused without a hint or fell silent.
    fn forget_leader(&mut self, proposer: u32) {
        if self.believed_leader == Some(proposer) {
            self.believed_leader = None;
        }
    }
}
