//! The linear system of ROAD's imputation ([`crate::scores::road`]) and its solver: conjugate gradients
//! in f64, preconditioned by one geometric multigrid V-cycle (see the `road` module's doc for
//! the system, the convergence test and the coarse grids).

use crate::scores::road::error::RoadError;

/// Channels solved together: every vector holds this many lanes per node.
pub(crate) const LANES: usize = 4;
pub(crate) type Lanes = [f64; LANES];

/// The 8 neighbours: stencil slot k = 3·(dr + 1) + (dc + 1), and weight.
pub(crate) const NEIGHBOURS: [(usize, f64); 8] = [
    (0, 1.0 / 12.0),
    (1, 1.0 / 6.0),
    (2, 1.0 / 12.0),
    (3, 1.0 / 6.0),
    (5, 1.0 / 6.0),
    (6, 1.0 / 12.0),
    (7, 1.0 / 6.0),
    (8, 1.0 / 12.0),
];

/// Flat index of neighbour slot `k` of pixel (r, c), if inside the image.
pub(crate) fn neighbour(r: usize, c: usize, k: usize, h: usize, w: usize) -> Option<usize> {
    let (rr, cc) = ((r + k / 3).wrapping_sub(1), (c + k % 3).wrapping_sub(1));
    (rr < h && cc < w).then_some(rr * w + cc)
}

/// One grid of the multigrid hierarchy, on an (h+2)×(w+2) array whose outer ring is zero padding
/// (neighbours never leave the array). The image's grid (`stencil` empty) has L's constant
/// off-diagonal weights: a neighbour that is not removed holds 0 in every vector. Coarse grids
/// hold a 9-point stencil per node (slot 3·(dr + 1) + dc + 1). Inactive nodes (known pixels, the
/// padding) have diagonal and `inv_diag` 0, so every kernel keeps them at 0.
pub(crate) struct Grid {
    pub(crate) h: usize,
    pub(crate) w: usize,
    stencil: Vec<[f64; 9]>,
    pub(crate) diag: Vec<f64>,
    inv_diag: Vec<f64>,
}

/// Coarse parents of fine coordinate `f` (0-based) on a coarse axis of length `n`, with weights:
/// bilinear, and constant beyond the last coarse node.
fn parents(f: usize, n: usize) -> [(usize, f64); 2] {
    if f.is_multiple_of(2) || f / 2 + 1 >= n {
        [(f / 2, 1.0), (f / 2, 0.0)]
    } else {
        [(f / 2, 0.5), (f / 2 + 1, 0.5)]
    }
}

impl Grid {
    fn new(h: usize, w: usize, stencil: Vec<[f64; 9]>, diag: Vec<f64>) -> Self {
        let inv_diag = diag
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d } else { 0.0 })
            .collect();
        Self {
            h,
            w,
            stencil,
            diag,
            inv_diag,
        }
    }

    /// L over the removed pixels (`keep` false) of an h×w image.
    pub(crate) fn from_mask(h: usize, w: usize, keep: &[bool]) -> Self {
        let mut diag = vec![0.0; (h + 2) * (w + 2)];
        for (p, _) in keep.iter().enumerate().filter(|(_, &k)| !k) {
            let (r, c) = (p / w, p % w);
            diag[(r + 1) * (w + 2) + c + 1] = NEIGHBOURS
                .iter()
                .filter(|(k, _)| neighbour(r, c, *k, h, w).is_some())
                .map(|(_, weight)| weight)
                .sum();
        }
        Self::new(h, w, Vec::new(), diag)
    }

    /// Row i of L (array index), as a stencil.
    fn row(&self, i: usize) -> [f64; 9] {
        if !self.stencil.is_empty() {
            return self.stencil[i];
        }
        let mut a = [0.0; 9];
        if self.diag[i] == 0.0 {
            return a;
        }
        let s = self.w + 2;
        for (k, weight) in NEIGHBOURS {
            if self.diag[i + (k / 3) * s + k % 3 - s - 1] > 0.0 {
                a[k] = -weight;
            }
        }
        a[4] = self.diag[i];
        a
    }

    /// (L x)_i − diag_i x_i, the left and right neighbours added last (Gauss–Seidel's
    /// dependency chain).
    #[inline(always)]
    fn off_diagonal(&self, x: &[Lanes], i: usize) -> Lanes {
        let s = self.w + 2;
        let (left, right) = (x[i - 1], x[i + 1]);
        if self.stencil.is_empty() {
            let (up, down) = (x[i - s], x[i + s]);
            let corners = [x[i - s - 1], x[i - s + 1], x[i + s - 1], x[i + s + 1]];
            return std::array::from_fn(|l| {
                let rest = -((up[l] + down[l]) / 6.0
                    + (corners[0][l] + corners[1][l] + corners[2][l] + corners[3][l]) / 12.0);
                rest - left[l] / 6.0 - right[l] / 6.0
            });
        }
        let a = &self.stencil[i];
        let js = [i - s - 1, i - s, i - s + 1, i + s - 1, i + s, i + s + 1];
        let ks = [0, 1, 2, 6, 7, 8];
        std::array::from_fn(|l| {
            let rest: f64 = js.iter().zip(ks).map(|(&j, k)| a[k] * x[j][l]).sum();
            rest + a[3] * left[l] + a[5] * right[l]
        })
    }

    /// The Galerkin operator P^T L P on the grid of half the size (rounded up).
    pub(crate) fn coarsen(&self) -> Self {
        let (h, w) = (self.h.div_ceil(2), self.w.div_ceil(2));
        let (s, fs) = (w + 2, self.w + 2);
        let mut stencil = vec![[0.0; 9]; (h + 2) * s];
        for r in 0..self.h {
            for c in 0..self.w {
                let a = self.row((r + 1) * fs + c + 1);
                // t: row i of L P, over the 3×3 coarse nodes from (r/2 − 1, c/2 − 1).
                let (r0, c0) = ((r / 2).wrapping_sub(1), (c / 2).wrapping_sub(1));
                let mut t = [[0.0; 3]; 3];
                for k in (0..9).filter(|&k| a[k] != 0.0) {
                    let (rj, cj) = (r + k / 3 - 1, c + k % 3 - 1);
                    for (pr, wr) in parents(rj, h) {
                        for (pc, wc) in parents(cj, w) {
                            t[pr.wrapping_sub(r0)][pc.wrapping_sub(c0)] += a[k] * wr * wc;
                        }
                    }
                }
                for (pr, wr) in parents(r, h) {
                    for (pc, wc) in parents(c, w) {
                        let row = &mut stencil[(pr + 1) * s + pc + 1];
                        for (dr, t_row) in t.iter().enumerate() {
                            for (dc, &v) in t_row.iter().enumerate().filter(|(_, v)| **v != 0.0) {
                                // The offset J − I is within ±1 wherever the product is nonzero.
                                let jr = (r0 + dr + 1).wrapping_sub(pr);
                                let jc = (c0 + dc + 1).wrapping_sub(pc);
                                row[jr * 3 + jc] += wr * wc * v;
                            }
                        }
                    }
                }
            }
        }
        let diag = stencil.iter().map(|a| a[4]).collect();
        Self::new(h, w, stencil, diag)
    }

    /// y = L x.
    fn apply(&self, x: &[Lanes], y: &mut [Lanes]) {
        let s = self.w + 2;
        for i in (1..=self.h).flat_map(|r| r * s + 1..=r * s + self.w) {
            let (d, off) = (self.diag[i], self.off_diagonal(x, i));
            y[i] = if d > 0.0 {
                std::array::from_fn(|l| d * x[i][l] + off[l])
            } else {
                [0.0; LANES]
            };
        }
    }

    /// One Gauss–Seidel sweep, in row-major order or the reverse.
    fn sweep(&self, b: &[Lanes], x: &mut [Lanes], forward: bool) {
        let s = self.w + 2;
        for t in 0..self.h {
            let r = if forward { t + 1 } else { self.h - t };
            for u in 0..self.w {
                let i = r * s + if forward { u + 1 } else { self.w - u };
                let (off, inv) = (self.off_diagonal(x, i), self.inv_diag[i]);
                x[i] = std::array::from_fn(|l| (b[i][l] - off[l]) * inv);
            }
        }
    }
}

/// Calls f(fine index, coarse index, weight) for every entry of P (masking is up to f).
fn interpolation(g: &Grid, coarse: &Grid, mut f: impl FnMut(usize, usize, f64)) {
    let (fs, cs) = (g.w + 2, coarse.w + 2);
    for (r, c) in (0..g.h).flat_map(|r| (0..g.w).map(move |c| (r, c))) {
        for (pr, wr) in parents(r, coarse.h) {
            for (pc, wc) in parents(c, coarse.w) {
                f((r + 1) * fs + c + 1, (pr + 1) * cs + pc + 1, wr * wc);
            }
        }
    }
}

/// Work vectors of one V-cycle step: L x on this grid, b and x on the next coarser one.
struct Scratch {
    ax: Vec<Lanes>,
    b: Vec<Lanes>,
    x: Vec<Lanes>,
}

/// One V-cycle from x = 0: x = M⁻¹ b, the preconditioner. `scratch[k]` serves grids[k].
fn vcycle(grids: &[Grid], b: &[Lanes], x: &mut [Lanes], scratch: &mut [Scratch]) {
    let g = &grids[0];
    x.fill([0.0; LANES]);
    g.sweep(b, x, true);
    if let (Some(coarse), Some((work, rest))) = (grids.get(1), scratch.split_first_mut()) {
        g.apply(x, &mut work.ax);
        work.b.fill([0.0; LANES]);
        interpolation(g, coarse, |i, j, weight| {
            (0..LANES).for_each(|l| work.b[j][l] += weight * (b[i][l] - work.ax[i][l]));
        });
        vcycle(&grids[1..], &work.b, &mut work.x, rest);
        interpolation(g, coarse, |i, j, weight| {
            if g.diag[i] > 0.0 {
                (0..LANES).for_each(|l| x[i][l] += weight * work.x[j][l]);
            }
        });
    }
    g.sweep(b, x, false);
}

/// Per lane, Σ a·b.
fn dot(a: &[Lanes], b: &[Lanes]) -> Lanes {
    a.iter().zip(b).fold([0.0; LANES], |acc, (x, y)| {
        std::array::from_fn(|l| acc[l] + x[l] * y[l])
    })
}

/// Multigrid-preconditioned conjugate gradients on grids[0] x = b, one system per lane.
pub(crate) fn pcg(
    grids: &[Grid],
    b: &[Lanes],
    tol: f64,
    cap: usize,
) -> Result<Vec<Lanes>, RoadError> {
    let g = &grids[0];
    let n = b.len();
    let b_norm = dot(b, b).map(f64::sqrt);
    // The largest relative residual over the lanes (a lane with b = 0 is solved by x = 0).
    let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
    let relative = |r: &[Lanes]| {
        let r2 = dot(r, r);
        (0..LANES)
            .map(|l| ratio(r2[l].sqrt(), b_norm[l]))
            .fold(0.0, f64::max)
    };
    let zeros = |n: usize| vec![[0.0; LANES]; n];
    let mut scratch: Vec<Scratch> = grids
        .windows(2)
        .map(|g| Scratch {
            ax: zeros(g[0].diag.len()),
            b: zeros(g[1].diag.len()),
            x: zeros(g[1].diag.len()),
        })
        .collect();
    let (mut x, mut z) = (zeros(n), zeros(n));
    let (mut r, mut q, mut p) = (b.to_vec(), zeros(n), zeros(n));
    let (mut rz, mut residual, mut restart) = ([0.0; LANES], relative(b), true);
    for iteration in 0..=cap {
        if residual <= tol {
            return Ok(x);
        }
        if iteration == cap {
            return Err(RoadError::NotConverged {
                iterations: cap,
                residual,
            });
        }
        vcycle(grids, &r, &mut z, &mut scratch);
        let rz_next = dot(&r, &z);
        let beta: Lanes = std::array::from_fn(|l| ratio(rz_next[l], rz[l]) * f64::from(!restart));
        (rz, restart) = (rz_next, false);
        p.iter_mut()
            .zip(&z)
            .for_each(|(p, z)| *p = std::array::from_fn(|l| z[l] + beta[l] * p[l]));
        g.apply(&p, &mut q);
        let pq = dot(&p, &q);
        let alpha: Lanes = std::array::from_fn(|l| ratio(rz[l], pq[l]));
        for i in 0..n {
            (0..LANES).for_each(|l| {
                x[i][l] += alpha[l] * p[i][l];
                r[i][l] -= alpha[l] * q[i][l];
            });
        }
        residual = relative(&r);
        if residual <= tol {
            // Confirm on the recomputed residual b − L x (the recurrence can drift); if that
            // fails, go on from it as a fresh start.
            g.apply(&x, &mut q);
            r.iter_mut()
                .zip(b.iter().zip(&q))
                .for_each(|(r, (b, q))| *r = std::array::from_fn(|l| b[l] - q[l]));
            (residual, restart) = (relative(&r), true);
        }
    }
    unreachable!("the loop returns at iteration == cap")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_operators_are_symmetric_with_nonnegative_row_sums() {
        let (h, w) = (13, 10);
        let keep: Vec<bool> = (0..h * w).map(|p| p % 17 == 0 || p < 4).collect();
        let mut grid = Grid::from_mask(h, w, &keep);
        while grid.h.max(grid.w) > 1 {
            grid = grid.coarsen();
            let s = grid.w + 2;
            for i in (1..=grid.h).flat_map(|r| r * s + 1..=r * s + grid.w) {
                let a = grid.row(i);
                assert!(a.iter().sum::<f64>() >= -1e-12, "row sum {a:?}");
                for (k, v) in a.iter().enumerate() {
                    let j = i + (k / 3) * s + k % 3 - s - 1;
                    assert!((v - grid.row(j)[8 - k]).abs() < 1e-12);
                }
            }
        }
    }
}
