//! Summary statistics across seeds: mean, median, and the 95 % Student t
//! confidence interval for the mean (`mean ± t(0.975, n − 1) · s / √n`,
//! with `s` the sample standard deviation).

/// Two-sided 95 % quantiles of Student's t, `t(0.975, df)` for df 1..=30.
const T975: [f64; 30] = [
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
    2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
    2.052, 2.048, 2.045, 2.042,
];
/// Beyond 30: (df, quantile) points, interpolated linearly in 1/df; the
/// normal quantile (1.960) in the limit.
const T975_TAIL: [(f64, f64); 4] = [(30.0, 2.042), (40.0, 2.021), (60.0, 2.000), (120.0, 1.980)];

/// `t(0.975, df)`; `None` for df 0.
pub fn t975(df: usize) -> Option<f64> {
    match df {
        0 => None,
        1..=30 => Some(T975[df - 1]),
        _ => {
            let x = 1.0 / df as f64;
            let mut prev = T975_TAIL[0];
            for &(d, q) in &T975_TAIL[1..] {
                if df as f64 <= d {
                    let (x0, x1) = (1.0 / prev.0, 1.0 / d);
                    return Some(prev.1 + (q - prev.1) * (x - x0) / (x1 - x0));
                }
                prev = (d, q);
            }
            // Between 120 and infinity (1/df from 1/120 to 0).
            let x0 = 1.0 / prev.0;
            Some(1.960 + (prev.1 - 1.960) * x / x0)
        }
    }
}

/// What [`describe`] gives for one column of one configuration.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Described {
    pub n: usize,
    pub mean: f64,
    pub median: f64,
    /// The 95 % t-interval for the mean (`None` with fewer than two values).
    pub ci95: Option<(f64, f64)>,
}

/// Mean, median and 95 % t-interval of `values` (`None` when empty).
pub fn describe(values: &[f64]) -> Option<Described> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let ci95 = t975(n - 1).map(|t| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t * (var / n as f64).sqrt();
        (mean - half, mean + half)
    });
    Some(Described {
        n,
        mean,
        median,
        ci95,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9 * b.abs().max(1.0)
    }

    #[test]
    fn known_small_samples() {
        // 2, 4, 4, 4, 5, 5, 7, 9: mean 5, median 4.5, s = sqrt(32/7).
        let d = describe(&[2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]).expect("values");
        assert_eq!(d.n, 8);
        assert!(close(d.mean, 5.0));
        assert!(close(d.median, 4.5));
        let half = 2.365 * (32.0f64 / 7.0 / 8.0).sqrt();
        let (lo, hi) = d.ci95.expect("interval");
        assert!(close(lo, 5.0 - half) && close(hi, 5.0 + half), "{lo} {hi}");
        // 1, 2, 3: mean 2, median 2, s = 1, half-width 4.303 / sqrt(3).
        let d = describe(&[3.0, 1.0, 2.0]).expect("values");
        assert!(close(d.median, 2.0));
        let (lo, hi) = d.ci95.expect("interval");
        assert!(close(hi - 2.0, 4.303 / 3f64.sqrt()) && close(2.0 - lo, hi - 2.0));
        // Equal values: a zero-width interval.
        let d = describe(&[7.5, 7.5]).expect("values");
        assert_eq!(d.ci95, Some((7.5, 7.5)));
        // One value: no interval; none: nothing.
        assert_eq!(describe(&[3.0]).expect("one").ci95, None);
        assert_eq!(describe(&[]), None);
    }

    #[test]
    fn t_quantiles_fall_towards_the_normal_one() {
        assert_eq!(t975(0), None);
        assert_eq!(t975(1), Some(12.706));
        assert_eq!(t975(30), Some(2.042));
        assert!(close(t975(40).expect("df"), 2.021));
        assert!(close(t975(120).expect("df"), 1.980));
        let mut prev = f64::INFINITY;
        for df in 1..2000 {
            let t = t975(df).expect("df");
            assert!(t <= prev && t > 1.96, "df {df}: {t}");
            prev = t;
        }
    }
}
