//! File descriptors: raising the open-file limit at start and deriving from it how many inbound
//! connections the HTTP server may hold, so that a flood of clients can never take the
//! descriptors the probes need for their outbound connections. Not the serving itself
//! (`serve.rs`) nor the probe cap (`fleet::agent::MAX_PROBES_IN_FLIGHT`).

/// Inbound connections never exceed this, however high the limit: Prometheus, a few humans and
/// health checks need a handful; more only feeds a flood.
pub const MAX_CONNECTIONS: usize = 1024;

/// Descriptors kept out of the inbound cap when the limit allows it:
/// - 136 for outbound requests: at most 64 scheduled probes (`MAX_PROBES_IN_FLIGHT`) and 4
///   on-demand `/probe` calls run at once, each holding one connection at a time (token, ping and
///   subscription check go one after another) plus, while it connects, one DNS socket;
/// - 64 for idle pooled connections kept between runs (`pool_max_idle_per_host` is 64);
/// - 56 for the process itself: standard streams, epoll, wakers, the signal pipe, the listener,
///   and the files a reload reads (config, secrets, CA, TLS certificate and key, /proc for the
///   process metrics).
pub const RESERVED_FDS: u64 = 256;

/// The inbound connection cap for a soft `RLIMIT_NOFILE` of `soft`: everything but the reserve,
/// at most [`MAX_CONNECTIONS`]; under a very low limit a quarter of it (so the server still
/// answers), and never less than one.
pub fn connection_cap(soft: u64) -> usize {
    let cap = (soft / 4).max(soft.saturating_sub(RESERVED_FDS));
    usize::try_from(cap)
        .unwrap_or(usize::MAX)
        .clamp(1, MAX_CONNECTIONS)
}

/// The soft and hard `RLIMIT_NOFILE`, if the platform tells.
pub fn nofile_limits() -> Option<(u64, u64)> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes into the struct we pass.
        if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
            return None;
        }
        // rlim_t is u64 on Linux and macOS (i64 on some BSDs, where no limit is negative).
        #[allow(clippy::unnecessary_cast)]
        Some((limit.rlim_cur as u64, limit.rlim_max as u64))
    }
    #[cfg(not(unix))]
    None
}

/// Raises the soft open-file limit to the hard one, as Go does at start: the soft default (often
/// 1024) is a leftover of `select(2)`, which this process does not use. Logs what it did; on
/// failure the old limit stays and the connection cap follows it.
pub fn raise_nofile_limit() {
    #[cfg(unix)]
    {
        let Some((soft, hard)) = nofile_limits() else {
            return;
        };
        if soft >= hard {
            return;
        }
        #[allow(clippy::unnecessary_cast)]
        let limit = libc::rlimit {
            rlim_cur: hard as libc::rlim_t,
            rlim_max: hard as libc::rlim_t,
        };
        // SAFETY: setrlimit only reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } == 0 {
            tracing::info!(
                from = soft,
                to = hard,
                "raised the open-file limit (RLIMIT_NOFILE) to its hard limit"
            );
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, soft, hard, "cannot raise the open-file limit; keeping it");
        }
    }
}

/// The inbound cap for this process's current limit (or [`MAX_CONNECTIONS`] when unknown).
pub fn connection_cap_now() -> usize {
    nofile_limits().map_or(MAX_CONNECTIONS, |(soft, _)| connection_cap(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_the_reserve_and_never_exceeds_the_maximum() {
        // The usual soft default: everything but the reserve.
        assert_eq!(connection_cap(1024), 768);
        // A raised limit: the fixed maximum.
        assert_eq!(connection_cap(1 << 20), MAX_CONNECTIONS);
        assert_eq!(connection_cap(u64::MAX), MAX_CONNECTIONS);
        // A low limit: a quarter for clients, the rest for probes and files.
        assert_eq!(connection_cap(200), 50);
        assert_eq!(connection_cap(341), 85);
        assert_eq!(connection_cap(400), 144);
        // Absurdly low: still one connection.
        assert_eq!(connection_cap(3), 1);
        assert_eq!(connection_cap(0), 1);
    }

    #[test]
    fn the_limits_are_readable_and_raising_keeps_soft_at_most_hard() {
        let (soft, hard) = nofile_limits().expect("getrlimit works on Linux");
        assert!(soft <= hard);
        raise_nofile_limit();
        let (soft, hard) = nofile_limits().expect("getrlimit works on Linux");
        assert_eq!(soft, hard);
        assert!(connection_cap_now() >= 1);
    }
}
