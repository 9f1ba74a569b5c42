//! Reading event files back: every complete, valid record of a file, decoded.

use std::path::{Path, PathBuf};

use prost::Message;

use crate::proto::Event;
use crate::record::{read_records, ReadStop};

/// The events of one file, and where reading stopped.
pub struct EventFile {
    /// The file.
    pub path: PathBuf,
    /// Decoded events, in order.
    pub events: Vec<Event>,
    /// Why reading stopped.
    pub stop: ReadStop,
}

/// Read an event file up to its last complete record.
pub fn read_event_file(path: &Path) -> std::io::Result<EventFile> {
    let bytes = std::fs::read(path)?;
    let (records, mut stop) = read_records(&bytes);
    let mut events = Vec::with_capacity(records.len());
    for (index, record) in records.into_iter().enumerate() {
        match Event::decode(record) {
            Ok(event) => events.push(event),
            Err(_) => {
                stop = ReadStop::Undecodable { record: index };
                break;
            }
        }
    }
    Ok(EventFile {
        path: path.to_path_buf(),
        events,
        stop,
    })
}

/// Byte length of the prefix of an event file holding only complete records with step ≤
/// `through_step`; the file-version record is always kept (so `through_step = -1` keeps only it).
pub fn keep_through_step(bytes: &[u8], through_step: i64) -> usize {
    let (records, _) = read_records(bytes);
    let mut keep = 0;
    for record in records {
        match Event::decode(record) {
            Ok(event)
                if event.step <= through_step
                    || matches!(event.what, Some(crate::proto::EventWhat::FileVersion(_))) =>
            {
                keep += record.len() + 16
            }
            _ => break,
        }
    }
    keep
}

/// The event files in a run directory (not recursive), sorted by name.
pub fn event_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// An image logged under `tag` at `step`: the PNG bytes of its first sample.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedImage {
    /// The tag.
    pub tag: String,
    /// The step.
    pub step: i64,
    /// PNG bytes.
    pub png: Vec<u8>,
}

/// Every image summary (first sample) whose tag starts with `prefix`, in the event files of a
/// run directory, in file and record order (later records of a tag and step win when a
/// caller keeps the last).
pub fn run_images(dir: &Path, prefix: &str) -> std::io::Result<Vec<LoggedImage>> {
    const PNG_MAGIC: &[u8] = b"\x89PNG";
    let mut out = Vec::new();
    for path in event_files(dir)? {
        for event in read_event_file(&path)?.events {
            let Some(crate::proto::EventWhat::Summary(summary)) = event.what else {
                continue;
            };
            for value in summary.value {
                let Some(crate::proto::SummaryValueKind::Tensor(tensor)) = value.value else {
                    continue;
                };
                if value.tag.starts_with(prefix)
                    && tensor.string_val.len() >= 3
                    && tensor.string_val[2].starts_with(PNG_MAGIC)
                {
                    out.push(LoggedImage {
                        tag: value.tag,
                        step: event.step,
                        png: tensor.string_val.into_iter().nth(2).unwrap_or_default(),
                    });
                }
            }
        }
    }
    Ok(out)
}
