//! Connected regions of a pixel grid (8-connected for foreground, 4-connected for background),
//! with each region's inclusive bounding box and whether it touches the image's edge: labelled
//! all at once ([`regions`]) or grown pixel by pixel in a union-find ([`Regions`]).

/// 8-connected neighbours (foreground regions).
const EIGHT_NEIGHBOURS: [(i64, i64); 8] = [
    (-1, -1),
    (0, -1),
    (1, -1),
    (-1, 0),
    (1, 0),
    (-1, 1),
    (0, 1),
    (1, 1),
];
/// 4-connected neighbours (background regions).
const FOUR_NEIGHBOURS: [(i64, i64); 4] = [(0, -1), (-1, 0), (1, 0), (0, 1)];

fn neighbours(eight: bool) -> &'static [(i64, i64)] {
    if eight {
        &EIGHT_NEIGHBOURS
    } else {
        &FOUR_NEIGHBOURS
    }
}

/// Bounding boxes (inclusive) of the connected regions of pixels where `inside` holds, with
/// 8- or 4-connectivity, and whether each touches the image's edge.
pub(super) fn regions(
    width: usize,
    height: usize,
    inside: impl Fn(usize) -> bool,
    eight: bool,
) -> Vec<([i64; 4], bool)> {
    let mut seen = vec![false; width * height];
    let mut out = Vec::new();
    let mut stack = Vec::new();
    let steps = neighbours(eight);
    for start in 0..width * height {
        if seen[start] || !inside(start) {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        let (mut b, mut edge) = ([i64::MAX, i64::MAX, i64::MIN, i64::MIN], false);
        while let Some(i) = stack.pop() {
            let (x, y) = ((i % width) as i64, (i / width) as i64);
            b = [b[0].min(x), b[1].min(y), b[2].max(x), b[3].max(y)];
            edge |= x == 0 || y == 0 || x == width as i64 - 1 || y == height as i64 - 1;
            for (dx, dy) in steps {
                let (nx, ny) = (x + dx, y + dy);
                if nx < 0 || ny < 0 || nx >= width as i64 || ny >= height as i64 {
                    continue;
                }
                let j = ny as usize * width + nx as usize;
                if !seen[j] && inside(j) {
                    seen[j] = true;
                    stack.push(j);
                }
            }
        }
        out.push((b, edge));
    }
    out
}

/// A union-find over the pixels added so far (union by size, path halving), with each region's
/// bounding box and whether it touches the image's edge. One node per pixel holds all of it, so
/// a root's data is one cache line away.
pub(super) struct Regions {
    width: usize,
    height: usize,
    eight: bool,
    nodes: Vec<Node>,
    /// The current roots (a root leaves the list lazily, when found merged).
    roots: Vec<usize>,
}

/// A pixel's union-find node.
#[derive(Clone, Copy)]
struct Node {
    parent: u32,
    /// Pixels in the region when this is a root; 0 for a pixel not added yet.
    size: u32,
    /// Inclusive bounding box of the region (when a root).
    bounds: [i32; 4],
    /// Whether the region touches the image's edge (when a root).
    edge: bool,
}

impl Regions {
    /// An empty union-find over a `width × height` grid, 8-connected when `eight`.
    pub(super) fn new(width: usize, height: usize, eight: bool) -> Self {
        let node = |p: usize| Node {
            parent: p as u32,
            size: 0,
            bounds: [0; 4],
            edge: false,
        };
        Self {
            width,
            height,
            eight,
            nodes: (0..width * height).map(node).collect(),
            roots: Vec::new(),
        }
    }

    /// Whether no pixel has been added yet.
    pub(super) fn is_empty(&self) -> bool {
        self.roots.is_empty()
    }

    fn find(&mut self, mut i: usize) -> usize {
        while self.nodes[i].parent as usize != i {
            let grandparent = self.nodes[self.nodes[i].parent as usize].parent;
            self.nodes[i].parent = grandparent;
            i = grandparent as usize;
        }
        i
    }

    /// Add pixel `p`, merging it with the added neighbours' regions.
    pub(super) fn add(&mut self, p: usize) {
        let (x, y) = ((p % self.width) as i32, (p / self.width) as i32);
        let (w, h) = (self.width as i32, self.height as i32);
        self.nodes[p].size = 1;
        self.nodes[p].bounds = [x, y, x, y];
        self.nodes[p].edge = x == 0 || y == 0 || x == w - 1 || y == h - 1;
        self.roots.push(p);
        // The root of p's region, kept across the merges.
        let mut a = p;
        for &(dx, dy) in neighbours(self.eight) {
            let (nx, ny) = (x + dx as i32, y + dy as i32);
            if nx < 0 || ny < 0 || nx >= w || ny >= h {
                continue;
            }
            let q = (ny * w + nx) as usize;
            if self.nodes[q].size == 0 {
                continue;
            }
            let b = self.find(q);
            if a != b {
                // The smaller region goes under the larger one's root.
                let (big, small) = match self.nodes[a].size >= self.nodes[b].size {
                    true => (a, b),
                    false => (b, a),
                };
                let s = self.nodes[small];
                let root = &mut self.nodes[big];
                let r = root.bounds;
                root.bounds = [
                    r[0].min(s.bounds[0]),
                    r[1].min(s.bounds[1]),
                    r[2].max(s.bounds[2]),
                    r[3].max(s.bounds[3]),
                ];
                root.edge |= s.edge;
                root.size += s.size;
                self.nodes[small].parent = big as u32;
                a = big;
            }
        }
    }

    /// The current regions' bounding boxes and edge flags.
    pub(super) fn boxes(&mut self) -> impl Iterator<Item = ([i64; 4], bool)> + '_ {
        let mut roots = std::mem::take(&mut self.roots);
        roots.retain(|&r| self.nodes[r].parent as usize == r);
        self.roots = roots;
        self.roots
            .iter()
            .map(|&r| (self.nodes[r].bounds.map(i64::from), self.nodes[r].edge))
    }
}
