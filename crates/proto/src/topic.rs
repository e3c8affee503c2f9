//! Topic names, topic filters (including `$share/{ShareName}/{filter}`) and matching.

use std::fmt;

use bytestring::ByteString;

use crate::error::TopicError;

const MAX_TOPIC_BYTES: usize = 65_535;

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong);
    }
    if s.contains('\0') {
        return Err(TopicError::NullCharacter);
    }
    Ok(())
}

/// A topic name: what a PUBLISH is sent to. No wildcards [MQTT-3.3.2-2], no U+0000, at most
/// 65,535 bytes. The empty name exists only as [`TopicName::empty`], for a v5 PUBLISH whose
/// Topic Alias stands for the name.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates a topic name.
    pub fn new(s: impl Into<ByteString>) -> Result<TopicName, TopicError> {
        let s = s.into();
        if s.is_empty() {
            return Err(TopicError::Empty);
        }
        if s.len() > MAX_TOPIC_BYTES {
            return Err(TopicError::TooLong);
        }
        // One branch-free pass over the bytes, which the compiler vectorises (every topic of
        // every PUBLISH comes through here). The three characters are ASCII, and no byte of a
        // multi-byte UTF-8 sequence is ASCII. U+0000 takes precedence over a wildcard, as in
        // `check_common`.
        let (mut nul, mut wildcard) = (false, false);
        for &b in s.as_bytes() {
            nul |= b == 0;
            wildcard |= (b == b'+') | (b == b'#');
        }
        if nul {
            return Err(TopicError::NullCharacter);
        }
        if wildcard {
            return Err(TopicError::WildcardInName);
        }
        Ok(TopicName(s))
    }

    /// The empty name of a v5 PUBLISH that carries a Topic Alias instead.
    pub fn empty() -> TopicName {
        TopicName(ByteString::new())
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The shared string (cheap to clone).
    pub fn as_bytestring(&self) -> &ByteString {
        &self.0
    }

    /// True only for [`TopicName::empty`].
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True for names that start with `$` (such as `$SYS/...`), which a filter starting with
    /// a wildcard does not match [MQTT-4.7.2-1].
    pub fn is_dollar(&self) -> bool {
        self.0.starts_with('$')
    }

    /// The levels, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.0.split('/')
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<&str> for TopicName {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicName::new(s)
    }
}

/// A topic filter: what a SUBSCRIBE asks for, with `+` and `#` wildcards, possibly shared as
/// `$share/{ShareName}/{filter}` (v5 §4.8.2; also accepted from 3.1.1 clients, as brokers do).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicFilter {
    full: ByteString,
    /// Byte offset where the filter proper starts (0 unless shared).
    filter_start: usize,
}

const SHARE_PREFIX: &str = "$share/";

impl TopicFilter {
    /// Validates a topic filter.
    pub fn new(s: impl Into<ByteString>) -> Result<TopicFilter, TopicError> {
        let full = s.into();
        check_common(&full)?;
        let filter_start = if let Some(rest) = full.strip_prefix(SHARE_PREFIX) {
            let slash = rest.find('/').ok_or(TopicError::InvalidShare)?;
            let group = &rest[..slash];
            if group.is_empty() || group.contains(['+', '#']) {
                return Err(TopicError::InvalidShare);
            }
            if rest.len() == slash + 1 {
                return Err(TopicError::InvalidShare);
            }
            SHARE_PREFIX.len() + slash + 1
        } else {
            0
        };
        validate_filter(&full[filter_start..])?;
        Ok(TopicFilter { full, filter_start })
    }

    /// The whole filter as received, including any `$share/{ShareName}/` prefix.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The shared string (cheap to clone).
    pub fn as_bytestring(&self) -> &ByteString {
        &self.full
    }

    /// The filter that topics are matched against (without the share prefix).
    pub fn filter(&self) -> &str {
        &self.full[self.filter_start..]
    }

    /// The share name of a shared subscription.
    pub fn share_group(&self) -> Option<&str> {
        if self.filter_start == 0 {
            None
        } else {
            Some(&self.full[SHARE_PREFIX.len()..self.filter_start - 1])
        }
    }

    /// True for `$share/...` filters.
    pub fn is_shared(&self) -> bool {
        self.filter_start != 0
    }

    /// True if the filter proper contains `+` or `#`.
    pub fn has_wildcards(&self) -> bool {
        self.filter().contains(['+', '#'])
    }

    /// The levels of the filter proper, split on `/`.
    pub fn levels(&self) -> std::str::Split<'_, char> {
        self.filter().split('/')
    }

    /// Does this filter (its filter proper) match the topic name?
    pub fn matches(&self, topic: &TopicName) -> bool {
        matches(self.filter(), topic.as_str())
    }
}

fn validate_filter(f: &str) -> Result<(), TopicError> {
    let mut levels = f.split('/').peekable();
    while let Some(level) = levels.next() {
        if level.contains('#') {
            if level != "#" || levels.peek().is_some() {
                return Err(TopicError::MultiLevelWildcardPosition);
            }
        } else if level.contains('+') && level != "+" {
            return Err(TopicError::SingleLevelWildcardPosition);
        }
    }
    Ok(())
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl TryFrom<&str> for TopicFilter {
    type Error = TopicError;
    fn try_from(s: &str) -> Result<Self, TopicError> {
        TopicFilter::new(s)
    }
}

/// Matches a valid filter (without share prefix) against a valid topic name, without
/// allocating. `#` also matches the parent level (`a/#` matches `a`) [MQTT-4.7.1-2]; a topic
/// starting with `$` is not matched by a filter starting with a wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    let fb = filter.as_bytes();
    if topic.starts_with('$') && matches!(fb.first(), Some(b'+' | b'#')) {
        return false;
    }
    let mut f = filter.split('/');
    let mut t = topic.split('/');
    loop {
        match (f.next(), t.next()) {
            (Some("#"), _) => return true,
            (Some(fl), Some(tl)) => {
                if fl != "+" && fl != tl {
                    return false;
                }
            }
            (None, None) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(TopicName::new("a/b").is_ok());
        assert!(TopicName::new("/").is_ok());
        assert_eq!(TopicName::new(""), Err(TopicError::Empty));
        assert_eq!(TopicName::new("a/+"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a#"), Err(TopicError::WildcardInName));
        assert_eq!(TopicName::new("a\0"), Err(TopicError::NullCharacter));
        assert_eq!(TopicName::new("x".repeat(65_536)), Err(TopicError::TooLong));
        assert!(TopicName::new("x".repeat(65_535)).is_ok());
    }

    #[test]
    fn filters() {
        for ok in ["#", "+", "a/#", "+/+", "/+", "a/+/b", "$SYS/#", "+/a/#"] {
            assert!(TopicFilter::new(ok).is_ok(), "{ok}");
        }
        assert_eq!(
            TopicFilter::new("a/#/b"),
            Err(TopicError::MultiLevelWildcardPosition)
        );
        assert_eq!(
            TopicFilter::new("a#"),
            Err(TopicError::MultiLevelWildcardPosition)
        );
        assert_eq!(
            TopicFilter::new("a+"),
            Err(TopicError::SingleLevelWildcardPosition)
        );
        assert_eq!(
            TopicFilter::new("a/b+/c"),
            Err(TopicError::SingleLevelWildcardPosition)
        );
        assert_eq!(TopicFilter::new(""), Err(TopicError::Empty));
    }

    #[test]
    fn shared() {
        let f = TopicFilter::new("$share/g1/a/+").unwrap();
        assert!(f.is_shared());
        assert_eq!(f.share_group(), Some("g1"));
        assert_eq!(f.filter(), "a/+");
        assert!(f.matches(&TopicName::new("a/b").unwrap()));
        for bad in [
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g/",
            "$share/g+/a",
            "$share/#/a",
        ] {
            assert_eq!(
                TopicFilter::new(bad),
                Err(TopicError::InvalidShare),
                "{bad}"
            );
        }
        assert_eq!(
            TopicFilter::new("$share/g/a#"),
            Err(TopicError::MultiLevelWildcardPosition)
        );
        assert!(!TopicFilter::new("$sharex/g").unwrap().is_shared());
    }

    #[test]
    fn matching_examples_from_spec() {
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
            ("#", "a/b/c", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/x", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b", true),
            ("a/b", "a/bc", false),
            ("a/b", "a", false),
        ];
        for (f, t, want) in cases {
            assert_eq!(matches(f, t), want, "{f} vs {t}");
        }
    }
}
