//! The report page's HTML pieces: escaping, file names, the head with its style, and the
//! footer script that checks the page's images.

/// Characters safe in a file name; anything else becomes `_`.
pub fn file_safe(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub fn header(title: &str) -> String {
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{}</title>
<style>
body {{ font-family: sans-serif; margin: 24px; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 16px; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; font-size: 13px; text-align: center; }}
table.metrics td:first-child {{ text-align: left; font-family: monospace; }}
.charts img.chart {{ width: 600px; height: 400px; margin: 4px; border: 1px solid #eee; }}
img.wide {{ max-width: 100%; }}
td.missing {{ color: #999; }}
.overlays {{ display: flex; flex-wrap: wrap; gap: 6px; margin-bottom: 8px; }}
.overlays figure {{ margin: 0; text-align: center; }}
.overlays img {{ max-width: 100%; }}
.overlays .absent {{ width: 120px; height: 120px; line-height: 120px; color: #999; border: 1px solid #ccc; }}
.table-scroll {{ max-width: 100%; overflow-x: auto; }}
.evolution {{ margin: 4px 0 12px; }}
.evolution-title {{ font-size: 13px; font-weight: bold; }}
.evolution-views {{ display: flex; gap: 12px; align-items: flex-start; }}
.evolution-views figure {{ margin: 0; }}
.evolution-views figure.strip {{ min-width: 0; }}
.evolution-views figure.strip img {{ max-width: 100%; height: auto; }}
figcaption {{ font-size: 12px; color: #555; }}
#broken {{ display: none; background: #c00; color: white; padding: 8px; }}
</style></head>
<body data-images-loaded="pending" data-images-broken="pending">
<div id="broken"></div>
"#,
        escape(title)
    )
}

/// The page checks its own images once loaded, and counts the cells, figures and images that
/// reach past the window's right edge (a headless browser test reads both).
pub const FOOTER: &str = r#"<script>
window.addEventListener("load", function () {
  var parts = Array.prototype.slice.call(document.querySelectorAll("img, th, td, figure"));
  var past = parts.filter(function (e) { return e.getBoundingClientRect().right > window.innerWidth + 1; });
  document.body.dataset.pastRightEdge = String(past.length);
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !i.complete || i.naturalWidth === 0; });
  document.body.dataset.imagesLoaded = String(images.length - broken.length);
  document.body.dataset.imagesBroken = String(broken.length);
  if (broken.length > 0) {
    var banner = document.getElementById("broken");
    banner.style.display = "block";
    banner.textContent = broken.length + " image(s) failed to load: " +
      broken.map(function (i) { return i.getAttribute("src"); }).join(", ");
  }
});
</script>
</body></html>
"#;

/// A step's label, the same in every part of the report: "untrained" for step 0 (the maps of
/// the untrained head), else "epoch N".
pub fn step_label(step: i64) -> String {
    if step == 0 {
        "untrained".into()
    } else {
        format!("epoch {step}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_escaping() {
        assert_eq!(file_safe("run0_gradcam++_a b"), "run0_gradcam___a_b");
        assert_eq!(escape("<a & \"b\">"), "&lt;a &amp; &quot;b&quot;&gt;");
    }
}
