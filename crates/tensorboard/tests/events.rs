//! Parse written event files back and check every field; failure modes.

mod common;

use std::path::Path;

use prost::Message;
use tensorboard::proto::{
    Event, EventWhat, HParamsData, HParamsPluginData, SummaryValue, SummaryValueKind, ValueKind,
};
use tensorboard::read::{event_files, read_event_file};
use tensorboard::record::ReadStop;
use tensorboard::{EventWriter, TbError};

fn events_of(dir: &Path) -> Vec<Event> {
    let files = event_files(dir).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let file = read_event_file(&files[0]).unwrap();
    assert_eq!(file.stop, ReadStop::End);
    file.events
}

fn values(events: &[Event]) -> Vec<(i64, SummaryValue)> {
    events
        .iter()
        .filter_map(|e| match &e.what {
            Some(EventWhat::Summary(s)) => Some(s.value.iter().map(|v| (e.step, v.clone()))),
            _ => None,
        })
        .flatten()
        .collect()
}

#[test]
fn file_name_and_version_record() {
    let dir = tempfile::tempdir().unwrap();
    let writer = EventWriter::create(dir.path()).unwrap();
    let name = writer
        .path()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let parts: Vec<&str> = name.split('.').collect();
    assert_eq!(&parts[..3], ["events", "out", "tfevents"], "{name}");
    assert_eq!(parts[3].len(), 10, "{name}");
    assert_eq!(
        parts[parts.len() - 2],
        std::process::id().to_string(),
        "{name}"
    );
    drop(writer);
    let events = events_of(dir.path());
    assert_eq!(
        events[0].what,
        Some(EventWhat::FileVersion("brain.Event:2".into()))
    );
    assert!(events[0].wall_time > 1.7e9);
}

#[test]
fn every_field_of_the_demo_log() {
    let root = tempfile::tempdir().unwrap();
    common::write_demo(root.path());

    // The root run: the experiment.
    let root_values = values(&events_of(root.path()));
    assert_eq!(root_values.len(), 1);
    let (_, experiment) = &root_values[0];
    assert_eq!(experiment.tag, "_hparams_/experiment");
    let plugin = experiment
        .metadata
        .as_ref()
        .unwrap()
        .plugin_data
        .as_ref()
        .unwrap();
    assert_eq!(plugin.plugin_name, "hparams");
    let data = HParamsPluginData::decode(plugin.content.as_slice()).unwrap();
    let Some(HParamsData::Experiment(exp)) = data.data else {
        panic!("not an experiment")
    };
    let names: Vec<_> = exp
        .hparam_infos
        .iter()
        .map(|h| (h.name.as_str(), h.r#type))
        .collect();
    assert_eq!(
        names,
        [
            ("method", 1),
            ("head", 1),
            ("learning_rate", 3),
            ("freeze_backbone", 2)
        ]
    );
    let tags: Vec<_> = exp
        .metric_infos
        .iter()
        .map(|m| m.name.as_ref().unwrap().tag.as_str())
        .collect();
    assert_eq!(tags, ["val/accuracy", "train/loss"]);
    assert_eq!(exp.metric_infos[0].dataset_type, 2);

    for (i, (method, head, lr)) in common::RUNS.iter().enumerate() {
        let values = values(&events_of(&root.path().join(method)));
        let find = |tag: &str| {
            values
                .iter()
                .filter(|(_, v)| v.tag == tag)
                .collect::<Vec<_>>()
        };

        // Scalars, NaN included.
        let loss: Vec<(i64, f32)> = find("train/loss")
            .iter()
            .map(|(s, v)| match v.value {
                Some(SummaryValueKind::SimpleValue(x)) => (*s, x),
                _ => panic!(),
            })
            .collect();
        assert_eq!(
            loss,
            (0..5)
                .map(|s| (s, 1.0 / (s as f32 + 1.0)))
                .collect::<Vec<_>>()
        );
        let acc = find("val/accuracy");
        assert_eq!(acc.len(), 5);
        assert!(
            matches!(acc[4].1.value, Some(SummaryValueKind::SimpleValue(x)) if (x - (0.9 + 0.01 * i as f32)).abs() < 1e-6)
        );
        let nan = find("weird/nan");
        assert!(matches!(nan[0].1.value, Some(SummaryValueKind::SimpleValue(x)) if x.is_nan()));

        // Images: modern summary, width/height first, pixels exact.
        for (tag, (w, h), samples) in [
            ("cam/val_00", (224, 224), 1),
            ("shape/w64_h32", (64, 32), 1),
            ("cam/pair", (48, 40), 2),
        ] {
            let images = find(tag);
            assert_eq!(
                images.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
                [1, 2, 3],
                "{tag}"
            );
            for (step, value) in images {
                let meta = value.metadata.as_ref().unwrap();
                assert_eq!(meta.plugin_data.as_ref().unwrap().plugin_name, "images");
                assert_eq!(meta.data_class, 3);
                let Some(SummaryValueKind::Tensor(t)) = &value.value else {
                    panic!("{tag}: no tensor")
                };
                assert_eq!(t.dtype, 7);
                assert_eq!(
                    t.tensor_shape.as_ref().unwrap().dim[0].size,
                    2 + samples as i64
                );
                assert_eq!(t.string_val[0], w.to_string().as_bytes());
                assert_eq!(t.string_val[1], h.to_string().as_bytes());
                for sample in 0..samples {
                    let png = image::load_from_memory(&t.string_val[2 + sample])
                        .unwrap()
                        .to_rgb8();
                    assert_eq!(
                        png,
                        common::demo_image(w, h, *step, sample),
                        "{tag} step {step}"
                    );
                }
            }
        }

        // Text.
        let text = find("config");
        let Some(SummaryValueKind::Tensor(t)) = &text[0].1.value else {
            panic!("no text")
        };
        assert_eq!(
            text[0]
                .1
                .metadata
                .as_ref()
                .unwrap()
                .plugin_data
                .as_ref()
                .unwrap()
                .plugin_name,
            "text"
        );
        assert_eq!(
            t.string_val,
            vec![common::CONFIG_MARKDOWN.as_bytes().to_vec()]
        );
        assert!(t.tensor_shape.as_ref().unwrap().dim.is_empty());

        // HParams session start and end.
        let decode = |tag: &str| {
            let v = &find(tag)[0].1;
            let plugin = v.metadata.as_ref().unwrap().plugin_data.as_ref().unwrap();
            assert_eq!(plugin.plugin_name, "hparams");
            HParamsPluginData::decode(plugin.content.as_slice())
                .unwrap()
                .data
        };
        let Some(HParamsData::SessionStartInfo(start)) = decode("_hparams_/session_start_info")
        else {
            panic!()
        };
        assert_eq!(
            start.hparams["method"].kind,
            Some(ValueKind::StringValue(method.to_string()))
        );
        assert_eq!(
            start.hparams["head"].kind,
            Some(ValueKind::StringValue(head.to_string()))
        );
        assert_eq!(
            start.hparams["learning_rate"].kind,
            Some(ValueKind::NumberValue(*lr))
        );
        assert_eq!(
            start.hparams["freeze_backbone"].kind,
            Some(ValueKind::BoolValue(true))
        );
        assert_eq!(start.start_time_secs, 1_700_000_100.0);
        let Some(HParamsData::SessionEndInfo(end)) = decode("_hparams_/session_end_info") else {
            panic!()
        };
        assert_eq!((end.status, end.end_time_secs), (1, 1_700_000_200.0));
    }
}

#[test]
fn two_writers_in_one_directory_never_share_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let mut a = EventWriter::create(dir.path()).unwrap();
    let mut b = EventWriter::create(dir.path()).unwrap();
    assert_ne!(a.path(), b.path());
    a.add_scalar("a", 1.0, 0).unwrap();
    b.add_scalar("b", 2.0, 0).unwrap();
    a.flush().unwrap();
    b.flush().unwrap();
    let files = event_files(dir.path()).unwrap();
    assert_eq!(files.len(), 2);
    for file in files {
        let events = read_event_file(&file).unwrap().events;
        assert_eq!(events.len(), 2, "{}", file.display());
    }
}

#[test]
fn a_file_cut_mid_record_reads_up_to_that_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventWriter::create(dir.path()).unwrap();
    for step in 0..10 {
        log.add_scalar("loss", step as f32, step).unwrap();
    }
    log.flush().unwrap();
    let path = log.path().to_path_buf();
    let bytes = std::fs::read(&path).unwrap();
    // Simulate a crash while the 11th record was being written.
    let mut crashed = bytes.clone();
    crashed.extend_from_slice(&bytes[bytes.len() - 30..bytes.len() - 5]);
    std::fs::write(&path, &crashed).unwrap();
    let file = read_event_file(&path).unwrap();
    assert_eq!(file.events.len(), 11);
    assert!(matches!(
        file.stop,
        ReadStop::Truncated { .. } | ReadStop::Corrupt { .. }
    ));
}

#[test]
fn flush_puts_the_bytes_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventWriter::create(dir.path()).unwrap();
    log.add_scalar("loss", 0.5, 3).unwrap();
    log.flush().unwrap();
    // Read through a separate handle while the writer is still open.
    let file = read_event_file(log.path()).unwrap();
    assert_eq!(file.events.len(), 2);
    assert_eq!(file.events[1].step, 3);
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    // A log directory below a regular file cannot be created.
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, b"x").unwrap();
    let err = EventWriter::create(blocker.join("run"))
        .err()
        .expect("must fail");
    assert!(matches!(err, TbError::Io { .. }), "{err}");
    assert!(err.to_string().contains("file/run"), "{err}");

    let mut log = EventWriter::create(dir.path().join("run")).unwrap();
    let err = log
        .add_image("empty", &image::RgbImage::new(0, 5), 0)
        .unwrap_err();
    assert!(matches!(err, TbError::EmptyImage { .. }), "{err}");
    let err = log.add_images("none", &[], 0).unwrap_err();
    assert!(matches!(err, TbError::EmptyImage { .. }), "{err}");
    let mixed = [image::RgbImage::new(4, 4), image::RgbImage::new(4, 5)];
    let err = log.add_images("mixed", &mixed, 0).unwrap_err();
    assert!(matches!(err, TbError::MixedImageSizes { .. }), "{err}");
    log.add_scalar("inf", f32::INFINITY, 0).unwrap();
    log.flush().unwrap();
}

#[test]
fn resume_drops_steps_after_the_checkpoint_and_appends() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventWriter::create(dir.path()).unwrap();
    for step in 0..5 {
        log.add_scalar("loss", step as f32, step).unwrap();
    }
    log.flush().unwrap();
    drop(log);
    // Crash after epoch 4's events but with checkpoint 2: steps 3 and 4 are redone.
    let mut log = EventWriter::resume(dir.path(), 2).unwrap();
    for step in 3..6 {
        log.add_scalar("loss", 10.0 + step as f32, step).unwrap();
    }
    log.flush().unwrap();
    assert_eq!(event_files(dir.path()).unwrap().len(), 1);
    let steps: Vec<(i64, f32)> = values(&events_of(dir.path()))
        .into_iter()
        .map(|(s, v)| match v.value {
            Some(SummaryValueKind::SimpleValue(x)) => (s, x),
            _ => panic!(),
        })
        .collect();
    assert_eq!(
        steps,
        [
            (0, 0.0),
            (1, 1.0),
            (2, 2.0),
            (3, 13.0),
            (4, 14.0),
            (5, 15.0)
        ]
    );
}

#[test]
fn resume_before_any_checkpoint_keeps_only_the_version_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = EventWriter::create(dir.path()).unwrap();
    log.add_text("config", "x", 0).unwrap();
    log.add_scalar("loss", 1.0, 1).unwrap();
    log.flush().unwrap();
    drop(log);
    let mut log = EventWriter::resume(dir.path(), -1).unwrap();
    log.add_text("config", "x", 0).unwrap();
    log.flush().unwrap();
    let events = events_of(dir.path());
    assert_eq!(events.len(), 2, "version record + the rewritten config");
    assert_eq!(
        events[0].what,
        Some(EventWhat::FileVersion("brain.Event:2".into()))
    );
}

#[test]
fn resume_into_a_directory_never_written_creates_it() {
    // A run killed before a sub-run (e.g. a baseline series) wrote anything.
    let dir = tempfile::tempdir().unwrap();
    let series = dir.path().join("baseline_centre");
    let mut log = EventWriter::resume(&series, 3).unwrap();
    log.add_scalar("cam/pointing_game", 0.5, 4).unwrap();
    log.flush().unwrap();
    let events = events_of(&series);
    assert_eq!(events.len(), 2, "version record + the scalar");
}
