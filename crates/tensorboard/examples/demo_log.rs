//! Write the demo log the tests check (two runs with scalars, images, text and HParams):
//! `cargo run --release -p tensorboard --example demo_log -- /tmp/demo && scripts/tensorboard.sh /tmp/demo`

#[path = "../tests/common/mod.rs"]
mod common;

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: demo_log DIR");
        std::process::exit(2);
    };
    common::write_demo(std::path::Path::new(&dir));
    println!("wrote {dir}");
}
