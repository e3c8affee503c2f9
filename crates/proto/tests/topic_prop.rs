//! Topic matching checked against a naive reference: [`quartet_proto::topic::matches`] and
//! [`TopicFilter::matches`] must agree with a recursive matcher over level vectors, written
//! straight from §4.7 of the specification, for generated topics and filters over a small
//! alphabet (so that levels collide often) with `$`-prefixed topics, empty levels, `+` and `#`.
//! The validity rules of [`TopicName::new`] and [`TopicFilter::new`] are checked against
//! reference validators the same way.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use proptest::collection::vec;
use proptest::prelude::*;
use quartet_proto::topic::matches;
use quartet_proto::{TopicError, TopicFilter, TopicName};

// ---------------------------------------------------------------------------------------------
// The reference

/// Does a filter, as levels, match a topic, as levels?
/// - `#` matches the rest of the topic, including nothing (so `a/#` matches `a`) [MQTT-4.7.1-2];
/// - `+` matches exactly one level, which may be empty;
/// - any other level matches itself only.
fn reference_levels(filter: &[&str], topic: &[&str]) -> bool {
    match (filter.split_first(), topic.split_first()) {
        (Some((&"#", _)), _) => true,
        (Some((&"+", f_rest)), Some((_, t_rest))) => reference_levels(f_rest, t_rest),
        (Some((f, f_rest)), Some((t, t_rest))) => f == t && reference_levels(f_rest, t_rest),
        (None, None) => true,
        _ => false,
    }
}

/// The whole rule: a topic starting with `$` is not matched by a filter starting with a
/// wildcard [MQTT-4.7.2-1].
fn reference_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    if topic.starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    reference_levels(&f, &t)
}

/// A valid topic name: non-empty, no wildcard, no U+0000 [MQTT-4.7.3-1] [MQTT-3.3.2-2].
fn reference_name_ok(s: &str) -> bool {
    !s.is_empty() && !s.contains(['+', '#', '\0'])
}

/// A valid (non-shared) filter: non-empty, no U+0000, `+` alone in its level, `#` alone in
/// the last level [MQTT-4.7.1-2] [MQTT-4.7.1-3].
fn reference_filter_ok(s: &str) -> bool {
    if s.is_empty() || s.contains('\0') {
        return false;
    }
    let levels: Vec<&str> = s.split('/').collect();
    levels.iter().enumerate().all(|(i, l)| {
        if l.contains('#') {
            *l == "#" && i == levels.len() - 1
        } else {
            !l.contains('+') || *l == "+"
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Strategies

/// A topic level: few distinct values, so filters and topics often share them.
fn level() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("ab".to_owned()),
        Just(String::new()),
        Just("$".to_owned()),
        Just("$SYS".to_owned()),
        Just("é".to_owned()),
    ]
}

fn topic() -> impl Strategy<Value = String> {
    vec(level(), 1..5)
        .prop_map(|l| l.join("/"))
        .prop_filter("topic names are not empty", |t| !t.is_empty())
}

fn filter() -> impl Strategy<Value = String> {
    let filter_level = prop_oneof![3 => level(), 2 => Just("+".to_owned())];
    (vec(filter_level, 0..5), any::<bool>())
        .prop_map(|(mut levels, hash)| {
            if hash || levels.is_empty() {
                levels.push("#".to_owned());
            }
            levels.join("/")
        })
        .prop_filter("filters are not empty", |f| !f.is_empty())
}

/// A topic that the filter matches when `$` does not get in the way: `+` becomes some level,
/// `#` becomes zero or more levels.
fn topic_matching(f: String) -> impl Strategy<Value = (String, String)> {
    let n = f.split('/').count();
    (vec(level(), n..=n), vec(level(), 0..3)).prop_filter_map(
        "an empty topic",
        move |(fill, tail)| {
            let mut out: Vec<String> = Vec::new();
            for (l, x) in f.split('/').zip(fill) {
                match l {
                    "+" => out.push(x),
                    "#" => out.extend(tail.iter().cloned()),
                    other => out.push(other.to_owned()),
                }
            }
            let t = out.join("/");
            if out.is_empty() || t.is_empty() {
                None
            } else {
                Some((f.clone(), t))
            }
        },
    )
}

/// Short strings over the characters that matter to validity.
fn raw_string() -> impl Strategy<Value = String> {
    "[ab/+#$\\x00]{0,6}"
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Random pairs: mostly non-matching, exercises every way of failing.
    #[test]
    fn matches_agrees_with_reference(f in filter(), t in topic()) {
        let want = reference_matches(&f, &t);
        prop_assert_eq!(matches(&f, &t), want, "filter {:?} topic {:?}", f, t);
        let filter = TopicFilter::new(f.as_str()).unwrap();
        let name = TopicName::new(t.as_str()).unwrap();
        prop_assert_eq!(filter.matches(&name), want);
    }

    /// Pairs built to match: exercises every way of succeeding (and the `$` rule).
    #[test]
    fn matches_agrees_with_reference_on_matching_pairs(
        (f, t) in filter().prop_flat_map(topic_matching)
    ) {
        let want = reference_matches(&f, &t);
        prop_assert_eq!(matches(&f, &t), want, "filter {:?} topic {:?}", f, t);
        // Built to match, so only the `$` rule can say no.
        let dollar_rule = t.starts_with('$') && (f.starts_with('+') || f.starts_with('#'));
        prop_assert_eq!(want, !dollar_rule, "filter {:?} topic {:?}", f, t);
        let name = TopicName::new(t.as_str()).unwrap();
        prop_assert_eq!(TopicFilter::new(f.as_str()).unwrap().matches(&name), want);
    }

    /// A shared subscription matches with its filter proper; the share name plays no part,
    /// and `$share/{group}/` does not make `$` topics reachable by a wildcard.
    #[test]
    fn shared_filters_match_like_their_filter(
        f in filter(),
        t in topic(),
        group in "[a-z]{1,3}",
    ) {
        let shared = TopicFilter::new(format!("$share/{group}/{f}")).unwrap();
        prop_assert!(shared.is_shared());
        prop_assert_eq!(shared.share_group(), Some(group.as_str()));
        prop_assert_eq!(shared.filter(), f.as_str());
        let name = TopicName::new(t.as_str()).unwrap();
        prop_assert_eq!(shared.matches(&name), reference_matches(&f, &t));
    }

    /// `TopicName::new` and `TopicFilter::new` accept exactly what the rules allow.
    #[test]
    fn validity_agrees_with_reference(s in raw_string()) {
        let name = TopicName::new(s.as_str());
        prop_assert_eq!(name.is_ok(), reference_name_ok(&s), "name {:?}: {:?}", s, name);
        let filter = TopicFilter::new(s.as_str());
        prop_assert_eq!(filter.is_ok(), reference_filter_ok(&s), "filter {:?}: {:?}", s, filter);
        if let Ok(f) = filter {
            prop_assert!(!f.is_shared());
            prop_assert_eq!(f.filter(), s.as_str());
            prop_assert_eq!(f.has_wildcards(), s.contains(['+', '#']));
        }
        if let Ok(n) = name {
            prop_assert_eq!(n.is_dollar(), s.starts_with('$'));
            // A name is also a filter without wildcards, and it matches itself exactly
            // (`$` names included: the `$` rule is about wildcards only).
            let as_filter = TopicFilter::new(s.as_str()).unwrap();
            prop_assert!(as_filter.matches(&n));
        }
    }
}

/// The error of each invalid form, for a few fixed strings.
#[test]
fn validity_errors() {
    assert_eq!(TopicName::new(""), Err(TopicError::Empty));
    assert_eq!(TopicName::new("a\0"), Err(TopicError::NullCharacter));
    assert_eq!(TopicName::new("+"), Err(TopicError::WildcardInName));
    assert_eq!(
        TopicFilter::new("#/"),
        Err(TopicError::MultiLevelWildcardPosition)
    );
    assert_eq!(
        TopicFilter::new("a/b#"),
        Err(TopicError::MultiLevelWildcardPosition)
    );
    assert_eq!(
        TopicFilter::new("++"),
        Err(TopicError::SingleLevelWildcardPosition)
    );
    assert_eq!(TopicFilter::new("$share/g/"), Err(TopicError::InvalidShare));
}

/// The reference itself, on the examples of §4.7 (so a wrong reference cannot hide a wrong
/// matcher).
#[test]
fn reference_matches_the_spec_examples() {
    let cases = [
        ("sport/tennis/player1/#", "sport/tennis/player1", true),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking",
            true,
        ),
        (
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon",
            true,
        ),
        ("sport/#", "sport", true),
        ("#", "sport/tennis", true),
        ("sport/tennis/+", "sport/tennis/player1", true),
        ("sport/tennis/+", "sport/tennis/player1/ranking", false),
        ("sport/+", "sport", false),
        ("sport/+", "sport/", true),
        ("+/+", "/finance", true),
        ("/+", "/finance", true),
        ("+", "/finance", false),
        ("#", "$SYS/monitor/Clients", false),
        ("+/monitor/Clients", "$SYS/monitor/Clients", false),
        ("$SYS/#", "$SYS/monitor/Clients", true),
        ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
        ("a/$/#", "a/$", true),
        ("+/+", "a/$SYS", true),
    ];
    for (f, t, want) in cases {
        assert_eq!(reference_matches(f, t), want, "reference: {f} vs {t}");
        assert_eq!(matches(f, t), want, "matches: {f} vs {t}");
    }
}
