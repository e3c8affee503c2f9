//! The subscription tree: filters stored level by level, so routing a topic walks at most
//! the levels of that topic (and the `+` / `#` branches) instead of every filter.

use std::collections::BTreeMap;

use foldhash::HashMap;

use bytestring::ByteString;
use quartet_proto::{ClientId, SubscriptionOptions, TopicFilter};

/// What one subscription asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubEntry {
    /// The subscription's options.
    pub options: SubscriptionOptions,
    /// v5 Subscription Identifier.
    pub identifier: Option<u32>,
}

/// The members of one shared subscription group on one filter.
#[derive(Debug, Default)]
struct SharedGroup {
    members: Vec<(ClientId, SubEntry)>,
    /// Round-robin position.
    next: usize,
}

#[derive(Debug, Default)]
struct Subscribers {
    direct: HashMap<ClientId, SubEntry>,
    shared: BTreeMap<ByteString, SharedGroup>,
}

impl Subscribers {
    fn is_empty(&self) -> bool {
        self.direct.is_empty() && self.shared.is_empty()
    }
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<ByteString, Node>,
    plus: Option<Box<Node>>,
    /// Subscriptions ending in `#` below this node.
    hash: Subscribers,
    /// Subscriptions whose filter ends exactly here.
    here: Subscribers,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_empty()
            && self.here.is_empty()
    }
}

/// One delivery decided by routing: a client and the subscription that matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The subscriber.
    pub client: ClientId,
    /// The matching subscription.
    pub entry: SubEntry,
    /// True when it came from a shared subscription.
    pub shared: bool,
}

/// The subscription tree.
#[derive(Debug, Default)]
pub struct SubTree {
    root: Node,
    count: usize,
}

impl SubTree {
    /// An empty tree.
    pub fn new() -> SubTree {
        SubTree::default()
    }

    /// How many subscriptions it holds.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when it holds none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    fn subscribers_mut(&mut self, filter: &TopicFilter) -> &mut Subscribers {
        let mut node = &mut self.root;
        let mut levels = filter.levels().peekable();
        while let Some(level) = levels.next() {
            match level {
                "#" => return &mut node.hash,
                "+" => node = node.plus.get_or_insert_with(Default::default),
                l => node = node.children.entry(ByteString::from(l)).or_default(),
            }
            if levels.peek().is_none() {
                break;
            }
        }
        &mut node.here
    }

    /// Adds or replaces `client`'s subscription to `filter`. Returns true if it is new.
    pub fn insert(&mut self, filter: &TopicFilter, client: &ClientId, entry: SubEntry) -> bool {
        let subs = self.subscribers_mut(filter);
        let new = match filter.share_group() {
            None => subs.direct.insert(client.clone(), entry).is_none(),
            Some(group) => {
                let g = subs.shared.entry(ByteString::from(group)).or_default();
                match g.members.iter_mut().find(|(c, _)| c == client) {
                    Some(m) => {
                        m.1 = entry;
                        false
                    }
                    None => {
                        g.members.push((client.clone(), entry));
                        true
                    }
                }
            }
        };
        if new {
            self.count += 1;
        }
        new
    }

    /// Removes `client`'s subscription to `filter`. Returns true if it existed.
    pub fn remove(&mut self, filter: &TopicFilter, client: &ClientId) -> bool {
        let levels: Vec<&str> = filter.levels().collect();
        let removed = remove_at(&mut self.root, &levels, filter.share_group(), client);
        if removed {
            self.count -= 1;
        }
        removed
    }

    /// Collects the subscriptions matching `topic` into `out`. For each shared group one
    /// member is chosen, round-robin, preferring members for which `online` is true.
    pub fn route(&mut self, topic: &str, online: &dyn Fn(&ClientId) -> bool, out: &mut Vec<Hit>) {
        let dollar = topic.starts_with('$');
        let levels: Vec<&str> = topic.split('/').collect();
        walk(&mut self.root, &levels, dollar, online, out);
    }
}

fn remove_at(node: &mut Node, levels: &[&str], group: Option<&str>, client: &ClientId) -> bool {
    let (subs, done) = match levels {
        ["#"] => (Some(&mut node.hash), true),
        [] => (Some(&mut node.here), true),
        _ => (None, false),
    };
    if done {
        let Some(subs) = subs else { return false };
        return match group {
            None => subs.direct.remove(client).is_some(),
            Some(g) => {
                let Some(sg) = subs.shared.get_mut(g) else {
                    return false;
                };
                let before = sg.members.len();
                sg.members.retain(|(c, _)| c != client);
                let removed = sg.members.len() != before;
                if sg.members.is_empty() {
                    subs.shared.remove(g);
                }
                removed
            }
        };
    }
    let (first, rest) = (levels[0], &levels[1..]);
    if first == "+" {
        let Some(child) = node.plus.as_mut() else {
            return false;
        };
        let removed = remove_at(child, rest, group, client);
        if child.is_empty() {
            node.plus = None;
        }
        removed
    } else {
        let Some(child) = node.children.get_mut(first) else {
            return false;
        };
        let removed = remove_at(child, rest, group, client);
        if child.is_empty() {
            node.children.remove(first);
        }
        removed
    }
}

fn collect(subs: &mut Subscribers, online: &dyn Fn(&ClientId) -> bool, out: &mut Vec<Hit>) {
    for (client, entry) in &subs.direct {
        out.push(Hit {
            client: client.clone(),
            entry: *entry,
            shared: false,
        });
    }
    for g in subs.shared.values_mut() {
        let n = g.members.len();
        if n == 0 {
            continue;
        }
        let start = g.next % n;
        let pick = (0..n)
            .map(|i| (start + i) % n)
            .find(|&i| online(&g.members[i].0))
            .unwrap_or(start);
        g.next = pick + 1;
        let (client, entry) = &g.members[pick];
        out.push(Hit {
            client: client.clone(),
            entry: *entry,
            shared: true,
        });
    }
}

fn walk(
    node: &mut Node,
    levels: &[&str],
    skip_wildcards: bool,
    online: &dyn Fn(&ClientId) -> bool,
    out: &mut Vec<Hit>,
) {
    // `a/#` matches `a` too, and every level below [MQTT-4.7.1-2]; a `$` topic is not matched
    // by a wildcard at the first level [MQTT-4.7.2-1].
    if !skip_wildcards {
        collect(&mut node.hash, online, out);
    }
    let Some((first, rest)) = levels.split_first() else {
        collect(&mut node.here, online, out);
        return;
    };
    if let Some(child) = node.children.get_mut(*first) {
        walk(child, rest, false, online, out);
    }
    if !skip_wildcards {
        if let Some(child) = node.plus.as_mut() {
            walk(child, rest, false, online, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quartet_proto::TopicName;

    fn entry() -> SubEntry {
        SubEntry {
            options: SubscriptionOptions::default(),
            identifier: None,
        }
    }

    fn clients(t: &mut SubTree, topic: &str) -> Vec<String> {
        let mut out = Vec::new();
        t.route(topic, &|_| true, &mut out);
        let mut v: Vec<String> = out.into_iter().map(|h| h.client.to_string()).collect();
        v.sort();
        v
    }

    #[test]
    fn routes_like_the_reference_matcher() {
        let filters = [
            "a/b", "a/+", "a/#", "#", "+/b", "+/+", "$SYS/#", "a/b/c", "/+", "+",
        ];
        let topics = ["a/b", "a", "a/b/c", "b/b", "$SYS/x", "/x", "x", "a/", ""];
        let mut t = SubTree::new();
        for (i, f) in filters.iter().enumerate() {
            assert!(t.insert(
                &TopicFilter::new(*f).unwrap(),
                &ClientId::new(format!("c{i}")),
                entry()
            ));
        }
        assert_eq!(t.len(), filters.len());
        for topic in topics {
            if TopicName::new(topic).is_err() {
                continue;
            }
            let mut want: Vec<String> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| quartet_proto::topic::matches(f, topic))
                .map(|(i, _)| format!("c{i}"))
                .collect();
            want.sort();
            assert_eq!(clients(&mut t, topic), want, "topic {topic:?}");
        }
        for (i, f) in filters.iter().enumerate() {
            assert!(t.remove(
                &TopicFilter::new(*f).unwrap(),
                &ClientId::new(format!("c{i}"))
            ));
        }
        assert!(t.is_empty());
        assert!(t.root.is_empty(), "nodes pruned after removal");
    }

    #[test]
    fn shared_group_round_robin_prefers_online() {
        let mut t = SubTree::new();
        let f = TopicFilter::new("$share/g/a").unwrap();
        for c in ["x", "y", "z"] {
            t.insert(&f, &ClientId::new(c), entry());
        }
        let mut picks = Vec::new();
        for _ in 0..6 {
            let mut out = Vec::new();
            t.route("a", &|c| c.as_str() != "y", &mut out);
            assert_eq!(out.len(), 1);
            assert!(out[0].shared);
            picks.push(out[0].client.to_string());
        }
        assert_eq!(picks, ["x", "z", "x", "z", "x", "z"]);
        assert!(
            !t.insert(&f, &ClientId::new("x"), entry()),
            "re-subscribe replaces"
        );
        assert!(t.remove(&f, &ClientId::new("y")));
        assert!(!t.remove(&f, &ClientId::new("y")));
    }
}
