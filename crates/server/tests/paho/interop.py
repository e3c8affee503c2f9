#!/usr/bin/env python3
"""Interop scenarios for Eclipse Paho (paho-mqtt 2.x) against a running Quartet server.

Usage: interop.py PORT SCENARIO VERSION

SCENARIO is one of qos, retained, will, session, properties; VERSION one of v31, v311, v5.
On success the script prints one JSON object with "ok": true and what it checked, and exits
0. On failure it prints the reason on stderr and exits non-zero. A watchdog ends it after
DEADLINE_SECS whatever happens, so it never hangs its caller.

It is run by crates/server/tests/interop_paho.rs, which starts the server.
"""

import json
import queue
import signal
import socket
import sys
import threading
import time

try:
    import paho.mqtt
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
except ImportError as e:  # pragma: no cover - reported to the Rust test
    print(f"paho-mqtt 2.x is missing ({e}): pip install 'paho-mqtt>=2,<3'", file=sys.stderr)
    sys.exit(3)

HOST = "127.0.0.1"
# How long one expected event may take.
WAIT_SECS = 5.0
DEADLINE_SECS = 25

PROTOCOLS = {"v31": mqtt.MQTTv31, "v311": mqtt.MQTTv311, "v5": mqtt.MQTTv5}


class Failure(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Failure(what)


class Peer:
    """One paho client with its network loop in a thread and its events in queues."""

    def __init__(self, port, version, client_id="", clean=True, session_expiry=None, name=""):
        self.port = port
        self.version = version
        self.v5 = version == "v5"
        self.name = name or client_id or "peer"
        self.clean = clean
        self.session_expiry = session_expiry
        kwargs = {
            "callback_api_version": CallbackAPIVersion.VERSION2,
            "client_id": client_id,
            "protocol": PROTOCOLS[version],
        }
        if not self.v5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.messages = queue.Queue()
        self.connacks = queue.Queue()
        self.subacks = {}
        self.suback_cv = threading.Condition()
        self.c.on_connect = self._on_connect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_subscribe

    # Callbacks run on paho's loop thread.
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.connacks.put((flags.session_present, reason_code))

    def _on_message(self, client, userdata, msg):
        self.messages.put(msg)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self.suback_cv:
            self.subacks[mid] = reason_codes
            self.suback_cv.notify_all()

    def will(self, topic, payload, qos, retain=False, properties=None):
        self.c.will_set(topic, payload, qos=qos, retain=retain, properties=properties)
        return self

    def connect(self):
        """Connects and waits for CONNACK; returns its session present flag."""
        kwargs = {}
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            kwargs = {"clean_start": self.clean, "properties": props}
        self.c.connect(HOST, self.port, keepalive=30, **kwargs)
        self.c.loop_start()
        try:
            present, rc = self.connacks.get(timeout=WAIT_SECS)
        except queue.Empty:
            raise Failure(f"{self.name}: no CONNACK")
        check(not rc.is_failure, f"{self.name}: CONNACK refused: {rc}")
        return bool(present)

    def subscribe(self, topic, qos, properties=None):
        result, mid = self.c.subscribe(topic, qos, properties=properties)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: subscribe not sent: {result}")
        deadline = time.monotonic() + WAIT_SECS
        with self.suback_cv:
            while mid not in self.subacks:
                left = deadline - time.monotonic()
                check(left > 0, f"{self.name}: no SUBACK for {topic}")
                self.suback_cv.wait(left)
            codes = self.subacks[mid]
        check(len(codes) == 1, f"{self.name}: SUBACK with {len(codes)} codes")
        check(not codes[0].is_failure, f"{self.name}: subscription to {topic} refused: {codes[0]}")
        check(codes[0].value == qos, f"{self.name}: granted QoS {codes[0].value}, asked {qos}")

    def publish(self, topic, payload, qos, retain=False, properties=None):
        """Publishes and, for QoS 1/2, waits for the flow to complete (PUBACK / PUBCOMP)."""
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        info.wait_for_publish(timeout=WAIT_SECS)
        check(info.is_published(), f"{self.name}: publish to {topic} not completed")

    def expect(self, n):
        """The next n messages."""
        got = []
        deadline = time.monotonic() + WAIT_SECS
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(left, 0.001)))
            except queue.Empty:
                raise Failure(
                    f"{self.name}: {len(got)} of {n} messages arrived: "
                    + repr([(m.topic, m.payload) for m in got])
                )
        return got

    def disconnect(self):
        """A normal DISCONNECT."""
        self.c.disconnect()
        self.c.loop_stop()

    def drop(self):
        """Closes the TCP connection without DISCONNECT, as a crashed client would."""
        self.c.loop_stop()
        sock = self.c.socket()
        check(sock is not None, f"{self.name}: no socket to drop")
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()


def summary(msgs):
    return [(m.topic, m.payload.decode("utf-8", "replace"), m.qos, bool(m.retain)) for m in msgs]


# ------------------------------------------------------------------------------------------
# Scenarios. Each returns a dict merged into the JSON result.


def scenario_qos(port, v):
    """QoS 0, 1 and 2 end to end: every message once, in order, at its QoS."""
    n = 50
    sub = Peer(port, v, client_id=f"qos-sub-{v}")
    sub.connect()
    pub = Peer(port, v, client_id=f"qos-pub-{v}")
    pub.connect()
    counts = {}
    for qos in (0, 1, 2):
        topic = f"paho/{v}/qos{qos}"
        sub.subscribe(topic, qos)
        for i in range(n):
            pub.publish(topic, f"{qos}:{i}".encode(), qos)
        got = sub.expect(n)
        want = [(topic, f"{qos}:{i}", qos, False) for i in range(n)]
        check(summary(got) == want, f"QoS {qos}: got {summary(got)}")
        counts[f"qos{qos}"] = len(got)
    # Nothing more (no duplicate) arrives after a final marker.
    pub.publish(f"paho/{v}/qos2", b"end", 2)
    last = sub.expect(1)
    check(summary(last) == [(f"paho/{v}/qos2", "end", 2, False)], f"after the end: {summary(last)}")
    pub.disconnect()
    sub.disconnect()
    return {"received": counts}


def scenario_retained(port, v):
    """A retained message reaches later subscribers with the retain flag; an empty retained
    message clears it."""
    topic = f"paho/{v}/retained"
    pub = Peer(port, v, client_id=f"ret-pub-{v}")
    pub.connect()
    pub.publish(topic, b"first", 1, retain=True)
    pub.publish(topic, b"kept", 2, retain=True)

    later = Peer(port, v, client_id=f"ret-sub1-{v}")
    later.connect()
    later.subscribe(topic, 2)
    got = later.expect(1)
    check(summary(got) == [(topic, "kept", 2, True)], f"retained: {summary(got)}")
    # A live message on the same topic: retain flag clear.
    pub.publish(topic, b"live", 1)
    got = later.expect(1)
    check(summary(got) == [(topic, "live", 1, False)], f"live: {summary(got)}")

    pub.publish(topic, b"", 1, retain=True)
    cleared = later.expect(1)
    check(summary(cleared) == [(topic, "", 1, False)], f"clearing message: {summary(cleared)}")
    later.disconnect()

    after = Peer(port, v, client_id=f"ret-sub2-{v}")
    after.connect()
    after.subscribe(topic, 1)
    pub.publish(topic, b"marker", 1)
    got = after.expect(1)
    check(summary(got) == [(topic, "marker", 1, False)], f"after clearing: {summary(got)}")
    pub.disconnect()
    after.disconnect()
    return {"retained": "kept", "cleared": True}


def scenario_will(port, v):
    """No will on a normal DISCONNECT; the will (with its v5 properties) on a dropped
    connection."""
    base = f"paho/{v}/will"
    watcher = Peer(port, v, client_id=f"will-watch-{v}")
    watcher.connect()
    watcher.subscribe(f"{base}/#", 2)

    polite = Peer(port, v, client_id=f"will-polite-{v}").will(f"{base}/polite", b"no", 1)
    polite.connect()
    polite.disconnect()

    props = None
    if v == "v5":
        props = Properties(PacketTypes.WILLMESSAGE)
        props.UserProperty = [("why", "crash")]
        props.ContentType = "text/plain"
    crash = Peer(port, v, client_id=f"will-crash-{v}").will(
        f"{base}/crash", b"gone", 2, properties=props
    )
    crash.connect()
    crash.drop()

    got = watcher.expect(1)
    check(summary(got) == [(f"{base}/crash", "gone", 2, False)], f"will: {summary(got)}")
    if v == "v5":
        p = got[0].properties
        check(getattr(p, "UserProperty", None) == [("why", "crash")], f"will user property: {p}")
        check(getattr(p, "ContentType", None) == "text/plain", f"will content type: {p}")
    watcher.disconnect()
    return {"will": got[0].topic}


def scenario_session(port, v):
    """A persistent session gets the QoS 1 and QoS 2 messages published while it was
    offline, after a normal DISCONNECT and after a dropped connection. v5: a session with
    expiry 0 ends with the connection."""
    cid = f"paho-session-{v}"
    base = f"paho/{v}/session"
    expiry = 300 if v == "v5" else None

    first = Peer(port, v, client_id=cid, clean=(v == "v5"), session_expiry=expiry)
    check(not first.connect(), "a new session claimed to be present")
    first.subscribe(f"{base}/#", 2)

    rounds = []
    leave = first
    for how in ("disconnect", "drop"):
        if how == "disconnect":
            leave.disconnect()
        else:
            leave.drop()
        pub = Peer(port, v, client_id=f"paho-session-pub-{v}")
        pub.connect()
        for i in range(5):
            pub.publish(f"{base}/q1", f"{how}-1-{i}".encode(), 1)
            pub.publish(f"{base}/q2", f"{how}-2-{i}".encode(), 2)
        pub.disconnect()

        back = Peer(port, v, client_id=cid, clean=False, session_expiry=expiry)
        present = back.connect()
        check(present, f"after {how}: session not present")
        got = summary(back.expect(10))
        q1 = [m for m in got if m[0] == f"{base}/q1"]
        q2 = [m for m in got if m[0] == f"{base}/q2"]
        check(q1 == [(f"{base}/q1", f"{how}-1-{i}", 1, False) for i in range(5)], f"QoS 1: {q1}")
        check(q2 == [(f"{base}/q2", f"{how}-2-{i}", 2, False) for i in range(5)], f"QoS 2: {q2}")
        rounds.append(how)
        leave = back

    # Acknowledged messages do not come back: the next message is a new one.
    leave.publish(f"{base}/q2", b"marker", 2)
    got = summary(leave.expect(1))
    check(got == [(f"{base}/q2", "marker", 2, False)], f"after resume: {got}")
    leave.disconnect()

    result = {"resumed_after": rounds}
    if v == "v5":
        short = Peer(port, v, client_id=f"{cid}-short", clean=True, session_expiry=0)
        short.connect()
        short.subscribe(f"{base}/short", 1)
        short.disconnect()
        pub = Peer(port, v, client_id=f"paho-session-pub2-{v}")
        pub.connect()
        pub.publish(f"{base}/short", b"lost", 1)
        again = Peer(port, v, client_id=f"{cid}-short", clean=False, session_expiry=0)
        check(not again.connect(), "session with expiry 0 outlived its connection")
        again.subscribe(f"{base}/short", 1)
        pub.publish(f"{base}/short", b"new", 1)
        got = summary(again.expect(1))
        check(got == [(f"{base}/short", "new", 1, False)], f"expiry 0: {got}")
        again.disconnect()
        pub.disconnect()
        result["expiry_0_ends_session"] = True
    return result


def scenario_properties(port, v):
    """v5 request/response: publish properties reach the subscriber unchanged and the
    reply carries the correlation data back."""
    check(v == "v5", "properties is a v5 scenario")
    req_topic = "paho/v5/request"
    reply_topic = "paho/v5/reply/requester"
    corr = b"\x00\x01corr\xff"

    responder = Peer(port, v, client_id="responder")
    responder.connect()
    sub_props = Properties(PacketTypes.SUBSCRIBE)
    sub_props.SubscriptionIdentifier = 7
    responder.subscribe(req_topic, 1, properties=sub_props)
    legacy = Peer(port, "v311", client_id="legacy")
    legacy.connect()
    legacy.subscribe(req_topic, 2)

    requester = Peer(port, v, client_id="requester")
    requester.connect()
    requester.subscribe(reply_topic, 2)

    props = Properties(PacketTypes.PUBLISH)
    props.UserProperty = [("k", "v1"), ("other", "x"), ("k", "v2")]
    props.ResponseTopic = reply_topic
    props.CorrelationData = corr
    props.ContentType = "application/json"
    props.PayloadFormatIndicator = 1
    props.MessageExpiryInterval = 60
    requester.publish(req_topic, b'{"q": 1}', 2, properties=props)

    req = responder.expect(1)[0]
    p = req.properties
    check(req.payload == b'{"q": 1}' and req.qos == 1, f"request: {req.payload!r} QoS {req.qos}")
    check(p.UserProperty == [("k", "v1"), ("other", "x"), ("k", "v2")], f"user properties: {p}")
    check(p.ResponseTopic == reply_topic, f"response topic: {p}")
    check(p.CorrelationData == corr, f"correlation data: {p}")
    check(p.ContentType == "application/json", f"content type: {p}")
    check(p.PayloadFormatIndicator == 1, f"payload format: {p}")
    # Counted down while the message waits, rounded up: 60 unless the machine is slow.
    check(50 <= p.MessageExpiryInterval <= 60, f"message expiry: {p}")
    check(p.SubscriptionIdentifier == [7], f"subscription identifier: {p}")

    plain = legacy.expect(1)[0]
    check((plain.payload, plain.qos) == (b'{"q": 1}', 2), f"3.1.1 copy: {plain.payload!r}")

    reply_props = Properties(PacketTypes.PUBLISH)
    reply_props.CorrelationData = p.CorrelationData
    responder.publish(p.ResponseTopic, b"answer", 1, properties=reply_props)
    reply = requester.expect(1)[0]
    check(reply.payload == b"answer", f"reply: {reply.payload!r}")
    check(reply.properties.CorrelationData == corr, f"reply correlation: {reply.properties}")

    for peer in (responder, legacy, requester):
        peer.disconnect()
    return {"properties": ["user", "response-topic", "correlation", "content-type",
                           "payload-format", "message-expiry", "subscription-id"]}


SCENARIOS = {
    "qos": scenario_qos,
    "retained": scenario_retained,
    "will": scenario_will,
    "session": scenario_session,
    "properties": scenario_properties,
}


def main():
    if len(sys.argv) != 4 or sys.argv[2] not in SCENARIOS or sys.argv[3] not in PROTOCOLS:
        print(__doc__, file=sys.stderr)
        return 2
    port, scenario, version = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    if not paho.mqtt.__version__.startswith("2."):
        print(f"paho-mqtt {paho.mqtt.__version__} found, 2.x needed: "
              "pip install 'paho-mqtt>=2,<3'", file=sys.stderr)
        return 3
    # SIGALRM's default action ends the process: the watchdog.
    signal.alarm(DEADLINE_SECS)
    started = time.monotonic()
    try:
        details = SCENARIOS[scenario](port, version)
    except Failure as e:
        print(f"{scenario} {version}: FAILED: {e}", file=sys.stderr)
        return 1
    result = {"ok": True, "scenario": scenario, "version": version,
              "paho": paho.mqtt.__version__, "secs": round(time.monotonic() - started, 3)}
    result.update(details)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
