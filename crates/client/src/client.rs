//! The public handle ([`Client`]), the application's side of incoming messages
//! ([`Incoming`], [`Delivery`]) and the published-message futures.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use quartet_proto::{
    PacketId, PublishProperties, QoS, ReasonCode, SubscribeProperties, SubscriptionOptions,
    TopicFilter, UserProperty,
};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::AbortHandle;

use crate::error::ClientError;
use crate::event_loop::EventLoop;
use crate::options::{topic_filter, topic_name, ConnectOptions, Subscription};

/// A message to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS.
    pub qos: QoS,
    /// Retain flag.
    pub retain: bool,
    /// v5 properties (Topic Alias is managed by the client and ignored here).
    pub properties: PublishProperties,
}

impl OutgoingMessage {
    /// A message without properties.
    pub fn new(
        topic: impl Into<String>,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> OutgoingMessage {
        OutgoingMessage {
            topic: topic.into(),
            payload: payload.into(),
            qos,
            retain,
            properties: PublishProperties::default(),
        }
    }
}

/// How the broker acknowledged a publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishAck {
    /// The reason code of PUBACK (QoS 1), of PUBREC if it refused the message, else of
    /// PUBCOMP (QoS 2); `Success` for QoS 0 once written and for every 3.1.1 ack.
    pub reason: ReasonCode,
    /// The v5 reason string, if any.
    pub reason_string: Option<String>,
    /// The packet id the message travelled under (QoS 1/2).
    pub packet_id: Option<PacketId>,
    /// The durable publish sequence number (QoS 1/2).
    pub seq: Option<u64>,
}

impl PublishAck {
    /// True unless the reason code is an error (0x80 and above).
    pub fn is_success(&self) -> bool {
        !self.reason.is_error()
    }
}

/// A publish accepted by the client: for QoS 1/2 it has its packet id and publish sequence
/// number and, with a state directory, is durable. Await [`Publishing::acknowledged`] for the
/// broker's answer.
#[derive(Debug)]
pub struct Publishing {
    /// The durable publish sequence number (QoS 1/2): 0, 1, 2, ... over the life of the state
    /// directory (or of the client, without one).
    pub seq: Option<u64>,
    /// The packet id (QoS 1/2).
    pub packet_id: Option<PacketId>,
    pub(crate) done: oneshot::Receiver<Result<PublishAck, ClientError>>,
}

impl Publishing {
    /// Resolves when the broker has acknowledged the message (PUBACK, PUBCOMP, or a refusal
    /// in PUBACK/PUBREC), or, for QoS 0, when it was written to the socket.
    pub async fn acknowledged(self) -> Result<PublishAck, ClientError> {
        self.done.await.map_err(|_| ClientError::Closed)?
    }
}

/// The stable identity of a delivered QoS 1/2 message: the client id and the receive
/// sequence number the client gave it when it first arrived. With a state directory the
/// number is journaled before the message is handed over, so a redelivery of the same
/// message (after a reconnect, or after the process restarts) carries the same identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The client id.
    pub client_id: Arc<str>,
    /// The receive sequence number.
    pub seq: u64,
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.client_id, self.seq)
    }
}

/// A received application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic name (resolved from a topic alias if the broker used one).
    pub topic: String,
    /// Payload.
    pub payload: Bytes,
    /// QoS it was delivered at.
    pub qos: QoS,
    /// Retain flag as received.
    pub retain: bool,
    /// DUP flag as received.
    pub dup: bool,
    /// The broker's packet id (QoS 1/2).
    pub packet_id: Option<PacketId>,
    /// v5 properties (Topic Alias removed).
    pub properties: PublishProperties,
}

/// A message handed to the application, with its identity and (QoS 1/2) its acknowledgement.
#[derive(Debug)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// Stable identity (QoS 1/2 only).
    pub id: Option<MessageId>,
    /// True when this message was handed over before (a previous process, or an earlier
    /// delivery that was not acknowledged): the application may have acted on it already.
    pub redelivered: bool,
    pub(crate) ack: Option<AckHandle>,
}

#[derive(Debug)]
pub(crate) struct AckHandle {
    pub(crate) pid: u16,
    pub(crate) epoch: u64,
    pub(crate) tx: mpsc::UnboundedSender<Command>,
}

impl Delivery {
    /// Acknowledges the message to the broker: PUBACK (QoS 1) or PUBREC (QoS 2) is sent
    /// (for QoS 1 after the end of the exchange is journaled). Without manual
    /// acknowledgement, [`Incoming::recv`] has already done this. A message never
    /// acknowledged is delivered again after the next reconnect or restart.
    pub fn ack(mut self) -> Result<(), ClientError> {
        self.ack_inner()
    }

    fn ack_inner(&mut self) -> Result<(), ClientError> {
        if let Some(h) = self.ack.take() {
            h.tx.send(Command::Ack {
                pid: h.pid,
                epoch: h.epoch,
            })
            .map_err(|_| ClientError::Closed)?;
        }
        Ok(())
    }

    /// True when the message still waits for [`Delivery::ack`].
    pub fn needs_ack(&self) -> bool {
        self.ack.is_some()
    }
}

/// The stream of incoming messages.
#[derive(Debug)]
pub struct Incoming {
    pub(crate) rx: mpsc::Receiver<Delivery>,
    pub(crate) manual_ack: bool,
    pub(crate) error: Arc<Mutex<Option<ClientError>>>,
}

impl Incoming {
    /// The next message; `None` once the client has stopped (see [`Incoming::take_error`]).
    /// In automatic acknowledgement mode the message is acknowledged as it is returned.
    pub async fn recv(&mut self) -> Option<Delivery> {
        let mut d = self.rx.recv().await?;
        if !self.manual_ack {
            // The loop is gone only if the client stopped; nothing more to do then.
            let _ = d.ack_inner();
        }
        Some(d)
    }

    /// Why the client stopped, once [`Incoming::recv`] returned `None` (nothing after a
    /// plain [`Client::disconnect`]).
    pub fn take_error(&mut self) -> Option<ClientError> {
        self.error.lock().ok()?.take()
    }
}

/// The connection as the application can watch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Status {
    /// A connection is up (CONNACK received).
    pub connected: bool,
    /// Successful connections so far.
    pub connects: u64,
    /// Session Present of the last CONNACK.
    pub session_present: bool,
    /// The client has stopped for good.
    pub closed: bool,
    /// Messages accepted and not yet acknowledged by the broker (or, QoS 0, not yet sent).
    pub outgoing: usize,
    /// Received QoS 1/2 messages whose exchange is not over (not acknowledged by the
    /// application yet, or QoS 2 waiting for PUBREL).
    pub inbound: usize,
}

/// What the event loop answers a publish with once accepted: its sequence number and id.
pub(crate) type Accepted = Result<(Option<u64>, Option<PacketId>), ClientError>;

pub(crate) enum Command {
    Publish {
        publish: quartet_proto::Publish,
        permit: OwnedSemaphorePermit,
        accepted: oneshot::Sender<Accepted>,
        done: oneshot::Sender<Result<PublishAck, ClientError>>,
    },
    Subscribe {
        filters: Vec<(TopicFilter, SubscriptionOptions)>,
        properties: SubscribeProperties,
        done: oneshot::Sender<Result<Vec<ReasonCode>, ClientError>>,
    },
    Unsubscribe {
        filters: Vec<TopicFilter>,
        properties: Vec<UserProperty>,
        done: oneshot::Sender<Result<Vec<ReasonCode>, ClientError>>,
    },
    Ack {
        pid: u16,
        epoch: u64,
    },
    Disconnect {
        done: oneshot::Sender<()>,
    },
}

/// A handle on a connected client; cheap to clone. The connection lives in a background task
/// that reconnects by itself (see the crate docs).
#[derive(Debug, Clone)]
pub struct Client {
    tx: mpsc::UnboundedSender<Command>,
    queue: Arc<Semaphore>,
    max_queued: usize,
    next_pub_seq: Arc<AtomicU64>,
    status: watch::Receiver<Status>,
    task: AbortHandle,
    /// Closed when the background task has dropped its state (and released the state
    /// directory).
    released: watch::Receiver<()>,
    client_id: Arc<str>,
}

impl Client {
    /// Opens the state directory (if any), connects, and starts the background task.
    /// Fails if the first connection fails; later ones are retried.
    pub async fn connect(options: ConnectOptions) -> Result<(Client, Incoming), ClientError> {
        options.check()?;
        let max_queued = options.max_queued;
        let manual_ack = options.manual_ack;
        let queue = Arc::new(Semaphore::new(max_queued));
        let (tx, rx) = mpsc::unbounded_channel();
        let (deliver_tx, deliver_rx) = mpsc::channel(options.incoming_capacity.max(1));
        let error = Arc::new(Mutex::new(None));
        let next_pub_seq = Arc::new(AtomicU64::new(0));
        let (status_tx, status) = watch::channel(Status::default());
        let (released_tx, released) = watch::channel(());
        let mut el = EventLoop::new(
            options,
            tx.downgrade(),
            deliver_tx,
            next_pub_seq.clone(),
            status_tx,
            released_tx,
        )?;
        el.first_connect().await?;
        let client_id = el.client_id();
        let err = error.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = el.run(rx).await {
                tracing::debug!(error = %e, "client stopped");
                if let Ok(mut slot) = err.lock() {
                    *slot = Some(e);
                }
            }
        })
        .abort_handle();
        Ok((
            Client {
                tx,
                queue,
                max_queued,
                next_pub_seq,
                status,
                task,
                released,
                client_id,
            },
            Incoming {
                rx: deliver_rx,
                manual_ack,
                error,
            },
        ))
    }

    /// The client id in use (the broker's assigned one if it assigned one).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Publishes and waits for the broker's acknowledgement (see [`Publishing::acknowledged`]).
    pub async fn publish(
        &self,
        topic: &str,
        payload: impl Into<Bytes>,
        qos: QoS,
        retain: bool,
    ) -> Result<PublishAck, ClientError> {
        self.send(OutgoingMessage::new(topic, payload, qos, retain))
            .await?
            .acknowledged()
            .await
    }

    /// Hands a message to the client, waiting while the outgoing queue is full. Returns once
    /// the message is accepted: for QoS 1/2 with a state directory, once it and its packet id
    /// are durable.
    pub async fn send(&self, msg: OutgoingMessage) -> Result<Publishing, ClientError> {
        let publish = build_publish(msg)?;
        let permit = self
            .queue
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ClientError::Closed)?;
        self.enqueue(publish, permit).await
    }

    /// Like [`Client::send`] but fails with [`ClientError::QueueFull`] instead of waiting.
    pub async fn try_send(&self, msg: OutgoingMessage) -> Result<Publishing, ClientError> {
        let publish = build_publish(msg)?;
        let permit = self
            .queue
            .clone()
            .try_acquire_owned()
            .map_err(|_| ClientError::QueueFull(self.max_queued))?;
        self.enqueue(publish, permit).await
    }

    async fn enqueue(
        &self,
        publish: quartet_proto::Publish,
        permit: OwnedSemaphorePermit,
    ) -> Result<Publishing, ClientError> {
        let (acc_tx, acc_rx) = oneshot::channel();
        let (done_tx, done_rx) = oneshot::channel();
        self.tx
            .send(Command::Publish {
                publish,
                permit,
                accepted: acc_tx,
                done: done_tx,
            })
            .map_err(|_| ClientError::Closed)?;
        let (seq, packet_id) = acc_rx.await.map_err(|_| ClientError::Closed)??;
        Ok(Publishing {
            seq,
            packet_id,
            done: done_rx,
        })
    }

    /// The publish sequence number the next QoS 1/2 message will get. With a state directory
    /// it continues across restarts: a publisher that numbers its messages with it, one
    /// publish at a time, can tell after a crash which of its messages the client already
    /// holds.
    pub fn next_publish_seq(&self) -> u64 {
        self.next_pub_seq.load(Ordering::Acquire)
    }

    /// Subscribes; resolves with one reason code per filter (Granted QoS or a refusal).
    pub async fn subscribe(&self, subs: &[Subscription]) -> Result<Vec<ReasonCode>, ClientError> {
        self.subscribe_with(subs, SubscribeProperties::default())
            .await
    }

    /// Subscribes with v5 SUBSCRIBE properties (subscription identifier, user properties).
    pub async fn subscribe_with(
        &self,
        subs: &[Subscription],
        properties: SubscribeProperties,
    ) -> Result<Vec<ReasonCode>, ClientError> {
        if subs.is_empty() {
            return Err(ClientError::Options("SUBSCRIBE needs a filter".into()));
        }
        let filters = subs
            .iter()
            .map(|s| Ok((topic_filter(&s.filter)?, s.options)))
            .collect::<Result<Vec<_>, ClientError>>()?;
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Subscribe {
                filters,
                properties,
                done,
            })
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Unsubscribes; resolves with the v5 reason codes (empty for 3.1.1).
    pub async fn unsubscribe(&self, filters: &[&str]) -> Result<Vec<ReasonCode>, ClientError> {
        if filters.is_empty() {
            return Err(ClientError::Options("UNSUBSCRIBE needs a filter".into()));
        }
        let filters = filters
            .iter()
            .map(|f| topic_filter(f))
            .collect::<Result<Vec<_>, ClientError>>()?;
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Unsubscribe {
                filters,
                properties: Vec::new(),
                done,
            })
            .map_err(|_| ClientError::Closed)?;
        rx.await.map_err(|_| ClientError::Closed)?
    }

    /// Sends what is queued for the socket, then DISCONNECT (normal), and stops. Messages not
    /// yet acknowledged stay in the state directory for the next run; their futures fail
    /// with [`ClientError::Closed`].
    pub async fn disconnect(&self) -> Result<(), ClientError> {
        let (done, rx) = oneshot::channel();
        self.tx
            .send(Command::Disconnect { done })
            .map_err(|_| ClientError::Closed)?;
        let _ = rx.await;
        self.wait_released().await;
        Ok(())
    }

    /// Waits until the background task has dropped its state, state directory lock included.
    async fn wait_released(&self) {
        let mut r = self.released.clone();
        // Nothing is ever sent: this returns when the sender is dropped.
        while r.changed().await.is_ok() {}
    }

    /// Watches the connection state.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// Waits until a connection is up (returns at once if one is).
    pub async fn wait_connected(&self) -> Result<(), ClientError> {
        let mut s = self.status.clone();
        let st = s
            .wait_for(|st| st.connected || st.closed)
            .await
            .map_err(|_| ClientError::Closed)?;
        if st.connected {
            Ok(())
        } else {
            Err(ClientError::Closed)
        }
    }

    /// Waits until every accepted message has been acknowledged by the broker (or, QoS 0,
    /// sent), including messages resumed from the state directory.
    pub async fn drain(&self) -> Result<(), ClientError> {
        let mut s = self.status.clone();
        let st = s
            .wait_for(|st| st.outgoing == 0 || st.closed)
            .await
            .map_err(|_| ClientError::Closed)?;
        if st.outgoing == 0 {
            Ok(())
        } else {
            Err(ClientError::Closed)
        }
    }

    /// Stops the client at once, as `kill -9` would stop its process: no DISCONNECT, nothing
    /// more written to the socket or the journal. Returns once the state directory is free
    /// again, as it would be for a new process. For crash tests.
    pub async fn crash(&self) {
        self.task.abort();
        self.wait_released().await;
    }
}

fn build_publish(msg: OutgoingMessage) -> Result<quartet_proto::Publish, ClientError> {
    let topic = topic_name(&msg.topic)?;
    let mut properties = msg.properties;
    properties.topic_alias = None;
    Ok(quartet_proto::Publish {
        dup: false,
        qos: msg.qos,
        retain: msg.retain,
        topic,
        packet_id: None,
        properties,
        payload: msg.payload,
    })
}
