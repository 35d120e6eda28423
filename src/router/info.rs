//! `INFO` through respite in cluster mode: one server's counters are the
//! sums over the primaries. The first primary's text is the base (server,
//! replication, persistence and the other per-node fields stay its own);
//! the fields below are replaced by their sums over every primary, and the
//! `# Keyspace`, `# Commandstats` and `# Errorstats` lines are summed entry
//! by entry (`usec_per_call` recomputed). `docs/cluster.md` lists the same
//! fields (a test keeps them equal).

/// Fields summed over the primaries (integers; `*_human` companions of
/// summed byte counts are recomputed).
pub const ADDITIVE: &[&str] = &[
    // Clients
    "connected_clients",
    "blocked_clients",
    "tracking_clients",
    "clients_in_timeout_table",
    "total_blocking_keys",
    "total_blocking_keys_on_nokey",
    // Memory
    "used_memory",
    "used_memory_rss",
    "used_memory_overhead",
    "used_memory_dataset",
    "used_memory_lua",
    "used_memory_vm_eval",
    "used_memory_scripts_eval",
    "used_memory_vm_functions",
    "used_memory_functions",
    "number_of_cached_scripts",
    "number_of_functions",
    "number_of_libraries",
    // Stats
    "total_connections_received",
    "total_commands_processed",
    "instantaneous_ops_per_sec",
    "total_net_input_bytes",
    "total_net_output_bytes",
    "rejected_connections",
    "expired_keys",
    "expired_time_cap_reached_count",
    "evicted_keys",
    "evicted_clients",
    "keyspace_hits",
    "keyspace_misses",
    "pubsub_channels",
    "pubsub_patterns",
    "pubsubshard_channels",
    "total_error_replies",
    "unexpected_error_replies",
    "total_reads_processed",
    "total_writes_processed",
    "tracking_total_keys",
    "tracking_total_items",
    "tracking_total_prefixes",
    "dump_payload_sanitizations",
];

/// The merged text of the `INFO` replies of every primary (`texts[0]` is
/// the base).
pub fn merge(texts: &[&str]) -> String {
    let Some(base) = texts.first() else {
        return String::new();
    };
    let sum = |field: &str| -> Option<i64> {
        let mut total = 0i64;
        let mut seen = false;
        for t in texts {
            if let Some(v) = field_of(t, field).and_then(|v| v.parse::<i64>().ok()) {
                total += v;
                seen = true;
            }
        }
        seen.then_some(total)
    };
    let mut out = String::with_capacity(base.len() + 256);
    let mut section = String::new();
    let mut stats_done = false;
    for line in base.split_inclusive("\r\n") {
        let bare = line.trim_end_matches("\r\n");
        if let Some(name) = bare.strip_prefix('#') {
            section = name.trim().to_ascii_lowercase();
            out.push_str(line);
            if matches!(section.as_str(), "commandstats" | "errorstats") {
                out.push_str(&sum_entries(texts, &section));
                stats_done = true;
            }
            continue;
        }
        if matches!(section.as_str(), "commandstats" | "errorstats") && stats_done {
            continue;
        }
        let Some((field, _)) = bare.split_once(':') else {
            out.push_str(line);
            continue;
        };
        if ADDITIVE.contains(&field) {
            if let Some(v) = sum(field) {
                out.push_str(&format!("{field}:{v}\r\n"));
                continue;
            }
        }
        if let Some(of) = field.strip_suffix("_human") {
            if ADDITIVE.contains(&of) {
                if let Some(v) = sum(of) {
                    out.push_str(&format!("{field}:{}\r\n", bytes_to_human(v)));
                    continue;
                }
            }
        }
        out.push_str(line);
    }
    super::merge::sum_keyspace(&out, texts.iter().copied())
}

fn field_of<'a>(text: &'a str, field: &str) -> Option<&'a str> {
    text.split("\r\n")
        .find_map(|l| l.strip_prefix(field).and_then(|r| r.strip_prefix(':')))
}

/// The `name:k=v,...` lines of a section, summed per name over every text
/// (names in first-seen order; `usec_per_call` recomputed).
fn sum_entries(texts: &[&str], section: &str) -> String {
    let mut entries: Vec<(String, Vec<(String, f64)>)> = Vec::new();
    for t in texts {
        let mut inside = false;
        for l in t.split("\r\n") {
            if let Some(name) = l.strip_prefix('#') {
                inside = name.trim().eq_ignore_ascii_case(section);
                continue;
            }
            if !inside {
                continue;
            }
            let Some((name, fields)) = l.split_once(':') else {
                continue;
            };
            let at = match entries.iter().position(|e| e.0 == name) {
                Some(i) => i,
                None => {
                    entries.push((name.to_string(), Vec::new()));
                    entries.len() - 1
                }
            };
            for (k, v) in fields.split(',').filter_map(|kv| kv.split_once('=')) {
                let v: f64 = v.parse().unwrap_or(0.0);
                let e = &mut entries[at].1;
                match e.iter_mut().find(|f| f.0 == k) {
                    Some(f) => f.1 += v,
                    None => e.push((k.to_string(), v)),
                }
            }
        }
    }
    let mut out = String::new();
    for (name, fields) in &entries {
        let get = |k: &str| fields.iter().find(|f| f.0 == k).map(|f| f.1);
        let shown: Vec<String> = fields
            .iter()
            .map(|(k, v)| match (k.as_str(), get("usec"), get("calls")) {
                ("usec_per_call", Some(usec), Some(calls)) if calls > 0.0 => {
                    format!("{k}={:.2}", usec / calls)
                }
                _ => format!("{k}={}", *v as i64),
            })
            .collect();
        out.push_str(&format!("{name}:{}\r\n", shown.join(",")));
    }
    out
}

/// Redis's `bytesToHuman`.
fn bytes_to_human(n: i64) -> String {
    let d = n as f64;
    const K: f64 = 1024.0;
    if d < K {
        format!("{n}B")
    } else if d < K * K {
        format!("{:.2}K", d / K)
    } else if d < K * K * K {
        format!("{:.2}M", d / (K * K))
    } else if d < K * K * K * K {
        format!("{:.2}G", d / (K * K * K))
    } else if d < K * K * K * K * K {
        format!("{:.2}T", d / (K * K * K * K))
    } else {
        format!("{:.2}P", d / (K * K * K * K * K))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn additive_fields_and_stats_are_summed() {
        let a = "# Clients\r\nconnected_clients:2\r\nblocked_clients:1\r\n# Memory\r\nused_memory:1000\r\nused_memory_human:1000B\r\n# Server\r\nredis_version:7.0.15\r\n# Commandstats\r\ncmdstat_get:calls=2,usec=10,usec_per_call=5.00,rejected_calls=0,failed_calls=0\r\n# Keyspace\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n";
        let b = "# Clients\r\nconnected_clients:3\r\nblocked_clients:0\r\n# Memory\r\nused_memory:2000\r\nused_memory_human:1.95K\r\n# Server\r\nredis_version:7.0.15\r\n# Commandstats\r\ncmdstat_get:calls=2,usec=30,usec_per_call=15.00,rejected_calls=0,failed_calls=1\r\ncmdstat_set:calls=1,usec=1,usec_per_call=1.00,rejected_calls=0,failed_calls=0\r\n# Keyspace\r\ndb0:keys=2,expires=0,avg_ttl=0\r\n";
        let m = merge(&[a, b]);
        assert!(m.contains("connected_clients:5\r\n"), "{m}");
        assert!(m.contains("blocked_clients:1\r\n"), "{m}");
        assert!(
            m.contains("used_memory:3000\r\nused_memory_human:2.93K\r\n"),
            "{m}"
        );
        assert!(m.contains("redis_version:7.0.15\r\n"), "{m}");
        assert!(m.contains("cmdstat_get:calls=4,usec=40,usec_per_call=10.00,rejected_calls=0,failed_calls=1\r\ncmdstat_set:calls=1,"), "{m}");
        assert!(m.contains("db0:keys=3,expires=0,avg_ttl=0\r\n"), "{m}");
        assert_eq!(m.matches("cmdstat_get").count(), 1, "{m}");
    }
}
