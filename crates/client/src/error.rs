//! Typed errors of the client.

use std::path::PathBuf;

use quartet_proto::{ReasonCode, TopicError};
use thiserror::Error;

/// What went wrong.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The TCP connection could not be made.
    // The causes below are part of the message rather than `source()`, so that the one line
    // a command prints holds everything once.
    #[error("cannot connect to {addr}: {error}")]
    Connect {
        /// The address tried.
        addr: String,
        /// Why.
        error: std::io::Error,
    },
    /// The connection failed while in use (read, write, or closed by the peer).
    #[error("connection lost: {0}")]
    Io(std::io::Error),
    /// The broker answered CONNECT with a refusal.
    #[error("connection refused by the broker: {}", describe(*reason, reason_string.as_deref()))]
    Refused {
        /// The CONNACK reason (v3 return codes are mapped to their v5 equivalents).
        reason: ReasonCode,
        /// The v5 reason string, if the broker sent one.
        reason_string: Option<String>,
    },
    /// The broker sent DISCONNECT.
    #[error("disconnected by the broker: {}", describe(*reason, reason_string.as_deref()))]
    Disconnected {
        /// The DISCONNECT reason.
        reason: ReasonCode,
        /// The v5 reason string, if any.
        reason_string: Option<String>,
    },
    /// No CONNACK (or PINGRESP) arrived in time.
    #[error("timed out: {0}")]
    Timeout(&'static str),
    /// The broker broke the protocol (malformed packet, unexpected packet, bad packet id).
    #[error("protocol error from the broker: {0}")]
    Protocol(String),
    /// A topic name or filter is invalid.
    #[error("bad topic {topic:?}: {error}")]
    Topic {
        /// The text given.
        topic: String,
        /// Why it is invalid.
        error: TopicError,
    },
    /// The options cannot work together, or a value is out of range.
    #[error("invalid options: {0}")]
    Options(String),
    /// The message does not fit the broker's maximum packet size (or MQTT's).
    #[error("packet of {size} bytes exceeds the broker's maximum packet size {max}")]
    PacketTooLarge {
        /// Encoded size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The broker does not accept this QoS (v5 Maximum QoS) or retain (Retain Available).
    #[error("not supported by the broker: {0}")]
    NotSupported(&'static str),
    /// The bounded queue of messages waiting to be sent is full.
    #[error("the outgoing queue is full ({0} messages)")]
    QueueFull(usize),
    /// Durable client state could not be read or written. The client stops: acting without
    /// the record it needed could lose or duplicate a message.
    #[error("client state: {0}")]
    Store(String),
    /// Another client (maybe another process) holds this state directory.
    #[error("state directory {} is in use by another client", .0.display())]
    StateDirInUse(PathBuf),
    /// The client has stopped (disconnect, fatal error, or dropped).
    #[error("the client is closed")]
    Closed,
}

impl From<std::io::Error> for ClientError {
    fn from(e: std::io::Error) -> Self {
        ClientError::Io(e)
    }
}

fn describe(reason: ReasonCode, s: Option<&str>) -> String {
    let name = match reason {
        ReasonCode::UnsupportedProtocolVersion => "unsupported protocol version",
        ReasonCode::ClientIdentifierNotValid => "client identifier not valid",
        ReasonCode::BadUserNameOrPassword => "bad user name or password",
        ReasonCode::NotAuthorized => "not authorized",
        ReasonCode::ServerUnavailable => "server unavailable",
        ReasonCode::ServerBusy => "server busy",
        ReasonCode::Banned => "banned",
        ReasonCode::ServerShuttingDown => "server shutting down",
        ReasonCode::SessionTakenOver => "session taken over",
        ReasonCode::KeepAliveTimeout => "keep alive timeout",
        ReasonCode::PacketTooLarge => "packet too large",
        ReasonCode::QuotaExceeded => "quota exceeded",
        ReasonCode::TopicNameInvalid => "topic name invalid",
        ReasonCode::ReceiveMaximumExceeded => "receive maximum exceeded",
        ReasonCode::ProtocolError => "protocol error",
        ReasonCode::MalformedPacket => "malformed packet",
        ReasonCode::Success => "normal disconnection",
        _ => "",
    };
    let mut out = format!("0x{:02X}", reason.as_u8());
    if !name.is_empty() {
        out = format!("{name} ({out})");
    }
    if let Some(s) = s {
        out.push_str(": ");
        out.push_str(s);
    }
    out
}

impl ClientError {
    /// True when retrying the connection cannot help (bad credentials, not authorized, ...).
    pub fn is_permanent(&self) -> bool {
        match self {
            ClientError::Refused { reason, .. } => !matches!(
                reason,
                ReasonCode::ServerUnavailable
                    | ReasonCode::ServerBusy
                    | ReasonCode::ServerShuttingDown
                    | ReasonCode::ConnectionRateExceeded
                    | ReasonCode::QuotaExceeded
                    | ReasonCode::UnspecifiedError
                    | ReasonCode::ImplementationSpecificError
            ),
            ClientError::Store(_)
            | ClientError::StateDirInUse(_)
            | ClientError::Options(_)
            | ClientError::Closed => true,
            ClientError::Disconnected { reason, .. } => matches!(
                reason,
                ReasonCode::NotAuthorized | ReasonCode::Banned | ReasonCode::SessionTakenOver
            ),
            _ => false,
        }
    }
}
