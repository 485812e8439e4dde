//! The `deliberate` command line: `serve` (with `--demo`), `check`, `classify` and `health`
//! (the container image's HEALTHCHECK).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use deliberate::config::{self, Loaded};

/// mimalloc instead of glibc's malloc: per-request allocations (headers, JSON, body buffers)
/// were ~15% of the gateway's CPU under load with glibc (issue 12 profile), and glibc's
/// per-thread arenas keep freed memory resident after a burst.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use deliberate::reload::ConfigPaths;
use deliberate::telemetry::{self, LogFormat, TraceExport};

#[derive(Parser)]
#[command(
    name = "deliberate",
    version,
    about = "OpenAI-compatible gateway that routes each request to a fast or a reasoning model"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// Start with no config and no keys: simulated models; tenant `demo` (API key
        /// `deliberate-demo`: response cache on) and tenant `trial` (`deliberate-trial`: 5
        /// requests a minute, $0.01 a day). Prints what to try: routing, a cache hit, a
        /// budget refusal and a 429.
        #[arg(long, conflicts_with_all = ["config", "policies"])]
        demo: bool,
        #[arg(long, default_value = "deliberate.toml")]
        config: PathBuf,
        /// Directory of tenant policy files (`*.toml`).
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// API listen address (overrides the config; port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Admin listen address for /metrics, /healthz, /readyz (overrides the config).
        #[arg(long)]
        admin_listen: Option<SocketAddr>,
        /// Log lines as `text` or `json` (overrides `DELIBERATE_LOG_FORMAT` and `[logging]
        /// format`; default: text at a terminal, json elsewhere).
        #[arg(long, value_parser = ["text", "json"])]
        log_format: Option<String>,
    },
    /// Score prompts (JSON lines from --jsonl or stdin) or evaluate, train and calibrate the
    /// classifier.
    #[command(args_conflicts_with_subcommands = true)]
    Classify {
        #[command(subcommand)]
        action: Option<ClassifyAction>,
        /// Directory of tenant policies, to use a tenant's threshold.
        #[arg(long, default_value = "policies")]
        policies: PathBuf,
        /// Tenant whose threshold decides the tier.
        #[arg(long, default_value = "default")]
        tenant: String,
        /// Input file of `{"id", "prompt"}` or `{"id", "messages"}` lines (default: stdin).
        #[arg(long)]
        jsonl: Option<PathBuf>,
        /// Score with the first stage alone, even when the second stage's files are there
        /// (by default the command decides as the gateway does: `[second_stage]` defaults).
        #[arg(long)]
        first_stage_only: bool,
    },
    /// Validate a config file and a policies directory; print each problem as
    /// `file:line:column: message` and exit 1 if there is any.
    Check {
        #[arg(default_value = "deliberate.toml")]
        config: PathBuf,
        #[arg(default_value = "policies")]
        policies: PathBuf,
    },
    /// GET a URL (default: the admin listener's /readyz) and exit 0 if it answers 2xx,
    /// 1 otherwise: the container image's HEALTHCHECK, which has no curl.
    Health {
        #[arg(long, default_value = "http://127.0.0.1:9090/readyz")]
        url: reqwest::Url,
        /// Give up (exit 1) after this many milliseconds.
        #[arg(long, default_value_t = 2000)]
        timeout_ms: u64,
    },
}

/// The shipped model's weight of a non-English training example (EVAL.md): 3 raised the
/// cross-validated AUC on non-English rows from 0.873 to 0.893 for 0.002 on all rows; 5
/// cost more on English than it gave.
const NON_ENGLISH_WEIGHT: f32 = 3.0;

#[derive(Subcommand)]
enum ClassifyAction {
    /// AUC, accuracy, recall, false-positive rate and reasoning share per source.
    Eval {
        /// JSONL files or directories of labelled examples.
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        /// Threshold (default: the model's).
        #[arg(long)]
        threshold: Option<f32>,
        /// Instead of a fixed threshold: the one that sends `--target-share` of this traffic
        /// sample to reasoning (compares models at the same share, EVAL.md).
        #[arg(long, conflicts_with = "threshold", requires = "target_share")]
        calibrate_jsonl: Option<PathBuf>,
        /// With --calibrate-jsonl: the share of the sample to send to reasoning.
        #[arg(long, requires = "calibrate_jsonl")]
        target_share: Option<f64>,
        /// Also cross-validate and run leave-one-source-out (trains many models).
        #[arg(long)]
        loso: bool,
        /// Also cross-validate and run leave-one-language-out (the rows' "lang", default en).
        #[arg(long)]
        lolo: bool,
        /// A directory of held-out JSONL files to report on (never trained on).
        #[arg(long)]
        heldout: Option<PathBuf>,
        /// Train a model with these feature blocks on --data and evaluate it instead of the
        /// shipped one (comma-separated: prose,context,rules,shape,dialog,script,grams,parts,turn,style,paste).
        #[arg(long)]
        features: Option<String>,
        /// With --features: the default threshold's out-of-fold false-positive rate.
        #[arg(long, default_value_t = 0.05)]
        max_fpr: f64,
        /// Print only the summary table.
        #[arg(long)]
        summary: bool,
        /// With --features: weight of a non-English training example.
        #[arg(long, default_value_t = NON_ENGLISH_WEIGHT)]
        non_english_weight: f32,
        /// L2 penalty of the logistic model.
        #[arg(long, default_value_t = 3e-3)]
        l2: f32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Train the model from labelled examples (deterministic for a given seed and data).
    Train {
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        #[arg(long, default_value = "models/router.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Default threshold: the lowest whose out-of-fold false-positive rate is at most this.
        #[arg(long, default_value_t = 0.05)]
        max_fpr: f64,
        /// Feature blocks (default: the shipped set, see `features::DEFAULT_BLOCKS`).
        #[arg(long)]
        features: Option<String>,
        /// Weight of a non-English training example relative to an English one.
        #[arg(long, default_value_t = NON_ENGLISH_WEIGHT)]
        non_english_weight: f32,
        /// Instead of --max-fpr: the default threshold sends `--target-share` of this traffic
        /// sample to reasoning (the shipped operating point, EVAL.md).
        #[arg(long, requires = "target_share")]
        calibrate_jsonl: Option<PathBuf>,
        /// With --calibrate-jsonl: the share of the sample to send to reasoning.
        #[arg(long, requires = "calibrate_jsonl")]
        target_share: Option<f64>,
        /// Also write each example's out-of-fold score here (JSON lines), for `second_stage.py`.
        #[arg(long)]
        oof_out: Option<PathBuf>,
    },
    /// Sentence vectors (and first-stage scores) of examples, one JSON line each, for
    /// training the second-stage head (needs scripts/fetch-encoder.sh first).
    Embed {
        #[arg(long, required = true, num_args = 1..)]
        data: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long, default_value = "models/encoder-e5")]
        model_dir: PathBuf,
        /// Tokens of each prompt the encoder reads (as `second_stage.window_tokens`).
        #[arg(long, default_value_t = deliberate::classify::encoder::DEFAULT_WINDOW_TOKENS)]
        window_tokens: usize,
    },
    /// Fit the second-stage head (models/stage2.json) on `classify embed` output, on the
    /// examples whose first-stage score is in the band; prints the band's out-of-fold AUC.
    TrainHead {
        #[arg(long)]
        embeddings: PathBuf,
        #[arg(long, default_value = "models/stage2.json")]
        out: PathBuf,
        #[arg(long, default_value_t = 0.2)]
        band_lower: f32,
        #[arg(long, default_value_t = 0.7)]
        band_upper: f32,
    },
    /// Print the threshold that sends a target share of a traffic sample to reasoning.
    Calibrate {
        #[arg(long)]
        jsonl: PathBuf,
        #[arg(long)]
        target_share: f64,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { config, policies } => check(&config, &policies),
        Command::Health { url, timeout_ms } => health(url, Duration::from_millis(timeout_ms)),
        Command::Classify {
            action,
            policies,
            tenant,
            jsonl,
            first_stage_only,
        } => classify(action, &policies, &tenant, jsonl, first_stage_only),
        Command::Serve {
            demo,
            config,
            policies,
            listen,
            admin_listen,
            log_format,
        } => {
            let loaded = if demo {
                config::demo()
            } else {
                match config::load(&config, &policies) {
                    Ok(loaded) => loaded,
                    Err(problems) => {
                        eprint!("{problems}");
                        eprintln!("deliberate: invalid configuration (try `deliberate serve --demo` to start without one)");
                        return ExitCode::FAILURE;
                    }
                }
            };
            let telemetry =
                match init_telemetry(log_format.as_deref(), &loaded.snapshot.server.telemetry) {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("deliberate: {e}");
                        return ExitCode::FAILURE;
                    }
                };
            // Background work and the admin listener only: the API has its own threads.
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("tokio runtime starts");
            // The demo has no files, so nothing to reload.
            let paths = (!demo).then_some(ConfigPaths { config, policies });
            let code = runtime.block_on(serve(loaded, paths, listen, admin_listen));
            // Off the runtime: the exporter's last batch is sent by its own thread.
            drop(runtime);
            telemetry.shutdown();
            code
        }
    }
}

fn classify(
    action: Option<ClassifyAction>,
    policies: &std::path::Path,
    tenant: &str,
    jsonl: Option<PathBuf>,
    first_stage_only: bool,
) -> ExitCode {
    use deliberate::classify::{
        cli, features, learned::LearnedClassifier, train::TrainOptions, Classifier,
    };
    let result = match action {
        None => {
            let classifier = LearnedClassifier::builtin();
            let threshold = match cli::tenant_threshold(policies, tenant) {
                Ok(t) => t.unwrap_or(classifier.default_threshold()),
                Err(e) => {
                    eprintln!("deliberate: {e}");
                    return ExitCode::FAILURE;
                }
            };
            let second = (!first_stage_only)
                .then(deliberate::classify::stage2::cli::second_stage)
                .flatten();
            let stdout = std::io::stdout().lock();
            let scored = match jsonl {
                Some(path) => std::fs::File::open(&path).and_then(|f| {
                    let input = std::io::BufReader::new(f);
                    cli::score_lines(&classifier, second.as_ref(), threshold, input, stdout)
                }),
                None => {
                    let input = std::io::stdin().lock();
                    cli::score_lines(&classifier, second.as_ref(), threshold, input, stdout)
                }
            };
            scored.map(|_| String::new()).map_err(|e| e.to_string())
        }
        Some(ClassifyAction::Eval {
            data,
            threshold,
            calibrate_jsonl,
            target_share,
            loso,
            lolo,
            heldout,
            features,
            max_fpr,
            summary,
            non_english_weight,
            l2,
            seed,
        }) => features
            .as_deref()
            .map(features::parse_blocks)
            .transpose()
            .and_then(|features| {
                cli::eval_command(&cli::EvalOptions {
                    data,
                    threshold,
                    calibrate: calibrate_jsonl.zip(target_share),
                    loso,
                    lolo,
                    heldout,
                    features,
                    max_fpr,
                    summary,
                    train: TrainOptions {
                        seed,
                        non_english_weight,
                        l2,
                        ..TrainOptions::default()
                    },
                })
            }),
        Some(ClassifyAction::Train {
            data,
            out,
            seed,
            max_fpr,
            features,
            non_english_weight,
            calibrate_jsonl,
            target_share,
            oof_out,
        }) => features
            .as_deref()
            .map_or(
                Ok(features::DEFAULT_BLOCKS.to_vec()),
                features::parse_blocks,
            )
            .and_then(|blocks| {
                cli::train_command(
                    &data,
                    &out,
                    &blocks,
                    &TrainOptions {
                        seed,
                        non_english_weight,
                        ..TrainOptions::default()
                    },
                    max_fpr,
                    calibrate_jsonl.zip(target_share),
                    oof_out.as_deref(),
                )
            }),
        Some(ClassifyAction::Calibrate {
            jsonl,
            target_share,
        }) => cli::calibrate_command(&jsonl, target_share),
        Some(ClassifyAction::Embed {
            data,
            out,
            model_dir,
            window_tokens,
        }) => cli::embed_command(&data, &out, &model_dir, window_tokens),
        Some(ClassifyAction::TrainHead {
            embeddings,
            out,
            band_lower,
            band_upper,
        }) => deliberate::classify::stage2::train_head::train_head_command(
            &embeddings,
            &out,
            &deliberate::classify::stage2::train_head::HeadOptions {
                band: deliberate::classify::stage2::Band {
                    lower: band_lower,
                    upper: band_upper,
                },
                ..Default::default()
            },
        ),
    };
    match result {
        Ok(text) => {
            if !text.is_empty() {
                println!("{text}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("deliberate: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs (format: flag, else `DELIBERATE_LOG_FORMAT`, else `[logging] format`, else text at a
/// terminal and json elsewhere, judged on stderr, where logs go) and, if `[tracing]` or the
/// standard OTEL environment names a receiver, trace export.
fn init_telemetry(
    flag: Option<&str>,
    settings: &config::TelemetrySettings,
) -> Result<telemetry::Telemetry, String> {
    let env = std::env::var("DELIBERATE_LOG_FORMAT").ok();
    let format =
        match flag.or(env.as_deref()) {
            Some(text) => LogFormat::parse(text)
                .ok_or_else(|| format!("log format `{text}`: expected `text` or `json`"))?,
            None => settings.log_format.unwrap_or(
                if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                    LogFormat::Text
                } else {
                    LogFormat::Json
                },
            ),
        };
    let from_env = telemetry::OTLP_ENDPOINT_VARS
        .iter()
        .any(|v| std::env::var_os(v).is_some_and(|v| !v.is_empty()));
    let traces = (settings.otlp_endpoint.is_some() || from_env).then(|| TraceExport {
        endpoint: settings.otlp_endpoint.clone(),
        service_name: settings.service_name.clone(),
        sample_ratio: settings.sample_ratio,
    });
    telemetry::init(format, traces.as_ref())
}

fn check(config_path: &std::path::Path, policies: &std::path::Path) -> ExitCode {
    match config::load(config_path, policies) {
        Ok(Loaded { snapshot, warnings }) => {
            for w in &warnings {
                println!("{w}");
            }
            println!(
                "ok: {} models, {} tenants ({} files)",
                snapshot.models.len(),
                snapshot.tenants.len(),
                snapshot.sources.len()
            );
            // What each tenant may name where: an embedding model is no chat tier.
            for tenant in &snapshot.tenants {
                println!("tenant {}:", tenant.name);
                for line in deliberate::endpoints::catalog::report(tenant) {
                    println!("  {line}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(problems) => {
            print!("{problems}");
            println!("{} problem(s) found", problems.0.len());
            ExitCode::FAILURE
        }
    }
}

/// One GET, bounded by `timeout`: a 2xx is healthy, anything else (another status, no
/// connection, a timeout) is not. Never follows redirects: a probe answers for itself.
fn health(url: reqwest::Url, timeout: Duration) -> ExitCode {
    if !matches!(url.scheme(), "http" | "https") {
        eprintln!("deliberate health: {url}: only http and https URLs");
        return ExitCode::FAILURE;
    }
    deliberate::install_crypto_provider();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build();
        let answer = match client {
            Ok(client) => client.get(url.clone()).send().await,
            Err(e) => Err(e),
        };
        match answer {
            Ok(r) if r.status().is_success() => {
                println!("{url}: {}", r.status());
                ExitCode::SUCCESS
            }
            Ok(r) => {
                eprintln!("deliberate health: {url}: {}", r.status());
                ExitCode::FAILURE
            }
            Err(e) => {
                eprintln!("deliberate health: {url}: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

async fn serve(
    loaded: Loaded,
    paths: Option<ConfigPaths>,
    listen: Option<SocketAddr>,
    admin_listen: Option<SocketAddr>,
) -> ExitCode {
    for w in &loaded.warnings {
        tracing::warn!("{w}");
    }
    let snapshot = loaded.snapshot;
    let api_addr = listen.unwrap_or(snapshot.server.listen);
    let admin_addr = admin_listen.unwrap_or(snapshot.server.admin_listen);
    let (api, admin) = match (
        TcpListener::bind(api_addr).await,
        TcpListener::bind(admin_addr).await,
    ) {
        (Ok(api), Ok(admin)) => (api, admin),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("deliberate: cannot bind listener: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (api_addr, admin_addr) = (
        api.local_addr().expect("bound socket has an address"),
        admin.local_addr().expect("bound socket has an address"),
    );
    tracing::info!("api listening on http://{api_addr}");
    tracing::info!("admin listening on http://{admin_addr} (/metrics /healthz /readyz /admin/)");
    if paths.is_none() {
        println!("{}", deliberate::demo::guide(api_addr, admin_addr));
    }
    let shutdown = CancellationToken::new();
    let signal_token = shutdown.clone();
    let demo = paths.is_none();
    let signals = async move {
        wait_for_signal(demo).await;
        tracing::info!("shutdown signal received; draining");
        signal_token.cancel();
    };
    tokio::select! {
        _ = async {
            // One API thread per core unless configured (see `run_with_reload_on_threads`).
            let threads = snapshot.server.api_threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(1, usize::from)
            });
            deliberate::run_with_reload_on_threads(api, admin, snapshot, paths, shutdown.clone(), threads).await
        } => {}
        _ = async { signals.await; std::future::pending::<()>().await } => {}
    }
    ExitCode::SUCCESS
}

/// Waits for SIGTERM or SIGINT. SIGHUP reloads the config (`reload.rs`); the demo has no
/// files, so there it is only logged (instead of its default action, ending the process).
#[cfg(unix)]
async fn wait_for_signal(demo: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler installs");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler installs");
    let mut hup = signal(SignalKind::hangup()).expect("SIGHUP handler installs");
    loop {
        tokio::select! {
            _ = term.recv() => return,
            _ = int.recv() => return,
            _ = hup.recv() => if demo {
                tracing::info!("SIGHUP: the demo has no config files to reload");
            },
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal(_demo: bool) {
    let _ = tokio::signal::ctrl_c().await;
}
