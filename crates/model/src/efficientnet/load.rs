//! Loading EfficientNet-Lite0 from lukemelas-named weights: each conv read with its BatchNorm,
//! which is folded into the conv or (for the layers a fine-tuning run trains) kept beside it.

use burn::tensor::Device;

use super::{BnConv, EfficientNetLite0, MbConv, BLOCKS, BN_EPS, HEAD, STEM};
use crate::bn_conv::read_bn_conv;
use crate::weights::{WeightError, WeightFile};

/// Read conv `conv_key` and its BatchNorm `bn.*` (ε 1e-3): folded, or kept beside it.
#[allow(clippy::too_many_arguments)]
fn bn_conv(
    file: &WeightFile,
    conv_key: &str,
    bn: &str,
    shape: [usize; 4],
    stride: usize,
    groups: usize,
    fold: bool,
    device: &Device,
) -> Result<BnConv, WeightError> {
    read_bn_conv(
        file, conv_key, bn, shape, stride, groups, BN_EPS, fold, device,
    )
}

impl EfficientNetLite0 {
    /// Load lukemelas-named weights (`_conv_stem`, `_bn0`, `_blocks.N.*`, `_conv_head`, `_bn1`;
    /// `_fc` is ignored), folding every BatchNorm into its conv.
    pub fn load(file: &WeightFile, device: &Device) -> Result<Self, WeightError> {
        Self::load_trainable(file, None, device)
    }

    /// [`load`](Self::load), but layers `train_from..` (0 = stem … 17 = head) keep their raw
    /// conv weights with the BatchNorm beside them ([`BnConv`]), so that training them trains
    /// what PyTorch trains with BN frozen in eval mode.
    pub fn load_trainable(
        file: &WeightFile,
        train_from: Option<usize>,
        device: &Device,
    ) -> Result<Self, WeightError> {
        let fold = |layer: usize| train_from.is_none_or(|from| layer < from);
        let stem = bn_conv(
            file,
            "_conv_stem.weight",
            "_bn0",
            [STEM, 3, 3, 3],
            2,
            1,
            fold(0),
            device,
        )?;
        let mut blocks = Vec::with_capacity(BLOCKS.len());
        for (i, &(k, s, c_in, c_out, ratio)) in BLOCKS.iter().enumerate() {
            let p = format!("_blocks.{i}.");
            let mid = c_in * ratio;
            let expand = if ratio == 1 {
                None
            } else {
                let key = format!("{p}_expand_conv.weight");
                Some(bn_conv(
                    file,
                    &key,
                    &format!("{p}_bn0"),
                    [mid, c_in, 1, 1],
                    1,
                    1,
                    fold(i + 1),
                    device,
                )?)
            };
            let key = format!("{p}_depthwise_conv.weight");
            let depthwise = bn_conv(
                file,
                &key,
                &format!("{p}_bn1"),
                [mid, 1, k, k],
                s,
                mid,
                fold(i + 1),
                device,
            )?;
            let key = format!("{p}_project_conv.weight");
            let project = bn_conv(
                file,
                &key,
                &format!("{p}_bn2"),
                [c_out, mid, 1, 1],
                1,
                1,
                fold(i + 1),
                device,
            )?;
            blocks.push(MbConv {
                expand,
                depthwise,
                project,
            });
        }
        let head = bn_conv(
            file,
            "_conv_head.weight",
            "_bn1",
            [HEAD, 320, 1, 1],
            1,
            1,
            fold(BLOCKS.len() + 1),
            device,
        )?;
        Ok(Self { stem, blocks, head })
    }
}
