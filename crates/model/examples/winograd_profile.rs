//! Time the Winograd fast path per VGG16 layer shape (one 224x224 image).
use std::time::Instant;

fn main() {
    for (c, k, hw) in [
        (64, 64, 224),
        (128, 128, 112),
        (256, 256, 56),
        (512, 512, 28),
        (512, 512, 14),
    ] {
        let x: Vec<f32> = (0..c * hw * hw).map(|i| (i % 97) as f32 / 97.0).collect();
        let w: Vec<f32> = (0..k * c * 9)
            .map(|i| ((i % 13) as f32 - 6.0) / 100.0)
            .collect();
        let b = vec![0.0; k];
        let start = Instant::now();
        let conv = model::winograd::WinogradConv::new(&w, &b, k, c);
        let t_filter = start.elapsed().as_secs_f64();
        let _ = conv.forward_relu(&x, hw, hw);
        let start = Instant::now();
        let reps = 3;
        for _ in 0..reps {
            let _ = conv.forward_relu(&x, hw, hw);
        }
        let t = start.elapsed().as_secs_f64() / reps as f64;
        let gflop = 2.0 * 9.0 * (c * k * hw * hw) as f64 / 1e9;
        println!("C={c} K={k} {hw}x{hw}: {:.1} ms ({:.0} GFLOP/s direct-equivalent), filter transform {:.1} ms", t * 1e3, gflop / t, t_filter * 1e3);
    }
}
