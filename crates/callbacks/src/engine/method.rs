//! The explanation methods by name: what configs, the command line and log tags say. A leaf:
//! each method's computation is in [`crate::engine::methods`].

use std::fmt;
use std::str::FromStr;

/// The methods by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// [`Cam`].
    Cam,
    /// [`GradCam`].
    GradCam,
    /// [`GradCamPlusPlus`].
    GradCamPlusPlus,
    /// [`LayerCam`].
    LayerCam,
    /// [`HiResCam`].
    HiResCam,
    /// [`XGradCam`].
    XGradCam,
    /// [`GradCamElementWise`].
    GradCamElementWise,
    /// [`EigenCam`].
    EigenCam,
    /// [`EigenGradCam`].
    EigenGradCam,
    /// [`ScoreCam`].
    ScoreCam,
    /// [`AblationCam`].
    AblationCam,
    /// [`RandomBaseline`]: a baseline, not an explanation.
    Random,
}

impl Method {
    /// Every method, in a stable order.
    pub const ALL: [Method; 12] = [
        Method::Cam,
        Method::GradCam,
        Method::GradCamPlusPlus,
        Method::LayerCam,
        Method::HiResCam,
        Method::XGradCam,
        Method::GradCamElementWise,
        Method::EigenCam,
        Method::EigenGradCam,
        Method::ScoreCam,
        Method::AblationCam,
        Method::Random,
    ];

    /// The name used in configs, on the command line and in log tags.
    pub fn name(self) -> &'static str {
        match self {
            Method::Cam => "cam",
            Method::GradCam => "gradcam",
            Method::GradCamPlusPlus => "gradcam++",
            Method::LayerCam => "layercam",
            Method::HiResCam => "hirescam",
            Method::XGradCam => "xgradcam",
            Method::GradCamElementWise => "gradcam-elementwise",
            Method::EigenCam => "eigencam",
            Method::EigenGradCam => "eigengradcam",
            Method::ScoreCam => "scorecam",
            Method::AblationCam => "ablationcam",
            Method::Random => "random",
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let lower = s.to_ascii_lowercase();
        let key = match lower.as_str() {
            "gradcampp" | "gradcam-plus-plus" => "gradcam++",
            "gradcamelementwise" | "gradcam_elementwise" => "gradcam-elementwise",
            other => other,
        };
        Method::ALL
            .into_iter()
            .find(|m| m.name() == key)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown method `{s}` (expected one of {})",
                    names.join(", ")
                )
            })
    }
}
