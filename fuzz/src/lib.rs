//! Fuzzing zap's parsers on the stable toolchain.
//!
//! [`exercise`] is the target: it runs every parse, validate and access
//! path over one input (typed `view`/`decode`/`Owned` of several message
//! shapes, and the raw readers at many offsets). It must never panic, hang
//! or allocate more than the input justifies. [`Fuzzer`] feeds it:
//! deterministic mutations (seeded xorshift) of valid messages and the
//! golden vectors, keeping inputs that reach a new outcome (error kind and
//! offset) as new seeds — outcome-guided, since stable Rust has no
//! coverage instrumentation for libFuzzer.
//!
//! Run: `cargo run --release -p zap-fuzz -- --iterations 1000000`
//! (see `docs/FUZZING.md`).

#![forbid(unsafe_code)]

use std::collections::HashSet;

use bytes::Bytes;
use zap::wire::Message as Raw;
use zap::{DecodeError, Message, Owned, Text};

/// Nested message with a list of strings.
#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
pub struct Inner {
    /// Scalar.
    pub id: u32,
    /// Zero-copy bytes.
    pub data: Bytes,
    /// Variable-element list.
    pub tags: Vec<String>,
}

/// Every field kind.
#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
pub struct All {
    /// bool
    pub b: bool,
    /// u16
    pub u16_: u16,
    /// u64
    pub u64_: u64,
    /// i32
    pub i32_: i32,
    /// f64
    pub f64_: f64,
    /// bytes_fixed[32]
    pub hash: [u8; 32],
    /// bytes
    pub body: Bytes,
    /// text, copied
    pub name: String,
    /// text, zero-copy
    pub label: Text,
    /// nested
    pub inner: Inner,
    /// scalar list
    pub u64s: Vec<u64>,
    /// fixed list
    pub ids: Vec<[u8; 20]>,
    /// bytes list
    pub blobs: Vec<Bytes>,
    /// pointer list
    pub inners: Vec<Inner>,
    /// optional scalar
    pub opt_i64: Option<i64>,
    /// optional bytes
    pub opt_bytes: Option<Bytes>,
    /// optional nested
    pub opt_inner: Option<Inner>,
}

/// A recursive type (cycles must end in `TooDeep`).
#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
pub struct Tree {
    /// Scalar.
    pub value: u32,
    /// Children.
    pub children: Vec<Tree>,
    /// Optional text.
    pub label: Option<String>,
}

/// The Go golden layout (explicit offsets, no size word).
#[derive(zap::Message, Debug, Clone, PartialEq, Default)]
pub struct Golden {
    /// u32 @0
    #[zap(offset = 0)]
    pub value: u32,
    /// text @8
    #[zap(offset = 8)]
    pub name: String,
    /// bytes @16
    #[zap(offset = 16)]
    pub data: Bytes,
}

/// What one input did: a signature of which checks failed (error kind and
/// field, per target) for corpus guidance, and whether any typed target
/// validated it (so the decode and re-encode paths ran).
#[derive(Clone, Copy, Debug)]
pub struct Outcome {
    /// Hash of the outcomes of every target.
    pub sig: u64,
    /// Whether a typed target accepted the input.
    pub validated: bool,
}

/// Runs every path over `bytes`. Panics only on a bug.
pub fn exercise(bytes: &[u8]) -> Outcome {
    let mut sig = 0u64;
    let mut validated = false;
    let mut note = |r: Result<(), DecodeError>, salt: u64| {
        let v = match r {
            Ok(()) => {
                validated |= salt != 11;
                1
            }
            Err(e) => {
                // The variant name only (not its values), and the field.
                let kind = format!("{:?}", e.kind());
                let name = kind.split([' ', '(']).next().unwrap_or("");
                let field = e.field().unwrap_or("");
                name.bytes()
                    .chain(field.bytes())
                    .fold(7u64, |h, b| h.wrapping_mul(31).wrapping_add(b as u64))
            }
        };
        sig = sig.rotate_left(13) ^ v.wrapping_mul(salt | 1);
    };

    let shared = Bytes::copy_from_slice(bytes);
    match All::view(bytes) {
        Ok(v) => {
            touch_all(v);
            note(Ok(()), 3);
            // What validates must decode, to the same bytes again.
            let owned = All::decode(shared.clone()).expect("view ok, decode failed");
            let again = owned.to_bytes().expect("re-encode");
            touch_all(All::view(&again).expect("re-encoded message must validate"));
            let o = Owned::<All>::decode(shared.clone()).expect("view ok, Owned failed");
            assert_eq!(o.to_message().to_bytes().expect("re-encode"), again);
            let body = o.view().body();
            assert_eq!(o.slice(body), owned.body);
        }
        Err(e) => {
            note(Err(e), 3);
            assert!(All::decode(shared.clone()).is_err());
            assert!(Owned::<All>::decode(shared.clone()).is_err());
        }
    }
    match Tree::view(bytes) {
        Ok(v) => {
            touch_tree(v);
            note(Ok(()), 5);
            drop(Tree::decode(shared.clone()).expect("view ok, decode failed"));
        }
        Err(e) => note(Err(e), 5),
    }
    match Golden::view(bytes) {
        Ok(v) => {
            note(Ok(()), 7);
            let _ = (v.value(), v.name().len(), v.data().len());
            drop(Golden::decode(shared.clone()).expect("view ok, decode failed"));
        }
        Err(e) => note(Err(e), 7),
    }
    if let Ok(msg) = Raw::parse(bytes)
        && let Ok(root) = msg.root()
    {
        raw_paths(root);
        note(Ok(()), 11);
    }
    Outcome { sig, validated }
}

fn raw_paths(root: zap::wire::Object<'_>) {
    for off in (0..64).chain([u32::MAX as usize, usize::MAX - 3]) {
        let _ = root.get::<u64>(off);
        let _ = root.get::<bool>(off);
        let _ = root.fixed::<32>(off);
        let _ = root.bytes(off);
        let _ = root.text(off);
        if let Ok(Some(o)) = root.object(off) {
            let _ = o.get::<u32>(0);
            let _ = o.bytes(4);
        }
        for stride in [0, 1, 4, 8, 1 << 20] {
            if let Ok(l) = root.list(off, stride) {
                let _ = l.get::<u64>(0);
                let _ = l.get::<u16>(l.len().saturating_sub(1));
                let _ = l.fixed::<4>(1);
                let _ = l.as_bytes();
                let _ = l.object(0, stride);
                let _ = l.object(usize::MAX / 2, 16);
                let _ = l.object_ptr(0);
                let _ = l.bytes_iter().take(64).count();
            }
        }
    }
}

/// Reads every field of a view, iterating every list.
pub fn touch_all(v: AllView<'_>) -> usize {
    let parts = [
        v.b() as usize,
        v.u16_() as usize,
        v.u64_() as usize,
        v.i32_() as usize,
        v.f64_() as usize,
        v.hash()[31] as usize,
        v.body().len(),
        v.name().len(),
        v.label().len(),
        touch_inner(v.inner()),
        v.u64s()
            .iter()
            .fold(0usize, |a, x| a.wrapping_add(x as usize)),
        v.ids().iter().map(|x| x[0] as usize).sum(),
        v.blobs().iter().map(<[u8]>::len).sum(),
        v.blobs()
            .get(v.blobs().len().saturating_sub(1))
            .map_or(0, <[u8]>::len),
        v.inners()
            .iter()
            .map(touch_inner)
            .fold(0, usize::wrapping_add),
        v.inners().get(1).map_or(0, touch_inner),
        v.opt_i64().unwrap_or(0) as usize,
        v.opt_bytes().map_or(0, <[u8]>::len),
        v.opt_inner().map_or(0, touch_inner),
        format!("{v:?}").len(),
    ];
    parts.into_iter().fold(0, usize::wrapping_add)
}

fn touch_inner(v: InnerView<'_>) -> usize {
    (v.id() as usize)
        .wrapping_add(v.data().len())
        .wrapping_add(v.tags().iter().map(str::len).sum::<usize>())
}

fn touch_tree(v: TreeView<'_>) -> usize {
    (v.value() as usize)
        .wrapping_add(v.label().map_or(0, str::len))
        .wrapping_add(
            v.children()
                .iter()
                .map(touch_tree)
                .fold(0, usize::wrapping_add),
        )
}

/// Valid messages of every shape the target parses, plus the golden vector.
pub fn seeds() -> Vec<Vec<u8>> {
    let inner = |id| Inner {
        id,
        data: Bytes::from(vec![id as u8; 5]),
        tags: vec!["a".into(), "bc".into()],
    };
    let all = All {
        b: true,
        u16_: 7,
        u64_: 1 << 40,
        i32_: -5,
        f64_: 0.5,
        hash: [3; 32],
        body: Bytes::from_static(b"body bytes"),
        name: "name".into(),
        label: Text::from_static("label"),
        inner: inner(1),
        u64s: vec![1, 2, 3],
        ids: vec![[9; 20]],
        blobs: vec![Bytes::from_static(b"x"), Bytes::new()],
        inners: vec![inner(2), inner(3)],
        opt_i64: Some(-1),
        opt_bytes: Some(Bytes::from_static(b"o")),
        opt_inner: Some(inner(4)),
    };
    let leaf = |v| Tree {
        value: v,
        children: vec![],
        label: Some("leaf".into()),
    };
    let tree = Tree {
        value: 1,
        children: vec![
            leaf(2),
            Tree {
                value: 3,
                children: vec![leaf(4)],
                label: None,
            },
        ],
        label: None,
    };
    let golden = Golden {
        value: 0xDEAD_BEEF,
        name: "zap".into(),
        data: Bytes::from_static(&[1, 2, 3, 4]),
    };
    [
        all.to_bytes(),
        All::default().to_bytes(),
        tree.to_bytes(),
        golden.to_bytes(),
    ]
    .into_iter()
    .map(|b| b.expect("seed encodes").to_vec())
    .collect()
}

/// A deterministic mutation fuzzer around [`exercise`].
#[derive(Debug)]
pub struct Fuzzer {
    rng: u64,
    corpus: Vec<Vec<u8>>,
    seen: HashSet<u64>,
    /// Inputs run so far.
    pub runs: u64,
    /// Inputs a typed target accepted.
    pub validated: u64,
}

/// Caps the corpus so a long run stays bounded in memory.
const MAX_CORPUS: usize = 4096;

impl Fuzzer {
    /// A fuzzer starting from [`seeds`] and `extra` inputs.
    pub fn new(seed: u64, extra: Vec<Vec<u8>>) -> Self {
        let mut corpus = seeds();
        corpus.extend(extra);
        Fuzzer {
            rng: seed | 1,
            corpus,
            seen: HashSet::new(),
            runs: 0,
            validated: 0,
        }
    }

    /// Inputs kept because they reached a new outcome (seeds included).
    pub fn corpus_len(&self) -> usize {
        self.corpus.len()
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    /// Makes the next input from the corpus.
    pub fn input(&mut self) -> Vec<u8> {
        let i = self.below(self.corpus.len());
        let mut b = self.corpus[i].clone();
        let rounds = 1 + self.below(4);
        for _ in 0..rounds {
            self.mutate(&mut b);
        }
        b
    }

    fn mutate(&mut self, b: &mut Vec<u8>) {
        const WORDS: [u32; 12] = [
            0,
            1,
            3,
            4,
            8,
            16,
            0x7FFF_FFFF,
            0x8000_0000,
            0xFFFF_FFFF,
            0xFFFF_FFF0,
            0xFFFF_FFF8,
            1 << 20,
        ];
        if b.is_empty() {
            b.extend_from_slice(&(self.next() as u32).to_le_bytes());
            return;
        }
        let pos = self.below(b.len());
        match self.below(9) {
            0 => b[pos] ^= 1 << self.below(8),
            1 => b[pos] = self.next() as u8,
            2 | 3 => {
                // A boundary value in a 4-aligned word (most slots are).
                let at = pos & !3;
                let w = match self.below(3) {
                    0 => WORDS[self.below(WORDS.len())],
                    1 => b.len() as u32 - (self.below(8) as u32).min(b.len() as u32),
                    _ => (self.below(64) as i32 - 32) as u32,
                };
                for (k, byte) in w.to_le_bytes().into_iter().enumerate() {
                    if let Some(x) = b.get_mut(at + k) {
                        *x = byte;
                    }
                }
            }
            4 => b.truncate(pos),
            5 => {
                let n = 1 + self.below(16);
                b.extend((0..n).map(|_| self.next() as u8));
                // Keep the header's size honest half the time.
                if self.below(2) == 0 && b.len() >= 16 {
                    let size = b.len() as u32;
                    b[12..16].copy_from_slice(&size.to_le_bytes());
                }
            }
            6 => {
                // Copy a word from elsewhere (pointer aliasing).
                let from = self.below(b.len()) & !3;
                let to = pos & !3;
                if from + 4 <= b.len() && to + 4 <= b.len() {
                    let w: [u8; 4] = b[from..from + 4].try_into().unwrap_or([0; 4]);
                    b[to..to + 4].copy_from_slice(&w);
                }
            }
            7 => {
                // Splice the tail of another corpus entry.
                let other = self.below(self.corpus.len());
                let from = self.below(self.corpus[other].len());
                b.truncate(pos);
                b.extend_from_slice(&self.corpus[other][from..]);
            }
            _ => {
                let n = self.below(8).min(b.len() - pos);
                b.drain(pos..pos + n);
            }
        }
    }

    /// Counts a run of `input`; keeps the input if its outcome is new.
    pub fn record(&mut self, input: Vec<u8>, outcome: Outcome) {
        self.runs += 1;
        self.validated += outcome.validated as u64;
        if self.seen.insert(outcome.sig) && self.corpus.len() < MAX_CORPUS {
            self.corpus.push(input);
        }
    }

    /// Makes, runs and records one input.
    pub fn step(&mut self) {
        let input = self.input();
        let outcome = exercise(&input);
        self.record(input, outcome);
    }
}
