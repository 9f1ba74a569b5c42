//! Reading photos and turning them into the network's input.
//!
//! Any photo becomes upright 8-bit RGB (grayscale, RGBA, 16-bit and EXIF-rotated files
//! included), is resized to the network's input size with an antialiased bilinear filter
//! (as PIL's `BILINEAR`, which torchvision uses), then ImageNet-normalised.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use burn::tensor::{Device, Tensor, TensorData};
use image::imageops::FilterType;
use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageReader, RgbImage};
use model::{IMAGENET_MEAN, IMAGENET_STD};

/// File extensions read as photos (case-insensitive).
pub const PHOTO_EXTENSIONS: [&str; 5] = ["jpg", "jpeg", "png", "bmp", "webp"];

/// The most pixels a photo may declare (100 megapixels: 300 MB as RGB). A header claiming more
/// is refused before decoding: some decoders (JPEG's) allocate the declared size up front, so a
/// 200-byte file claiming 65,000 x 65,000 pixels took 24 GB and was OOM-killed before this check.
pub const MAX_PIXELS: u64 = 100_000_000;

// Decoder panics are caught (`decode`), which needs unwinding.
#[cfg(panic = "abort")]
compile_error!("train must be built with panic = \"unwind\": image decoder panics are caught");

/// Read a photo as upright 8-bit RGB.
pub fn read_rgb(path: &Path) -> Result<RgbImage> {
    let reader = ImageReader::open(path)
        .with_context(|| format!("cannot open {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {}", path.display()))?;
    decode(reader, &path.display().to_string())
}

/// Decode image bytes (any supported format) as upright 8-bit RGB, with the same guard.
pub fn decode_rgb(bytes: &[u8], what: &str) -> Result<RgbImage> {
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .with_context(|| format!("cannot read {what}"))?;
    decode(reader, what)
}

fn decode<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    what: &str,
) -> Result<RgbImage> {
    guarded(what, || decode_unguarded(reader, what))
}

/// Run a decoder step, turning a panic into an error.
///
/// The decoders are third-party parsers of untrusted bytes, and some panic on malformed
/// input (zune-jpeg 0.5.15 unwraps in its AVX2 IDCT on a 784-byte JPEG our fuzzer found,
/// fuzz/regressions/image_bytes/): a panic is turned into an error, so the photo is skipped
/// with a warning instead of taking the run down. (This needs unwinding: see above.)
fn guarded<T>(what: &str, step: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(step)).unwrap_or_else(|payload| {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        bail!("the image decoder crashed on {what} (a decoder bug; not decoded): {message}")
    })
}

fn open_decoder<'a, R: std::io::BufRead + std::io::Seek + 'a>(
    mut reader: ImageReader<R>,
    what: &str,
) -> Result<impl ImageDecoder + 'a> {
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(2 * MAX_PIXELS * 4);
    reader.limits(limits);
    // `{e}` alone: an image error's source repeats its own message, so `{:#}` of a chain
    // holding it would print the decoder's words twice.
    reader
        .into_decoder()
        .map_err(|e| anyhow::anyhow!("{what} is not a readable image: {e}"))
}

/// The EXIF orientation a decoder reports; none (upright) when it has none or cannot read it.
fn orientation_of(decoder: &mut impl ImageDecoder) -> Orientation {
    decoder.orientation().unwrap_or(Orientation::NoTransforms)
}

fn decode_unguarded<R: std::io::BufRead + std::io::Seek>(
    reader: ImageReader<R>,
    what: &str,
) -> Result<RgbImage> {
    let mut decoder = open_decoder(reader, what)?;
    let (width, height) = decoder.dimensions();
    if width as u64 * height as u64 > MAX_PIXELS {
        bail!(
            "{what} declares {width}x{height} pixels, more than {MAX_PIXELS}: not decoded \
             (a decompression bomb, or a photo far larger than any network input)"
        );
    }
    let orientation = orientation_of(&mut decoder);
    let mut image = DynamicImage::from_decoder(decoder)
        .map_err(|e| anyhow::anyhow!("cannot decode {what}: {e}"))?;
    image.apply_orientation(orientation);
    Ok(image.to_rgb8())
}

/// A photo's stored (width, height), as its header gives them, and its EXIF orientation (what
/// [`read_rgb`] applies to make it upright). The pixels are not decoded.
pub fn stored_size_and_orientation(path: &Path) -> Result<((u32, u32), Orientation)> {
    let what = path.display().to_string();
    let reader = ImageReader::open(path)
        .with_context(|| format!("cannot open {what}"))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {what}"))?;
    guarded(&what, || {
        let mut decoder = open_decoder(reader, &what)?;
        let size = decoder.dimensions();
        Ok((size, orientation_of(&mut decoder)))
    })
}

/// Whether `orientation` swaps width and height (the quarter turns, mirrored or not).
pub fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90
            | Orientation::Rotate270
            | Orientation::Rotate90FlipH
            | Orientation::Rotate270FlipH
    )
}

/// The upright (width, height) of a photo stored as `(width, height)` with EXIF `orientation`.
pub fn upright_size((width, height): (u32, u32), orientation: Orientation) -> (u32, u32) {
    if swaps_sides(orientation) {
        (height, width)
    } else {
        (width, height)
    }
}

/// The photos in a directory and its sub-directories (symbolic links to directories are not
/// followed), sorted by path.
pub fn photos_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in
            std::fs::read_dir(&d).with_context(|| format!("cannot list {}", d.display()))?
        {
            let entry = entry.with_context(|| format!("cannot list {}", d.display()))?;
            let path = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(path);
            } else if path.is_file() && is_photo(&path) {
                paths.push(path);
            }
        }
    }
    paths.sort();
    if paths.is_empty() {
        bail!(
            "{} has no photos ({}) in it or its sub-folders",
            dir.display(),
            PHOTO_EXTENSIONS.join(", ")
        );
    }
    Ok(paths)
}

/// Resize to `[height, width]` with an antialiased bilinear filter.
pub fn resize(image: &RgbImage, [height, width]: [usize; 2]) -> RgbImage {
    if image.dimensions() == (width as u32, height as u32) {
        return image.clone();
    }
    image::imageops::resize(image, width as u32, height as u32, FilterType::Triangle)
}

/// Photos of equal size → ImageNet-normalised batch [N, 3, H, W].
pub fn to_tensor(photos: &[RgbImage], device: &Device) -> Tensor<4> {
    let (width, height) = photos.first().map_or((0, 0), |p| p.dimensions());
    let (w, h) = (width as usize, height as usize);
    let mut values: Vec<f32> = photos
        .iter()
        .flat_map(callbacks::scores::faithfulness::planes)
        .collect();
    model::imagenet_normalize(&mut values, h * w);
    Tensor::from_data(TensorData::new(values, [photos.len(), 3, h, w]), device)
}

/// Inverse of [`to_tensor`]: a normalised batch back to photos (rounded to 8 bits).
pub fn from_tensor(batch: Tensor<4>) -> Result<Vec<RgbImage>> {
    let [n, _, h, w] = batch.dims();
    let values: Vec<f32> = batch
        .into_data()
        .convert::<f32>()
        .try_to_vec()
        .map_err(|e| anyhow::anyhow!("cannot read tensor: {e:?}"))?;
    Ok((0..n)
        .map(|i| {
            RgbImage::from_fn(w as u32, h as u32, |x, y| {
                image::Rgb(std::array::from_fn(|c| {
                    let v = values[((i * 3 + c) * h + y as usize) * w + x as usize];
                    ((v * IMAGENET_STD[c] + IMAGENET_MEAN[c]) * 255.0)
                        .round()
                        .clamp(0.0, 255.0) as u8
                }))
            })
        })
        .collect())
}

/// Whether `path` has a photo extension.
pub fn is_photo(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| PHOTO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Parse an input size: `224` (square) or `HEIGHTxWIDTH` such as `192x256`.
pub fn parse_size(text: &str) -> Result<[usize; 2], String> {
    let parse = |s: &str| {
        s.trim().parse::<usize>().map_err(|_| {
            format!("bad size `{text}`: expected N or HEIGHTxWIDTH, e.g. 224 or 192x256")
        })
    };
    let size = match text.split_once(['x', 'X']) {
        Some((h, w)) => [parse(h)?, parse(w)?],
        None => {
            let s = parse(text)?;
            [s, s]
        }
    };
    model::Classifier::check_input_size(size[0], size[1]).map_err(|e| e.to_string())?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A corrupt JPEG's error says the decoder's words once (the image crate's error repeats
    /// its message as its own source).
    #[test]
    fn a_corrupt_jpeg_is_described_once() {
        let photo = RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8 * 4, y as u8 * 5, 90]));
        let mut bytes = Vec::new();
        photo
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        // Keep the headers, garble the entropy-coded data and cut the end marker.
        let cut = bytes.len() * 2 / 3;
        for b in &mut bytes[cut - 200..cut] {
            *b = 0xff;
        }
        bytes.truncate(cut);
        let error = format!("{:#}", decode_rgb(&bytes, "photo.jpg").unwrap_err());
        assert!(error.contains("photo.jpg"), "{error}");
        let parts: Vec<&str> = error.split(": ").collect();
        for (i, part) in parts.iter().enumerate() {
            assert!(!parts[i + 1..].contains(part), "`{part}` twice in: {error}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("224"), Ok([224, 224]));
        assert_eq!(parse_size("192x256"), Ok([192, 256]));
        assert!(parse_size("100").is_err());
        assert!(parse_size("0").is_err());
        assert!(parse_size("abc").is_err());
        assert!(parse_size("224x").is_err());
    }

    #[test]
    fn normalisation_round_trips() {
        let photo = RgbImage::from_fn(32, 64, |x, y| image::Rgb([x as u8 * 7, y as u8 * 3, 200]));
        let batch = to_tensor(&[photo.clone(), photo.clone()], &Device::flex());
        assert_eq!(batch.dims(), [2, 3, 64, 32]);
        let back = from_tensor(batch).unwrap();
        assert_eq!(back[1], photo);
    }
}

#[cfg(test)]
mod format_tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, Rgba};

    #[test]
    fn grayscale_rgba_and_16_bit_become_8_bit_rgb() {
        let dir = tempfile::tempdir().unwrap();
        let gray = dir.path().join("gray.png");
        ImageBuffer::from_pixel(3, 2, Luma([200u8]))
            .save(&gray)
            .unwrap();
        assert_eq!(read_rgb(&gray).unwrap().get_pixel(0, 0).0, [200, 200, 200]);
        let rgba = dir.path().join("rgba.png");
        ImageBuffer::from_pixel(3, 2, Rgba([10u8, 20, 30, 0]))
            .save(&rgba)
            .unwrap();
        assert_eq!(read_rgb(&rgba).unwrap().get_pixel(0, 0).0, [10, 20, 30]);
        let deep = dir.path().join("deep.png");
        DynamicImage::ImageRgb16(ImageBuffer::from_pixel(
            3,
            2,
            image::Rgb([65535u16, 0, 32896]),
        ))
        .save(&deep)
        .unwrap();
        assert_eq!(read_rgb(&deep).unwrap().get_pixel(0, 0).0, [255, 0, 128]);
        // A PNG under a .jpg name is read by its content.
        let misnamed = dir.path().join("misnamed.jpg");
        std::fs::copy(&gray, &misnamed).unwrap();
        assert!(read_rgb(&misnamed).is_ok());
        // Truncated and empty files are errors, not panics.
        std::fs::write(dir.path().join("empty.jpg"), b"").unwrap();
        assert!(read_rgb(&dir.path().join("empty.jpg")).is_err());
    }

    /// A JPEG whose EXIF says "rotate 90° clockwise" (orientation 6) is turned upright.
    #[test]
    fn exif_orientation_is_applied() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.jpg");
        RgbImage::from_pixel(20, 10, image::Rgb([90, 90, 90]))
            .save(&plain)
            .unwrap();
        let jpeg = std::fs::read(&plain).unwrap();
        // APP1 "Exif\0\0", little-endian TIFF, one IFD entry: 0x0112 Orientation, SHORT, 1, value 6.
        let mut tiff = b"II*\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x06\0\0\0\0\0\0\0".to_vec();
        let mut app1 = b"Exif\0\0".to_vec();
        app1.append(&mut tiff);
        let length = (app1.len() + 2) as u16;
        let mut rotated = vec![0xff, 0xd8, 0xff, 0xe1];
        rotated.extend(length.to_be_bytes());
        rotated.extend(app1);
        rotated.extend(&jpeg[2..]);
        let path = dir.path().join("rotated.jpg");
        std::fs::write(&path, rotated).unwrap();
        assert_eq!(read_rgb(&path).unwrap().dimensions(), (10, 20));
    }
}

#[cfg(test)]
mod orientation_tests {
    use super::*;
    use crate::data::annotations::{upright_box, upright_point};

    const ALL: [Orientation; 8] = [
        Orientation::NoTransforms,
        Orientation::FlipHorizontal,
        Orientation::Rotate180,
        Orientation::FlipVertical,
        Orientation::Rotate90FlipH,
        Orientation::Rotate90,
        Orientation::Rotate270FlipH,
        Orientation::Rotate270,
    ];

    /// The orientation that undoes `o`.
    fn inverse(o: Orientation) -> Orientation {
        match o {
            Orientation::Rotate90 => Orientation::Rotate270,
            Orientation::Rotate270 => Orientation::Rotate90,
            other => other,
        }
    }

    /// Every stored pixel's centre lands on the centre of the pixel `apply_orientation` moves it
    /// to, and the size is the upright image's (a 5x3 image: unequal sides, no symmetry).
    #[test]
    fn a_point_maps_where_apply_orientation_moves_its_pixel() {
        let (w, h) = (5u32, 3u32);
        for o in ALL {
            for (px, py) in (0..h).flat_map(|y| (0..w).map(move |x| (x, y))) {
                let mut marked = image::GrayImage::new(w, h);
                marked.put_pixel(px, py, image::Luma([255]));
                let mut upright = DynamicImage::ImageLuma8(marked);
                upright.apply_orientation(o);
                let upright = upright.to_luma8();
                assert_eq!(upright.dimensions(), upright_size((w, h), o), "{o:?}");
                let (ux, uy) = upright
                    .enumerate_pixels()
                    .find(|p| p.2[0] == 255)
                    .map(|p| (p.0, p.1))
                    .unwrap();
                let centre = (px as f32 + 0.5, py as f32 + 0.5);
                assert_eq!(
                    upright_point(centre, (w as f32, h as f32), o),
                    (ux as f32 + 0.5, uy as f32 + 0.5),
                    "{o:?}: stored pixel ({px}, {py})"
                );
            }
        }
    }

    /// Known corners: the stored top-left corner of a 40x30 photo goes to the top-right under a
    /// 90° clockwise turn (EXIF 6), to the bottom-left under 270° (EXIF 8).
    #[test]
    fn known_corners() {
        let size = (40.0, 30.0);
        assert_eq!(
            upright_point((0.0, 0.0), size, Orientation::Rotate90),
            (30.0, 0.0)
        );
        assert_eq!(
            upright_point((0.0, 0.0), size, Orientation::Rotate270),
            (0.0, 40.0)
        );
        assert_eq!(
            upright_point((0.0, 0.0), size, Orientation::Rotate180),
            (40.0, 30.0)
        );
        assert_eq!(
            upright_point((10.0, 5.0), size, Orientation::Rotate90FlipH),
            (5.0, 10.0)
        );
        assert_eq!(
            upright_point((10.0, 5.0), size, Orientation::Rotate270FlipH),
            (25.0, 30.0)
        );
    }

    /// A box taken upright and back (by the inverse orientation, in the upright frame) is the box
    /// it started as, and the turn keeps its area.
    #[test]
    fn a_box_round_trips() {
        let (size, b) = ((40, 30), [3.0, 4.0, 17.0, 25.0]);
        for o in ALL {
            let up = upright_box(b, size, o);
            assert!(up[0] < up[2] && up[1] < up[3], "{o:?}: {up:?}");
            let area = |b: [f32; 4]| (b[2] - b[0]) * (b[3] - b[1]);
            assert_eq!(area(up), area(b), "{o:?}");
            let back = upright_box(up, upright_size(size, o), inverse(o));
            assert_eq!(back, b, "{o:?}");
        }
    }

    /// A header's size and orientation are read without decoding; a file without EXIF is upright.
    #[test]
    fn stored_size_and_orientation_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.png");
        RgbImage::new(7, 3).save(&plain).unwrap();
        let (size, o) = stored_size_and_orientation(&plain).unwrap();
        assert_eq!((size, o), ((7, 3), Orientation::NoTransforms));
        std::fs::write(dir.path().join("junk.jpg"), b"not an image").unwrap();
        assert!(stored_size_and_orientation(&dir.path().join("junk.jpg")).is_err());
    }
}
