//! The learner's formats of the versions before revisions and fingerprints were kept, still
//! read so that a data directory they wrote opens: the whole-state record of the first
//! compacted logs (`LearnerRecord::Snapshot`) and the chunks of `PXSNAP01` snapshot files.
//! Their keys come back with revisions 0 (as [`common::value::Operation::UnversionedPut`]
//! gives the puts of their logs), and their request ids with an unknown fingerprint (any
//! retry of them counts as genuine): every learner then agrees on them, whichever slot its
//! own snapshot was taken at.

use common::ballot::Slot;
use common::message::{
    AppliedRequest, SnapshotChunk, StateSnapshot, VersionedValue, FINGERPRINT_UNKNOWN,
};
use common::value::RequestId;
use serde::{Deserialize, Serialize};

/// A state at a slot as those versions wrote it whole.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnversionedStateSnapshot {
    /// Every slot up to here is folded into the state.
    pub applied_slot: Slot,
    /// The key-value map, in key order.
    pub key_values: Vec<(String, String)>,
    /// The exactly-once window, oldest first, each id with the slot that applied it.
    pub applied_request_ids: Vec<(RequestId, Slot)>,
}

/// A snapshot chunk as those versions wrote it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnversionedSnapshotChunk {
    /// The snapshot's slot.
    pub applied_slot: Slot,
    /// The chunk's position, from 0.
    pub index: u32,
    /// The snapshot's key count.
    pub key_count: u64,
    /// The snapshot's request id count.
    pub request_id_count: u64,
    /// The next key-value pairs, in key order.
    pub key_values: Vec<(String, String)>,
    /// The next request ids, oldest first.
    pub applied_request_ids: Vec<(RequestId, Slot)>,
    /// Whether this is the last chunk.
    pub last: bool,
}

fn unversioned(value: String) -> VersionedValue {
    VersionedValue {
        value,
        create_revision: 0,
        mod_revision: 0,
        version: 0,
    }
}

fn without_fingerprint((request_id, slot): (RequestId, Slot)) -> AppliedRequest {
    AppliedRequest {
        request_id,
        slot,
        fingerprint: FINGERPRINT_UNKNOWN,
    }
}

/// Key-value pairs and request ids of those versions in today's terms.
fn convert(
    key_values: Vec<(String, String)>,
    applied_request_ids: Vec<(RequestId, Slot)>,
) -> (Vec<(String, VersionedValue)>, Vec<AppliedRequest>) {
    (
        key_values
            .into_iter()
            .map(|(key, value)| (key, unversioned(value)))
            .collect(),
        applied_request_ids
            .into_iter()
            .map(without_fingerprint)
            .collect(),
    )
}

impl UnversionedStateSnapshot {
    /// The state in today's terms.
    pub fn into_state_snapshot(self) -> StateSnapshot {
        let (key_values, applied_request_ids) = convert(self.key_values, self.applied_request_ids);
        StateSnapshot {
            applied_slot: self.applied_slot,
            key_values,
            applied_request_ids,
        }
    }
}

impl UnversionedSnapshotChunk {
    /// The chunk in today's terms.
    pub fn into_chunk(self) -> SnapshotChunk {
        let (key_values, applied_request_ids) = convert(self.key_values, self.applied_request_ids);
        SnapshotChunk {
            applied_slot: self.applied_slot,
            index: self.index,
            key_count: self.key_count,
            request_id_count: self.request_id_count,
            key_values,
            applied_request_ids,
            last: self.last,
        }
    }
}
