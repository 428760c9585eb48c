//! Every shape problem in a profile at once, in the profile's words.
//!
//! The typed parse stops at its first problem and says it in Rust's words
//! (`invalid value: integer 99999, expected u16`). When it fails, this
//! pass reads the same text as a plain tree with positions and checks it
//! against a table of the format: unknown fields, values that are not one
//! of their words (an access, a direction, an action), numbers out of
//! range, a list where a single value belongs. It says nothing about what
//! only the typed parse knows (a missing field): that error is reported
//! when this pass finds nothing.
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use super::{Finding, Severity};

/// A YAML node with the positions of everything in it.
enum Node {
    Map(Vec<(Spanned<String>, Spanned<Node>)>),
    Seq(Vec<Spanned<Node>>),
    Str(String),
    Int(i128),
    Float(f64),
    Bool(bool),
    Null,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Int(v.into()))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        Node::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(x) = a.next_element::<Spanned<Node>>()? {
            v.push(x);
        }
        Ok(Node::Seq(v))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
        let mut v = Vec::new();
        while let Some(k) = a.next_key::<Spanned<String>>()? {
            v.push((k, a.next_value::<Spanned<Node>>()?));
        }
        Ok(Node::Map(v))
    }
}

/// What a value must be.
enum Want {
    /// Text (any scalar is taken as text).
    Text,
    Bool,
    /// A whole number, 0 or more.
    Count,
    /// A number above 0.
    Positive,
    Port,
    /// One of these words; the second is what the value is called.
    OneOf(&'static [&'static str], &'static str),
    ListOf(&'static Want),
    /// A mapping with these fields (the str names the thing, for messages).
    Fields(&'static [Field], &'static str),
    ListOfFields(&'static [Field], &'static str),
    /// A mapping keyed by these words (called the second), each value one.
    KeyedBy(&'static [&'static str], &'static str, &'static Want),
}

struct Field(&'static str, Want);

const ACCESS: Want = Want::OneOf(
    &[
        "read", "write", "create", "delete", "rename", "chmod", "exec",
    ],
    "an access",
);
const ACCESSES: Want = Want::ListOf(&ACCESS);
const GRANULARITY: Want = Want::OneOf(&["strict", "balanced", "open"], "a granularity");
const CLASSES: &[&str] = &["exec", "file", "delete", "network", "dns"];
const TEXTS: Want = Want::ListOf(&Want::Text);
const PATH_RULE: &[Field] = &[
    Field("path", Want::Text),
    Field("access", ACCESSES),
    Field("runs", Want::Count),
];
const NET_RULE: &[Field] = &[
    Field(
        "direction",
        Want::OneOf(&["connect", "bind", "accept"], "a direction"),
    ),
    Field("host", Want::Text),
    Field("address", Want::Text),
    Field("unix", Want::Text),
    Field("port", Want::Port),
    Field("by", TEXTS),
    Field("model", Want::Bool),
    Field("runs", Want::Count),
];
const EXE_RULE: &[Field] = &[
    Field("path", Want::Text),
    Field("sha256", TEXTS),
    Field("source", Want::OneOf(&["package"], "a source")),
    Field("runs", Want::Count),
];
const BUDGET: Want = Want::Fields(
    &[Field("peak", Want::Count), Field("budget", Want::Count)],
    "a rate budget",
);
const CLASS_STABILITY: Want = Want::Fields(
    &[
        Field("stable", Want::Bool),
        Field("entries", Want::Count),
        Field("quietSessions", Want::Count),
        Field("novelty", Want::ListOf(&Want::Count)),
    ],
    "a class's stability",
);
const PROFILE: &[Field] = &[
    Field("apiVersion", Want::Text),
    Field("kind", Want::Text),
    Field("agent", Want::Text),
    Field("granularity", GRANULARITY),
    Field(
        "overrides",
        Want::ListOfFields(
            &[Field("path", Want::Text), Field("granularity", GRANULARITY)],
            "an override",
        ),
    ),
    Field(
        "readiness",
        Want::Fields(
            &[
                Field("verdict", Want::Text),
                Field("sessions", Want::Count),
                Field("flagged", Want::Count),
                Field("reason", Want::Text),
                Field("checked", Want::Text),
            ],
            "the readiness verdict",
        ),
    ),
    Field("ioUring", Want::Bool),
    Field("rawSockets", Want::Bool),
    Field("territories", Want::ListOfFields(PATH_RULE, "a territory")),
    Field("executables", Want::ListOfFields(EXE_RULE, "an executable")),
    Field("files", Want::ListOfFields(PATH_RULE, "a file rule")),
    Field("network", Want::ListOfFields(NET_RULE, "a network rule")),
    Field(
        "dns",
        Want::ListOfFields(
            &[Field("name", Want::Text), Field("runs", Want::Count)],
            "a DNS rule",
        ),
    ),
    Field(
        "rates",
        Want::Fields(
            &[
                Field("headroom", Want::Positive),
                Field("perMinute", Want::KeyedBy(CLASSES, "a class", &BUDGET)),
            ],
            "rates",
        ),
    ),
    Field(
        "resources",
        Want::Fields(
            &[
                Field("memory", Want::Text),
                Field("pids", Want::Count),
                Field("cpu", Want::Text),
                Field("files", Want::Count),
                Field("runtime", Want::Text),
                Field("restarts", Want::Text),
            ],
            "resources",
        ),
    ),
    Field(
        "models",
        Want::ListOfFields(
            &[Field("path", Want::Text), Field("sha256", TEXTS)],
            "an approved model",
        ),
    ),
    Field(
        "modelManifests",
        Want::ListOfFields(
            &[Field("manifest", Want::Text), Field("key", Want::Text)],
            "a signed model manifest",
        ),
    ),
    Field(
        "instructions",
        Want::ListOfFields(
            &[
                Field("path", Want::Text),
                Field("sha256", Want::Text),
                Field("size", Want::Count),
            ],
            "a pinned instruction file",
        ),
    ),
    Field(
        "actions",
        Want::KeyedBy(
            &[
                "exec",
                "file",
                "delete",
                "network",
                "dns",
                "guardrails",
                "rate",
            ],
            "a class of actions",
            &Want::OneOf(&["alert", "deny", "pause", "kill"], "an action"),
        ),
    ),
    Field(
        "guardrails",
        Want::ListOfFields(
            &[Field("path", Want::Text), Field("category", Want::Text)],
            "a guardrail",
        ),
    ),
    Field(
        "review",
        Want::ListOfFields(
            &[
                Field("path", Want::Text),
                Field("access", ACCESSES),
                Field("guardrail", Want::Text),
                Field("pattern", Want::Text),
                Field("runs", Want::Count),
            ],
            "a review item",
        ),
    ),
    Field(
        "approvals",
        Want::ListOfFields(
            &[
                Field("id", Want::Text),
                Field("what", Want::Text),
                Field("by", Want::Text),
                Field("at", Want::Text),
            ],
            "an approval",
        ),
    ),
    Field(
        "stability",
        Want::Fields(
            &[
                Field("warmupSecs", Want::Count),
                Field("quietSecs", Want::Count),
                Field(
                    "classes",
                    Want::KeyedBy(CLASSES, "a class", &CLASS_STABILITY),
                ),
            ],
            "stability",
        ),
    ),
    Field(
        "provenance",
        Want::Fields(
            &[
                Field("hosts", TEXTS),
                Field("sessions", Want::Count),
                Field("started", Want::Text),
                Field("ended", Want::Text),
                Field("events", Want::KeyedBy(CLASSES, "a class", &Want::Count)),
            ],
            "provenance",
        ),
    ),
];

/// Every shape problem in `text`; empty when there is none, or when the
/// text is not YAML at all (the typed parse says where).
pub(super) fn check(text: &str) -> Vec<Finding> {
    let Ok(root) = serde_saphyr::from_str::<Spanned<Node>>(text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    walk(
        &root,
        &Want::Fields(PROFILE, "a profile"),
        "the profile",
        &mut out,
    );
    out.sort_by_key(|f| (f.line, f.column));
    out
}

fn problem(out: &mut Vec<Finding>, at: &Spanned<Node>, message: String, fix: String) {
    out.push(Finding {
        line: at.referenced.line(),
        column: at.referenced.column(),
        severity: Severity::Error,
        message,
        fix,
    });
}

/// How a value reads in a message.
fn shown(n: &Node) -> String {
    match n {
        Node::Str(s) => format!("`{s}`"),
        Node::Int(i) => i.to_string(),
        Node::Float(f) => f.to_string(),
        Node::Bool(b) => b.to_string(),
        Node::Null => "nothing".into(),
        Node::Seq(_) => "a list".into(),
        Node::Map(_) => "a mapping".into(),
    }
}

fn walk(at: &Spanned<Node>, want: &Want, name: &str, out: &mut Vec<Finding>) {
    let n = &at.value;
    match want {
        Want::Text => {
            if matches!(n, Node::Seq(_) | Node::Map(_)) {
                problem(
                    out,
                    at,
                    format!("{name} is {}, not text", shown(n)),
                    format!("write {name} as one value"),
                );
            }
        }
        Want::Bool => {
            if !matches!(n, Node::Bool(_)) {
                problem(
                    out,
                    at,
                    format!("{name} is true or false, not {}", shown(n)),
                    "write true or false".into(),
                );
            }
        }
        Want::Count => {
            if !matches!(n, Node::Int(i) if *i >= 0) {
                problem(
                    out,
                    at,
                    format!("{name} is a whole number 0 or more, not {}", shown(n)),
                    "write a whole number such as 1".into(),
                );
            }
        }
        Want::Positive => {
            let ok = match n {
                Node::Int(i) => *i > 0,
                Node::Float(f) => *f > 0.0 && f.is_finite(),
                _ => false,
            };
            if !ok {
                problem(
                    out,
                    at,
                    format!("{name} is a number above 0, not {}", shown(n)),
                    "write a number such as 2.0".into(),
                );
            }
        }
        Want::Port => {
            if !matches!(n, Node::Int(i) if (0..=65535).contains(i)) {
                problem(
                    out,
                    at,
                    format!("port {} is out of range 0-65535", shown(n)),
                    "write a port number from 1 to 65535, or leave port out for any port".into(),
                );
            }
        }
        Want::OneOf(words, what) => {
            let ok = matches!(n, Node::Str(s) if words.contains(&s.as_str()));
            if !ok {
                problem(
                    out,
                    at,
                    format!("{} is not {what}", shown(n)),
                    format!("write one of: {}", words.join(", ")),
                );
            }
        }
        Want::ListOf(item) => match n {
            Node::Seq(items) => items.iter().for_each(|x| walk(x, item, name, out)),
            _ => problem(
                out,
                at,
                format!("{name} is a list, not {}", shown(n)),
                "write a list: [a, b] or one `- item` per line".into(),
            ),
        },
        Want::ListOfFields(fields, what) => match n {
            Node::Seq(items) => items
                .iter()
                .for_each(|x| walk(x, &Want::Fields(fields, what), what, out)),
            _ => problem(
                out,
                at,
                format!("{name} is a list of {what}s, not {}", shown(n)),
                "write one `- ` item per entry".into(),
            ),
        },
        Want::Fields(fields, what) => fields_of(at, fields, what, out),
        Want::KeyedBy(keys, what, value) => keyed_by(at, keys, what, value, out),
    }
}

fn fields_of(at: &Spanned<Node>, fields: &[Field], what: &str, out: &mut Vec<Finding>) {
    let Node::Map(entries) = &at.value else {
        problem(
            out,
            at,
            format!("{what} is a mapping of fields, not {}", shown(&at.value)),
            format!(
                "write its fields: {}",
                fields.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
            ),
        );
        return;
    };
    for (k, v) in entries {
        match fields.iter().find(|f| f.0 == k.value) {
            Some(Field(name, want)) => walk(v, want, &format!("`{name}`"), out),
            None => out.push(Finding {
                line: k.referenced.line(),
                column: k.referenced.column(),
                severity: Severity::Error,
                message: format!("unknown field `{}` in {what}", k.value),
                fix: format!(
                    "remove it, or use one of: {}",
                    fields.iter().map(|f| f.0).collect::<Vec<_>>().join(", ")
                ),
            }),
        }
    }
}

fn keyed_by(at: &Spanned<Node>, keys: &[&str], what: &str, value: &Want, out: &mut Vec<Finding>) {
    let Node::Map(entries) = &at.value else {
        problem(
            out,
            at,
            format!(
                "this is a mapping keyed by {what}, not {}",
                shown(&at.value)
            ),
            format!("write `{}: ...` lines", keys.join("`, `")),
        );
        return;
    };
    for (k, v) in entries {
        if keys.contains(&k.value.as_str()) {
            walk(v, value, &format!("`{}`", k.value), out);
        } else {
            out.push(Finding {
                line: k.referenced.line(),
                column: k.referenced.column(),
                severity: Severity::Error,
                message: format!("`{}` is not {what}", k.value),
                fix: format!("use one of: {}", keys.join(", ")),
            });
        }
    }
}

#[cfg(test)]
mod tests;
