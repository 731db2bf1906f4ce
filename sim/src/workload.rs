//! The simulated users of a client API node: random requests, think time, and what they
//! saw, recorded into the [`History`].
//!
//! The protocol of the client API node itself is the real one: each simulated client API
//! runs the production [`ClientCore`] (leader belief and hints, retries with one request
//! id, deadlines, the three read paths, the session table), fed the simulated network's
//! messages and links and ticked once per simulated tick. What stays here is the workload:
//! each client API serves one user that runs one operation at a time (a Jepsen "process")
//! in one session, thinks between operations, and records every invocation, answer and
//! give-up.

use crate::history::{Consistency, History, Outcome, Request};
use crate::network::Envelope;
use client::core::{self as client_core, Answer, ClientCore, ClientOptions, Effect};
use common::message::Message;
use common::node::NodeId;
use common::value::{Command, RequestId};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::VecDeque;

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

/// One simulated client API node (the real core) and its user.
pub struct Client {
    /// Its id (node `client<id>`).
    pub id: u32,
    node: NodeId,
    options: ClientOptions,
    start_core: Option<fn(&mut ClientCore)>,
    core: ClientCore,
    /// Times the process restarted (each start seeds its core differently).
    starts: u64,
    /// The proposers and learners the core was told are connected.
    linked: Vec<NodeId>,
    /// The longest pause between two operations.
    think_ticks_max: u64,
    writes_issued: u64,
    idle_until: u64,
    /// The history index of the running operation.
    running: Option<usize>,
    /// Requests to run before any random one (the final reads).
    queued: VecDeque<Request>,
}

impl Client {
    /// Client `id` whose core runs with `options` (`start_core` runs on every new core: the
    /// planted bugs), thinking up to `think_ticks_max` between operations.
    pub fn new(
        id: u32,
        options: ClientOptions,
        think_ticks_max: u64,
        start_core: Option<fn(&mut ClientCore)>,
    ) -> Self {
        let mut client = Client {
            id,
            node: NodeId::client(id),
            options,
            start_core,
            core: ClientCore::new(options),
            starts: 0,
            linked: Vec::new(),
            think_ticks_max,
            writes_issued: 0,
            idle_until: 0,
            running: None,
            queued: VecDeque::new(),
        };
        client.start_core();
        client
    }

    fn start_core(&mut self) {
        let options = ClientOptions {
            seed: self.options.seed ^ (self.starts << 48),
            ..self.options
        };
        self.core = ClientCore::new(options);
        if let Some(start) = self.start_core {
            start(&mut self.core);
        }
        self.linked.clear();
    }

    /// The session name of this client's user.
    fn session(&self) -> String {
        format!("session{}", self.id)
    }

    /// The proposer this client believes leads, if any.
    pub fn believed_leader(&self) -> Option<u32> {
        self.core.believed_leader()
    }

    /// Whether an operation is running.
    pub fn is_busy(&self) -> bool {
        self.running.is_some()
    }

    /// Whether the client has nothing running and nothing queued.
    pub fn is_idle(&self) -> bool {
        self.running.is_none() && self.queued.is_empty()
    }

    /// Lets the running operation take as long as it needs (faults have stopped: it must
    /// now complete, which the liveness check measures).
    pub fn remove_deadline(&mut self) {
        self.core.lift_deadlines();
    }

    /// The client API process crashed and restarted: its running operation ends without an
    /// answer (a write's outcome is unknown), and a new core knows no session and no
    /// leader. A session it forgot reads strongly next time, which observes at least as
    /// much.
    pub fn restart(&mut self, history: &mut History, now: u64) {
        if let Some(operation) = self.running.take() {
            history.give_up(operation, now);
        }
        self.starts += 1;
        self.start_core();
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

    /// Advances the client to tick `view.now`: the core ticks (giving up what passed its
    /// deadline, retrying what timed out or paused), then an idle user starts a queued or
    /// (if `workload`) a random operation.
    pub fn tick(
        &mut self,
        view: &View,
        workload: Option<u32>,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        self.link(view, history, random, outbox);
        let effects = self.core.tick();
        self.carry_out(effects, view, history, random, outbox);
        if self.running.is_none() && view.now >= self.idle_until {
            let request = match (self.queued.pop_front(), workload) {
                (Some(request), _) => Some(request),
                (None, Some(keys)) => Some(self.random_request(keys, random)),
                (None, None) => None,
            };
            if let Some(request) = request {
                self.start(request, view, history, random, outbox);
            }
        }
    }

    /// Hands a message from `from` to the core.
    pub fn on_message(
        &mut self,
        from: NodeId,
        message: Message,
        view: &View,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        self.link(view, history, random, outbox);
        let effects = self.core.on_message(from, message);
        self.carry_out(effects, view, history, random, outbox);
    }

    /// Tells the core which connections closed or opened since it last looked: a crashed
    /// node's connections close, a restarted one's open again.
    fn link(
        &mut self,
        view: &View,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        let now_linked: Vec<NodeId> = view
            .proposers
            .iter()
            .map(|id| NodeId::proposer(*id))
            .chain(view.learners.iter().map(|id| NodeId::learner(*id)))
            .collect();
        if now_linked == self.linked {
            return;
        }
        let mut effects = Vec::new();
        for node in self.linked.iter().filter(|node| !now_linked.contains(node)) {
            effects.extend(self.core.on_disconnected(*node));
        }
        for node in now_linked.iter().filter(|node| !self.linked.contains(node)) {
            effects.extend(self.core.on_connected(*node));
        }
        self.linked = now_linked;
        self.carry_out(effects, view, history, random, outbox);
    }

    fn start(
        &mut self,
        request: Request,
        view: &View,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        let operation = history.invoke(self.id, request.clone(), view.time, view.now);
        self.running = Some(operation);
        let session = Some(self.session());
        let request = match request {
            Request::Write {
                key,
                value,
                request_id,
            } => client_core::Request::Write {
                command: Command::put(request_id, key, value),
                session,
            },
            Request::Read { key, consistency } => client_core::Request::Read {
                key,
                consistency: match consistency {
                    Consistency::Strong => client_core::Consistency::Strong,
                    Consistency::Session => client_core::Consistency::Session,
                    Consistency::Eventual => client_core::Consistency::Eventual,
                },
                // Only session reads (and writes) carry the session, as the user asks.
                session: (consistency == Consistency::Session).then_some(self.session()),
            },
        };
        let effects = self.core.request(operation as u64, request);
        self.carry_out(effects, view, history, random, outbox);
    }

    /// Sends what the core sends and records what it answers.
    fn carry_out(
        &mut self,
        effects: Vec<Effect>,
        view: &View,
        history: &mut History,
        random: &mut ChaCha8Rng,
        outbox: &mut Vec<Envelope>,
    ) {
        for effect in effects {
            match effect {
                Effect::Send { to, message } => outbox.push(Envelope {
                    from: self.node,
                    to,
                    message,
                }),
                Effect::Answer { token, answer } => {
                    if self.running != Some(token as usize) {
                        continue;
                    }
                    let operation = token as usize;
                    match answer {
                        Answer::Written { revision } => history.complete(
                            operation,
                            Outcome::Written { slot: revision },
                            view.time,
                            view.now,
                        ),
                        Answer::Read(read) => history.complete(
                            operation,
                            Outcome::Read {
                                mod_revision: read.value.as_ref().map(|value| value.mod_revision),
                                value: read.value.map(|value| value.value),
                                applied_slot: read.applied_slot,
                            },
                            view.time,
                            view.now,
                        ),
                        // No simulated client reuses a request id: a 409 is a wrong answer,
                        // recorded so that the checks report it.
                        Answer::RequestIdTaken { revision } => history.complete(
                            operation,
                            Outcome::RequestIdTaken { revision },
                            view.time,
                            view.now,
                        ),
                        _ => history.give_up(operation, view.now),
                    }
                    self.running = None;
                    self.idle_until = view.now + random.random_range(0..=self.think_ticks_max);
                }
                // The simulated users do not subscribe.
                Effect::FeedApplied { .. } | Effect::FeedTooOld { .. } => {}
            }
        }
    }
}
