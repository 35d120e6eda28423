//! Realistic JSON cache values for the compression tests and benchmarks: user
//! profiles, run lists, leaderboards and social feeds, 200 B to 64 KB,
//! deterministic from a seed. Names, ids, numbers and texts vary per record, so
//! the documents compress like real ones (repeated keys and structure, varied
//! content), not like a repeated byte.
//!
//! Benchmarks include it with `#[path = "../tests/common/jsongen.rs"] mod jsongen;`.
#![allow(dead_code)]

use std::fmt::Write;

/// A small deterministic generator (xorshift64*), so no dependency is needed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const FIRST: &[&str] = &[
    "Ada", "Bruno", "Chloé", "Dmitri", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal",
    "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quinn", "Rosa", "Sven", "Tariq", "Uma", "Viktor",
    "Wen", "Ximena", "Yusuf", "Zoë",
];
const LAST: &[&str] = &[
    "Lovelace",
    "Okafor",
    "Martin",
    "Ivanova",
    "Rossi",
    "Haddad",
    "Hopper",
    "Tanaka",
    "García",
    "Berg",
    "Yilmaz",
    "Schulz",
    "Fernández",
    "Kowalski",
    "Nilsson",
    "Sharma",
    "O'Neil",
    "Moreau",
    "Larsen",
    "Aziz",
];
const CITIES: &[&str] = &[
    "Lisbon",
    "Osaka",
    "Nairobi",
    "Montréal",
    "Tallinn",
    "Porto Alegre",
    "Kraków",
    "Austin",
    "Chennai",
    "Reykjavík",
    "Ljubljana",
    "Hobart",
];
const WORDS: &[&str] = &[
    "morning",
    "run",
    "coffee",
    "release",
    "deploy",
    "weekend",
    "trail",
    "build",
    "garden",
    "concert",
    "review",
    "sprint",
    "mountain",
    "river",
    "launch",
    "team",
    "pizza",
    "bug",
    "fixed",
    "finally",
    "great",
    "new",
    "record",
    "pace",
    "city",
    "photo",
    "friends",
    "late",
    "early",
    "rain",
    "sunny",
    "cache",
    "latency",
    "dashboard",
    "metrics",
    "tired",
    "happy",
];
const TAGS: &[&str] = &[
    "running",
    "cycling",
    "rust",
    "redis",
    "travel",
    "food",
    "music",
    "photography",
    "books",
    "chess",
    "climbing",
    "gardening",
    "ops",
    "design",
];

/// Between `min` and `min + spread - 1` words.
fn sentence(r: &mut Rng, min: usize, spread: u64) -> String {
    let words = min + r.below(spread) as usize;
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(r.pick(WORDS));
    }
    s
}

fn name(r: &mut Rng) -> (String, String) {
    let first = r.pick(FIRST).to_string();
    let last = r.pick(LAST).to_string();
    (first, last)
}

fn timestamp(r: &mut Rng) -> String {
    format!(
        "2026-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        1 + r.below(12),
        1 + r.below(28),
        r.below(24),
        r.below(60),
        r.below(60)
    )
}

/// A user profile: identity, settings, a few recent devices.
pub fn profile(r: &mut Rng) -> String {
    let (first, last) = name(r);
    let id = r.next() % 100_000_000;
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"id\":{id},\"username\":\"{}{}{}\",\"name\":{{\"first\":\"{first}\",\"last\":\"{last}\"}},\
         \"email\":\"{}.{}@example.{}\",\"city\":\"{}\",\"joined\":\"{}\",\"verified\":{},\
         \"followers\":{},\"following\":{},\"bio\":\"{}\",\"tags\":[",
        first.to_lowercase(),
        last.to_lowercase().replace('\'', ""),
        id % 1000,
        first.to_lowercase(),
        last.to_lowercase().replace('\'', ""),
        r.pick(&["com", "org", "net", "io"]),
        r.pick(CITIES),
        timestamp(r),
        r.below(2) == 1,
        r.below(50_000),
        r.below(2_000),
        sentence(r, 6, 12)
    );
    for i in 0..1 + r.below(5) {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "\"{}\"", r.pick(TAGS));
    }
    let _ = write!(
        s,
        "],\"settings\":{{\"theme\":\"{}\",\"units\":\"{}\",\"locale\":\"{}\",\"notifications\":{{\"email\":{},\"push\":{},\"weekly_digest\":{}}}}},\"devices\":[",
        r.pick(&["dark", "light", "system"]),
        r.pick(&["metric", "imperial"]),
        r.pick(&["en-GB", "pt-PT", "ja-JP", "de-DE", "fr-CA"]),
        r.below(2) == 1,
        r.below(2) == 1,
        r.below(2) == 1
    );
    for i in 0..1 + r.below(4) {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(
            s,
            "{{\"kind\":\"{}\",\"os\":\"{}\",\"last_seen\":\"{}\",\"app_version\":\"{}.{}.{}\"}}",
            r.pick(&["phone", "watch", "laptop", "tablet"]),
            r.pick(&["android", "ios", "linux", "macos", "windows"]),
            timestamp(r),
            r.below(6),
            r.below(30),
            r.below(100)
        );
    }
    s.push_str("]}");
    s
}

/// A list of runs with splits.
pub fn runs(r: &mut Rng, n: usize) -> String {
    let mut s = format!("{{\"athlete\":{},\"runs\":[", r.next() % 1_000_000);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let km = 3 + r.below(40);
        let _ = write!(
            s,
            "{{\"id\":{},\"start\":\"{}\",\"title\":\"{}\",\"distance_m\":{},\"duration_s\":{},\"elevation_m\":{},\"avg_hr\":{},\"type\":\"run\",\"sport\":\"running\",\"visibility\":\"everyone\",\"gear\":null,\"manual\":false,\"commute\":false,\"private\":false,\"splits\":[",
            r.next() % 10_000_000_000,
            timestamp(r),
            sentence(r, 2, 3),
            km * 1000 + r.below(1000),
            km * (240 + r.below(120)),
            r.below(900),
            120 + r.below(60)
        );
        for k in 0..km.min(12) {
            if k > 0 {
                s.push(',');
            }
            let _ = write!(s, "{}", 240 + r.below(120));
        }
        s.push_str("]}");
    }
    s.push_str("]}");
    s
}

/// A leaderboard page.
pub fn leaderboard(r: &mut Rng, n: usize) -> String {
    let mut s = format!(
        "{{\"board\":\"{}-{}\",\"updated\":\"{}\",\"entries\":[",
        r.pick(TAGS),
        r.below(1000),
        timestamp(r)
    );
    let mut score = 1_000_000 + r.below(1_000_000);
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let (first, last) = name(r);
        score -= r.below(5000);
        let _ = write!(
            s,
            "{{\"rank\":{},\"player\":{{\"id\":{},\"name\":\"{first} {last}\",\"country\":\"{}\"}},\"score\":{score},\"delta\":{},\"badges\":[],\"team\":null,\"status\":\"active\",\"profile_url\":\"https://www.example.com/players/{}\"}}",
            i + 1,
            r.next() % 100_000_000,
            r.pick(&["PT", "JP", "KE", "CA", "EE", "BR", "PL", "US", "IN", "IS"]),
            r.below(41) as i64 - 20,
            i + 1
        );
    }
    s.push_str("]}");
    s
}

/// A social feed page.
pub fn feed(r: &mut Rng, n: usize) -> String {
    let mut s = format!("{{\"cursor\":\"{:016x}\",\"items\":[", r.next());
    for i in 0..n {
        if i > 0 {
            s.push(',');
        }
        let (first, last) = name(r);
        let _ = write!(
            s,
            "{{\"id\":\"{:x}\",\"author\":{{\"id\":{},\"display\":\"{first} {last}\",\"avatar\":\"https://cdn.example.com/a/{:08x}.jpg\"}},\"posted\":\"{}\",\"text\":\"{}\",\"likes\":{},\"comments\":{},\"tags\":[\"{}\"],\"type\":\"post\",\"status\":\"published\",\"visibility\":\"{}\",\"lang\":\"en\",\"is_pinned\":false,\"is_edited\":{},\"media\":[],\"reply_to\":null,\"reactions\":{{\"like\":{},\"love\":0,\"laugh\":0,\"wow\":0}},\"links\":{{\"self\":\"https://api.example.com/v2/posts/{}\",\"author\":\"https://api.example.com/v2/users/{}\",\"comments\":\"https://api.example.com/v2/posts/{}/comments\"}}}}",
            r.next(),
            r.next() % 100_000_000,
            r.next() as u32,
            timestamp(r),
            sentence(r, 5, 25),
            r.below(10_000),
            r.below(500),
            r.pick(TAGS),
            r.pick(&["public", "public", "public", "followers"]),
            r.below(5) == 0,
            r.below(100),
            i,
            i * 7,
            i
        );
    }
    s.push_str("]}");
    s
}

/// A document of one of the four kinds, close to `target` bytes (200 B to
/// 64 KB; at least `target` unless one item is already larger than 64 KB);
/// deterministic from `seed`.
pub fn value(seed: u64, target: usize) -> Vec<u8> {
    const MAX: usize = 64 * 1024;
    let target = target.clamp(200, MAX);
    let kind = Rng::new(seed).below(4);
    let build = |n: usize| -> String {
        let mut r = Rng::new(seed ^ 0x5555_5555);
        match kind {
            0 => {
                let mut s = format!("{{\"profile\":{},\"history\":[", profile(&mut r));
                for i in 1..n {
                    if i > 1 {
                        s.push(',');
                    }
                    s.push_str(&profile(&mut r));
                }
                s.push_str("]}");
                s
            }
            1 => runs(&mut r, n),
            2 => leaderboard(&mut r, n),
            _ => feed(&mut r, n),
        }
    };
    let mut n = 1;
    loop {
        let doc = build(n);
        if doc.len() >= target {
            if doc.len() > MAX && n > 1 {
                return build(n - 1).into_bytes();
            }
            return doc.into_bytes();
        }
        let per_item = (doc.len() / n).max(1);
        n += ((target - doc.len()) / per_item).max(1);
    }
}

/// `count` values of about `size` bytes from `seed`.
pub fn values(seed: u64, count: usize, size: usize) -> Vec<Vec<u8>> {
    (0..count as u64)
        .map(|i| value(seed.wrapping_add(i), size))
        .collect()
}
