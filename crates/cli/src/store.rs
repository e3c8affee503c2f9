//! `quartet store verify | repair | inspect`.

use anyhow::{bail, Context};
use quartet_store::log::{repair, verify, CheckReport};
use quartet_store::{OutboundPhase, State};
use serde_json::json;

use crate::StoreCommand;

pub(crate) fn run(cmd: StoreCommand) -> anyhow::Result<()> {
    match cmd {
        StoreCommand::Verify(a) => {
            if !a.data_dir.is_dir() {
                bail!("{} is not a data directory", a.data_dir.display());
            }
            let (report, _) = verify(&a.data_dir).context("the data directory is damaged")?;
            print_report("verified", &a.data_dir, &report);
            Ok(())
        }
        StoreCommand::Repair(a) => {
            if !a.data_dir.is_dir() {
                bail!("{} is not a data directory", a.data_dir.display());
            }
            let report = repair(&a.data_dir).context("repair failed")?;
            print_report("repaired", &a.data_dir, &report);
            println!(
                "dropped: {} damaged records, {} operations that no longer applied",
                report.skipped_records, report.skipped_ops
            );
            Ok(())
        }
        StoreCommand::Inspect(a) => {
            if !a.data_dir.is_dir() {
                bail!("{} is not a data directory", a.data_dir.display());
            }
            let (_, state) = verify(&a.data_dir).context("the data directory is damaged")?;
            inspect(&state);
            Ok(())
        }
    }
}

fn print_report(what: &str, dir: &std::path::Path, r: &CheckReport) {
    println!(
        "{what} {}: {} records in {} segments{}, {} sessions, {} stored messages, {} retained{}",
        dir.display(),
        r.recovery.records,
        r.recovery.segments,
        if r.recovery.snapshot.is_some() {
            " after a snapshot"
        } else {
            ""
        },
        r.sessions,
        r.messages,
        r.retained,
        if r.recovery.truncated_bytes > 0 {
            format!(
                "; a torn write of {} bytes at the end would be cut",
                r.recovery.truncated_bytes
            )
        } else {
            String::new()
        }
    );
}

/// One JSON object per line: sessions, subscriptions, in-flight exchanges (both directions)
/// and retained messages. The handshake state, made visible.
fn inspect(state: &State) {
    let mut clients: Vec<_> = state.sessions.keys().collect();
    clients.sort();
    for client in clients {
        let s = &state.sessions[client];
        let queued = s
            .outbound
            .values()
            .filter(|o| o.phase == OutboundPhase::Queued)
            .count();
        println!(
            "{}",
            json!({
                "type": "session",
                "client_id": client.as_str(),
                "protocol": s.record.protocol.to_string(),
                "expiry_interval_secs": s.record.expiry_interval_secs,
                "disconnected_at_ms": s.record.disconnected_at,
                "will_pending": s.record.will.is_some(),
                "subscriptions": s.subscriptions.len(),
                "queued": queued,
                "inflight_out": s.outbound.len() - queued,
                "inflight_in": s.inbound.len(),
            })
        );
        for sub in s.subscriptions.values() {
            println!(
                "{}",
                json!({
                    "type": "subscription",
                    "client_id": client.as_str(),
                    "filter": sub.filter.as_str(),
                    "qos": sub.options.qos as u8,
                    "no_local": sub.options.no_local,
                    "retain_as_published": sub.options.retain_as_published,
                    "subscription_identifier": sub.identifier,
                })
            );
        }
        for pid in &s.inbound {
            println!(
                "{}",
                json!({
                    "type": "inflight",
                    "client_id": client.as_str(),
                    "direction": "inbound",
                    "packet_id": pid.get(),
                    "qos": 2,
                    "phase": "received: PUBREC sent, waiting for PUBREL",
                })
            );
        }
        for o in s
            .outbound
            .values()
            .filter(|o| o.phase != OutboundPhase::Queued)
        {
            let phase = match o.phase {
                OutboundPhase::AwaitingAck if o.qos as u8 == 1 => {
                    "PUBLISH sent, waiting for PUBACK"
                }
                OutboundPhase::AwaitingAck => "PUBLISH sent, waiting for PUBREC",
                _ => "PUBREL sent, waiting for PUBCOMP",
            };
            let topic = o
                .msg
                .and_then(|id| state.messages.get(&id))
                .map(|m| m.message.topic.as_str());
            println!(
                "{}",
                json!({
                    "type": "inflight",
                    "client_id": client.as_str(),
                    "direction": "outbound",
                    "packet_id": o.packet_id.map(|p| p.get()),
                    "qos": o.qos as u8,
                    "seq": o.seq,
                    "topic": topic,
                    "phase": phase,
                })
            );
        }
    }
    for m in state.retained.values() {
        println!(
            "{}",
            json!({
                "type": "retained",
                "topic": m.topic.as_str(),
                "qos": m.qos as u8,
                "bytes": m.payload.len(),
            })
        );
    }
}
