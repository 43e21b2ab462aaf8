//! Per-chunk caching of sliding ranges: the batch leg of `time >= L` is cut at aligned
//! chunk boundaries (hours or days) into the fringe below the first boundary, whole chunks,
//! and the tail up to W. Whole chunks and the tail repeat across requests while L slides;
//! only the fringe is new. The pieces partition the time axis whatever L is, so the cut is
//! exact even when L was misjudged: it only decides how many pieces there are.

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;
/// Most pieces one query is cut into (beyond that the batch leg runs whole).
const MAX_PIECES: i64 = 400;

/// One piece of a cut batch leg: `lo <= time < hi` (an open side is None).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece {
    /// Inclusive lower bound, µs since 1970.
    pub lo: Option<i64>,
    /// Exclusive upper bound, µs since 1970.
    pub hi: Option<i64>,
}

impl Piece {
    /// The fringe changes with every request; other pieces are worth caching.
    pub fn is_fringe(&self) -> bool {
        self.lo.is_none()
    }
}

/// The chunk width for a range of `span` µs: days from two days, hours from two hours.
fn width(span: i64) -> Option<i64> {
    match span {
        s if s >= 2 * DAY => Some(DAY),
        s if s >= 2 * HOUR => Some(HOUR),
        _ => None,
    }
}

/// Cuts the batch part `[lower, w)` into pieces; None when it is too short or too long to
/// be worth cutting.
pub fn cut(lower: i64, w: i64) -> Option<Vec<Piece>> {
    let size = width(w.checked_sub(lower)?)?;
    if (w - lower) / size > MAX_PIECES {
        return None;
    }
    let first = lower.div_euclid(size) * size + if lower.rem_euclid(size) == 0 { 0 } else { size };
    let mut pieces = vec![Piece { lo: None, hi: Some(first) }];
    let mut c = first;
    while c + size <= w {
        pieces.push(Piece { lo: Some(c), hi: Some(c + size) });
        c += size;
    }
    pieces.push(Piece { lo: Some(c), hi: None });
    Some(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_partition_the_axis() {
        let w = 10 * DAY + 5 * HOUR;
        let p = cut(3 * DAY + 7, w).unwrap();
        assert_eq!(p[0], Piece { lo: None, hi: Some(4 * DAY) });
        assert_eq!(p[1], Piece { lo: Some(4 * DAY), hi: Some(5 * DAY) });
        assert_eq!(*p.last().unwrap(), Piece { lo: Some(10 * DAY), hi: None });
        for pair in p.windows(2) {
            assert_eq!(pair[0].hi, pair[1].lo, "no gap, no overlap");
        }
        assert_eq!(p.len(), 8);
    }

    #[test]
    fn short_and_huge_ranges_are_not_cut() {
        assert!(cut(0, HOUR).is_none());
        assert!(cut(0, 1000 * DAY).is_none());
        assert!(cut(5, 0).is_none());
        assert_eq!(cut(0, 3 * HOUR).unwrap().len(), 5);
    }
}
