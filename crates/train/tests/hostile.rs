//! Hostile inputs to training: images that are decompression bombs (headers claiming 65,000
//! pixels a side), cut short, empty, not images at all, or crash the JPEG decoder, and configs
//! with absurd numbers. Each image is skipped with a warning and counted; each config is
//! refused with a message naming the key; nothing panics. Paths outside the project are read,
//! never written (but for the run directory).

use std::path::Path;

use common::{ok, train};

mod common;

/// CRC-32 (PNG's), bitwise.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn encode(image: &image::RgbImage, format: image::ImageFormat) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    image.write_to(&mut out, format).unwrap();
    out.into_inner()
}

/// A valid small PNG whose header claims `side` x `side` pixels (CRC fixed up).
fn png_bomb(side: u32) -> Vec<u8> {
    let mut png = encode(&image::RgbImage::new(8, 8), image::ImageFormat::Png);
    // Signature (8) + IHDR length (4) + "IHDR" (4): width and height follow.
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// A valid small JPEG whose frame header claims `side` x `side` pixels.
fn jpeg_bomb(side: u16) -> Vec<u8> {
    let mut jpeg = encode(&image::RgbImage::new(8, 8), image::ImageFormat::Jpeg);
    let sof = jpeg
        .windows(2)
        .position(|w| w == [0xff, 0xc0])
        .expect("a baseline frame header");
    jpeg[sof + 5..sof + 7].copy_from_slice(&side.to_be_bytes());
    jpeg[sof + 7..sof + 9].copy_from_slice(&side.to_be_bytes());
    jpeg
}

fn write_config(path: &Path, data: &Path, runs: &Path, extra_data: &str, train_keys: &str) {
    let text = format!(
        r#"[run]
name = "hostile"
runs_dir = "{runs}"

[data]
train_dir = "{data}/train"
val_dir = "{data}/val"
image_size = 64
{extra_data}

[model]
backbone = "vgg16"
weights = "data/weights/vgg16-w8-synthetic.safetensors"
head = "gap-linear"

[train]
batch_size = 8
learning_rate = 1e-2
{train_keys}

[[callbacks]]
kind = "cam"
num_images = 2
"#,
        runs = runs.display(),
        data = data.display(),
    );
    std::fs::write(path, text).unwrap();
}

/// Run `train`, polling its peak RSS (VmHWM) until it exits; returns stdout and the peak in MB.
fn run_measuring_memory(args: &[&str]) -> (String, f64) {
    use std::io::Read;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .args(args)
        .current_dir(common::repo())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0.0f64;
    let mut stdout = String::new();
    // Both pipes drained while the child runs: a child writing more than a pipe's buffer
    // (64 KiB) to stderr (a panic backtrace with RUST_BACKTRACE=1) would otherwise block.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            pipe.read_to_string(&mut text).unwrap();
            text
        })
    };
    let reader = drain(Box::new(child.stdout.take().unwrap()));
    let stderr_reader = drain(Box::new(child.stderr.take().unwrap()));
    loop {
        if let Some(kb) = common::peak_rss_kb(&status_file) {
            peak_kb = peak_kb.max(kb);
        }
        if let Some(status) = child.try_wait().unwrap() {
            stdout.push_str(&reader.join().unwrap());
            let stderr = stderr_reader.join().unwrap();
            assert!(
                status.success(),
                "train failed ({status}):\n{stdout}\n{stderr}"
            );
            return (stdout, peak_kb / 1024.0);
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
}

#[test]
fn hostile_images_are_skipped_and_counted() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::synth_data(tmp.path(), 12, 6);
    let cats = data.join("train/cat");
    let valid_png = encode(&image::RgbImage::new(40, 30), image::ImageFormat::Png);
    // A 784-byte JPEG on which zune-jpeg 0.5.15 panics (found by the image fuzzer).
    let decoder_panic = std::fs::read(
        common::repo().join("fuzz/regressions/image_bytes/zune-jpeg-0.5.15-idct-avx2-unwrap.jpg"),
    )
    .unwrap();
    let hostile: [(&str, Vec<u8>); 7] = [
        ("decoder-panic.jpg", decoder_panic),
        ("bomb.png", png_bomb(65_000)),
        ("bomb.jpg", jpeg_bomb(65_000).to_vec()),
        ("empty.jpg", Vec::new()),
        ("truncated.png", valid_png[..valid_png.len() / 2].to_vec()),
        (
            "not-an-image.jpg",
            b"GIF89a? no: plain text pretending".to_vec(),
        ),
        // A real PNG with the wrong extension is read by its content, not skipped.
        ("png-named.jpg", valid_png.clone()),
    ];
    for (name, bytes) in &hostile {
        std::fs::write(cats.join(name), bytes).unwrap();
    }
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("c.toml");
    write_config(&config, &data, &runs, "", "epochs = 1");
    let (out, peak_mb) = run_measuring_memory(&["--config", config.to_str().unwrap()]);
    println!("peak RSS {peak_mb:.0} MB");
    for line in out.lines().filter(|l| l.contains("cat/")) {
        println!("{line}");
    }
    // The JPEG bomb alone once took 24 GB (OOM-killed) before its header was checked.
    assert!(peak_mb < 1024.0, "peak RSS {peak_mb:.0} MB");
    assert!(out.contains("skipped files: 6"), "{out}");
    for (name, _) in &hostile[..6] {
        assert!(
            out.contains(&format!("cat/{name}: ")),
            "{name} not reported:\n{out}"
        );
    }
    assert!(!out.contains("png-named.jpg"), "{out}");
    // zune-jpeg takes its AVX2 path (where the panic is) on CPUs that have it.
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx2") {
        assert!(
            out.contains("the image decoder crashed on"),
            "the decoder panic did not go through the guard:\n{out}"
        );
    }
}

#[test]
fn absurd_numbers_in_configs_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::synth_data(tmp.path(), 4, 4);
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("c.toml");
    for (extra_data, train_keys, needle) in [
        ("image_size = 1048576", "epochs = 1", "at most 1024 a side"),
        ("", "epochs = 1000000000000", "epochs must be in 1..=100000"),
        ("", "epochs = 99999999999999999999999", "epochs"),
        (
            "backbone_batch_size = 100000",
            "epochs = 1",
            "backbone_batch_size must be in 1..=256",
        ),
        ("", "epochs = -3", "epochs"),
        ("", "epochs = \"ten\"", "epochs"),
    ] {
        // `image_size` appears twice when overridden: write the override in its place.
        write_config(&config, &data, &runs, "", train_keys);
        if !extra_data.is_empty() {
            let text = std::fs::read_to_string(&config).unwrap();
            let key = extra_data.split(' ').next().unwrap();
            let text = if key == "image_size" {
                text.replace("image_size = 64", extra_data)
            } else {
                text.replace("image_size = 64", &format!("image_size = 64\n{extra_data}"))
            };
            std::fs::write(&config, text).unwrap();
        }
        let output = train(&["--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{extra_data} {train_keys}: accepted"
        );
        assert!(
            stderr.contains(needle),
            "{extra_data} {train_keys}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let num_images = tmp.path().join("n.toml");
    write_config(&num_images, &data, &runs, "", "epochs = 1");
    let text = std::fs::read_to_string(&num_images)
        .unwrap()
        .replace("num_images = 2", "num_images = 5000000");
    std::fs::write(&num_images, text).unwrap();
    let output = train(&["--config", num_images.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&output.stderr).contains("num_images must be in 1..=1024"));
    assert!(
        !runs.exists() || std::fs::read_dir(&runs).unwrap().count() == 0,
        "a refused config made a run"
    );
}

/// Every file under `dir` (relative path → bytes and modification time), recursively.
fn snapshot(dir: &Path) -> std::collections::BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let modified = std::fs::metadata(&path).unwrap().modified().unwrap();
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                files.insert(name, (std::fs::read(&path).unwrap(), modified));
            }
        }
    }
    files
}

/// A config whose photos, boxes, weights and runs directory all lie outside the project, run
/// from a third directory: the inputs are read and left byte-for-byte (and mtime) unchanged,
/// the working directory, HOME, TMPDIR and the project's `runs/` get no run, and everything
/// written is under the configured `runs_dir`.
#[test]
fn paths_outside_the_project_are_read_but_never_written() {
    let tmp = tempfile::tempdir().unwrap();
    let inputs = tmp.path().join("inputs");
    let data = common::synth_data(&inputs, 8, 4);
    let weights = inputs.join("weights.safetensors");
    std::fs::copy(
        common::repo().join("data/weights/vgg16-w8-synthetic.safetensors"),
        &weights,
    )
    .unwrap();
    let runs = tmp.path().join("elsewhere/runs");
    let config = inputs.join("outside.toml");
    let boxes = format!("boxes = \"{}\"", data.join("boxes.json").display());
    assert!(data.join("boxes.json").is_file());
    write_config(&config, &data, &runs, &boxes, "epochs = 2");
    let mut text = std::fs::read_to_string(&config).unwrap();
    for (from, to) in [
        ("name = \"hostile\"", "name = \"outside-project\""),
        (
            "data/weights/vgg16-w8-synthetic.safetensors",
            weights.to_str().unwrap(),
        ),
    ] {
        assert!(text.contains(from), "the config template changed: {from}");
        text = text.replace(from, to);
    }
    std::fs::write(&config, text).unwrap();
    // The working directory, HOME and TMPDIR: three more places that must stay empty.
    let (cwd, home, scratch) = (
        tmp.path().join("cwd"),
        tmp.path().join("home"),
        tmp.path().join("tmpdir"),
    );
    for dir in [&cwd, &home, &scratch] {
        std::fs::create_dir(dir).unwrap();
    }
    let before = snapshot(&inputs);
    assert!(before.len() > 12, "{} input files", before.len());

    let output = std::process::Command::new(env!("CARGO_BIN_EXE_train"))
        .args(["--config", config.to_str().unwrap()])
        .current_dir(&cwd)
        .env("HOME", &home)
        .env("TMPDIR", &scratch)
        .output()
        .unwrap();
    println!("{}", ok(&output));

    let after = snapshot(&inputs);
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "files appeared in or vanished from the input directory"
    );
    for (name, (bytes, modified)) in &before {
        assert!(
            after[name] == (bytes.clone(), *modified),
            "{name} was modified"
        );
    }
    for dir in [&cwd, &home, &scratch] {
        let left = std::fs::read_dir(dir).unwrap().count();
        assert_eq!(left, 0, "wrote into {}", dir.display());
    }
    let written = snapshot(tmp.path());
    let outside_runs: Vec<&String> = written
        .keys()
        .filter(|name| !name.starts_with("inputs/") && !name.starts_with("elsewhere/runs/"))
        .collect();
    assert!(
        outside_runs.is_empty(),
        "written outside runs_dir: {outside_runs:?}"
    );
    assert!(
        written.keys().any(|n| n.ends_with("metrics.csv")),
        "the run wrote no metrics"
    );
    let project_runs = std::fs::read_dir(common::repo().join("runs")).unwrap();
    for entry in project_runs {
        let name = entry.unwrap().file_name();
        assert!(
            !name.to_string_lossy().starts_with("outside-project"),
            "the project's runs/ got {name:?}"
        );
    }
}

/// An `[[data.eval]]` set whose name collides with a built-in set, a method, a baseline, a
/// column that reads back as another metric, or another eval set is a config error naming the
/// key, and no run directory is made (a set named `val` used to overwrite the validation
/// figures in metrics.csv).
#[test]
fn eval_set_names_that_collide_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::synth_data(tmp.path(), 4, 4);
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("c.toml");
    let eval = |name: &str| {
        format!(
            "[[data.eval]]\nname = \"{name}\"\ndir = \"{}/val\"\n",
            data.display()
        )
    };
    for (sets, needle) in [
        (eval("val"), "is the built-in val set"),
        (eval("train"), "is the built-in train set"),
        (eval("cam"), "is a method's name"),
        (eval("random"), "is a method's name"),
        (eval("baseline_centre"), "is a localization baseline's name"),
        (eval("cam_extra"), "would read as another metric's"),
        (
            format!("{}{}", eval("other"), eval("other")),
            "the name of #1 too",
        ),
    ] {
        write_config(&config, &data, &runs, &sets, "epochs = 1");
        let output = train(&["--config", config.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{sets}: accepted");
        assert!(stderr.contains("[[data.eval]] #"), "{sets}: {stderr}");
        assert!(stderr.contains(needle), "{sets}: {stderr}");
        assert!(
            !runs.exists() || std::fs::read_dir(&runs).unwrap().count() == 0,
            "{sets}: a refused config made a run"
        );
    }
    // A plain name is accepted (checked without training: the config's values pass).
    write_config(&config, &data, &runs, &eval("holdout"), "epochs = 1");
    let text = std::fs::read_to_string(&config).unwrap();
    train::config::Config::parse(&text).expect("an eval set named `holdout` is accepted");
}

/// A boxes file whose outline reaches far outside its photo stops a run before its run
/// directory exists (it used to be clipped to the whole photo and score 1.0), naming the photo.
#[test]
fn an_outline_outside_its_photo_stops_the_run_before_it_starts() {
    let tmp = tempfile::tempdir().unwrap();
    let data = common::synth_data(tmp.path(), 4, 4);
    let text = std::fs::read_to_string(data.join("boxes.json")).unwrap();
    let mut file: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entries = file["images"].as_array_mut().unwrap();
    let val = entries
        .iter_mut()
        .find(|e| e["file"].as_str().unwrap().starts_with("val/"))
        .expect("a val entry");
    val["body_polygon_xy"] = serde_json::json!([0, 0, 1e30, 0, 10, 10]);
    let victim = val["file"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_string();
    let boxes = tmp.path().join("bad-boxes.json");
    std::fs::write(&boxes, file.to_string()).unwrap();
    let runs = tmp.path().join("runs");
    let config = tmp.path().join("c.toml");
    write_config(
        &config,
        &data,
        &runs,
        &format!("boxes = \"{}\"", boxes.display()),
        "epochs = 1",
    );
    let output = train(&["--config", config.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "accepted");
    assert!(
        stderr.contains("outside") && stderr.contains(&victim),
        "{stderr}"
    );
    assert!(
        !runs.exists() || std::fs::read_dir(&runs).unwrap().count() == 0,
        "a refused boxes file made a run"
    );
}
