//! Latency histograms with configured bucket bounds (`stats.latency_buckets_us`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Counts per bucket (not cumulative) plus one overflow bucket, sum and count.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hist {
    pub counts: Vec<u64>,
    pub sum_us: u64,
    pub count: u64,
}

/// Index of the bucket `us` falls in: the first bound >= us, or
/// `bounds.len()` (+Inf).
#[inline]
pub fn bucket(bounds: &[u64], us: u64) -> usize {
    bounds.partition_point(|&b| b < us)
}

impl Hist {
    pub fn new(bounds: &[u64]) -> Hist {
        Hist {
            counts: vec![0; bounds.len() + 1],
            sum_us: 0,
            count: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, bounds: &[u64], us: u64) {
        let i = bucket(bounds, us);
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum_us += us;
        self.count += 1;
    }

    pub fn merge(&mut self, o: &Hist) {
        if self.counts.len() < o.counts.len() {
            self.counts.resize(o.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&o.counts) {
            *a += b;
        }
        self.sum_us += o.sum_us;
        self.count += o.count;
    }

    /// `(upper bound in seconds, cumulative count)` for the finite bounds,
    /// as Prometheus wants them.
    pub fn cumulative(&self, bounds: &[u64]) -> Vec<(f64, u64)> {
        let mut acc = 0;
        bounds
            .iter()
            .zip(&self.counts)
            .map(|(&b, &c)| {
                acc += c;
                (b as f64 / 1e6, acc)
            })
            .collect()
    }
}

/// A histogram written by one task and read by others (upstream connections).
#[derive(Debug)]
pub struct AtomicHist {
    bounds: Arc<[u64]>,
    counts: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl AtomicHist {
    pub fn new(bounds: Arc<[u64]>) -> AtomicHist {
        AtomicHist {
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            bounds,
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn bounds(&self) -> &Arc<[u64]> {
        &self.bounds
    }

    pub fn record(&self, us: u64) {
        let i = bucket(&self.bounds, us);
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> Hist {
        Hist {
            counts: self
                .counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect(),
            sum_us: self.sum_us.load(Ordering::Relaxed),
            count: self.count.load(Ordering::Relaxed),
        }
    }

    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.sum_us.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_upper_bounds() {
        let b = [50, 100, 250];
        assert_eq!(bucket(&b, 0), 0);
        assert_eq!(bucket(&b, 50), 0);
        assert_eq!(bucket(&b, 51), 1);
        assert_eq!(bucket(&b, 250), 2);
        assert_eq!(bucket(&b, 251), 3);
        let mut h = Hist::new(&b);
        for us in [10, 60, 70, 300] {
            h.record(&b, us);
        }
        assert_eq!(h.cumulative(&b), vec![(50e-6, 1), (100e-6, 3), (250e-6, 3)]);
        assert_eq!((h.count, h.sum_us), (4, 440));
    }
}
