//! Alarms: what a protocol core refused, and why, for its operator.
//!
//! The cores have no logging, so a message they refuse (a peer that breaks the protocol:
//! a second value under one ballot, a ballot claimed for another proposer, an implausible
//! round or slot) is recorded here instead, and the service shows the list on `/status`.
//! The list is bounded, so a peer that keeps misbehaving costs a counter, not memory: at
//! most [`ALARMS_MAX`] distinct texts are kept, each with how often it was raised and when
//! first and last; a new text beyond that evicts the one raised least recently.

/// The most distinct alarm texts one core keeps.
pub const ALARMS_MAX: usize = 16;

/// One distinct alarm text and its occurrences.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Alarm {
    /// What was refused and why, naming the peer.
    pub text: String,
    /// How many times it was raised (saturating).
    pub count: u64,
    /// When it was first raised, in the core's clock (ticks, or messages handled for a
    /// core without ticks).
    pub first_tick: u64,
    /// When it was last raised, in the same clock.
    pub last_tick: u64,
}

/// A core's bounded list of alarms.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Alarms {
    /// In the order they were first raised (among those kept).
    alarms: Vec<Alarm>,
    /// How many distinct texts were evicted to keep the list bounded.
    evicted_count: u64,
}

impl Alarms {
    /// An empty list.
    pub fn new() -> Self {
        Alarms::default()
    }

    /// Records `text` at `now_tick`: counts it again if it is already listed, otherwise
    /// adds it, evicting the alarm raised least recently when [`ALARMS_MAX`] are listed.
    pub fn raise(&mut self, now_tick: u64, text: String) {
        if let Some(alarm) = self.alarms.iter_mut().find(|alarm| alarm.text == text) {
            alarm.count = alarm.count.saturating_add(1);
            alarm.last_tick = now_tick;
            return;
        }
        if self.alarms.len() >= ALARMS_MAX {
            let stalest = self
                .alarms
                .iter()
                .enumerate()
                .min_by_key(|(_, alarm)| alarm.last_tick)
                .map(|(index, _)| index)
                .unwrap_or(0);
            self.alarms.remove(stalest);
            self.evicted_count = self.evicted_count.saturating_add(1);
        }
        self.alarms.push(Alarm {
            text,
            count: 1,
            first_tick: now_tick,
            last_tick: now_tick,
        });
    }

    /// The alarms kept, in the order first raised.
    pub fn entries(&self) -> &[Alarm] {
        &self.alarms
    }

    /// How many distinct alarm texts were evicted to keep the list bounded.
    pub fn evicted_count(&self) -> u64 {
        self.evicted_count
    }

    /// Whether no alarm was ever raised.
    pub fn is_empty(&self) -> bool {
        self.alarms.is_empty()
    }

    /// One human-readable line per alarm, as `"<text> (3 times)"`, then a line saying how
    /// many older alarms were evicted, if any.
    pub fn texts(&self) -> Vec<String> {
        let mut texts: Vec<String> = self
            .alarms
            .iter()
            .map(|alarm| match alarm.count {
                1 => format!("{} (once)", alarm.text),
                count => format!("{} ({count} times)", alarm.text),
            })
            .collect();
        if self.evicted_count > 0 {
            texts.push(format!(
                "{} older alarms evicted to keep the list at {ALARMS_MAX}",
                self.evicted_count
            ));
        }
        texts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_alarm_raised_again_is_counted_once_with_its_first_and_last_tick() {
        let mut alarms = Alarms::new();
        alarms.raise(3, "proposer 2 sent a second value".into());
        alarms.raise(5, "proposer 2 sent a second value".into());
        alarms.raise(9, "proposer 2 sent a second value".into());
        assert_eq!(
            alarms.entries(),
            [Alarm {
                text: "proposer 2 sent a second value".into(),
                count: 3,
                first_tick: 3,
                last_tick: 9
            }]
        );
        assert_eq!(alarms.texts(), ["proposer 2 sent a second value (3 times)"]);
    }

    #[test]
    fn the_list_keeps_at_most_sixteen_texts_and_evicts_the_least_recent() {
        let mut alarms = Alarms::new();
        for number in 0..ALARMS_MAX as u64 {
            alarms.raise(number, format!("alarm {number}"));
        }
        alarms.raise(100, "alarm 0".into()); // raised again: now the most recent
        alarms.raise(101, "alarm new".into());
        assert_eq!(alarms.entries().len(), ALARMS_MAX);
        assert!(alarms.entries().iter().any(|alarm| alarm.text == "alarm 0"));
        assert!(!alarms.entries().iter().any(|alarm| alarm.text == "alarm 1"));
        let texts = alarms.texts();
        assert_eq!(texts.len(), ALARMS_MAX + 1);
        assert_eq!(
            texts.last().unwrap(),
            "1 older alarms evicted to keep the list at 16"
        );
        assert!(texts.contains(&"alarm new (once)".to_string()));
    }
}
