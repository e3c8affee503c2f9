//! The live durable state, and the one definition of what each [`Op`] does to it.

use std::collections::{BTreeMap, BTreeSet};

// foldhash: replaying a million queued messages is mostly map inserts keyed by ids.
use foldhash::HashMap;
use std::sync::Arc;

use bytestring::ByteString;
use quartet_proto::{ClientId, PacketId};

use crate::model::*;
use crate::StoreError;

/// One session with everything that hangs off it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionState {
    /// The session record.
    pub record: SessionRecord,
    /// Subscriptions by filter text.
    pub subscriptions: BTreeMap<ByteString, SubscriptionRecord>,
    /// Inbound QoS 2 packet ids received and not yet released.
    pub inbound: BTreeSet<PacketId>,
    /// Outbound records by seq.
    pub outbound: BTreeMap<u64, OutboundRecord>,
}

/// A stored message body and how many outbound records reference it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The message, shared with the broker that loads it.
    pub message: Arc<Message>,
    /// Outbound records that reference it.
    pub refs: usize,
}

/// Everything a store keeps, as rebuilt at start-up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// Sessions by client id.
    pub sessions: HashMap<ClientId, SessionState>,
    /// Message bodies referenced by outbound records.
    pub messages: HashMap<MsgId, StoredMessage>,
    /// Retained messages by topic.
    pub retained: BTreeMap<ByteString, Message>,
    /// One more than the largest message id ever stored.
    pub next_msg_id: MsgId,
}

fn missing(what: &str, client: &ClientId) -> StoreError {
    StoreError::Corrupt(format!("{what} for unknown session {client:?}"))
}

impl State {
    /// Applies a whole batch.
    pub fn apply_batch(&mut self, batch: &Batch) -> Result<(), StoreError> {
        batch.ops.iter().try_for_each(|op| self.apply(op))
    }

    /// Applies one op. An op that refers to a session or message that does not exist means
    /// the log is inconsistent, and is an error.
    pub fn apply(&mut self, op: &Op) -> Result<(), StoreError> {
        self.apply_owned(op.clone())
    }

    /// [`State::apply`] for an op the caller no longer needs (replay), without copying it.
    pub fn apply_owned(&mut self, op: Op) -> Result<(), StoreError> {
        match op {
            Op::PutSession(rec) => match self.sessions.get_mut(&rec.client_id) {
                Some(s) => s.record = rec,
                None => {
                    let client = rec.client_id.clone();
                    self.sessions.insert(
                        client,
                        SessionState {
                            record: rec,
                            subscriptions: BTreeMap::new(),
                            inbound: BTreeSet::new(),
                            outbound: BTreeMap::new(),
                        },
                    );
                }
            },
            Op::DeleteSession(client) => {
                if let Some(s) = self.sessions.remove(&client) {
                    for rec in s.outbound.values() {
                        self.unref(rec.msg);
                    }
                }
            }
            Op::PutSubscription { client, sub } => {
                let s = self.session(&client, "subscription")?;
                s.subscriptions
                    .insert(sub.filter.as_bytestring().clone(), sub);
            }
            Op::DeleteSubscription { client, filter } => {
                self.session(&client, "unsubscribe")?
                    .subscriptions
                    .remove(filter.as_str());
            }
            Op::PutInbound { client, packet_id } => {
                self.session(&client, "inbound id")?
                    .inbound
                    .insert(packet_id);
            }
            Op::DeleteInbound { client, packet_id } => {
                self.session(&client, "inbound id")?
                    .inbound
                    .remove(&packet_id);
            }
            Op::PutMessage { id, message } => {
                // Putting a body again keeps the records that reference it.
                let refs = self.messages.get(&id).map_or(0, |m| m.refs);
                let message = Arc::new(message);
                self.messages.insert(id, StoredMessage { message, refs });
                self.next_msg_id = self.next_msg_id.max(id + 1);
            }
            Op::PutOutbound { client, record } => {
                if let Some(id) = record.msg {
                    match self.messages.get_mut(&id) {
                        Some(m) => m.refs += 1,
                        None => {
                            return Err(StoreError::Corrupt(format!(
                                "outbound record of {client:?} references unknown message {id}"
                            )))
                        }
                    }
                }
                let s = self.session(&client, "outbound")?;
                let old = s.outbound.insert(record.seq, record);
                self.unref(old.and_then(|o| o.msg));
            }
            Op::DeleteOutbound { client, seq } => {
                let old = self.session(&client, "outbound")?.outbound.remove(&seq);
                self.unref(old.and_then(|o| o.msg));
            }
            Op::PutRetained(m) => {
                self.retained.insert(m.topic.as_bytestring().clone(), m);
            }
            Op::DeleteRetained(topic) => {
                self.retained.remove(topic.as_str());
            }
        }
        Ok(())
    }

    fn session(&mut self, client: &ClientId, what: &str) -> Result<&mut SessionState, StoreError> {
        self.sessions
            .get_mut(client)
            .ok_or_else(|| missing(what, client))
    }

    fn unref(&mut self, id: Option<MsgId>) {
        if let Some(id) = id {
            if let Some(m) = self.messages.get_mut(&id) {
                m.refs = m.refs.saturating_sub(1);
                if m.refs == 0 {
                    self.messages.remove(&id);
                }
            }
        }
    }

    /// Drops message bodies that no record references (a batch may store a body whose only
    /// reference was deleted in a later batch). Stores call this after replay.
    pub fn drop_unreferenced(&mut self) {
        self.messages.retain(|_, m| m.refs > 0);
    }
}
