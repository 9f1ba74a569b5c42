//! HParams: what TensorBoard's HPARAMS tab needs to compare runs as a table.
//!
//! The log root's run holds the [`Experiment`] (the columns); each run holds its session start
//! (the hparam values) and end (status). Metrics are ordinary scalar tags, read at their last
//! step.

use crate::proto::{self, ListValue, Value, ValueKind};

/// A hyperparameter's value: TensorBoard supports strings, numbers and booleans.
#[derive(Debug, Clone, PartialEq)]
pub enum HParamValue {
    /// A string, e.g. the method `"gradcam"`.
    Str(String),
    /// A number (stored as f64), e.g. the learning rate.
    Number(f64),
    /// A boolean, e.g. whether the backbone is frozen.
    Bool(bool),
}

impl HParamValue {
    pub(crate) fn to_proto(&self) -> Value {
        let kind = match self {
            HParamValue::Str(s) => ValueKind::StringValue(s.clone()),
            HParamValue::Number(x) => ValueKind::NumberValue(*x),
            HParamValue::Bool(b) => ValueKind::BoolValue(*b),
        };
        Value { kind: Some(kind) }
    }

    fn data_type(&self) -> i32 {
        match self {
            HParamValue::Str(_) => 1,
            HParamValue::Bool(_) => 2,
            HParamValue::Number(_) => 3,
        }
    }
}

impl From<&str> for HParamValue {
    fn from(s: &str) -> Self {
        HParamValue::Str(s.into())
    }
}
impl From<String> for HParamValue {
    fn from(s: String) -> Self {
        HParamValue::Str(s)
    }
}
impl From<f64> for HParamValue {
    fn from(x: f64) -> Self {
        HParamValue::Number(x)
    }
}
impl From<bool> for HParamValue {
    fn from(b: bool) -> Self {
        HParamValue::Bool(b)
    }
}

/// The values a hyperparameter can take, for the HPARAMS tab's filters.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// Any value of the type.
    Any,
    /// One of these values (all of one type).
    Discrete(Vec<HParamValue>),
    /// A number in [min, max].
    Interval(f64, f64),
}

/// One hyperparameter column.
#[derive(Debug, Clone, PartialEq)]
pub struct HParamSpec {
    /// Name: the key used in [`EventWriter::add_session_start`](crate::EventWriter::add_session_start).
    pub name: String,
    /// A value of the right type (sets the column's type).
    pub example: HParamValue,
    /// The values it can take.
    pub domain: Domain,
    /// Shown in the UI (markdown).
    pub description: String,
}

/// Which split a metric is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetType {
    /// Unspecified.
    Unknown = 0,
    /// Training data.
    Training = 1,
    /// Validation data.
    Validation = 2,
}

/// One metric column: a scalar tag, read at its last step.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricSpec {
    /// The scalar tag, e.g. `val/accuracy`.
    pub tag: String,
    /// The run sub-directory holding it ("" = the run itself).
    pub group: String,
    /// Column title ("" = the tag).
    pub display_name: String,
    /// Which split.
    pub dataset: DatasetType,
}

/// An experiment: the hparam and metric columns of the HPARAMS tab.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Experiment {
    /// Description (markdown).
    pub description: String,
    /// Creation time, seconds since the epoch.
    pub time_created_secs: f64,
    /// Hyperparameter columns.
    pub hparams: Vec<HParamSpec>,
    /// Metric columns.
    pub metrics: Vec<MetricSpec>,
}

impl Experiment {
    pub(crate) fn to_proto(&self) -> proto::Experiment {
        let hparam_infos = self
            .hparams
            .iter()
            .map(|h| proto::HParamInfo {
                name: h.name.clone(),
                display_name: String::new(),
                description: h.description.clone(),
                r#type: h.example.data_type(),
                domain: match &h.domain {
                    Domain::Any => None,
                    Domain::Discrete(values) => Some(proto::HParamDomain::Discrete(ListValue {
                        values: values.iter().map(HParamValue::to_proto).collect(),
                    })),
                    Domain::Interval(min, max) => {
                        Some(proto::HParamDomain::Interval(proto::Interval {
                            min_value: *min,
                            max_value: *max,
                        }))
                    }
                },
            })
            .collect();
        let metric_infos = self
            .metrics
            .iter()
            .map(|m| proto::MetricInfo {
                name: Some(proto::MetricName {
                    group: m.group.clone(),
                    tag: m.tag.clone(),
                }),
                display_name: m.display_name.clone(),
                description: String::new(),
                dataset_type: m.dataset as i32,
            })
            .collect();
        proto::Experiment {
            description: self.description.clone(),
            time_created_secs: self.time_created_secs,
            hparam_infos,
            metric_infos,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionStatus {
    /// Unknown.
    Unknown = 0,
    /// Finished normally.
    Success = 1,
    /// Failed.
    Failure = 2,
    /// Still running.
    Running = 3,
}
