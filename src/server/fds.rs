//! Open file descriptors: the limits must fit in `RLIMIT_NOFILE`.
//!
//! A client past the limit used to get no reply at all (`accept` failing with
//! `EMFILE` leaves it in the listen backlog). As Redis does at start
//! (`adjustOpenFilesLimit`), respite computes what its limits need, raises the
//! soft limit up to the hard one, and when that is not enough lowers
//! `limits.max_clients` (and `upstream.max_pinned_connections`) to what fits,
//! with one warning naming the numbers. A client over the lowered limit then
//! gets `-ERR max number of clients reached`, as in Redis.

use crate::config::{Config, Invalid, Mode};

/// Descriptors kept for everything that is not counted below: standard
/// streams, each runtime's epoll and wake-up descriptors, DNS lookups, the
/// sentinels' and cluster discovery's short connections. Redis keeps the same
/// number (`CONFIG_MIN_RESERVED_FDS`).
pub const RESERVED_FDS: u64 = 32;

/// Most admin HTTP connections open at once (`admin.max_connections`), plus
/// the one accepted past it while the idlest is being closed, plus the
/// listener.
fn admin_fds(config: &Config) -> u64 {
    config.admin_http.max_connections as u64 + 2
}

/// Descriptors the configuration needs besides clients and pinned
/// connections: listeners, admin, shared upstream connections (per worker,
/// node, and each database and RESP version in use: counted for every one
/// of them, as any client may select any), sentinel connections, and
/// [`RESERVED_FDS`].
pub fn fixed_need(config: &Config) -> u64 {
    let up = &config.upstream;
    let workers = config.workers.max(1) as u64;
    let nodes = up.nodes.len().max(1) as u64;
    let groups = match up.mode {
        Mode::Cluster => 2,
        _ => 2 * u64::from(up.databases.max(1)),
    };
    let per_node = workers * up.shared_connections as u64 * groups;
    let upstream = match up.mode {
        Mode::Standalone => per_node,
        // Each sentinel: an event subscription and a query at a time.
        Mode::Sentinel => per_node + 2 * nodes,
        // The seeds are a lower bound of the nodes; RESERVED_FDS absorbs a
        // few more.
        Mode::Cluster => per_node * nodes,
    };
    let admin = if config.admin.is_some() {
        admin_fds(config)
    } else {
        0
    };
    RESERVED_FDS + workers + admin + upstream
}

/// The limits that fit `limit` descriptors: `(max_clients, max_pinned)`.
/// Unchanged when they fit; otherwise clients keep at least half of what is
/// left after [`fixed_need`], pinned connections (one per client in a
/// transaction, a blocking command or pub/sub) the rest. `None`: not even
/// one client fits.
pub fn fit(config: &Config, limit: u64) -> Option<(usize, usize)> {
    let clients = config.limits.max_clients as u64;
    let pinned = config.upstream.max_pinned_connections as u64;
    let avail = limit.saturating_sub(fixed_need(config));
    if avail >= clients + pinned {
        return Some((clients as usize, pinned as usize));
    }
    if avail < 2 {
        return None;
    }
    let c = clients.min(avail.saturating_sub(pinned).max(avail / 2));
    let p = pinned.min(avail - c);
    Some((c as usize, p as usize))
}

/// Reads and sets `RLIMIT_NOFILE` (soft, hard). The system calls live in the
/// binary (`main.rs`): this library forbids `unsafe`.
pub trait NofileLimit {
    fn get(&self) -> std::io::Result<(u64, u64)>;
    fn set(&self, soft: u64, hard: u64) -> std::io::Result<()>;
}

/// Raise the soft `RLIMIT_NOFILE` towards what `config` needs (never above
/// the hard limit) and lower the limits in `config` to what the result
/// allows. Logs what it did; an error when not even one client fits.
pub fn adjust(config: &mut Config, rlimit: &dyn NofileLimit) -> Result<(), Invalid> {
    let need = fixed_need(config)
        + config.limits.max_clients as u64
        + config.upstream.max_pinned_connections as u64;
    let (soft, hard) = match rlimit.get() {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open files limit (RLIMIT_NOFILE); limits unchanged");
            return Ok(());
        }
    };
    let mut limit = soft;
    if soft < need && soft < hard {
        let want = need.min(hard);
        match rlimit.set(want, hard) {
            Ok(()) => {
                limit = want;
                tracing::info!(
                    from = soft,
                    to = want,
                    "raised the open files limit (RLIMIT_NOFILE)"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, soft, want, "cannot raise the open files limit (RLIMIT_NOFILE)")
            }
        }
    }
    if limit >= need {
        return Ok(());
    }
    let (clients, pinned) = (
        config.limits.max_clients,
        config.upstream.max_pinned_connections,
    );
    let Some((c, p)) = fit(config, limit) else {
        return Err(Invalid(format!(
            "the open files limit (RLIMIT_NOFILE) is {limit}, too low to serve any client: \
             raise it to at least {} (ulimit -n), {need} for the configured limits",
            fixed_need(config) + 2
        )));
    };
    config.limits.max_clients = c;
    config.upstream.max_pinned_connections = p;
    tracing::warn!(
        "the open files limit (RLIMIT_NOFILE) is {limit} and the hard limit is {hard}, below the \
         {need} that max_clients {clients} and max_pinned_connections {pinned} need: \
         max_clients lowered to {c} and max_pinned_connections to {p} (raise 'ulimit -n' to serve more)"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(clients: usize, pinned: usize) -> Config {
        let mut c = Config {
            workers: 1,
            admin: None,
            ..Config::default()
        };
        c.limits.max_clients = clients;
        c.upstream.max_pinned_connections = pinned;
        c
    }

    #[test]
    fn limits_that_fit_stay() {
        let c = config(10_000, 1024);
        let fixed = fixed_need(&c);
        assert_eq!(fit(&c, fixed + 11_024), Some((10_000, 1024)));
        assert_eq!(fit(&c, u64::MAX), Some((10_000, 1024)));
    }

    #[test]
    fn short_limits_are_shared_and_never_exceed() {
        for (clients, pinned) in [(10_000, 1024), (10_000, 50), (100, 1024), (3, 3)] {
            let c = config(clients, pinned);
            let fixed = fixed_need(&c);
            for limit in [fixed + 2, fixed + 100, fixed + 1000, 256, 1024, 4096] {
                let Some((cl, p)) = fit(&c, limit) else {
                    assert!(limit < fixed + 2);
                    continue;
                };
                assert!(cl >= 1 && cl <= clients, "{cl}");
                assert!(p <= pinned, "{p}");
                assert!(fixed + (cl + p) as u64 <= limit, "{limit}: {cl} + {p}");
                let avail = (limit - fixed) as usize;
                if avail < clients + pinned {
                    // Clients get at least half of what is left.
                    assert!(cl >= (avail / 2).min(clients), "{limit}: {cl}");
                }
            }
        }
        let c = config(10_000, 1024);
        assert_eq!(fit(&c, fixed_need(&c) + 1), None);
        // A few pinned connections leave the rest to clients.
        let c = config(10_000, 50);
        assert_eq!(fit(&c, fixed_need(&c) + 1000), Some((950, 50)));
    }

    #[test]
    fn fixed_need_counts_admin_workers_and_groups() {
        let mut c = config(1, 1);
        let base = fixed_need(&c);
        assert_eq!(base, RESERVED_FDS + 1 + 32);
        c.admin = Some("127.0.0.1:0".parse().unwrap());
        assert_eq!(fixed_need(&c), base + admin_fds(&c));
        c.workers = 2;
        assert_eq!(fixed_need(&c), base + admin_fds(&c) + 1 + 32);
    }

    /// An `RLIMIT_NOFILE` in memory: `set` fails above `hard` (or always).
    struct Fake {
        lim: std::cell::Cell<(u64, u64)>,
        refuse: bool,
    }

    impl NofileLimit for Fake {
        fn get(&self) -> std::io::Result<(u64, u64)> {
            Ok(self.lim.get())
        }
        fn set(&self, soft: u64, hard: u64) -> std::io::Result<()> {
            if self.refuse || hard > self.lim.get().1 {
                return Err(std::io::Error::from_raw_os_error(libc::EPERM));
            }
            self.lim.set((soft, hard));
            Ok(())
        }
    }

    fn fake(soft: u64, hard: u64, refuse: bool) -> Fake {
        Fake {
            lim: std::cell::Cell::new((soft, hard)),
            refuse,
        }
    }

    #[test]
    fn adjust_raises_the_soft_limit_up_to_the_hard_one() {
        let mut c = config(10_000, 1024);
        let need = fixed_need(&c) + 11_024;
        let r = fake(1024, 1 << 20, false);
        adjust(&mut c, &r).unwrap();
        assert_eq!(r.lim.get(), (need, 1 << 20));
        assert_eq!(
            (c.limits.max_clients, c.upstream.max_pinned_connections),
            (10_000, 1024)
        );

        // The hard limit is too low: raised to it, and the limits fit it.
        let mut c = config(10_000, 1024);
        let r = fake(256, 4096, false);
        adjust(&mut c, &r).unwrap();
        assert_eq!(r.lim.get(), (4096, 4096));
        let (cl, p) = (c.limits.max_clients, c.upstream.max_pinned_connections);
        assert_eq!(fixed_need(&c) + (cl + p) as u64, 4096);
        assert!((2000..10_000).contains(&cl), "{cl}");

        // Nothing can be raised: the limits fit the soft limit.
        let mut c = config(10_000, 1024);
        let r = fake(256, 256, true);
        adjust(&mut c, &r).unwrap();
        let (cl, p) = (c.limits.max_clients, c.upstream.max_pinned_connections);
        assert!(
            fixed_need(&c) + ((cl + p) as u64) <= 256 && cl >= 1,
            "{cl} {p}"
        );

        // Not even one client fits.
        let mut c = config(10_000, 1024);
        let r = fake(40, 40, false);
        assert!(adjust(&mut c, &r).unwrap_err().0.contains("too low"));
    }
}
