//! `crochet plugin new|check|run`: the plugin author's commands. The work is done by
//! `crochet::plugins::scaffold` and `crochet::plugins::authoring`; this module reads the
//! files, prints the reports and picks the exit code (0 passed, 1 the plugin failed, 2 a
//! usage error).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use crochet::plugins::GuestLog;
use crochet::plugins::authoring::{self, CheckReport, RunReport};
use crochet::plugins::scaffold::{self, World};

const WORLDS: [&str; 3] = ["policy", "scorer", "seller-adapter"];

#[derive(Subcommand)]
pub enum PluginCommand {
    /// Write a standalone plugin crate into DIR/NAME, ready for
    /// `cargo build --release --target wasm32-wasip2`.
    New {
        /// Crate name (letters, digits, `-`, `_`; starting with a letter).
        name: String,
        /// The world the plugin implements.
        #[arg(long, value_parser = WORLDS)]
        world: String,
        /// The folder to create the crate in.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Load a component as the host does and try it on sample calls: size, SHA-256,
    /// world, imports, a dry call. `--config FILE` gives the plugin's configuration
    /// (JSON). Exit code 0 when everything passed, 1 otherwise.
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The world to check against (default: the one it implements).
        #[arg(long, value_parser = WORLDS)]
        world: Option<String>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Make one call to a component in the host's sandbox, with in-memory counters, and
    /// print the answer, the plugin's log lines, the wall time and the fuel it used.
    /// `--config FILE` gives the plugin's configuration (JSON). Exit code 0 when the
    /// plugin answered (a denial included), 1 when it failed.
    Run {
        /// The component (`.wasm`).
        file: PathBuf,
        /// The world of the component.
        #[arg(long, value_parser = WORLDS)]
        world: String,
        /// The call's input, a JSON file (`-`: standard input). Policy: a call-context
        /// (`{"kind", "route", "body", "buyer_score", ...}`); scorer: agent-stats;
        /// seller-adapter: `{"direction": "request"|"response", "status", "body"}`.
        /// Missing keys take sample values, so `{}` works. See plugins/README.md.
        #[arg(long)]
        ctx: PathBuf,
        /// Wall-clock limit of the call in milliseconds (the host's default: 200).
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Print one JSON object.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a plugin command; `config` is the plugin's configuration file, when given.
pub async fn run(command: PluginCommand, config: Option<PathBuf>) -> ExitCode {
    match command {
        PluginCommand::New { name, world, dir } => new(&name, &world, &dir),
        PluginCommand::Check { file, world, json } => {
            let (wasm, config) = match inputs(&file, config.as_deref()) {
                Ok(inputs) => inputs,
                Err(code) => return code,
            };
            let report =
                authoring::check(&wasm, world.as_deref().and_then(World::parse), &config).await;
            if json {
                print_json(&report);
            } else {
                print_check(&file, &report);
            }
            if report.passed {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        PluginCommand::Run {
            file,
            world,
            ctx,
            timeout_ms,
            json,
        } => {
            let (wasm, config) = match inputs(&file, config.as_deref()) {
                Ok(inputs) => inputs,
                Err(code) => return code,
            };
            let input = if ctx == Path::new("-") {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(&ctx)
            };
            let input = match input {
                Ok(input) => input,
                Err(e) => return usage(&format!("cannot read {}: {e}", ctx.display())),
            };
            let Some(world) = World::parse(&world) else {
                return usage("unknown world");
            };
            let timeout = timeout_ms.map(Duration::from_millis);
            match authoring::run(&wasm, world, &input, &config, timeout).await {
                Err(e) => usage(&format!("{}: {e}", ctx.display())),
                Ok(report) => {
                    if json {
                        print_json(&report);
                    } else {
                        print_run(&report);
                    }
                    if report.ok {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    }
                }
            }
        }
    }
}

fn usage(message: &str) -> ExitCode {
    eprintln!("crochet plugin: {message}");
    ExitCode::from(2)
}

/// The component's bytes and the configuration's JSON (`{}` without a file).
fn inputs(file: &Path, config: Option<&Path>) -> Result<(Vec<u8>, String), ExitCode> {
    let wasm =
        std::fs::read(file).map_err(|e| usage(&format!("cannot read {}: {e}", file.display())))?;
    let config = match config {
        None => "{}".to_owned(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| usage(&format!("cannot read {}: {e}", path.display())))?;
            let value: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| usage(&format!("{} is not JSON: {e}", path.display())))?;
            value.to_string()
        }
    };
    Ok((wasm, config))
}

fn new(name: &str, world: &str, dir: &Path) -> ExitCode {
    let Some(world) = World::parse(world) else {
        return usage("unknown world");
    };
    match scaffold::create(dir, name, world) {
        Ok(path) => {
            let krate = name.replace('-', "_");
            println!("created {} ({world} plugin)", path.display());
            println!("next:");
            println!("  cd {}", path.display());
            println!("  rustup target add wasm32-wasip2   # once");
            println!("  cargo build --release --target wasm32-wasip2");
            println!("  crochet plugin check target/wasm32-wasip2/release/{krate}.wasm");
            ExitCode::SUCCESS
        }
        Err(e @ scaffold::ScaffoldError::Io { .. }) => {
            eprintln!("crochet plugin new: {e}");
            ExitCode::FAILURE
        }
        Err(e) => usage(&e.to_string()),
    }
}

fn print_json(report: &impl serde::Serialize) {
    match serde_json::to_string(report) {
        Ok(json) => println!("{json}"),
        Err(e) => eprintln!("crochet plugin: {e}"),
    }
}

fn print_logs(logs: &[GuestLog]) {
    if logs.is_empty() {
        println!("log:      (none)");
    }
    for (i, line) in logs.iter().enumerate() {
        let label = if i == 0 { "log:" } else { "" };
        let message = line.message.replace('\n', "\n          ");
        println!("{label:<9} [{}] {message}", line.level);
    }
}

fn print_check(file: &Path, report: &CheckReport) {
    println!("file:     {}", file.display());
    println!("size:     {} bytes", report.bytes);
    println!("sha256:   {}", report.sha256);
    for step in &report.steps {
        let mark = if step.passed { "ok  " } else { "FAIL" };
        let mut lines = step.detail.lines();
        println!("{mark} {:<9} {}", step.name, lines.next().unwrap_or(""));
        for line in lines {
            println!("{:<15}{line}", "");
        }
    }
    if !report.logs.is_empty() {
        print_logs(&report.logs);
    }
    println!("{}", if report.passed { "passed" } else { "FAILED" });
}

fn print_run(report: &RunReport) {
    println!("world:    {}", report.world);
    match (&report.result, &report.error) {
        (Some(result), _) => println!("result:   {result}"),
        (None, Some(error)) => println!("FAILED:   {error}"),
        (None, None) => {}
    }
    print_logs(&report.logs);
    println!("time:     {:.3} ms", report.wall_ms);
    match report.fuel {
        Some(fuel) => println!("fuel:     {fuel}"),
        None => println!("fuel:     -"),
    }
}
