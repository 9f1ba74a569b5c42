//! Time VGG16's Winograd fast path against burn's ops on random weights, and check they agree.
//! `cargo run --release -p model --example winograd_profile -- WIDTH_DIVISOR SIZE BATCH [REPEATS]`
//! (defaults: 1 224 8 3; the quickstart's network is `8 160 41`).
use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use model::vgg16::{layer_index, Vgg16};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("arguments are numbers"))
        .collect();
    let arg = |i: usize, default: usize| args.get(i).copied().unwrap_or(default);
    let (divisor, size, batch, repeats) = (arg(0, 1), arg(1, 224), arg(2, 8), arg(3, 3));
    let device = Device::flex();
    let vgg = Vgg16::random(divisor, &device);
    let end = layer_index("block5_conv3").expect("VGG16 has block5_conv3");
    let x: Tensor<4> = Tensor::random([batch, 3, size, size], Distribution::Default, &device);
    let time = |f: &dyn Fn() -> Tensor<4>| {
        let out = f();
        let start = Instant::now();
        for _ in 0..repeats {
            f();
        }
        (start.elapsed().as_secs_f64() / repeats as f64, out)
    };
    let (fast_s, fast) = time(&|| vgg.run(x.clone(), 0, end));
    if std::env::var_os("FAST_ONLY").is_some() {
        println!("fast {:.1} img/s", batch as f64 / fast_s);
        return;
    }
    let (burn_s, burn) = time(&|| vgg.run_burn(x.clone(), 0, end));
    let fast = fast.into_data().try_to_vec::<f32>().expect("f32");
    let burn = burn.into_data().try_to_vec::<f32>().expect("f32");
    let scale = burn.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    let err = fast
        .iter()
        .zip(&burn)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max)
        / scale;
    println!(
        "VGG16/{divisor} {size}px batch {batch}: fast {:.1} img/s, burn {:.1} img/s, relative deviation {err:.1e}",
        batch as f64 / fast_s,
        batch as f64 / burn_s
    );
}
