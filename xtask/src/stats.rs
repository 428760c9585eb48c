//! The benchmarks' statistics: medians, and ratios per round with their
//! interquartile spread.

/// The median (sorts `v`).
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// The first and third quartiles (sorts `v`).
fn spread(v: &mut [f64]) -> (f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[v.len() / 4], v[v.len() * 3 / 4])
}

/// The median of `num[i] / den[i]` and its quartiles: each round's ratio
/// against the baseline of the same round.
pub fn ratio_stats(num: &[f64], den: &[f64]) -> (f64, f64, f64) {
    let mut r: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
    let m = median(&mut r);
    let (lo, hi) = spread(&mut r);
    (m, lo, hi)
}
