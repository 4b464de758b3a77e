//! Preset models: the small 4-conv CNNs and torchvision's MobileNetV2, ResNet-18 and ResNet-50.
//!
//! - `cnn4-dense512`: `conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,conv3x3:128,relu,
//!   maxpool2,conv3x3:128,relu,maxpool2,flatten,dense:512,relu,dense:N` — convolutions with
//!   'same' padding (PyTorch `padding=1`) and biases, 2×2 max pooling with stride 2 (floor).
//! - `cnn4-gap`: the same with `globalavgpool` in place of `flatten`.
//! - `mobilenetv2`, `resnet18`, `resnet50`: torchvision's definitions (ResNet v1.5: stride on
//!   the 3×3 convolution of a bottleneck; no bias in a convolution followed by batch norm).
//!
//! ```
//! let a = stoker::plan::preset("resnet50", 1000)?.analyze(stoker::plan::Shape::parse("224x224x3")?)?;
//! assert_eq!(a.params(), 25_557_032);
//! # Ok::<(), stoker::Error>(())
//! ```

use super::model::{Builder, Model};
use crate::{Error, Result};

/// Names accepted by [`preset`].
///
/// ```
/// for name in stoker::plan::PRESETS {
///     assert!(stoker::plan::preset(name, 10).is_ok());
/// }
/// ```
pub const PRESETS: [&str; 5] = [
    "cnn4-dense512",
    "cnn4-gap",
    "mobilenetv2",
    "resnet18",
    "resnet50",
];

/// The text of the 4-conv CNN, with `head` after the last pooling (`flatten` or
/// `globalavgpool`) and `classes` outputs.
fn cnn4(head: &str, classes: usize) -> String {
    format!(
        "conv3x3:32,relu,maxpool2,conv3x3:64,relu,maxpool2,conv3x3:128,relu,maxpool2,\
         conv3x3:128,relu,maxpool2,{head},dense:512,relu,dense:{classes}"
    )
}

/// The preset `name` (see [`PRESETS`]) with `classes` outputs.
///
/// ```
/// use stoker::plan::{preset, Shape};
/// let a = preset("mobilenetv2", 1000).unwrap().analyze(Shape::parse("224x224x3").unwrap()).unwrap();
/// assert_eq!(a.params(), 3_504_872);
/// assert!(preset("vgg16", 10).unwrap_err().message().contains("unknown preset"));
/// ```
pub fn preset(name: &str, classes: usize) -> Result<Model> {
    if classes == 0 {
        return Err(Error::usage("classes must be > 0"));
    }
    match name.to_ascii_lowercase().as_str() {
        "cnn4-dense512" => Model::parse(&cnn4("flatten", classes)),
        "cnn4-gap" => Model::parse(&cnn4("globalavgpool", classes)),
        "mobilenetv2" | "mobilenet_v2" => Ok(mobilenet_v2(classes)),
        "resnet18" => Ok(resnet(&[2, 2, 2, 2], false, classes)),
        "resnet50" => Ok(resnet(&[3, 4, 6, 3], true, classes)),
        _ => Err(Error::usage(format!(
            "unknown preset {name:?} ({})",
            PRESETS.join(", ")
        ))),
    }
}

/// torchvision `resnet18` (basic blocks) or `resnet50` (bottlenecks) with `blocks` per stage.
fn resnet(blocks: &[usize; 4], bottleneck: bool, classes: usize) -> Model {
    let mut b = Builder::new();
    b.conv(64, 7, 2, 3, false).bn().relu().maxpool(3, 2, 1);
    let expansion = if bottleneck { 4 } else { 1 };
    let mut inplanes = 64;
    for (stage, &n) in blocks.iter().enumerate() {
        let planes = 64 << stage;
        for i in 0..n {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            let x = b.cursor();
            if bottleneck {
                b.conv(planes, 1, 1, 0, false).bn().relu();
                b.conv(planes, 3, stride, 1, false).bn().relu();
                b.conv(planes * 4, 1, 1, 0, false).bn();
            } else {
                b.conv(planes, 3, stride, 1, false).bn().relu();
                b.conv(planes, 3, 1, 1, false).bn();
            }
            let main = b.cursor();
            let skip = if stride != 1 || inplanes != planes * expansion {
                b.at(x).conv(planes * expansion, 1, stride, 0, false).bn();
                b.cursor()
            } else {
                x
            };
            b.at(main).add(skip).relu();
            inplanes = planes * expansion;
        }
    }
    b.gap().flatten().dense(classes);
    b.build()
}

/// torchvision `mobilenet_v2` (width 1.0).
fn mobilenet_v2(classes: usize) -> Model {
    // (expansion t, output channels c, repeats n, first stride s)
    const SETTINGS: [(usize, usize, usize, usize); 7] = [
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 4, 2),
        (6, 96, 3, 1),
        (6, 160, 3, 2),
        (6, 320, 1, 1),
    ];
    let mut b = Builder::new();
    b.conv(32, 3, 2, 1, false).bn().relu6();
    let mut inp = 32;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            let x = b.cursor();
            let hidden = inp * t;
            if t != 1 {
                b.conv(hidden, 1, 1, 0, false).bn().relu6();
            }
            b.depthwise(3, stride, 1).bn().relu6();
            b.conv(c, 1, 1, 0, false).bn();
            if stride == 1 && inp == c {
                b.add(x);
            }
            inp = c;
        }
    }
    b.conv(1280, 1, 1, 0, false).bn().relu6();
    b.gap().flatten().dropout().dense(classes);
    b.build()
}
