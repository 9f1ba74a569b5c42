//! A client of MLflow's REST API (a tracking server, MLflow 2 or 3): experiments, runs, batched
//! metrics and params, run status, and artifacts through the server's artifact proxy
//! (`mlflow-artifacts:` URIs, `mlflow server --artifacts-destination …`). Plain HTTP: this
//! build has no TLS (reach an https server through a tunnel or a local proxy).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

/// Most items MLflow takes in one `log-batch` request (1000 in all, of them 100 params).
const BATCH_ITEMS: usize = 1000;
const BATCH_PARAMS: usize = 100;
/// Tries of a request that found no server, and the pause after each failed one.
const TRIES: [Duration; 3] = [
    Duration::from_millis(200),
    Duration::from_millis(600),
    Duration::ZERO,
];

/// One metric value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Its key (our tag).
    pub key: String,
    /// The value.
    pub value: f32,
    /// The epoch.
    pub step: i64,
    /// Milliseconds since 1970.
    pub timestamp: i64,
}

/// Milliseconds since 1970.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A key MLflow accepts: letters, digits, `_ - . / :` and spaces; anything else becomes `_`.
pub fn key(tag: &str) -> String {
    tag.chars()
        .map(|c| match c {
            c if c.is_alphanumeric() || "_-./: ".contains(c) => c,
            _ => '_',
        })
        .collect()
}

/// The server answered and refused the request (HTTP 4xx): trying again will not help, but the
/// server is there.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Rejected(pub String);

/// Whether `error` is a refusal by a server that is there ([`Rejected`]), not a server away.
pub fn rejected(error: &anyhow::Error) -> bool {
    error.downcast_ref::<Rejected>().is_some()
}

fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(Duration::from_secs(3).min(timeout)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// An MLflow tracking server.
pub struct Client {
    base: String,
    agent: ureq::Agent,
    /// For probes while the server is away: a short timeout, so a hung server costs little.
    probe: ureq::Agent,
    /// Whether a request that found no server is tried again (off while it is known to be
    /// away: a probe a flush, not seconds of pauses an epoch).
    retry: bool,
}

impl Client {
    /// The server at `uri` (`http://host:port`, no request made yet).
    pub fn new(uri: &str) -> Result<Self> {
        let base = uri.trim_end_matches('/').to_string();
        if base.starts_with("https://") {
            bail!("{uri}: this build speaks plain HTTP only (reach the server through an SSH tunnel or a local proxy)");
        }
        if !base.starts_with("http://") || base.len() <= "http://".len() {
            bail!("{uri}: expected http://host:port");
        }
        Ok(Self {
            base,
            agent: agent(Duration::from_secs(10)),
            probe: agent(Duration::from_secs(2)),
            retry: true,
        })
    }

    /// Try requests that found no server again, with the full timeout (the default), or not:
    /// one try, a 2-second timeout (while the server is away).
    pub fn set_retry(&mut self, retry: bool) {
        self.retry = retry;
    }

    /// The server's address.
    pub fn uri(&self) -> &str {
        &self.base
    }

    /// A JSON request to `path` under `/api/2.0/mlflow/` (GET when `body` is `None`), tried
    /// again when no server answered; an error names the call and what the server said.
    fn call(&self, path: &str, body: Option<&Value>) -> Result<Value> {
        let url = format!("{}/api/2.0/mlflow/{path}", self.base);
        let agent = self.agent();
        let text = self.with_tries(&url, || match body {
            Some(body) => agent
                .post(&url)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            None => agent.get(&url).call(),
        })?;
        serde_json::from_str(&text).with_context(|| format!("{url}: not JSON: {text:.200}"))
    }

    fn agent(&self) -> &ureq::Agent {
        if self.retry {
            &self.agent
        } else {
            &self.probe
        }
    }

    /// `send` until a server answers (bounded; a timeout is not tried again: a hung server
    /// would cost the run each time); the body of a 2xx answer, else an error ([`Rejected`]
    /// for a 4xx).
    fn with_tries(
        &self,
        url: &str,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String> {
        let mut last = None;
        let tries = if self.retry { TRIES.len() } else { 1 };
        for pause in &TRIES[..tries] {
            match send() {
                Ok(mut response) => {
                    let status = response.status();
                    let text = response.body_mut().read_to_string().unwrap_or_default();
                    if status.is_client_error() {
                        return Err(Rejected(format!("{url}: HTTP {status}: {text:.300}")).into());
                    }
                    if !status.is_success() {
                        bail!("{url}: HTTP {status}: {text:.300}");
                    }
                    return Ok(text);
                }
                Err(e @ ureq::Error::Timeout(_)) => bail!("{url}: {e}"),
                Err(e) => last = Some(e),
            }
            std::thread::sleep(*pause);
        }
        let error = last.map_or_else(|| "no answer".to_string(), |e| e.to_string());
        bail!("{url}: {error}")
    }

    /// The id of the experiment `name`, created if there is none; an error if it is deleted.
    pub fn experiment(&self, name: &str) -> Result<String> {
        // The experiment `name` as the server describes it, or `None`.
        let by_name = |name: &str| -> Result<Option<Value>> {
            let encoded = url_encode(name);
            match self.call(
                &format!("experiments/get-by-name?experiment_name={encoded}"),
                None,
            ) {
                Ok(mut v) => Ok(Some(v["experiment"].take())),
                Err(e) if rejected(&e) && e.to_string().contains("RESOURCE_DOES_NOT_EXIST") => {
                    Ok(None)
                }
                Err(e) => Err(e),
            }
        };
        let id = |experiment: &Value| -> Result<String> {
            if experiment["lifecycle_stage"] == "deleted" {
                bail!("experiment `{name}` is deleted on the server: restore it, or choose another name");
            }
            experiment["experiment_id"]
                .as_str()
                .map(String::from)
                .context("get-by-name: no experiment_id")
        };
        if let Some(experiment) = by_name(name)? {
            return id(&experiment);
        }
        match self.call("experiments/create", Some(&json!({ "name": name }))) {
            Ok(v) => v["experiment_id"]
                .as_str()
                .map(String::from)
                .context("experiments/create: no experiment_id"),
            // Another run created it just now.
            Err(_) => {
                id(&by_name(name)?.with_context(|| format!("cannot create experiment {name}"))?)
            }
        }
    }

    /// A new run of `experiment` named `name` with `tags`: its id and artifact URI.
    pub fn create_run(
        &self,
        experiment: &str,
        name: &str,
        tags: &[(String, String)],
    ) -> Result<(String, String)> {
        let tags: Vec<Value> = tags
            .iter()
            .map(|(k, v)| json!({ "key": k, "value": v }))
            .collect();
        let body = json!({
            "experiment_id": experiment, "run_name": name, "start_time": now_ms(), "tags": tags,
        });
        let run = self.call("runs/create", Some(&body))?;
        let info = &run["run"]["info"];
        let id = info["run_id"].as_str().context("runs/create: no run_id")?;
        let artifacts = info["artifact_uri"].as_str().unwrap_or_default();
        Ok((id.to_string(), artifacts.to_string()))
    }

    /// A run's artifact URI (for a resumed run).
    pub fn artifact_uri(&self, run: &str) -> Result<String> {
        let v = self.call(&format!("runs/get?run_id={run}"), None)?;
        Ok(v["run"]["info"]["artifact_uri"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    /// Log `metrics` and `params` to `run`, in as few `log-batch` requests as MLflow allows.
    pub fn log_batch(
        &self,
        run: &str,
        metrics: &[Metric],
        params: &[(String, String)],
    ) -> Result<()> {
        for chunk in params.chunks(BATCH_PARAMS) {
            let params: Vec<Value> = chunk
                .iter()
                .map(|(k, v)| json!({ "key": key(k), "value": v }))
                .collect();
            self.call(
                "runs/log-batch",
                Some(&json!({ "run_id": run, "params": params })),
            )?;
        }
        for chunk in metrics.chunks(BATCH_ITEMS) {
            let metrics: Vec<Value> = chunk.iter().map(metric_json).collect();
            self.call(
                "runs/log-batch",
                Some(&json!({ "run_id": run, "metrics": metrics })),
            )?;
        }
        Ok(())
    }

    /// Set `run`'s status (`RUNNING`, `FINISHED`, `FAILED`), with its end time unless running.
    pub fn set_status(&self, run: &str, status: &str) -> Result<()> {
        let mut body = json!({ "run_id": run, "status": status });
        if status != "RUNNING" {
            body["end_time"] = json!(now_ms());
        }
        self.call("runs/update", Some(&body)).map(|_| ())
    }

    /// Upload `bytes` as the artifact `path` of a run whose artifact URI is `artifact_uri`
    /// (`mlflow-artifacts:/<experiment>/<run>/artifacts`, served by the server's proxy).
    pub fn upload(&self, artifact_uri: &str, path: &str, bytes: &[u8]) -> Result<()> {
        let Some(root) = artifact_uri.strip_prefix("mlflow-artifacts:/") else {
            bail!("artifact store {artifact_uri} is not served by the tracking server (start it with --artifacts-destination)");
        };
        let url = format!(
            "{}/api/2.0/mlflow-artifacts/artifacts/{}/{}",
            self.base,
            root.trim_matches('/'),
            path.split('/')
                .map(url_encode)
                .collect::<Vec<_>>()
                .join("/")
        );
        let agent = self.agent();
        self.with_tries(&url, || agent.put(&url).send(bytes))
            .map(|_| ())
    }
}

/// A metric as MLflow's JSON wants it: NaN and infinities as the strings it parses.
fn metric_json(m: &Metric) -> Value {
    let value = match m.value {
        v if v.is_nan() => json!("NaN"),
        v if v == f32::INFINITY => json!("Infinity"),
        v if v == f32::NEG_INFINITY => json!("-Infinity"),
        v => json!(v as f64),
    };
    json!({ "key": key(&m.key), "value": value, "step": m.step, "timestamp": m.timestamp })
}

/// Percent-encode everything but unreserved characters.
fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_urls_and_values_are_what_mlflow_accepts() {
        assert_eq!(key("accuracy/val/cat"), "accuracy/val/cat");
        assert_eq!(key("cam/pointing_game"), "cam/pointing_game");
        assert_eq!(key("accuracy/val/c++#"), "accuracy/val/c___");
        assert_eq!(url_encode("cat dog/1"), "cat%20dog%2F1");
        let m = |value| Metric {
            key: "k".into(),
            value,
            step: 3,
            timestamp: 7,
        };
        assert_eq!(metric_json(&m(f32::NAN))["value"], "NaN");
        assert_eq!(metric_json(&m(f32::INFINITY))["value"], "Infinity");
        assert_eq!(metric_json(&m(0.5))["value"], 0.5);
        assert_eq!(metric_json(&m(0.5))["step"], 3);
    }

    #[test]
    fn only_plain_http_uris_are_taken() {
        assert!(Client::new("http://127.0.0.1:5000/").is_ok());
        for bad in [
            "https://mlflow.example.com",
            "127.0.0.1:5000",
            "http://",
            "file:///x",
        ] {
            assert!(Client::new(bad).is_err(), "{bad}");
        }
    }
}
