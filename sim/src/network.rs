//! The simulated network: every message between two nodes is an [`Envelope`] with a
//! delivery tick, so the simulation decides when (and whether) it arrives.
//!
//! Faults live here: a message may be dropped, duplicated or held back for many ticks
//! (which reorders it behind later ones), and links may be cut in one direction or both
//! (partitions, asymmetric ones included). A cut either drops what crosses it (a firewall,
//! the transport's fault switch) or holds it until the cut heals (TCP retransmitting over a
//! connection that survived the partition), which delivers stale messages late. Messages
//! that fall due in the same tick are delivered in an order drawn from the seed. Nothing
//! here knows the protocol.

use crate::FaultRates;
use common::message::Message;
use common::node::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};

/// One message on the wire.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The sender.
    pub from: NodeId,
    /// The receiver.
    pub to: NodeId,
    /// The message.
    pub message: Message,
}

/// What the network did to the messages sent so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetworkCounts {
    /// Messages handed to the network.
    pub sent: u64,
    /// Messages dropped at random.
    pub dropped: u64,
    /// Messages delivered twice.
    pub duplicated: u64,
    /// Messages held back far longer than usual (and so reordered).
    pub delayed: u64,
    /// Messages dropped because their link was cut.
    pub cut: u64,
    /// Messages held by a cut link and delivered once it healed.
    pub held: u64,
}

/// The messages in flight and the links that are cut.
pub struct Network {
    /// By (delivery tick, shuffle key, sequence): same-tick deliveries come out in an
    /// order drawn from the seed; the sequence keeps keys unique.
    in_flight: BTreeMap<(u64, u64, u64), Envelope>,
    sequence: u64,
    /// Directed links `(from, to)` whose messages are dropped.
    cuts: BTreeSet<(NodeId, NodeId)>,
    /// Whether the cut links hold messages (delivered at the heal) rather than drop them.
    cuts_hold: bool,
    held: Vec<Envelope>,
    /// Counts of what happened to messages.
    pub counts: NetworkCounts,
}

impl Network {
    /// An empty network with every link up.
    pub fn new() -> Self {
        Network {
            in_flight: BTreeMap::new(),
            sequence: 0,
            cuts: BTreeSet::new(),
            cuts_hold: false,
            held: Vec::new(),
            counts: NetworkCounts::default(),
        }
    }

    /// Puts `envelope` on the wire at tick `now`. With `faults`, it may be dropped,
    /// duplicated or delayed; without, it arrives in one or two ticks.
    pub fn send(
        &mut self,
        envelope: Envelope,
        now: u64,
        random: &mut ChaCha8Rng,
        faults: Option<&FaultRates>,
    ) {
        self.counts.sent += 1;
        let Some(faults) = faults else {
            let latency = 1 + random.random_range(0..=1);
            self.schedule(envelope, now + latency, random);
            return;
        };
        if random.random_range(0..1000) < faults.drop_per_mille {
            self.counts.dropped += 1;
            return;
        }
        if random.random_range(0..1000) < faults.duplicate_per_mille {
            self.counts.duplicated += 1;
            let latency = self.faulty_latency(random, faults);
            self.schedule(envelope.clone(), now + latency, random);
        }
        let latency = self.faulty_latency(random, faults);
        self.schedule(envelope, now + latency, random);
    }

    fn faulty_latency(&mut self, random: &mut ChaCha8Rng, faults: &FaultRates) -> u64 {
        let mut latency = 1 + random.random_range(0..=1);
        if random.random_range(0..1000) < faults.delay_per_mille {
            self.counts.delayed += 1;
            latency += random.random_range(1..=faults.delay_ticks_max.max(1));
        }
        latency
    }

    /// Queues `envelope` for delivery at tick `at`, unconditionally.
    pub fn schedule(&mut self, envelope: Envelope, at: u64, random: &mut ChaCha8Rng) {
        self.sequence += 1;
        let shuffle = random.random::<u64>();
        self.in_flight
            .insert((at, shuffle, self.sequence), envelope);
    }

    /// Takes every message due at or before `now`, in delivery order. Messages over a cut
    /// link are dropped (or held) here, at arrival, so a cut also stops what was already
    /// in flight.
    pub fn take_due(&mut self, now: u64) -> Vec<Envelope> {
        let later = self.in_flight.split_off(&(now + 1, 0, 0));
        let due = std::mem::replace(&mut self.in_flight, later);
        let mut delivered = Vec::with_capacity(due.len());
        for envelope in due.into_values() {
            if !self.cuts.contains(&(envelope.from, envelope.to)) {
                delivered.push(envelope);
            } else if self.cuts_hold {
                self.counts.held += 1;
                self.held.push(envelope);
            } else {
                self.counts.cut += 1;
            }
        }
        delivered
    }

    /// Drops every message in flight (or held) to `node`: its connections broke when it
    /// crashed.
    pub fn drop_messages_to(&mut self, node: NodeId) {
        self.in_flight.retain(|_, envelope| envelope.to != node);
        self.held.retain(|envelope| envelope.to != node);
    }

    /// Cuts the link from `from` to `to` (one direction).
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        if from != to {
            self.cuts.insert((from, to));
        }
    }

    /// Whether the cut links hold what crosses them until they heal (true) or drop it.
    pub fn set_cuts_hold(&mut self, hold: bool) {
        self.cuts_hold = hold;
    }

    /// The cut links, `(from, to)`.
    pub fn cuts(&self) -> Vec<(NodeId, NodeId)> {
        self.cuts.iter().copied().collect()
    }

    /// Whether any link is cut.
    pub fn is_partitioned(&self) -> bool {
        !self.cuts.is_empty()
    }

    /// Restores every link; what the cuts held arrives within a few ticks of `now`, in an
    /// order drawn from the seed.
    pub fn heal(&mut self, now: u64, random: &mut ChaCha8Rng) {
        self.cuts.clear();
        for envelope in std::mem::take(&mut self.held) {
            let at = now + random.random_range(1..=3);
            self.schedule(envelope, at, random);
        }
    }

    /// Messages in flight now.
    pub fn in_flight_count(&self) -> usize {
        self.in_flight.len()
    }
}

impl Default for Network {
    fn default() -> Self {
        Network::new()
    }
}
