//! The protobuf messages TensorBoard reads, written out as prost derives (no `protoc`).
//!
//! Field numbers follow `tensorflow/core/util/event.proto`, `tensorflow/core/framework/
//! {summary,tensor,tensor_shape}.proto` and `tensorboard/plugins/hparams/{api,plugin_data}.proto`.
//! Only the fields this writer uses are declared; protobuf readers skip the rest.

pub use prost_types::{value::Kind as ValueKind, ListValue, Value};

/// `tensorflow.Event`: one record of an event file.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// Global step (the epoch, in this project).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The payload.
    #[prost(oneof = "EventWhat", tags = "3, 5")]
    pub what: Option<EventWhat>,
}

/// `Event.what`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum EventWhat {
    /// `"brain.Event:2"` in the first record of every file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// Summaries (scalars, images, text, hparams).
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The tag (card name in TensorBoard).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// Which plugin reads it.
    #[prost(message, optional, tag = "9")]
    pub metadata: Option<SummaryMetadata>,
    /// The value.
    #[prost(oneof = "SummaryValueKind", tags = "2, 8")]
    pub value: Option<SummaryValueKind>,
}

/// `Summary.Value.value`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SummaryValueKind {
    /// A scalar (read by the scalars plugin).
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// A tensor (images, text).
    #[prost(message, tag = "8")]
    Tensor(TensorProto),
}

/// `tensorflow.SummaryMetadata`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryMetadata {
    /// Plugin name and its serialised data.
    #[prost(message, optional, tag = "1")]
    pub plugin_data: Option<PluginData>,
    /// `DataClass`: 1 scalar, 2 tensor, 3 blob sequence.
    #[prost(int32, tag = "4")]
    pub data_class: i32,
}

/// `SummaryMetadata.data_class` for a tensor (text).
pub const DATA_CLASS_TENSOR: i32 = 2;
/// `SummaryMetadata.data_class` for a blob sequence (images).
pub const DATA_CLASS_BLOB_SEQUENCE: i32 = 3;

/// `tensorflow.SummaryMetadata.PluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginData {
    /// `images`, `text`, `hparams`, ...
    #[prost(string, tag = "1")]
    pub plugin_name: String,
    /// The plugin's own serialised proto.
    #[prost(bytes = "vec", tag = "2")]
    pub content: Vec<u8>,
}

/// `tensorflow.TensorProto` (strings only, as images and text need).
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorProto {
    /// `DataType`: 7 = `DT_STRING`.
    #[prost(int32, tag = "1")]
    pub dtype: i32,
    /// Shape.
    #[prost(message, optional, tag = "2")]
    pub tensor_shape: Option<TensorShapeProto>,
    /// The strings, row-major.
    #[prost(bytes = "vec", repeated, tag = "8")]
    pub string_val: Vec<Vec<u8>>,
}

/// `DataType::DT_STRING`.
pub const DT_STRING: i32 = 7;

/// `tensorflow.TensorShapeProto`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeProto {
    /// Dimensions, outermost first.
    #[prost(message, repeated, tag = "2")]
    pub dim: Vec<TensorShapeDim>,
}

/// `TensorShapeProto.Dim`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorShapeDim {
    /// Extent.
    #[prost(int64, tag = "1")]
    pub size: i64,
}

/// `tensorboard.hparams.HParamsPluginData`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamsPluginData {
    /// Schema version (0).
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// Which message.
    #[prost(oneof = "HParamsData", tags = "2, 3, 4")]
    pub data: Option<HParamsData>,
}

/// `HParamsPluginData.data`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamsData {
    /// The experiment: which hparams and metrics are columns.
    #[prost(message, tag = "2")]
    Experiment(Experiment),
    /// A run's hparam values.
    #[prost(message, tag = "3")]
    SessionStartInfo(SessionStartInfo),
    /// A run's end.
    #[prost(message, tag = "4")]
    SessionEndInfo(SessionEndInfo),
}

/// `tensorboard.hparams.Experiment`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Experiment {
    /// Description (markdown).
    #[prost(string, tag = "1")]
    pub description: String,
    /// Creation time, seconds since the epoch.
    #[prost(double, tag = "3")]
    pub time_created_secs: f64,
    /// The hyperparameters.
    #[prost(message, repeated, tag = "4")]
    pub hparam_infos: Vec<HParamInfo>,
    /// The metrics.
    #[prost(message, repeated, tag = "5")]
    pub metric_infos: Vec<MetricInfo>,
}

/// `tensorboard.hparams.HParamInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HParamInfo {
    /// Name (the key in `SessionStartInfo.hparams`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Shown instead of the name when set.
    #[prost(string, tag = "2")]
    pub display_name: String,
    /// Description (markdown).
    #[prost(string, tag = "3")]
    pub description: String,
    /// `DataType`: 1 string, 2 bool, 3 float64.
    #[prost(int32, tag = "4")]
    pub r#type: i32,
    /// The values it can take.
    #[prost(oneof = "HParamDomain", tags = "5, 6")]
    pub domain: Option<HParamDomain>,
}

/// `HParamInfo.domain`.
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum HParamDomain {
    /// A set of values.
    #[prost(message, tag = "5")]
    Discrete(ListValue),
    /// A closed interval of numbers.
    #[prost(message, tag = "6")]
    Interval(Interval),
}

/// `tensorboard.hparams.Interval`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Interval {
    /// Lower bound.
    #[prost(double, tag = "1")]
    pub min_value: f64,
    /// Upper bound.
    #[prost(double, tag = "2")]
    pub max_value: f64,
}

/// `tensorboard.hparams.MetricName`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricName {
    /// Run sub-directory the scalar lives in ("" = the session's own run).
    #[prost(string, tag = "1")]
    pub group: String,
    /// Scalar tag.
    #[prost(string, tag = "2")]
    pub tag: String,
}

/// `tensorboard.hparams.MetricInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricInfo {
    /// Which scalar.
    #[prost(message, optional, tag = "1")]
    pub name: Option<MetricName>,
    /// Column title.
    #[prost(string, tag = "3")]
    pub display_name: String,
    /// Description.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `DatasetType`: 0 unknown, 1 training, 2 validation.
    #[prost(int32, tag = "5")]
    pub dataset_type: i32,
}

/// `tensorboard.hparams.SessionStartInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionStartInfo {
    /// Hyperparameter values.
    #[prost(btree_map = "string, message", tag = "1")]
    pub hparams: std::collections::BTreeMap<String, Value>,
    /// Session group ("" = the session alone).
    #[prost(string, tag = "4")]
    pub group_name: String,
    /// Start time, seconds since the epoch.
    #[prost(double, tag = "5")]
    pub start_time_secs: f64,
}

/// `tensorboard.hparams.SessionEndInfo`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SessionEndInfo {
    /// `Status`: 1 success, 2 failure, 3 running.
    #[prost(int32, tag = "1")]
    pub status: i32,
    /// End time, seconds since the epoch.
    #[prost(double, tag = "2")]
    pub end_time_secs: f64,
}

/// `tensorboard.Layout` (`plugins/custom_scalar/layout.proto`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LayoutProto {
    /// Version (0).
    #[prost(int32, tag = "1")]
    pub version: i32,
    /// The categories.
    #[prost(message, repeated, tag = "2")]
    pub category: Vec<LayoutCategory>,
}

/// `tensorboard.Category`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LayoutCategory {
    /// The heading.
    #[prost(string, tag = "1")]
    pub title: String,
    /// The charts.
    #[prost(message, repeated, tag = "2")]
    pub chart: Vec<LayoutChart>,
    /// Whether it starts collapsed.
    #[prost(bool, tag = "3")]
    pub closed: bool,
}

/// `tensorboard.Chart` (only its multi-line content).
#[derive(Clone, PartialEq, prost::Message)]
pub struct LayoutChart {
    /// The title.
    #[prost(string, tag = "1")]
    pub title: String,
    /// `content.multiline`.
    #[prost(message, optional, tag = "2")]
    pub multiline: Option<MultilineChartContent>,
}

/// `tensorboard.MultilineChartContent`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MultilineChartContent {
    /// Tag regular expressions.
    #[prost(string, repeated, tag = "1")]
    pub tag: Vec<String>,
}
