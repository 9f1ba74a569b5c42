//! Data sets: ImageFolder (one sub-folder per class, sorted = class ids) or the Kaggle flat
//! layout (`cat.123.jpg`, class from the name prefix), and the seeded train/val split.

pub mod annotations;
pub mod images;
pub mod synth;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub use annotations::{read_annotations, Annotations};

use crate::data::images::{is_photo, PHOTO_EXTENSIONS};
use model::rng::SplitMix64;

/// One image of a data set.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The file.
    pub path: PathBuf,
    /// Class id.
    pub label: usize,
    /// A unique short name (the file stem; prefixed by the class when stems collide).
    pub name: String,
}

/// A labelled set of images.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Class names; the index is the class id.
    pub classes: Vec<String>,
    /// The images, sorted by class then file name.
    pub samples: Vec<Sample>,
}

/// Scan `dir`: sub-folders are classes (ImageFolder); without sub-folders, files named
/// `<class>.<anything>.<ext>` give their class by prefix (Kaggle's dogs-vs-cats).
pub fn scan(dir: &Path, key: &str) -> Result<Dataset> {
    let mut subdirs = Vec::new();
    let mut files = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("{key}: cannot list {}", dir.display()))?
    {
        let path = entry
            .with_context(|| format!("{key}: cannot list {}", dir.display()))?
            .path();
        if path.is_dir() {
            subdirs.push(path);
        } else if is_photo(&path) {
            files.push(path);
        }
    }
    subdirs.sort();
    files.sort();
    let mut samples = Vec::new();
    let classes: Vec<String> = if !subdirs.is_empty() {
        let classes: Vec<String> = subdirs
            .iter()
            .map(|d| {
                d.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect();
        for (label, sub) in subdirs.iter().enumerate() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(sub)
                .with_context(|| format!("{key}: cannot list {}", sub.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_photo(p))
                .collect();
            if found.is_empty() {
                bail!(
                    "{key}: class folder {} has no images ({})",
                    sub.display(),
                    PHOTO_EXTENSIONS.join(", ")
                );
            }
            found.sort();
            samples.extend(found.into_iter().map(|path| Sample {
                name: String::new(),
                path,
                label,
            }));
        }
        classes
    } else {
        let prefix = |p: &Path| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.split_once('.'))
                .map(|(c, _)| c.to_ascii_lowercase())
        };
        let classes: Vec<String> = files
            .iter()
            .filter_map(|p| prefix(p))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        for path in files {
            let Some(class) = prefix(&path) else { continue };
            let label = classes.iter().position(|c| *c == class).unwrap_or(0);
            samples.push(Sample {
                name: String::new(),
                path,
                label,
            });
        }
        samples.sort_by(|a, b| (a.label, &a.path).cmp(&(b.label, &b.path)));
        classes
    };
    if samples.is_empty() {
        bail!(
            "{key}: {} has no images: expected one sub-folder per class (ImageFolder) or files named \
             like cat.1.jpg (Kaggle layout)",
            dir.display()
        );
    }
    if classes.len() < 2 {
        bail!(
            "{key}: {} holds a single class ({}); a classifier needs at least two",
            dir.display(),
            classes.join(", ")
        );
    }
    check_class_names(key, dir, &classes)?;
    name_samples(&mut samples, &classes);
    Ok(Dataset { classes, samples })
}

/// Class names end up in metrics.csv columns, TensorBoard tags, the confusion CSVs and the head
/// file's `classes` metadata (comma-separated): a comma, a slash or a control character in one
/// would corrupt them, so such a folder name is refused.
fn check_class_names(key: &str, dir: &Path, classes: &[String]) -> Result<()> {
    for class in classes {
        if class.is_empty()
            || class
                .chars()
                .any(|c| c == ',' || c == '/' || c == '\\' || c.is_control())
        {
            bail!(
                "{key}: class folder {:?} in {}: class names may not contain commas, slashes or \
                 control characters (they name metrics.csv columns and TensorBoard tags); \
                 rename the folder",
                class,
                dir.display()
            );
        }
    }
    Ok(())
}

fn name_samples(samples: &mut [Sample], classes: &[String]) {
    let stem = |s: &Sample| {
        s.path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "image".into())
    };
    let stems: Vec<String> = samples.iter().map(stem).collect();
    for (i, sample) in samples.iter_mut().enumerate() {
        let unique = stems.iter().filter(|s| **s == stems[i]).count() == 1;
        sample.name = if unique {
            stems[i].clone()
        } else {
            format!("{}-{}", classes[sample.label], stems[i])
        };
    }
}

/// Split a data set: a seeded `fraction` goes to validation.
pub fn split(data: Dataset, fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let mut order: Vec<usize> = (0..data.samples.len()).collect();
    SplitMix64::new(seed ^ 0x5_1175_u64).shuffle(&mut order);
    let n_val =
        ((data.samples.len() as f64 * fraction).round() as usize).clamp(1, data.samples.len() - 1);
    let mut val_idx: Vec<usize> = order[..n_val].to_vec();
    let mut train_idx: Vec<usize> = order[n_val..].to_vec();
    val_idx.sort_unstable();
    train_idx.sort_unstable();
    let pick = |idx: &[usize]| Dataset {
        classes: data.classes.clone(),
        samples: idx.iter().map(|&i| data.samples[i].clone()).collect(),
    };
    (pick(&train_idx), pick(&val_idx))
}

/// `count` validation images balanced over classes (round-robin, in file order).
pub fn balanced_subset(data: &Dataset, count: usize) -> Vec<usize> {
    let mut per_class: Vec<Vec<usize>> = vec![Vec::new(); data.classes.len()];
    for (i, s) in data.samples.iter().enumerate() {
        per_class[s.label].push(i);
    }
    let mut chosen = Vec::new();
    let mut round = 0;
    while chosen.len() < count.min(data.samples.len()) {
        for class in &per_class {
            if let Some(&i) = class.get(round) {
                if chosen.len() < count {
                    chosen.push(i);
                }
            }
        }
        round += 1;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(path: &Path) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        image::RgbImage::new(4, 4).save(path).unwrap();
    }

    #[test]
    fn kaggle_flat_layout_takes_the_class_from_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "cat.1.png",
            "cat.2.png",
            "dog.1.png",
            "Dog.7.png",
            "notes.txt",
        ] {
            if name.ends_with(".txt") {
                std::fs::write(dir.path().join(name), "x").unwrap();
            } else {
                touch(&dir.path().join(name));
            }
        }
        let data = scan(dir.path(), "train_dir").unwrap();
        assert_eq!(data.classes, ["cat", "dog"]);
        let labels: Vec<usize> = data.samples.iter().map(|s| s.label).collect();
        assert_eq!(labels, [0, 0, 1, 1]);
        let names: Vec<&str> = data.samples.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["cat.1", "cat.2", "Dog.7", "dog.1"]);
    }

    #[test]
    fn class_folders_that_would_corrupt_columns_and_tags_are_refused() {
        for bad in ["cat,dog", "tab\tname"] {
            let dir = tempfile::tempdir().unwrap();
            touch(&dir.path().join(format!("{bad}/0.png")));
            touch(&dir.path().join("fox/0.png"));
            let error = format!("{:#}", scan(dir.path(), "train_dir").unwrap_err());
            assert!(error.contains("may not contain commas"), "{error}");
        }
        // Three named classes are fine.
        let dir = tempfile::tempdir().unwrap();
        for class in ["cat", "dog", "red fox"] {
            touch(&dir.path().join(format!("{class}/0.png")));
        }
        assert_eq!(
            scan(dir.path(), "train_dir").unwrap().classes,
            ["cat", "dog", "red fox"]
        );
    }

    #[test]
    fn image_folder_names_collisions_and_split() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..5 {
            touch(&dir.path().join(format!("cat/{i}.png")));
            touch(&dir.path().join(format!("dog/{i}.png")));
        }
        let data = scan(dir.path(), "train_dir").unwrap();
        assert_eq!(data.samples[0].name, "cat-0");
        let (train, val) = split(data.clone(), 0.2, 42);
        assert_eq!((train.samples.len(), val.samples.len()), (8, 2));
        let (train2, _) = split(data.clone(), 0.2, 42);
        let paths = |d: &Dataset| d.samples.iter().map(|s| s.path.clone()).collect::<Vec<_>>();
        assert_eq!(paths(&train), paths(&train2), "the split is seeded");
        let chosen = balanced_subset(&data, 4);
        let labels: Vec<usize> = chosen.iter().map(|&i| data.samples[i].label).collect();
        assert_eq!(labels, [0, 1, 0, 1]);
    }
}
