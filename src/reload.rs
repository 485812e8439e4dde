//! Hot reload of `deliberate.toml` and `policies/*.toml`: this file owns *when* a reload
//! happens (SIGHUP, a file change seen by polling, `POST /admin/reload`) and *how* the new
//! config goes live (validated in full, then one `ArcSwap::store`).
//!
//! A reload never half-applies: `config::load` parses and validates every file; only a
//! complete, valid `Snapshot` is stored, with `generation = previous + 1`. An invalid file
//! keeps the old config serving, logs every problem as `file:line:column: message` and
//! counts a failure. Requests already running keep the snapshot they pinned at the tenant
//! layer (`layers::tenant`), streams included, so a reload never changes a request midway.
//!
//! Settings bound at startup (listen addresses, body and in-flight limits, shutdown grace,
//! connect timeouts of the upstream clients) cannot change without a restart: a reload that
//! changes them logs a warning and keeps the running values in the new snapshot, so the
//! snapshot always says what is in effect.
//!
//! Change detection polls a cheap fingerprint (path, size and mtime of each file) every
//! `server.reload_poll_ms` instead of using an OS file watcher (`notify`): no new
//! dependency, it works the same on every platform and on network or container-mounted
//! volumes where inotify events are unreliable (Kubernetes ConfigMaps swap a symlink), and
//! a poll every 2 s costs a handful of `stat` calls.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{self, Problems, Snapshot};
use crate::metrics::Metrics;

/// Where the config comes from: the files `deliberate serve --config --policies` named.
#[derive(Debug, Clone)]
pub struct ConfigPaths {
    pub config: PathBuf,
    pub policies: PathBuf,
}

/// Size and modification time of every config file, in path order. Two equal fingerprints
/// mean "nothing to reload"; any edit, added or removed policy file changes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fingerprint(Vec<(PathBuf, u64, Option<SystemTime>)>);

impl Fingerprint {
    /// Reads the metadata of the config file and of each `*.toml` in the policies
    /// directory. Unreadable entries are recorded as absent, so they show up as a change
    /// (and the reload then reports why it cannot read them).
    pub fn of(paths: &ConfigPaths) -> Fingerprint {
        let stat = |p: &Path| match std::fs::metadata(p) {
            Ok(m) => (p.to_path_buf(), m.len(), m.modified().ok()),
            Err(_) => (p.to_path_buf(), u64::MAX, None),
        };
        let mut entries = vec![stat(&paths.config)];
        let mut policies: Vec<PathBuf> = std::fs::read_dir(&paths.policies)
            .map(|dir| {
                dir.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
                    .collect()
            })
            .unwrap_or_default();
        policies.sort();
        entries.extend(policies.iter().map(|p| stat(p)));
        Fingerprint(entries)
    }
}

/// Mutable reload bookkeeping, behind one lock so reloads run one at a time and the
/// generation always increments by exactly one.
struct ReloadState {
    /// What the files looked like when they were last loaded (successfully or not): a failed
    /// reload is not retried every poll, only after the next edit.
    fingerprint: Fingerprint,
    loaded_at: SystemTime,
}

/// Owns the config paths, the live snapshot and the reload metrics.
pub struct Reloader {
    paths: ConfigPaths,
    live: Arc<ArcSwap<Snapshot>>,
    metrics: Arc<Metrics>,
    state: Mutex<ReloadState>,
}

impl Reloader {
    /// A reloader for the snapshot in `live`, which was just loaded from `paths`.
    pub fn new(paths: ConfigPaths, live: Arc<ArcSwap<Snapshot>>, metrics: Arc<Metrics>) -> Self {
        metrics.config_generation.set(live.load().generation as i64);
        Reloader {
            state: Mutex::new(ReloadState {
                fingerprint: Fingerprint::of(&paths),
                loaded_at: SystemTime::now(),
            }),
            paths,
            live,
            metrics,
        }
    }

    pub fn paths(&self) -> &ConfigPaths {
        &self.paths
    }

    /// When the live snapshot went live.
    pub fn loaded_at(&self) -> SystemTime {
        self.lock().loaded_at
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadState> {
        // A panic while holding the lock cannot leave it inconsistent (plain assignments).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Loads and validates every file; if all is valid, makes it live and returns its
    /// generation. Otherwise the old config stays live and every problem is returned.
    ///
    /// Synchronous on purpose: a config is a few small files parsed in microseconds to
    /// milliseconds, and holding a plain mutex across it serializes concurrent reloads.
    pub fn reload_now(&self) -> Result<u64, Problems> {
        let mut state = self.lock();
        // Taken before reading, so an edit that lands during the load is seen next poll.
        state.fingerprint = Fingerprint::of(&self.paths);
        let loaded = match config::load(&self.paths.config, &self.paths.policies) {
            Ok(loaded) => loaded,
            Err(problems) => {
                for p in &problems.0 {
                    tracing::error!("{p}");
                }
                tracing::error!(
                    problems = problems.0.len(),
                    generation = self.live.load().generation,
                    "config reload failed; the previous config stays live"
                );
                self.metrics
                    .config_reloads
                    .with_label_values(&["failure"])
                    .inc();
                // Stays 0 until a reload succeeds: the files on disk are not what serves.
                self.metrics.config_last_reload_successful.set(0);
                return Err(problems);
            }
        };
        for w in &loaded.warnings {
            tracing::warn!("{w}");
        }
        let old = self.live.load();
        let mut snapshot = loaded.snapshot;
        keep_startup_settings(&old, &mut snapshot);
        snapshot.generation = old.generation + 1;
        let generation = snapshot.generation;
        let hash = snapshot.content_hash.clone();
        // The one step that makes the new config live; requests that already loaded the
        // old snapshot keep it until they end.
        let snapshot = Arc::new(snapshot);
        self.live.store(snapshot.clone());
        state.loaded_at = SystemTime::now();
        crate::metrics::declare_config(&self.metrics, &snapshot);
        self.metrics
            .config_reloads
            .with_label_values(&["success"])
            .inc();
        self.metrics.config_generation.set(generation as i64);
        self.metrics.config_last_reload_successful.set(1);
        self.metrics
            .config_last_reload_success_time
            .set(crate::metrics::unix_now());
        tracing::info!(generation, hash = %hash, "config reloaded");
        Ok(generation)
    }

    /// Whether the files changed since they were last loaded (successfully or not).
    pub fn files_changed(&self) -> bool {
        self.lock().fingerprint != Fingerprint::of(&self.paths)
    }

    /// Starts the task that reloads on SIGHUP (unix) and on file changes (every
    /// `server.reload_poll` of the live config) until `shutdown` fires.
    pub fn spawn(self: &Arc<Self>, tasks: &TaskTracker, shutdown: CancellationToken) {
        tasks.spawn(self.clone().watch(shutdown));
    }

    async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut hangup = Hangup::install();
        loop {
            // Read each time round: a reload may change the interval or turn polling off.
            let poll = self.live.load().server.reload_poll;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received; reloading config");
                    let _ = self.reload_now();
                }
                _ = tokio::time::sleep(poll.unwrap_or(Duration::MAX)), if poll.is_some() => {
                    if self.files_changed() {
                        tracing::info!("config files changed; reloading");
                        let _ = self.reload_now();
                    }
                }
            }
        }
    }
}

/// Copies into `new` the settings that only take effect at startup, warning about each
/// one the new files tried to change.
fn keep_startup_settings(old: &Snapshot, new: &mut Snapshot) {
    let mut ignored = Vec::new();
    // Restores one field and remembers its config key if the new files changed it.
    macro_rules! keep {
        ($($field:ident).+, $key:literal) => {
            if old.$($field).+ != new.$($field).+ {
                ignored.push($key);
                new.$($field).+ = old.$($field).+.clone();
            }
        };
    }
    keep!(server.listen, "server.listen");
    keep!(server.admin_listen, "server.admin_listen");
    keep!(
        server.max_request_body_bytes,
        "server.max_request_body_bytes"
    );
    keep!(
        server.max_in_flight_requests,
        "server.max_in_flight_requests"
    );
    keep!(server.shutdown_grace, "server.shutdown_grace_ms");
    keep!(server.api_threads, "server.api_threads");
    keep!(
        server.connections,
        "server connection timeouts and max_connections"
    );
    keep!(server.body_limits, "server.max_messages/max_json_depth");
    keep!(server.cache_max_bytes, "cache.max_bytes");
    keep!(server.redis, "redis");
    keep!(fast_timeouts.connect, "tiers.fast.connect_timeout_ms");
    keep!(
        reasoning_timeouts.connect,
        "tiers.reasoning.connect_timeout_ms"
    );
    if !ignored.is_empty() {
        tracing::warn!(
            settings = %ignored.join(", "),
            "config reload: these settings take effect only at startup; keeping the running values until a restart"
        );
    }
}

/// SIGHUP on unix; never fires elsewhere (or if the handler cannot be installed).
struct Hangup {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Hangup {
    fn install() -> Hangup {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let signal = signal(SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "cannot listen for SIGHUP; reload by polling or the admin API"))
                .ok();
            Hangup { signal }
        }
        #[cfg(not(unix))]
        Hangup {}
    }

    async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(signal) = &mut self.signal {
            if signal.recv().await.is_some() {
                return;
            }
        }
        std::future::pending::<()>().await
    }
}

/// `SystemTime` as RFC 3339 UTC with second precision, e.g. `2026-11-28T13:00:35Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc() {
        assert_eq!(rfc3339(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00Z");
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_870_835);
        assert_eq!(rfc3339(t), "2026-11-28T13:00:35Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(rfc3339(leap), "2000-02-29T00:00:00Z");
    }

    #[test]
    fn fingerprint_sees_edits_and_new_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths {
            config: dir.path().join("deliberate.toml"),
            policies: dir.path().join("policies"),
        };
        std::fs::create_dir(&paths.policies).unwrap();
        std::fs::write(&paths.config, "a").unwrap();
        let first = Fingerprint::of(&paths);
        assert_eq!(first, Fingerprint::of(&paths));
        std::fs::write(paths.policies.join("notes.txt"), "ignored").unwrap();
        assert_eq!(first, Fingerprint::of(&paths), "only *.toml counts");
        std::fs::write(paths.policies.join("t.toml"), "x").unwrap();
        let second = Fingerprint::of(&paths);
        assert_ne!(first, second);
        std::fs::write(&paths.config, "ab").unwrap();
        assert_ne!(second, Fingerprint::of(&paths));
    }

    #[test]
    fn reload_bumps_the_generation_and_keeps_startup_settings() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ConfigPaths {
            config: dir.path().join("deliberate.toml"),
            policies: dir.path().join("policies"),
        };
        std::fs::create_dir(&paths.policies).unwrap();
        let config = |listen: &str| {
            format!(
                "[server]\nlisten = \"{listen}\"\nreload_poll_ms = 0\n\
                 [providers.s]\nkind = \"simulated\"\n\
                 [models.f]\nprovider = \"s\"\ntier = \"fast\"\n\
                 [models.r]\nprovider = \"s\"\ntier = \"reasoning\"\n"
            )
        };
        std::fs::write(&paths.config, config("127.0.0.1:7001")).unwrap();
        std::fs::write(
            paths.policies.join("t.toml"),
            "name = \"t\"\nfast_model = \"f\"\nreasoning_model = \"r\"\n",
        )
        .unwrap();
        let mut first = config::load(&paths.config, &paths.policies)
            .unwrap()
            .snapshot;
        first.generation = 1;
        let live = Arc::new(ArcSwap::from_pointee(first));
        let metrics = Metrics::new();
        let reloader = Reloader::new(paths.clone(), live.clone(), metrics.clone());
        assert!(!reloader.files_changed());

        std::fs::write(&paths.config, config("127.0.0.1:7002")).unwrap();
        assert_eq!(reloader.reload_now().unwrap(), 2);
        let now = live.load();
        assert_eq!(now.generation, 2);
        assert_eq!(now.server.listen.port(), 7001, "listen needs a restart");
        assert_eq!(metrics.config_generation.get(), 2);

        std::fs::write(&paths.config, "[server\n").unwrap();
        assert!(reloader.files_changed());
        assert!(reloader.reload_now().is_err());
        assert!(
            !reloader.files_changed(),
            "a failed edit is not retried every poll"
        );
        assert_eq!(live.load().generation, 2);
        let failures = metrics.config_reloads.with_label_values(&["failure"]).get();
        assert_eq!(failures, 1);
        assert_eq!(metrics.config_last_reload_successful.get(), 0);
        // Still broken after any time: only a good reload says otherwise.
        assert!(reloader.reload_now().is_err());
        assert_eq!(metrics.config_last_reload_successful.get(), 0);
        let before = metrics.config_last_reload_success_time.get();
        std::fs::write(&paths.config, config("127.0.0.1:7001")).unwrap();
        assert_eq!(reloader.reload_now().unwrap(), 3);
        assert_eq!(metrics.config_last_reload_successful.get(), 1);
        assert!(metrics.config_last_reload_success_time.get() >= before);
    }
}
