//! Live logging to a real MLflow server (`mlflow server` from the test venv, a sqlite backend and
//! a local artifact root, on 127.0.0.1, started here and stopped by its process group): a run
//! logged live and read back through MLflow's REST API (every metrics.csv value as a metric at
//! its epoch, the config as params, an image artifact per overlay per drawing, FINISHED); the
//! server killed mid-run costs nothing; `--resume` continues the same MLflow run; an unreachable
//! server is a clear error unless `mlflow_required = false`.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ok, repo, run_dirs, tracked_config, venv_python};
use serde_json::Value;
use train::run::metrics::{Metric, MetricsTable};

/// An `mlflow server` in its own process group (it starts a uvicorn child: the group is
/// signalled, or the child would outlive it).
struct Server {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    fn start() -> Self {
        let mlflow = venv_python().with_file_name("mlflow");
        assert!(mlflow.exists(), "MLFLOW MISSING: run scripts/setup-venv.sh");
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let child = Command::new(mlflow)
            .args(["server", "--host", "127.0.0.1", "--workers", "1", "--port"])
            .arg(port.to_string())
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}/mlflow.db", dir.path().display()))
            .arg("--artifacts-destination")
            .arg(dir.path().join("artifacts"))
            .env("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut server = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        while get_text(&server.url("/health")).as_deref() != Some("OK") {
            assert!(
                server.child.try_wait().unwrap().is_none(),
                "mlflow server exited: {}",
                server.log()
            );
            assert!(
                Instant::now() < deadline,
                "mlflow server not up: {}",
                server.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
        server
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self._dir.path().join("server.log")).unwrap_or_default()
    }

    /// The JSON answer of a GET under `/api/2.0/mlflow/`.
    fn get(&self, path: &str) -> Value {
        let text = get_text(&self.url(&format!("/api/2.0/mlflow/{path}")))
            .unwrap_or_else(|| panic!("GET {path} failed"));
        serde_json::from_str(&text).unwrap()
    }

    /// Signal the server's process group and wait for the server.
    fn stop(&mut self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop("-TERM");
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
    }
}

fn get_text(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent.get(url).call().ok()?;
    response.body_mut().read_to_string().ok()
}

/// A metric value as MLflow returns it (NaN and infinities as strings).
fn number(value: &Value) -> f64 {
    match value.as_str() {
        Some(text) => text.parse().unwrap_or(f64::NAN),
        None => value.as_f64().unwrap(),
    }
}

/// The tracked run of the tests (common::tracked_config) logging to `uri`; `extra`: more
/// `[logging]` lines.
fn config(dir: &Path, runs: &Path, epochs: usize, uri: &str, extra: &str, slow: bool) -> PathBuf {
    let logging = format!("\n[logging]\nmlflow = \"{uri}\"\nexperiment = \"tests\"\n{extra}");
    tracked_config(dir, runs, epochs, slow, &logging)
}

fn run_id(run: &Path) -> String {
    let record: Value =
        serde_json::from_slice(&std::fs::read(run.join("mlflow.json")).unwrap()).unwrap();
    record["run_id"].as_str().unwrap().to_string()
}

/// Every metrics.csv value is an MLflow metric at its epoch, with its value.
fn assert_metrics_equal(server: &Server, run: &Path, id: &str) {
    let table = MetricsTable::read(&run.join("metrics.csv")).unwrap();
    let logged = server.get(&format!("runs/get?run_id={id}"));
    let keys: Vec<String> = logged["run"]["data"]["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["key"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(keys.len(), table.columns.len(), "{keys:?}");
    for key in keys {
        let column = Metric::from_tag(&key).unwrap().column();
        let history = server.get(&format!("metrics/get-history?run_id={id}&metric_key={key}"));
        let mut logged: Vec<(usize, f64)> = history["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| (m["step"].as_u64().unwrap() as usize, number(&m["value"])))
            .collect();
        logged.sort_by(|a, b| a.partial_cmp(b).unwrap());
        logged.dedup_by_key(|m| m.0);
        let local: Vec<(usize, f64)> = table
            .rows
            .iter()
            .filter_map(|r| Some((r.epoch, *r.values.get(&column)? as f64)))
            .collect();
        assert_eq!(logged.len(), local.len(), "{key}: {logged:?} vs {local:?}");
        for ((s1, v1), (s2, v2)) in logged.iter().zip(&local) {
            assert!(
                s1 == s2 && ((v1 - v2).abs() < 1e-6 || v1.is_nan() == v2.is_nan() && v1.is_nan()),
                "{key}: {logged:?} vs {local:?}"
            );
        }
    }
}

#[test]
fn a_run_is_logged_live_and_read_back_through_the_rest_api() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let path = config(tmp.path(), &runs, 3, &server.url(""), "", false);
    ok(&common::train(&["--config", path.to_str().unwrap()]));
    let run = &run_dirs(&runs)[0];
    let id = run_id(run);
    let logged = server.get(&format!("runs/get?run_id={id}"));
    assert_eq!(logged["run"]["info"]["status"], "FINISHED");
    let params: Vec<(String, String)> = logged["run"]["data"]["params"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["key"].as_str().unwrap().into(),
                p["value"].as_str().unwrap().into(),
            )
        })
        .collect();
    for (key, value) in [
        ("train.learning_rate", "0.01"),
        ("callbacks.1.kind", "gradcam"),
        ("run.seed", "3"),
    ] {
        assert!(
            params.contains(&(key.into(), value.into())),
            "{key}: {params:?}"
        );
    }
    assert_metrics_equal(&server, run, &id);
    // Every drawing (epochs 0..=3) of both methods: the grid and the 4 overlays.
    for method in ["cam", "gradcam"] {
        for epoch in 0..=3 {
            let listed = server.get(&format!(
                "artifacts/list?run_id={id}&path=images/{method}/epoch-{epoch:03}"
            ));
            let files: Vec<&str> = listed["files"]
                .as_array()
                .map(|f| f.iter().map(|f| f["path"].as_str().unwrap()).collect())
                .unwrap_or_default();
            assert!(
                files.iter().filter(|f| f.ends_with(".png")).count() >= 5
                    && files.iter().any(|f| f.ends_with("/grid.png")),
                "{method} epoch {epoch}: {files:?}"
            );
        }
    }
    let top = server.get(&format!("artifacts/list?run_id={id}"));
    let top = top["files"].to_string();
    assert!(
        top.contains("metrics.csv") && top.contains("config.toml"),
        "{top}"
    );
}

/// The stderr of `child` (started with the stall hook at epoch `at`) read up to the stall: the
/// lines so far, and the rest to read.
fn until_stall(
    child: &mut Child,
    at: usize,
) -> (
    Vec<String>,
    std::io::Lines<BufReader<std::process::ChildStderr>>,
) {
    let mut reader = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut lines = Vec::new();
    for line in reader.by_ref() {
        let line = line.unwrap();
        let stalled = line.contains(&format!("stalled after epoch {at}"));
        lines.push(line);
        if stalled {
            return (lines, reader);
        }
    }
    panic!("no stall after epoch {at}: {lines:?}");
}

#[test]
fn a_server_killed_mid_run_costs_the_run_nothing() {
    let mut server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let path = config(tmp.path(), &runs, 6, &server.url(""), "", true);
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", path.to_str().unwrap()])
        .current_dir(repo())
        .env(train::run::hooks::STALL_ENV, "2:2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (mut lines, rest) = until_stall(&mut child, 2);
    server.stop("-KILL");
    lines.extend(rest.map_while(Result::ok));
    let stderr = lines.join("\n");
    assert!(child.wait().unwrap().success(), "{stderr}");
    assert!(stderr.contains("warning: mlflow"), "{stderr}");
    let run = &run_dirs(&runs)[0];
    let table = MetricsTable::read(&run.join("metrics.csv")).unwrap();
    assert_eq!(
        table.rows.last().unwrap().epoch,
        6,
        "every epoch in metrics.csv"
    );
    assert!(run.join("finished").exists() && run.join("images/scorecam").is_dir());
    println!(
        "run with the server killed after epoch 2: {:?}",
        started.elapsed()
    );
}

#[test]
fn resume_continues_the_same_mlflow_run() {
    let server = Server::start();
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let path = config(tmp.path(), &runs, 4, &server.url(""), "", false);
    let mut child = Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", path.to_str().unwrap()])
        .current_dir(repo())
        .env(train::run::hooks::STALL_ENV, "2")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = until_stall(&mut child, 2);
    child.kill().unwrap();
    child.wait().unwrap();
    let run = run_dirs(&runs)[0].clone();
    let id = run_id(&run);
    assert_eq!(
        server.get(&format!("runs/get?run_id={id}"))["run"]["info"]["status"],
        "RUNNING"
    );
    let out = ok(&common::train(&["--resume", run.to_str().unwrap()]));
    assert!(out.contains(&format!("mlflow: resuming run {id}")), "{out}");
    assert_eq!(run_id(&run), id);
    assert_eq!(
        server.get(&format!("runs/get?run_id={id}"))["run"]["info"]["status"],
        "FINISHED"
    );
    assert_metrics_equal(&server, &run, &id);
    let experiment = server.get("experiments/get-by-name?experiment_name=tests");
    let experiment = experiment["experiment"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({ "experiment_ids": [experiment] }).to_string();
    let mut response = ureq::post(server.url("/api/2.0/mlflow/runs/search"))
        .header("Content-Type", "application/json")
        .send(body)
        .unwrap();
    let found: Value =
        serde_json::from_str(&response.body_mut().read_to_string().unwrap()).unwrap();
    assert_eq!(
        found["runs"].as_array().unwrap().len(),
        1,
        "one MLflow run: {found}"
    );
}

#[test]
fn an_unreachable_server_is_an_error_unless_not_required() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let uri = format!("http://127.0.0.1:{}", free_port());
    let path = config(tmp.path(), &runs, 1, &uri, "", false);
    let output = common::train(&["--config", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(
        stderr.contains(&uri)
            && stderr.contains("cannot be reached")
            && stderr.contains("mlflow_required"),
        "{stderr}"
    );
    assert!(run_dirs(&runs).is_empty(), "no run dir for a refused run");
    let optional = config(
        tmp.path(),
        &runs,
        1,
        &uri,
        "mlflow_required = false\n",
        false,
    );
    let output = common::train(&["--config", optional.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("training without it"), "{stderr}");
    for (bad, says) in [
        ("https://x.example", "plain HTTP only"),
        ("localhost:5000", "expected http://"),
    ] {
        let path = config(tmp.path(), &runs, 1, bad, "", false);
        let output = common::train(&["--config", path.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(says),
            "{bad}: {stderr}"
        );
    }
}
