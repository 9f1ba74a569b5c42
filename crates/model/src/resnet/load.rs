//! Loading a ResNet from a torchvision `state_dict`: the key table, each conv read with its
//! BatchNorm (folded, or kept beside it in the layers a fine-tuning run trains).
//!
//! | torchvision key                                   | here                               |
//! |---------------------------------------------------|------------------------------------|
//! | `conv1.weight`, `bn1.*`                           | `conv1`                            |
//! | `layerS.B.conv{1,2,3}.weight`, `layerS.B.bn{1,2,3}.*` | block (S, B) `conv1` … `conv3` |
//! | `layerS.B.downsample.0.weight`, `…downsample.1.*` | block (S, B) `downsample`          |
//! | `*.num_batches_tracked`, `fc.*`                   | ignored (`fc` can be a head)       |

use burn::tensor::Device;

use super::{Block, Depth, ResNet, BN_EPS};
use crate::bn_conv::{read_bn_conv, BnConv};
use crate::weights::{WeightError, WeightFile};

/// Reads convs from the file, checking each one's shape against the network built so far: in
/// channels from the previous layer, the kernel the architecture has; out channels from the file
/// (so narrower torchvision-keyed ResNets load too).
struct Reader<'a> {
    file: &'a WeightFile,
    train_from: Option<usize>,
    device: &'a Device,
}

impl Reader<'_> {
    /// Conv `prefix.{conv}.weight` with BatchNorm `prefix.{bn}`, `c_in` inputs, a k×k kernel,
    /// `stride`, in layer `layer` (kept unfolded when that layer trains); its out channels.
    #[allow(clippy::too_many_arguments)]
    fn conv(
        &self,
        conv_key: &str,
        bn: &str,
        c_in: usize,
        k: usize,
        stride: usize,
        layer: usize,
    ) -> Result<(BnConv, usize), WeightError> {
        let shape = self.file.shape(conv_key)?;
        let out = match shape[..] {
            [out, _, _, _] if out > 0 => out,
            _ => 0,
        };
        let expected = [out.max(1), c_in, k, k];
        let fold = self.train_from.is_none_or(|from| layer < from);
        let conv = read_bn_conv(
            self.file,
            conv_key,
            bn,
            expected,
            stride,
            1,
            BN_EPS,
            fold,
            self.device,
        )?;
        Ok((conv, expected[0]))
    }
}

impl Reader<'_> {
    /// Block `b` of stage `stage` (`layer{stage}.{b}.*`), layer `layer`, on `c_in` channels: its
    /// convs (basic or bottleneck) and the shortcut's projection when the shape changes.
    fn block(
        &self,
        depth: Depth,
        (stage, b): (usize, usize),
        c_in: usize,
        layer: usize,
    ) -> Result<Block, WeightError> {
        let p = format!("layer{stage}.{b}");
        let stride = Depth::stride((stage, b));
        let conv = |n: usize, c: usize, k: usize, s: usize| {
            self.conv(
                &format!("{p}.conv{n}.weight"),
                &format!("{p}.bn{n}"),
                c,
                k,
                s,
                layer,
            )
        };
        let (conv1, conv2, conv3) = if depth.bottleneck {
            let (conv1, mid) = conv(1, c_in, 1, 1)?;
            let (conv2, mid) = conv(2, mid, 3, stride)?;
            (conv1, conv2, Some(conv(3, mid, 1, 1)?.0))
        } else {
            let (conv1, mid) = conv(1, c_in, 3, stride)?;
            (conv1, conv(2, mid, 3, 1)?.0, None)
        };
        let c_out = conv3.as_ref().unwrap_or(&conv2).conv.weight.dims()[0];
        let down_key = format!("{p}.downsample.0.weight");
        let downsample = if self.file.contains(&down_key) {
            let bn = format!("{p}.downsample.1");
            let (down, out) = self.conv(&down_key, &bn, c_in, 1, stride, layer)?;
            if out != c_out {
                return Err(WeightError::Shape {
                    path: self.file.path().to_path_buf(),
                    key: down_key,
                    expected: vec![c_out, c_in, 1, 1],
                    found: vec![out, c_in, 1, 1],
                });
            }
            Some(down)
        } else if stride != 1 || c_in != c_out {
            // A shape change needs the projection: the reader's error names the key.
            self.file.shape(&down_key)?;
            None
        } else {
            None
        };
        Ok(Block {
            conv1,
            conv2,
            conv3,
            downsample,
        })
    }
}

impl ResNet {
    /// Load a torchvision ResNet of `depth` (`conv1`, `bn1`, `layer1.0.conv1`, …; `fc.*` and
    /// `num_batches_tracked` are ignored), folding every BatchNorm into its conv.
    pub fn load(file: &WeightFile, depth: Depth, device: &Device) -> Result<Self, WeightError> {
        Self::load_trainable(file, depth, None, device)
    }

    /// [`load`](Self::load), but layers `train_from..` (0 = conv1, 1 = maxpool, 2.. = blocks)
    /// keep their raw conv weights with the BatchNorm beside them, so that training them trains
    /// what PyTorch trains with BN frozen in eval mode.
    pub fn load_trainable(
        file: &WeightFile,
        depth: Depth,
        train_from: Option<usize>,
        device: &Device,
    ) -> Result<Self, WeightError> {
        let reader = Reader {
            file,
            train_from,
            device,
        };
        let (conv1, stem) = reader.conv("conv1.weight", "bn1", 3, 7, 2, 0)?;
        let mut blocks = Vec::new();
        let mut c_in = stem;
        for (i, (stage, b)) in depth.block_positions().into_iter().enumerate() {
            let block = reader.block(depth, (stage, b), c_in, i + 2)?;
            c_in = block.out_channels();
            blocks.push(block);
        }
        // A deeper network's keys left over (in any stage: ResNet-50, -101 and -152 differ only
        // in layer2 and layer3) mean the depth asked for is wrong.
        for (stage, blocks) in depth.blocks.iter().enumerate() {
            let key = format!("layer{}.{blocks}.conv1.weight", stage + 1);
            if file.contains(&key) {
                return Err(WeightError::Format {
                    path: file.path().to_path_buf(),
                    reason: format!(
                        "it has `{key}`: a deeper ResNet than the resnet{} asked for",
                        depth.layers
                    ),
                });
            }
        }
        Ok(Self { conv1, blocks })
    }
}
