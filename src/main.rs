//! The `respite` binary: parse flags, load configuration, start the workers
//! and the admin server, and shut down gracefully on SIGTERM/SIGINT.

use clap::Parser;
use respite::admin::{self, proxy::ProxyAdmin};
use respite::cli::Cli;
use respite::config::{self, Config, LogFormat};
use respite::router::Deployment;
use respite::server::{Ctx, Server};
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match config::load(&cli) {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "respite: invalid configuration:\n{e}");
            return ExitCode::from(2);
        }
    };
    if cli.check {
        let _ = writeln!(std::io::stdout(), "respite: configuration OK");
        return ExitCode::SUCCESS;
    }
    init_logging(&config);

    // The limits must fit the open files limit (raised here if allowed).
    let mut config = config;
    if let Err(e) = respite::server::fds::adjust(&mut config, &Rlimit) {
        tracing::error!("{e}");
        return ExitCode::from(1);
    }
    if config
        .upstream
        .tls
        .as_ref()
        .is_some_and(|t| t.insecure_skip_verify)
    {
        tracing::warn!(
            "INSECURE: upstream.tls.insecure_skip_verify = true: upstream certificates are \
             NOT verified; anyone on the network path can impersonate Redis and read every \
             request and password. Use ca_file instead outside of tests."
        );
    }
    respite::server::trim::install(malloc_trim);
    let ctx = Ctx::new(config);
    let server = match Server::start(ctx.clone()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(
                error = %e,
                listen = ?ctx.config.listen,
                tls_listen = ?ctx.config.tls.as_ref().map(|t| t.listen),
                "cannot listen"
            );
            return ExitCode::from(1);
        }
    };
    let show = |a: Option<std::net::SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
    tracing::info!(
        listen = %show(server.local_addr),
        tls_listen = %show(server.tls_addr),
        workers = ctx.config.workers,
        upstream = ?ctx.config.upstream.nodes,
        "respite listening"
    );
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start runtime");
            return ExitCode::from(1);
        }
    };
    let code = rt.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        match &ctx.deployment {
            Deployment::Standalone => {}
            Deployment::Sentinel(sentinel) => {
                tokio::spawn(respite::server::follow_primary(
                    ctx.clone(),
                    sentinel.clone(),
                    sentinel.subscribe(),
                ));
                tokio::spawn(sentinel.clone().run());
            }
            Deployment::Cluster(topology) => {
                tokio::spawn(topology.clone().run());
                tokio::spawn(respite::server::drop_departed_nodes(
                    ctx.clone(),
                    topology.clone(),
                ));
            }
        }
        if let Some(addr) = ctx.config.admin {
            match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => {
                    let bound = l.local_addr().unwrap_or(addr);
                    tracing::info!(admin = %bound, "admin listening");
                    let settings = &ctx.config.admin_http;
                    let access =
                        admin::Access::new(settings.token.clone(), &settings.allowed_hosts, bound);
                    tokio::spawn(admin::serve(
                        l,
                        Arc::new(ProxyAdmin(ctx.clone())),
                        access,
                        stop_rx,
                        admin::AdminLimits::from_config(settings),
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, admin = %addr, "cannot listen on admin address");
                    return ExitCode::from(1);
                }
            }
        }
        wait_for_signal().await;
        tracing::info!(clients = ctx.client_count(), "shutting down");
        ctx.begin_shutdown();
        let _ = stop_tx.send(true);
        let deadline = Instant::now() + ctx.config.limits.shutdown_grace;
        while ctx.client_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if ctx.client_count() > 0 {
            tracing::warn!(
                clients = ctx.client_count(),
                "shutdown grace elapsed with clients still waiting"
            );
        }
        ExitCode::SUCCESS
    });
    // Worker threads end with the process; their sessions are done or out of grace.
    drop(server);
    code
}

/// Return the allocator's free memory to the system (glibc; elsewhere a
/// no-op). Called by `respite::server::trim` after a client that held a lot
/// is gone; the library forbids `unsafe`.
fn malloc_trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// `RLIMIT_NOFILE` through libc (the library forbids `unsafe`).
struct Rlimit;

impl respite::server::fds::NofileLimit for Rlimit {
    // `rlim_t` is u64 on 64-bit Linux, not on every target.
    #[allow(clippy::unnecessary_cast)]
    fn get(&self) -> std::io::Result<(u64, u64)> {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes into the struct we own.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok((lim.rlim_cur as u64, lim.rlim_max as u64))
    }

    fn set(&self, soft: u64, hard: u64) -> std::io::Result<()> {
        let lim = libc::rlimit {
            rlim_cur: soft as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit only reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Logs go to stderr in the configured format. Text is coloured only for a
/// person at a terminal: `docker logs`, a file or a pipe get plain lines, and
/// `NO_COLOR` (<https://no-color.org>) turns colour off everywhere.
fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log_format {
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal()
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            builder.with_ansi(colour).init();
        }
        // One JSON object per line; never colour codes inside the strings.
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
