//! Path patterns compiled into one deterministic byte automaton, the form
//! the kernel runs over every path a watched process names.
//!
//! Each pattern (profile rule or guardrail) becomes a small NFA over path
//! bytes with the segment semantics of [`Glob`]: `*` within a segment,
//! `**` over whole segments, and the leading-dot rule. The union of all of
//! them is made deterministic by subset construction; each state carries
//! the OR of the payloads (allowed accesses, guarded accesses) of the
//! patterns that accept there. Bytes no pattern names literally share one
//! class, so a row is a few dozen entries, not 256.
use std::collections::HashMap;

use thiserror::Error;

use super::glob::{Glob, Part};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DfaError {
    #[error("the path patterns need more than {0} automaton states; the kernel cannot hold them (merge rules into wider patterns, or run in monitor mode)")]
    TooLarge(usize),
}

#[derive(Debug, Clone, Copy)]
enum Edge {
    Byte(u8),
    NotSlash,
    NotSlashNotDot,
}

impl Edge {
    fn takes(self, b: u8) -> bool {
        match self {
            Edge::Byte(x) => b == x,
            Edge::NotSlash => b != b'/',
            Edge::NotSlashNotDot => b != b'/' && b != b'.',
        }
    }
}

#[derive(Debug, Default)]
struct Node {
    eps: Vec<u32>,
    edges: Vec<(Edge, u32)>,
    payload: u64,
    accept: bool,
    /// Every continuation from here matches (a dotglob pattern's trailing
    /// `**`): the subset keeps the payload, not the node, so patterns such
    /// as `**/.ssh/**` and `**/.aws/**` do not multiply states.
    sticky: bool,
}

#[derive(Default)]
struct Nfa {
    nodes: Vec<Node>,
    starts: Vec<u32>,
}

impl Nfa {
    fn node(&mut self) -> u32 {
        self.nodes.push(Node::default());
        (self.nodes.len() - 1) as u32
    }
    fn eps(&mut self, from: u32, to: u32) {
        self.nodes[from as usize].eps.push(to);
    }
    fn edge(&mut self, from: u32, e: Edge, to: u32) {
        self.nodes[from as usize].edges.push((e, to));
    }
    fn accept(&mut self, n: u32, payload: u64) {
        let node = &mut self.nodes[n as usize];
        node.accept = true;
        node.payload |= payload;
    }

    /// Adds one pattern; see the module comment for the construction.
    fn add(&mut self, glob: &Glob, payload: u64) {
        let parts: Vec<Part> = glob.parts().collect();
        let dot = glob.dotglob();
        let m = parts.len();
        // Entry node of each segment, and the end (all segments matched).
        let entries: Vec<u32> = (0..=m).map(|_| self.node()).collect();
        self.accept(entries[m], payload);
        // Only `**` segments after i: ending right after segment i matches.
        let tail_globstars = |i: usize| parts[i + 1..].iter().all(|p| *p == Part::Globstar);
        for (i, part) in parts.iter().enumerate() {
            let entry = entries[i];
            let next = entries[i + 1];
            match part {
                Part::Globstar if dot && parts[i..].iter().all(|p| *p == Part::Globstar) => {
                    self.accept(entry, payload);
                    self.nodes[entry as usize].sticky = true;
                }
                Part::Globstar => {
                    let inside = self.node();
                    self.eps(entry, next);
                    self.edge(entry, Edge::Byte(b'/'), entry);
                    let first = if dot {
                        Edge::NotSlash
                    } else {
                        Edge::NotSlashNotDot
                    };
                    self.edge(entry, first, inside);
                    self.edge(inside, Edge::NotSlash, inside);
                    self.edge(inside, Edge::Byte(b'/'), entry);
                    if tail_globstars(i) {
                        self.accept(inside, payload);
                    }
                }
                Part::Lit(text) | Part::Wild(text) => {
                    let exit = self.segment(entry, text.as_bytes(), !dot);
                    if i + 1 == m || tail_globstars(i) {
                        self.accept(exit, payload);
                    }
                    if i + 1 < m {
                        // The separator; a following `**` entry may take
                        // zero segments, in which case it moves on by epsilon.
                        self.edge(exit, Edge::Byte(b'/'), next);
                    }
                }
            }
        }
        self.starts.push(entries[0]);
    }

    /// Nodes for one literal or `*` segment from `entry`; returns its exit.
    /// With `guard_dot`, a pattern starting with `*` does not let the
    /// name start with a dot (shell rule).
    fn segment(&mut self, entry: u32, pat: &[u8], guard_dot: bool) -> u32 {
        let guard = guard_dot && pat.first() == Some(&b'*');
        // Unguarded positions 0..=len; position len is the exit.
        let pos: Vec<u32> = (0..=pat.len()).map(|_| self.node()).collect();
        for (k, &c) in pat.iter().enumerate() {
            if c == b'*' {
                self.eps(pos[k], pos[k + 1]);
                self.edge(pos[k], Edge::NotSlash, pos[k]);
            } else {
                self.edge(pos[k], Edge::Byte(c), pos[k + 1]);
            }
        }
        if !guard {
            self.eps(entry, pos[0]);
            return pos[pat.len()];
        }
        // Guarded copies of the positions reachable before any byte: the
        // first byte may not be a dot.
        let mut k = 0;
        let mut g = entry;
        loop {
            if k == pat.len() {
                self.eps(g, pos[k]);
                break;
            }
            let c = pat[k];
            if c == b'*' {
                self.edge(g, Edge::NotSlashNotDot, pos[k]);
                let ng = self.node();
                self.eps(g, ng);
                g = ng;
                k += 1;
            } else {
                if c != b'.' {
                    self.edge(g, Edge::Byte(c), pos[k + 1]);
                }
                break;
            }
        }
        pos[pat.len()]
    }

    /// Epsilon closure of `set`, with sticky nodes folded into a payload.
    /// `mark` is scratch space of one bool per node, left all false.
    fn closure(&self, set: &mut Vec<u32>, mark: &mut [bool]) -> u64 {
        let mut stack = std::mem::take(set);
        stack.retain(|&n| !std::mem::replace(&mut mark[n as usize], true));
        let mut sticky = 0;
        let mut out = Vec::new();
        let mut folded = Vec::new();
        while let Some(n) = stack.pop() {
            let node = &self.nodes[n as usize];
            if node.sticky {
                sticky |= node.payload;
                folded.push(n);
                continue;
            }
            out.push(n);
            for &e in &node.eps {
                if !mark[e as usize] {
                    mark[e as usize] = true;
                    stack.push(e);
                }
            }
        }
        for &n in out.iter().chain(&folded) {
            mark[n as usize] = false;
        }
        out.sort_unstable();
        *set = out;
        sticky
    }
}

/// The automaton as the kernel maps hold it: one transition table with up
/// to two start states. The profile's patterns run from `start`, the
/// guardrails' (the same for every agent) from `start2`; a path's payload
/// is the OR of both. Two automata side by side add their sizes, where
/// one automaton of both would multiply them (every subtree rule would
/// carry its own copy of the guardrail tracker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dfa {
    /// Byte -> class (shared by both automata).
    pub classes: [u8; 256],
    pub class_count: u32,
    /// `trans[state * class_count + class]` -> state. State 0 is dead.
    pub trans: Vec<u32>,
    /// Payload per state (OR of the accepting patterns').
    pub accept: Vec<u64>,
    pub start: u32,
    /// The second automaton's start, or 0 when there is none.
    pub start2: u32,
}

/// One automaton's states, before it is laid beside another.
struct Half {
    trans: Vec<u32>,
    accept: Vec<u64>,
    start: u32,
}

impl Dfa {
    /// Compiles `(pattern, payload)` pairs; at most `max_states` states.
    pub fn build(patterns: &[(Glob, u64)], max_states: usize) -> Result<Self, DfaError> {
        Self::build_pair(patterns, &[], max_states)
    }

    /// Compiles two pattern sets into two automata sharing one table.
    pub fn build_pair(
        first: &[(Glob, u64)],
        second: &[(Glob, u64)],
        max_states: usize,
    ) -> Result<Self, DfaError> {
        let nfa = |patterns: &[(Glob, u64)]| {
            let mut nfa = Nfa::default();
            for (g, p) in patterns {
                nfa.add(g, *p);
            }
            nfa
        };
        let (a, b) = (nfa(first), nfa(second));
        let (classes, reps) = byte_classes(&[&a, &b]);
        let pa = subset(&a, &reps, max_states)?;
        let nc = reps.len();
        let mut trans = pa.trans;
        let mut accept = pa.accept;
        let mut start2 = 0;
        if !second.is_empty() {
            let pb = subset(&b, &reps, max_states.saturating_sub(accept.len()))?;
            let off = accept.len() as u32;
            trans.extend(pb.trans.iter().map(|t| t + off));
            accept.extend(pb.accept);
            start2 = pb.start + off;
        }
        Ok(Self {
            classes,
            class_count: nc as u32,
            trans,
            accept,
            start: pa.start,
            start2,
        })
    }

    pub fn states(&self) -> usize {
        self.accept.len()
    }

    /// The state after `bytes` from `state`.
    pub fn feed(&self, mut state: u32, bytes: &[u8]) -> u32 {
        for &b in bytes {
            let c = self.classes[b as usize] as usize;
            state = self.trans[state as usize * self.class_count as usize + c];
        }
        state
    }

    /// The starts to run: one or both automata.
    fn starts(&self) -> Vec<u32> {
        let mut v = vec![self.start];
        if self.start2 != 0 {
            v.push(self.start2);
        }
        v
    }

    /// The payload for an already normalised absolute path.
    pub fn lookup(&self, path: &str) -> u64 {
        self.starts()
            .into_iter()
            .map(|s| self.accept[self.feed(s, path.as_bytes()) as usize])
            .fold(0, |a, p| a | p)
    }

    /// What the kernel computes for `path` relative to `base` (or
    /// absolute): components fed one by one, `.` and empty ones skipped,
    /// `..` returning to the state before the last component.
    pub fn resolve(&self, base: Option<&str>, path: &str) -> u64 {
        self.starts()
            .into_iter()
            .map(|s| self.resolve_from(s, base, path))
            .fold(0, |a, p| a | p)
    }

    fn resolve_from(&self, start: u32, base: Option<&str>, path: &str) -> u64 {
        let mut stack = vec![start];
        let mut state = start;
        let joined = match base {
            Some(b) if !path.starts_with('/') => format!("{b}/{path}"),
            _ => path.to_string(),
        };
        for comp in joined.split('/') {
            match comp {
                "" | "." => {}
                ".." => {
                    if stack.len() > 1 {
                        stack.pop();
                    }
                    state = *stack.last().unwrap_or(&start);
                }
                c => {
                    state = self.feed(self.feed(state, b"/"), c.as_bytes());
                    stack.push(state);
                }
            }
        }
        if stack.len() == 1 {
            state = self.feed(state, b"/");
        }
        self.accept[state as usize]
    }
}

/// Byte classes: every byte an edge of any of the automata names, plus
/// '/' and '.', alone; all others together in class 0. Returns the table
/// and a representative byte per class.
fn byte_classes(nfas: &[&Nfa]) -> ([u8; 256], Vec<u8>) {
    let mut literal = [false; 256];
    literal[b'/' as usize] = true;
    literal[b'.' as usize] = true;
    for nfa in nfas {
        for n in &nfa.nodes {
            for (e, _) in &n.edges {
                if let Edge::Byte(b) = e {
                    literal[*b as usize] = true;
                }
            }
        }
    }
    let mut classes = [0u8; 256];
    let mut reps = vec![0u8]; // class 0: a byte no pattern names (or 0)
    for b in 1..=255u8 {
        if literal[b as usize] {
            classes[b as usize] = reps.len() as u8;
            reps.push(b);
        }
    }
    (classes, reps)
}

/// Subset construction over (live nodes, sticky payload). State 0:
/// nothing live, nothing sticky (dead). Each node's closure and per-class
/// moves are computed once, so a DFA state's successor is a union of
/// precomputed sets.
fn subset(nfa: &Nfa, reps: &[u8], max_states: usize) -> Result<Half, DfaError> {
    type Key = (Vec<u32>, u64);
    let nc = reps.len();
    let n = nfa.nodes.len();
    let mut mark = vec![false; n];
    // closure[node]: live nodes reachable by epsilon, and sticky payload.
    let closures: Vec<(Vec<u32>, u64)> = (0..n as u32)
        .map(|i| {
            let mut set = vec![i];
            let sticky = nfa.closure(&mut set, &mut mark);
            (set, sticky)
        })
        .collect();
    // moves[node * nc + class]: the targets of its edges on that class.
    let mut moves: Vec<Vec<u32>> = vec![Vec::new(); n * nc];
    for (i, node) in nfa.nodes.iter().enumerate() {
        for (c, &rep) in reps.iter().enumerate() {
            for (e, to) in &node.edges {
                if e.takes(rep) {
                    moves[i * nc + c].push(*to);
                }
            }
        }
    }
    let mut ids: HashMap<Key, u32> = HashMap::new();
    let mut sets: Vec<Key> = vec![(Vec::new(), 0)];
    ids.insert((Vec::new(), 0), 0);
    let mut start = nfa.starts.clone();
    let sticky = nfa.closure(&mut start, &mut mark);
    let start_id = 1;
    ids.insert((start.clone(), sticky), start_id);
    sets.push((start, sticky));
    let mut trans = vec![0u32; nc]; // dead row
    let mut seen = vec![false; n];
    let mut i = 1;
    while i < sets.len() {
        let (set, sticky) = sets[i].clone();
        for c in 0..nc {
            let mut next: Vec<u32> = Vec::new();
            let mut more = 0;
            for &s in &set {
                for &to in &moves[s as usize * nc + c] {
                    let (cl, st) = &closures[to as usize];
                    more |= st;
                    for &x in cl {
                        if !std::mem::replace(&mut seen[x as usize], true) {
                            next.push(x);
                        }
                    }
                }
            }
            for &x in &next {
                seen[x as usize] = false;
            }
            next.sort_unstable();
            let next = (next, sticky | more);
            let id = match ids.get(&next) {
                Some(id) => *id,
                None => {
                    if sets.len() >= max_states {
                        return Err(DfaError::TooLarge(max_states));
                    }
                    let id = sets.len() as u32;
                    ids.insert(next.clone(), id);
                    sets.push(next);
                    id
                }
            };
            trans.push(id);
        }
        i += 1;
    }
    let accept = sets
        .iter()
        .map(|(s, sticky)| {
            s.iter()
                .map(|n| &nfa.nodes[*n as usize])
                .filter(|n| n.accept)
                .fold(*sticky, |a, n| a | n.payload)
        })
        .collect();
    Ok(Half {
        trans,
        accept,
        start: start_id,
    })
}

#[cfg(test)]
mod tests;
