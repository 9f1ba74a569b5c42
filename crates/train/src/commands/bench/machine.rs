//! What the bench ran on, for its JSON: CPU model, family, the SIMD flags the kernels choose
//! between, logical CPUs and thread counts, and the libraries' versions.

use serde_json::{json, Value};

/// The CPU flags that decide which kernels run (ours and oneDNN's).
const FLAGS: [&str; 9] = [
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx_vnni",
    "amx_tile",
];

/// burn's version (pinned with `=` in the workspace Cargo.toml).
const BURN_VERSION: &str = "0.22.1";

/// The machine and libraries, as JSON.
pub fn describe() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find(|l| l.split(':').next().map(str::trim) == Some(name))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    };
    let flags: Vec<&str> = field("flags")
        .map(|f| {
            FLAGS
                .iter()
                .copied()
                .filter(|want| f.split_whitespace().any(|have| have == *want))
                .collect()
        })
        .unwrap_or_default();
    let logical = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count();
    json!({
        "cpu_model": field("model name"),
        "cpu_family": field("cpu family"),
        "cpu_model_number": field("model"),
        "cpu_flags": flags,
        "logical_cpus": logical,
        "rayon_threads": rayon::current_num_threads(),
        "train_version": env!("CARGO_PKG_VERSION"),
        "burn_version": BURN_VERSION,
    })
}

/// One line for the printed table: "AMD EPYC … (family 25), avx2 fma, 2 threads".
pub fn summary(machine: &Value) -> String {
    let text = |key: &str| machine[key].as_str().unwrap_or("?").to_string();
    let flags: Vec<&str> = machine["cpu_flags"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{} (family {}), {}, {} threads",
        text("cpu_model"),
        text("cpu_family"),
        flags.join(" "),
        machine["rayon_threads"]
    )
}
