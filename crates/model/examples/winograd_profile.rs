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
    if let Ok(shapes) = std::env::var("SHAPES") {
        return shapes_only(&shapes);
    }
    if std::env::var_os("LAYERS").is_some() {
        return layers(divisor, size);
    }
    let device = Device::flex();
    let vgg = Vgg16::random(divisor, &device);
    let end = layer_index("block5_conv3").expect("VGG16 has block5_conv3");
    let x: Tensor<4> = Tensor::random([batch, 3, size, size], Distribution::Default, &device);
    // The fastest of `repeats` runs (this machine's timings are noisy).
    let time = |f: &dyn Fn() -> Tensor<4>| {
        let out = f();
        let best = (0..repeats)
            .map(|_| {
                let start = Instant::now();
                f();
                start.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min);
        (best, out)
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

/// Per-layer times of both fast-path kernels (env LAYERS=1): each conv of the network at this
/// width and size, on one image, Winograd and direct, and the one `Conv3x3` picks.
fn layers(divisor: usize, size: usize) {
    use model::conv3x3::{Conv3x3, DirectConv};
    use model::winograd::WinogradConv;
    let mut hw = size;
    let mut c = 3;
    for (_, op) in model::VGG16_LAYERS {
        let model::vgg16::Op::Conv { c_out, .. } = op else {
            hw /= 2;
            continue;
        };
        let k = c_out / divisor;
        let x: Vec<f32> = (0..c * hw * hw).map(|i| (i % 97) as f32 / 97.0).collect();
        let w: Vec<f32> = (0..k * c * 9)
            .map(|i| ((i % 13) as f32 - 6.0) / 100.0)
            .collect();
        let bias = vec![0.0; k];
        let best = |f: &dyn Fn()| {
            (0..30)
                .map(|_| {
                    let start = Instant::now();
                    f();
                    start.elapsed().as_secs_f64() * 1e3
                })
                .fold(f64::MAX, f64::min)
        };
        let winograd = WinogradConv::new(&w, &bias, k, c);
        let padded = model::winograd::pad_channels(x.clone(), c, winograd.in_channels());
        let winograd_ms = best(&|| {
            std::hint::black_box(winograd.forward_relu(&padded, 1, hw, hw));
        });
        let direct = DirectConv::new(&w, &bias, k, c);
        let direct_ms = best(&|| {
            std::hint::black_box(direct.forward_relu(&x, 1, hw, hw));
        });
        let picked = match Conv3x3::new(&w, &bias, k, c) {
            Conv3x3::Direct(_) => "direct",
            Conv3x3::Winograd(_) => "winograd",
        };
        println!(
            "C={c} K={k} {hw}x{hw}: winograd {winograd_ms:.3} ms, direct {direct_ms:.3} ms, picks {picked}"
        );
        c = k;
    }
}

/// Direct kernel times for the shapes in env SHAPES="C,K,HW;C,K,HW;…" (one image).
fn shapes_only(shapes: &str) {
    for shape in shapes.split(';') {
        let v: Vec<usize> = shape
            .split(',')
            .map(|x| x.parse().expect("number"))
            .collect();
        let (c, k, hw) = (v[0], v[1], v[2]);
        let x: Vec<f32> = (0..c * hw * hw).map(|i| (i % 97) as f32 / 97.0).collect();
        let w: Vec<f32> = (0..k * c * 9)
            .map(|i| ((i % 13) as f32 - 6.0) / 100.0)
            .collect();
        let direct = model::conv3x3::DirectConv::new(&w, &vec![0.0; k], k, c);
        let t = (0..30)
            .map(|_| {
                let start = Instant::now();
                std::hint::black_box(direct.forward_relu(&x, 1, hw, hw));
                start.elapsed().as_secs_f64() * 1e3
            })
            .fold(f64::MAX, f64::min);
        let gflops = (2 * hw * hw * 9 * c * k) as f64 / t / 1e6;
        println!("C={c} K={k} {hw}x{hw}: direct {t:.3} ms, {gflops:.1} GFLOP/s");
    }
}
