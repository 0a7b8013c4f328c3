//! Mergeable latency sketches (DDSketch) and their compact binary encoding.
//! Rollup rows store encoded [`SketchSet`]s; a query merges the rows' sketches and reads quantiles
//! within [`RELATIVE_ACCURACY`] of the exact ones, with exact count, min and max. Pure: no I/O.

use std::collections::BTreeMap;

/// Guaranteed relative error of [`Sketch::quantile`] for values of at least [`MIN_INDEXABLE`].
pub const RELATIVE_ACCURACY: f64 = 0.01;

/// Values below this (in ms, so 1 ns) are counted in an exact zero bucket and estimated as 0
/// (clamped to the exact min): their estimates have an absolute error below `MIN_INDEXABLE`.
pub const MIN_INDEXABLE: f64 = 1e-6;

/// Longest name, in bytes, that a [`SketchSet`] holds or decodes.
pub const MAX_NAME_LEN: usize = 1024;

/// Most names that a [`SketchSet`] holds or decodes.
pub const MAX_SET_ENTRIES: usize = 1024;

const SKETCH_VERSION: u8 = 1;
const SET_VERSION: u8 = 1;
const KIND_EMPTY: u8 = 0;
const KIND_SINGLE: u8 = 1;
const KIND_FULL: u8 = 2;

/// The mapping is built with `a' = RELATIVE_ACCURACY * (1 - 1e-7)`, a hair below the bound, so
/// that rounding in `ln`/`exp` (about 1e-13 relative) never pushes an estimate past it. `ln` is
/// not const: these are `ln(gamma) = 2 atanh(a')`, its inverse and `ln(1 - a')`, correctly
/// rounded. Bin `i` holds the values in `(exp((i-1) LN_GAMMA), exp(i LN_GAMMA)]`.
const LN_GAMMA: f64 = 0.020_000_664_706_469_506;
const INV_LN_GAMMA: f64 = 49.998_338_289_053_74;
const LN_ONE_MINUS_A: f64 = -0.010_050_334_843_400_432;

/// The bins of `MIN_INDEXABLE` and `f64::MAX`.
const MIN_INDEX: i32 = -690;
const MAX_INDEX: i32 = 35_488;

/// The bin of `v >= MIN_INDEXABLE`.
#[inline]
fn index_of(v: f64) -> i32 {
    let x = v.ln() * INV_LN_GAMMA;
    let i = x as i32; // |x| < 36,000; truncation is the ceiling for x <= 0
    i + i32::from(f64::from(i) < x) // the ceiling without a libm call
}

/// The value that represents bin `i`: `gamma^i (1 - a)`, within `a` of both of its ends.
#[inline]
fn value_of(i: i32) -> f64 {
    (f64::from(i) * LN_GAMMA + LN_ONE_MINUS_A).exp()
}

/// Why bytes could not be decoded as a [`Sketch`] or a [`SketchSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    #[error("sketch data is truncated")]
    Truncated,
    #[error("unsupported sketch encoding version {0}")]
    BadVersion(u8),
    #[error("unknown sketch kind {0}")]
    BadKind(u8),
    #[error("malformed varint in sketch data")]
    BadVarint,
    #[error("invalid min, max, sum or value in sketch data")]
    InvalidValue,
    #[error("sketch bin index out of range")]
    IndexOutOfRange,
    #[error("malformed sketch bins")]
    BadBins,
    #[error("sketch counts disagree with its min and max")]
    Inconsistent,
    #[error("{0} trailing bytes after sketch data")]
    TrailingBytes(usize),
    #[error("sketch name of {0} bytes is longer than the limit")]
    NameTooLong(u64),
    #[error("sketch name is not UTF-8")]
    InvalidName,
    #[error("sketch names are not strictly sorted")]
    UnsortedNames,
    #[error("{0} sketches are more than the limit")]
    TooManyEntries(u64),
}

/// DDSketch (Masson et al., VLDB 2019) with logarithmic mapping `gamma = (1+a)/(1-a)`,
/// `a = RELATIVE_ACCURACY` (less 1e-7 relative, see `LN_GAMMA`), and no bin collapsing.
///
/// Values are non-negative milliseconds; values below [`MIN_INDEXABLE`] go to an exact zero
/// bucket. Negative, NaN and infinite inputs are ignored: callers validate first. Bins are a dense
/// window of counts, so memory grows with the spread of the values: about 115 bins per decade
/// (1e-6 to 1e7 ms needs at most ~1,500 bins). Counts saturate at `u64::MAX`.
///
/// Equality is semantic: two sketches are equal when they hold the same counts, sum, min and max,
/// whatever spare room their bin windows have.
#[derive(Debug, Clone, Default)]
pub struct Sketch {
    /// Counts of the bins `offset, offset + 1, ...`; may have zeros at either end.
    bins: Vec<u64>,
    offset: i32,
    zero_count: u64,
    count: u64,
    sum: f64,
    /// Exact min and max; 0 while empty.
    min: f64,
    max: f64,
}

impl PartialEq for Sketch {
    fn eq(&self, other: &Self) -> bool {
        self.count == other.count
            && self.zero_count == other.zero_count
            && self.sum == other.sum
            && self.min == other.min
            && self.max == other.max
            && self.trimmed() == other.trimmed()
    }
}

impl Sketch {
    /// An empty sketch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one value; negative, NaN and infinite values are ignored.
    pub fn insert(&mut self, v: f64) {
        if !is_insertable(v) {
            return;
        }
        let v = if v == 0.0 { 0.0 } else { v }; // no -0.0
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else if v < self.min {
            self.min = v;
        } else if v > self.max {
            self.max = v;
        }
        self.count = self.count.saturating_add(1);
        self.sum += v;
        if v < MIN_INDEXABLE {
            self.zero_count = self.zero_count.saturating_add(1);
            return;
        }
        let i = index_of(v);
        let mut rel = i - self.offset;
        if rel < 0 || rel as usize >= self.bins.len() {
            self.ensure_range(i, i);
            rel = i - self.offset;
        }
        let c = &mut self.bins[rel as usize];
        *c = c.saturating_add(1);
    }

    /// Adds all of `other`'s values. Linear in the bins of both.
    pub fn merge(&mut self, other: &Sketch) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = other.min;
            self.max = other.max;
        } else {
            self.min = self.min.min(other.min);
            self.max = self.max.max(other.max);
        }
        self.count = self.count.saturating_add(other.count);
        self.zero_count = self.zero_count.saturating_add(other.zero_count);
        self.sum += other.sum;
        let (first, bins) = other.trimmed();
        if bins.is_empty() {
            return;
        }
        self.ensure_range(first, first + (bins.len() - 1) as i32);
        let start = (first - self.offset) as usize;
        for (d, &s) in self.bins[start..start + bins.len()].iter_mut().zip(bins) {
            *d = d.saturating_add(s);
        }
    }

    /// How many values were inserted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The exact (floating-point) sum of the values.
    pub fn sum(&self) -> f64 {
        self.sum
    }

    /// The mean of the values; `None` when empty.
    pub fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }

    /// The exact smallest value; `None` when empty.
    pub fn min(&self) -> Option<f64> {
        (self.count > 0).then_some(self.min)
    }

    /// The exact largest value; `None` when empty.
    pub fn max(&self) -> Option<f64> {
        (self.count > 0).then_some(self.max)
    }

    /// `q` in [0,1]. Lower rank definition: the estimate of the value at index `floor(q*(n-1))`
    /// of the sorted values, within [`RELATIVE_ACCURACY`] of it, clamped to [min, max] (exact
    /// min and max for the first and last ranks). `None` when empty or `q` is outside [0,1]/NaN.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 || !(0.0..=1.0).contains(&q) {
            return None;
        }
        let last = self.count - 1;
        let rank = (q * last as f64).floor() as u64;
        if rank == 0 {
            return Some(self.min);
        }
        if rank >= last {
            return Some(self.max);
        }
        if rank < self.zero_count {
            return Some(self.min); // the zero bucket's estimate, 0, clamped to min
        }
        let mut seen = self.zero_count;
        for (j, &c) in self.bins.iter().enumerate() {
            seen = seen.saturating_add(c);
            if seen > rank {
                let v = value_of(self.offset + j as i32);
                return Some(v.clamp(self.min, self.max));
            }
        }
        Some(self.max)
    }

    /// Approximate number of values `<= bound`, for histogram export: the zero bucket and the
    /// bins whose representative value is `<= bound`; exact when `bound < min` or `bound >= max`.
    pub fn count_le(&self, bound: f64) -> u64 {
        if self.count == 0 || bound.is_nan() || bound < self.min {
            return 0;
        }
        if bound >= self.max {
            return self.count;
        }
        let mut total = self.zero_count;
        let (first, bins) = self.trimmed();
        if bound > 0.0 && !bins.is_empty() {
            let last = first + (bins.len() - 1) as i32;
            let guess = ((bound.ln() - LN_ONE_MINUS_A) * INV_LN_GAMMA).floor();
            let mut t = guess.clamp(f64::from(first - 1), f64::from(last)) as i32;
            while t < last && value_of(t + 1) <= bound {
                t += 1;
            }
            while t >= first && value_of(t) > bound {
                t -= 1;
            }
            if t >= first {
                let upto = &bins[..=(t - first) as usize];
                total = upto.iter().fold(total, |a, &c| a.saturating_add(c));
            }
        }
        total
    }

    /// Whether no value was inserted.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The non-empty buckets, ascending by value: each bucket's representative value and how
    /// many values it holds (the counts sum to [`Sketch::count`]). A representative is what
    /// [`Sketch::quantile`] returns for a rank in that bucket: the bin's value clamped to
    /// [min, max], so within [`RELATIVE_ACCURACY`] of every value in the bin; the zero bucket
    /// (values below [`MIN_INDEXABLE`]) is represented by the exact min. A bin that can only
    /// hold the min (or the max) is represented exactly by it: the lowest bin holding one value
    /// with an empty zero bucket, the highest bin holding one value.
    pub fn bins(&self) -> Vec<(f64, u64)> {
        let mut out = Vec::new();
        if self.count == 0 {
            return out;
        }
        if self.zero_count > 0 {
            out.push((self.min, self.zero_count));
        }
        let (first, bins) = self.trimmed();
        let last = bins.len().saturating_sub(1);
        for (j, &c) in bins.iter().enumerate() {
            if c == 0 {
                continue;
            }
            let v = if j == 0 && c == 1 && self.zero_count == 0 {
                self.min
            } else if j == last && c == 1 {
                self.max
            } else {
                value_of(first + j as i32).clamp(self.min, self.max)
            };
            out.push((v, c));
        }
        out
    }

    /// Appends the encoding: a version byte, a kind byte (0 empty, 1 one value, 2 full), then
    /// for one value its f64; when full: min, max and sum as f64 (little-endian), the zero
    /// count, the bin span and first bin index (zigzag) as LEB128 varints, then tokens over the
    /// span: `count << 1` for a non-zero bin (or `0` then the count when it is `>= 2^63`),
    /// `(run - 1) << 1 | 1` for a run of empty bins.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(SKETCH_VERSION);
        if self.count == 0 {
            out.push(KIND_EMPTY);
            return;
        }
        if self.count == 1 {
            out.push(KIND_SINGLE);
            out.extend_from_slice(&self.min.to_le_bytes());
            return;
        }
        let (first, bins) = self.trimmed();
        out.reserve(32 + 2 * bins.len());
        out.push(KIND_FULL);
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        out.extend_from_slice(&self.sum.to_le_bytes());
        put_varint(out, self.zero_count);
        put_varint(out, bins.len() as u64);
        if bins.is_empty() {
            return;
        }
        put_varint(out, zigzag(first));
        let mut zeros = 0u64;
        for &c in bins {
            if c == 0 {
                zeros += 1;
                continue;
            }
            if zeros > 0 {
                put_varint(out, ((zeros - 1) << 1) | 1);
                zeros = 0;
            }
            if c < 1 << 63 {
                put_varint(out, c << 1);
            } else {
                out.push(0);
                put_varint(out, c);
            }
        }
    }

    /// Decodes one sketch from the start of `bytes`; returns it and the number of bytes it took,
    /// so that sketches can be concatenated. Rejects truncated, malformed and non-canonical data:
    /// whatever decodes encodes back to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<(Sketch, usize), SketchError> {
        let mut r = Reader { buf: bytes, pos: 0 };
        let mut s = Sketch::new();
        s.read_from(&mut r)?;
        Ok((s, r.pos))
    }

    /// Empties the sketch, keeping its bin allocation.
    fn clear(&mut self) {
        self.bins.clear();
        self.offset = 0;
        self.zero_count = 0;
        self.count = 0;
        self.sum = 0.0;
        self.min = 0.0;
        self.max = 0.0;
    }

    /// The first non-zero bin's index and the bins from it to the last non-zero one.
    fn trimmed(&self) -> (i32, &[u64]) {
        let Some(start) = self.bins.iter().position(|&c| c != 0) else {
            return (0, &[]);
        };
        let end = self.bins.iter().rposition(|&c| c != 0).map_or(start, |e| e) + 1;
        (self.offset + start as i32, &self.bins[start..end])
    }

    /// Grows the bin window to hold bins `lo..=hi`; room added in front is amortized.
    fn ensure_range(&mut self, lo: i32, hi: i32) {
        if self.bins.is_empty() {
            self.offset = lo;
            self.bins.resize((hi - lo) as usize + 1, 0);
            return;
        }
        if lo < self.offset {
            let old = self.bins.len();
            let grow = ((self.offset - lo) as usize).max(old / 2);
            self.bins.resize(old + grow, 0);
            self.bins.copy_within(0..old, grow);
            self.bins[..grow].fill(0);
            self.offset -= grow as i32;
        }
        let needed = (hi - self.offset) as usize + 1;
        if needed > self.bins.len() {
            self.bins.resize(needed, 0);
        }
    }

    /// Replaces `self` with the sketch encoded at `r`.
    fn read_from(&mut self, r: &mut Reader<'_>) -> Result<(), SketchError> {
        self.clear();
        let version = r.u8()?;
        if version != SKETCH_VERSION {
            return Err(SketchError::BadVersion(version));
        }
        match r.u8()? {
            KIND_EMPTY => Ok(()),
            KIND_SINGLE => {
                let v = r.f64()?;
                if !is_stored_value(v) {
                    return Err(SketchError::InvalidValue);
                }
                self.insert(v);
                Ok(())
            }
            KIND_FULL => self.read_full(r),
            kind => Err(SketchError::BadKind(kind)),
        }
    }

    fn read_full(&mut self, r: &mut Reader<'_>) -> Result<(), SketchError> {
        let (min, max, sum) = (r.f64()?, r.f64()?, r.f64()?);
        if !is_stored_value(min) || !is_stored_value(max) || min > max {
            return Err(SketchError::InvalidValue);
        }
        if sum.is_nan() || sum.is_sign_negative() {
            return Err(SketchError::InvalidValue);
        }
        let zero_count = r.varint()?;
        let span = r.varint()?;
        if (zero_count > 0) != (min < MIN_INDEXABLE) || (span > 0) != (max >= MIN_INDEXABLE) {
            return Err(SketchError::Inconsistent);
        }
        let mut count = zero_count;
        if span > 0 {
            let first = unzigzag(r.varint()?).ok_or(SketchError::IndexOutOfRange)?;
            if !(MIN_INDEX..=MAX_INDEX).contains(&first) || span > (MAX_INDEX - first) as u64 + 1 {
                return Err(SketchError::IndexOutOfRange);
            }
            let span = span as usize;
            self.offset = first;
            self.bins.resize(span, 0);
            // Tokens, with the cursor in a local and single-byte varints inlined: the hot loop.
            let buf = r.buf;
            let mut at = r.pos;
            let mut pos = 0usize;
            let mut after_run = true; // the first token must be a count
            while pos < span {
                let t = match buf.get(at) {
                    Some(&b) if b < 0x80 => {
                        at += 1;
                        u64::from(b)
                    }
                    _ => {
                        r.pos = at;
                        let t = r.long_varint()?;
                        at = r.pos;
                        t
                    }
                };
                if t & 1 == 1 {
                    let run = (t >> 1) + 1;
                    if after_run || run >= (span - pos) as u64 {
                        return Err(SketchError::BadBins);
                    }
                    pos += run as usize;
                    after_run = true;
                } else {
                    let c = if t != 0 {
                        t >> 1
                    } else {
                        r.pos = at;
                        let c = r.varint()?;
                        at = r.pos;
                        if c < 1 << 63 {
                            return Err(SketchError::BadBins);
                        }
                        c
                    };
                    self.bins[pos] = c;
                    count = count.saturating_add(c);
                    pos += 1;
                    after_run = false;
                }
            }
            r.pos = at;
        }
        if count < 2 {
            return Err(SketchError::Inconsistent);
        }
        self.zero_count = zero_count;
        self.count = count;
        self.sum = sum;
        self.min = min;
        self.max = max;
        Ok(())
    }
}

/// What [`Sketch::insert`] accepts.
#[inline]
fn is_insertable(v: f64) -> bool {
    v >= 0.0 && v != f64::INFINITY
}

/// What a decoded min, max or single value may be: what insert stores (no -0.0).
fn is_stored_value(v: f64) -> bool {
    v.is_finite() && v.is_sign_positive()
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(i: i32) -> u64 {
    u64::from(((i << 1) ^ (i >> 31)) as u32)
}

fn unzigzag(u: u64) -> Option<i32> {
    let u = u32::try_from(u).ok()?;
    Some((u >> 1) as i32 ^ -((u & 1) as i32))
}

/// A cursor over encoded bytes.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Result<u8, SketchError> {
        let b = *self.buf.get(self.pos).ok_or(SketchError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn bytes(&mut self, n: usize) -> Result<&'a [u8], SketchError> {
        let end = self.pos.checked_add(n).ok_or(SketchError::Truncated)?;
        let b = self.buf.get(self.pos..end).ok_or(SketchError::Truncated)?;
        self.pos = end;
        Ok(b)
    }

    fn f64(&mut self) -> Result<f64, SketchError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_le_bytes(a))
    }

    /// A minimal LEB128 u64.
    #[inline]
    fn varint(&mut self) -> Result<u64, SketchError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.long_varint(),
        }
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Result<u64, SketchError> {
        let b = self.u8()?;
        let mut v = u64::from(b & 0x7f);
        let mut shift = 7;
        loop {
            let b = self.u8()?;
            if shift == 63 && b > 1 {
                return Err(SketchError::BadVarint);
            }
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return if b == 0 {
                    Err(SketchError::BadVarint)
                } else {
                    Ok(v)
                };
            }
            shift += 7;
        }
    }
}

/// The named sketches of one rollup row: "duration", "ttft", "stage:<name>" ... Sorted by name.
///
/// Holds at most [`MAX_SET_ENTRIES`] names of at most [`MAX_NAME_LEN`] bytes, so that whatever it
/// holds can be decoded: values under a longer name are ignored, and past the entry limit only
/// the lexicographically smallest names are kept (which keeps merging order-independent).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SketchSet {
    sketches: BTreeMap<String, Sketch>,
}

impl SketchSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `v` to the sketch `name` (created on first use; no allocation when it exists).
    /// Values [`Sketch::insert`] ignores create no entry.
    pub fn insert(&mut self, name: &str, v: f64) {
        if !is_insertable(v) {
            return;
        }
        if let Some(s) = self.sketches.get_mut(name) {
            s.insert(v);
            return;
        }
        if name.len() > MAX_NAME_LEN || !self.has_room_for(name) {
            return;
        }
        let mut s = Sketch::new();
        s.insert(v);
        self.sketches.insert(name.to_owned(), s);
        self.enforce_limit();
    }

    /// Merges each of `other`'s sketches into the sketch of the same name.
    pub fn merge(&mut self, other: &SketchSet) {
        for (name, s) in &other.sketches {
            self.merge_one(name, s);
        }
        self.enforce_limit();
    }

    /// Merges `s` into the sketch `name` (created on first use, within the set's limits).
    pub fn merge_sketch(&mut self, name: &str, s: &Sketch) {
        if s.is_empty() {
            return;
        }
        self.merge_one(name, s);
        self.enforce_limit();
    }

    /// The sketch `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Sketch> {
        self.sketches.get(name)
    }

    /// The sketches by name, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Sketch)> {
        self.sketches.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Whether the set has no sketch.
    pub fn is_empty(&self) -> bool {
        self.sketches.is_empty()
    }

    /// The encoding: a version byte, the entry count (varint), then per entry in name order the
    /// name's length (varint), its UTF-8 bytes and the sketch's [`Sketch::encode`] bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(2 + 48 * self.sketches.len());
        out.push(SET_VERSION);
        put_varint(&mut out, self.sketches.len() as u64);
        for (name, s) in &self.sketches {
            put_varint(&mut out, name.len() as u64);
            out.extend_from_slice(name.as_bytes());
            s.encode(&mut out);
        }
        out
    }

    /// Decodes [`SketchSet::to_bytes`]' encoding; an empty slice is the empty set. Rejects
    /// trailing bytes, names over [`MAX_NAME_LEN`] bytes, more than [`MAX_SET_ENTRIES`] entries
    /// and names out of order.
    pub fn from_bytes(bytes: &[u8]) -> Result<SketchSet, SketchError> {
        let mut set = SketchSet::new();
        parse_set(bytes, |name, r| {
            let mut s = Sketch::new();
            s.read_from(r)?;
            set.sketches.insert(name.to_owned(), s);
            Ok(())
        })?;
        Ok(set)
    }

    fn merge_one(&mut self, name: &str, s: &Sketch) {
        if let Some(mine) = self.sketches.get_mut(name) {
            mine.merge(s);
        } else if name.len() <= MAX_NAME_LEN && self.has_room_for(name) {
            self.sketches.insert(name.to_owned(), s.clone());
        }
    }

    /// Whether a new entry `name` would be kept under the entry limit.
    fn has_room_for(&self, name: &str) -> bool {
        self.sketches.len() < MAX_SET_ENTRIES
            || self
                .sketches
                .last_key_value()
                .is_some_and(|(k, _)| name < k.as_str())
    }

    fn enforce_limit(&mut self) {
        while self.sketches.len() > MAX_SET_ENTRIES {
            self.sketches.pop_last();
        }
    }
}

/// Walks an encoded set, calling `entry` with each name and a reader at its sketch, which
/// `entry` must read.
fn parse_set<'a>(
    bytes: &'a [u8],
    mut entry: impl FnMut(&'a str, &mut Reader<'a>) -> Result<(), SketchError>,
) -> Result<(), SketchError> {
    if bytes.is_empty() {
        return Ok(());
    }
    let mut r = Reader { buf: bytes, pos: 0 };
    let version = r.u8()?;
    if version != SET_VERSION {
        return Err(SketchError::BadVersion(version));
    }
    let n = r.varint()?;
    if n > MAX_SET_ENTRIES as u64 {
        return Err(SketchError::TooManyEntries(n));
    }
    let mut prev: Option<&str> = None;
    for _ in 0..n {
        let len = r.varint()?;
        if len > MAX_NAME_LEN as u64 {
            return Err(SketchError::NameTooLong(len));
        }
        let name =
            std::str::from_utf8(r.bytes(len as usize)?).map_err(|_| SketchError::InvalidName)?;
        if prev.is_some_and(|p| p >= name) {
            return Err(SketchError::UnsortedNames);
        }
        entry(name, &mut r)?;
        prev = Some(name);
    }
    if r.pos != bytes.len() {
        return Err(SketchError::TrailingBytes(bytes.len() - r.pos));
    }
    Ok(())
}

/// Merges the sketch `name` of an encoded [`SketchSet`] into `into` (nothing when the set has
/// no such sketch). `scratch` is reused to read the set's sketches.
pub fn merge_named_encoded(
    into: &mut Sketch,
    bytes: &[u8],
    name: &str,
    scratch: &mut Sketch,
) -> Result<(), SketchError> {
    parse_set(bytes, |n, r| {
        scratch.read_from(r)?;
        if n == name {
            into.merge(scratch);
        }
        Ok(())
    })
}

/// Merges two encoded SketchSets (used as a SQLite scalar function in upserts) and returns the
/// merged set's encoding. Empty input slices count as empty sets.
pub fn merge_encoded(a: &[u8], b: &[u8]) -> Result<Vec<u8>, SketchError> {
    let mut set = SketchSet::from_bytes(a)?;
    let mut scratch = Sketch::new();
    parse_set(b, |name, r| {
        scratch.read_from(r)?;
        set.merge_one(name, &scratch);
        Ok(())
    })?;
    set.enforce_limit();
    Ok(set.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    const MAPPING_ACCURACY: f64 = RELATIVE_ACCURACY * (1.0 - 1e-7);
    const QS: [f64; 9] = [0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0];

    fn splitmix(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn unit(state: &mut u64) -> f64 {
        ((splitmix(state) >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// Log-normal latencies (ms) with median `median` and log-sd `sigma` (Box-Muller).
    fn lognormal(state: &mut u64, n: usize, median: f64, sigma: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let (u1, u2) = (unit(state), unit(state));
                let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
                median * (sigma * z).exp()
            })
            .collect()
    }

    fn sketch_of(values: &[f64]) -> Sketch {
        let mut s = Sketch::new();
        values.iter().for_each(|&v| s.insert(v));
        s
    }

    fn encoded(s: &Sketch) -> Vec<u8> {
        let mut out = Vec::new();
        s.encode(&mut out);
        out
    }

    fn round_trip(s: &Sketch) -> Sketch {
        let bytes = encoded(s);
        let (d, used) = Sketch::decode(&bytes).unwrap();
        assert_eq!(used, bytes.len());
        d
    }

    fn exact_quantile(sorted: &[f64], q: f64) -> f64 {
        sorted[(q * (sorted.len() - 1) as f64).floor() as usize]
    }

    fn log_uniform(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
        (lo..hi).prop_map(|e| 10f64.powf(e))
    }

    fn value_sets() -> impl Strategy<Value = Vec<f64>> {
        prop_oneof![
            vec(log_uniform(-3.0, 7.0), 1..600),
            (0.3f64..3.0, 1e-2f64..1e3).prop_flat_map(|(alpha, scale)| {
                vec(
                    (1e-12f64..1.0).prop_map(move |u| scale * u.powf(-1.0 / alpha)),
                    1..600,
                )
            }),
            vec(
                prop::sample::select(vec![0.0, 0.5, 1.0, 7.0, 250.0, 1234.5, 1e6]),
                1..600
            ),
            prop_oneof![Just(0.0), log_uniform(-3.0, 7.0), Just(f64::MAX)].prop_map(|v| vec![v]),
            vec(
                prop_oneof![2 => Just(0.0), 3 => log_uniform(-3.0, 7.0)],
                1..600
            ),
            vec(prop_oneof![Just(0.0), Just(MIN_INDEXABLE)], 1..50),
            vec(log_uniform(-6.0, 300.0), 1..100),
            (1u64..u64::MAX, 1.0f64..1000.0, 0.1f64..2.5).prop_map(|(seed, median, sigma)| {
                let mut st = seed;
                let n = (seed % 1000) as usize + 1;
                lognormal(&mut st, n, median, sigma)
            }),
        ]
    }

    fn check_accuracy(s: &Sketch, values: &[f64]) -> Result<(), TestCaseError> {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        prop_assert_eq!(s.count(), sorted.len() as u64);
        prop_assert_eq!(s.min(), sorted.first().copied());
        prop_assert_eq!(s.max(), sorted.last().copied());
        let sum: f64 = sorted.iter().sum();
        if sum.is_finite() {
            prop_assert!(
                (s.sum() - sum).abs() <= 1e-9 * sum,
                "sum {} vs {}",
                s.sum(),
                sum
            );
        } else {
            prop_assert_eq!(s.sum(), sum);
        }
        for q in QS {
            let exact = exact_quantile(&sorted, q);
            let est = s.quantile(q).unwrap();
            prop_assert!(
                (est - exact).abs() <= RELATIVE_ACCURACY * exact + 1e-9,
                "q {}: estimate {} exact {}",
                q,
                est,
                exact
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn split_encoded_merged_sketches_stay_accurate(
            values in value_sets(),
            parts in 1usize..=8,
            seed in any::<u64>(),
        ) {
            let mut split = vec![Sketch::new(); parts];
            let mut st = seed;
            for &v in &values {
                split[(splitmix(&mut st) % parts as u64) as usize].insert(v);
            }
            let mut merged = Sketch::new();
            let mut set_bytes = Vec::new();
            for part in &split {
                let d = round_trip(part);
                prop_assert_eq!(&d, part);
                merged.merge(&d);
                let mut set = SketchSet::new();
                set.sketches.insert("duration".into(), part.clone());
                set_bytes = merge_encoded(&set_bytes, &set.to_bytes()).unwrap();
            }
            check_accuracy(&merged, &values)?;
            let via_sql = SketchSet::from_bytes(&set_bytes).unwrap();
            prop_assert_eq!(via_sql.get("duration"), Some(&merged));

            // count_le brackets the exact counts below bound/(1+a) and bound/(1-a).
            let below = |b: f64| values.iter().filter(|&&v| v <= b).count() as u64;
            for &b in &values {
                let b = b * 1.003;
                let n = merged.count_le(b);
                prop_assert!(below(b / (1.0 + RELATIVE_ACCURACY)) <= n, "bound {}", b);
                prop_assert!(n <= below(b / (1.0 - RELATIVE_ACCURACY)), "bound {}", b);
            }
        }

        #[test]
        fn bins_count_everything_and_represent_their_values(
            values in value_sets(),
            parts in 1usize..=3,
        ) {
            // Built by merging, as queries build them.
            let mut s = Sketch::new();
            for chunk in values.chunks(values.len().div_ceil(parts)) {
                s.merge(&round_trip(&sketch_of(chunk)));
            }
            let bins = s.bins();
            prop_assert_eq!(bins.iter().map(|(_, c)| c).sum::<u64>(), s.count());
            prop_assert!(bins.windows(2).all(|w| w[0].0 <= w[1].0), "ascending: {:?}", bins);
            prop_assert!(bins.iter().all(|&(_, c)| c > 0));
            // Each value's bucket: the zero bucket, or its bin (in bins' ascending order).
            let mut sorted = values.clone();
            sorted.sort_by(f64::total_cmp);
            let mut at = 0usize;
            for &(rep, c) in &bins {
                let members = &sorted[at..at + c as usize];
                at += c as usize;
                for &v in members {
                    if v < MIN_INDEXABLE {
                        prop_assert!(rep < MIN_INDEXABLE && rep == s.min().unwrap());
                    } else {
                        prop_assert!(
                            (rep - v).abs() <= RELATIVE_ACCURACY * v,
                            "value {} in a bucket represented by {}", v, rep
                        );
                    }
                }
            }
            if let (Some(first), Some(last)) = (bins.first(), bins.last()) {
                if first.1 == 1 {
                    prop_assert_eq!(Some(first.0), s.min());
                }
                if last.1 == 1 {
                    prop_assert_eq!(Some(last.0), s.max());
                }
            }
        }

        #[test]
        fn merging_is_order_independent(a in value_sets(), b in value_sets()) {
            let (sa, sb) = (sketch_of(&a), sketch_of(&b));
            let mut ab = sa.clone();
            ab.merge(&sb);
            let mut ba = sb.clone();
            ba.merge(&sa);
            prop_assert_eq!(&ab, &ba);
            prop_assert_eq!(encoded(&ab), encoded(&ba));
            for q in QS {
                prop_assert_eq!(ab.quantile(q), ba.quantile(q));
            }
            let mut all = a.clone();
            all.extend_from_slice(&b);
            check_accuracy(&ab, &all)?;
        }

        #[test]
        fn encoding_round_trips_exactly(a in value_sets(), b in value_sets()) {
            let (sa, sb) = (sketch_of(&a), sketch_of(&b));
            let mut bytes = encoded(&sa);
            let len_a = bytes.len();
            sb.encode(&mut bytes);
            let (da, used) = Sketch::decode(&bytes).unwrap();
            prop_assert_eq!(used, len_a);
            let (db, used_b) = Sketch::decode(&bytes[used..]).unwrap();
            prop_assert_eq!(used_b, bytes.len() - len_a);
            prop_assert_eq!(&da, &sa);
            prop_assert_eq!(&db, &sb);
            prop_assert_eq!(encoded(&da), encoded(&sa));
            // Every proper prefix is an error.
            for cut in 0..len_a {
                prop_assert!(Sketch::decode(&bytes[..cut]).is_err(), "cut {}", cut);
            }
        }

        #[test]
        fn garbage_never_panics(bytes in vec(any::<u8>(), 0..200)) {
            let _ = Sketch::decode(&bytes);
            let _ = SketchSet::from_bytes(&bytes);
            let _ = merge_encoded(&bytes, &[]);
            let _ = merge_encoded(&[], &bytes);
            // With valid headers, so that the parser gets further.
            let mut s = vec![SKETCH_VERSION, KIND_FULL];
            s.extend_from_slice(&bytes);
            if let Ok((d, used)) = Sketch::decode(&s) {
                let _ = (d.quantile(0.5), d.count_le(1.0));
                // Whatever decodes is canonical: it encodes back to the same bytes.
                prop_assert_eq!(encoded(&d), &s[..used]);
            }
        }

        #[test]
        fn corrupted_encodings_never_panic(
            values in value_sets(),
            flips in vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
        ) {
            let mut set = SketchSet::new();
            for &v in &values {
                set.insert("duration", v);
                set.insert("ttft", v / 3.0);
            }
            let mut bytes = set.to_bytes();
            for (at, x) in flips {
                let i = at.index(bytes.len());
                bytes[i] ^= x;
            }
            if let Ok(d) = SketchSet::from_bytes(&bytes) {
                for (_, s) in d.iter() {
                    let _ = (s.quantile(0.99), s.count_le(100.0));
                }
                prop_assert_eq!(d.to_bytes(), bytes.clone());
            }
            let _ = merge_encoded(&bytes, &bytes);
        }
    }

    #[test]
    fn bins_of_a_known_set() {
        assert!(Sketch::new().bins().is_empty());
        let s = sketch_of(&[0.0, 0.0, 10.0, 10.0, 10.05, 500.0]);
        let bins = s.bins();
        assert_eq!(bins.len(), 3, "{bins:?}");
        assert_eq!(bins[0], (0.0, 2));
        assert!(
            (bins[1].0 - 10.0).abs() <= 0.1 && bins[1].1 == 3,
            "{bins:?}"
        );
        assert_eq!(bins[2], (500.0, 1)); // the max, exactly
        let one = sketch_of(&[42.0]);
        assert_eq!(one.bins(), vec![(42.0, 1)]);
    }

    #[test]
    fn one_named_sketch_merges_from_an_encoded_set() {
        let mut set = SketchSet::new();
        for v in [1.0, 2.0, 3.0] {
            set.insert("a", v);
            set.insert("b", v * 100.0);
        }
        let bytes = set.to_bytes();
        let (mut into, mut scratch) = (Sketch::new(), Sketch::new());
        merge_named_encoded(&mut into, &bytes, "b", &mut scratch).unwrap();
        merge_named_encoded(&mut into, &bytes, "b", &mut scratch).unwrap();
        merge_named_encoded(&mut into, &bytes, "missing", &mut scratch).unwrap();
        merge_named_encoded(&mut into, &[], "b", &mut scratch).unwrap();
        assert_eq!(
            (into.count(), into.min(), into.max()),
            (6, Some(100.0), Some(300.0))
        );
        assert!(
            merge_named_encoded(&mut into, &bytes[..bytes.len() - 1], "b", &mut scratch).is_err()
        );
    }

    #[test]
    fn empty_sketch() {
        let s = Sketch::new();
        assert!(s.is_empty());
        for q in QS {
            assert_eq!(s.quantile(q), None);
        }
        assert_eq!(
            (s.min(), s.max(), s.mean(), s.count()),
            (None, None, None, 0)
        );
        assert_eq!(s.count_le(f64::INFINITY), 0);
        let bytes = encoded(&s);
        assert_eq!(bytes, [SKETCH_VERSION, KIND_EMPTY]);
        assert_eq!(Sketch::decode(&bytes), Ok((Sketch::new(), 2)));
        let mut m = Sketch::new();
        m.merge(&s);
        assert_eq!(m, s);
        assert_eq!(Sketch::decode(&[]), Err(SketchError::Truncated));
    }

    #[test]
    fn small_known_set() {
        let s = sketch_of(&(1..=100).map(f64::from).collect::<Vec<_>>());
        assert_eq!((s.count(), s.sum(), s.mean()), (100, 5050.0, Some(50.5)));
        assert_eq!((s.min(), s.max()), (Some(1.0), Some(100.0)));
        assert_eq!((s.quantile(0.0), s.quantile(1.0)), (Some(1.0), Some(100.0)));
        let near = |q: f64, exact: f64| {
            let v = s.quantile(q).unwrap();
            assert!((v - exact).abs() <= 0.01 * exact, "q {q}: {v} vs {exact}");
        };
        near(0.5, 50.0); // index floor(0.5 * 99) = 49
        near(0.9, 90.0); // index 89
        near(0.99, 99.0); // index 98
        for q in [-0.1, 1.1, f64::NAN, f64::INFINITY] {
            assert_eq!(s.quantile(q), None);
        }
    }

    #[test]
    fn invalid_inputs_are_ignored() {
        let mut s = Sketch::new();
        for v in [-1.0, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1e-300] {
            s.insert(v);
        }
        assert!(s.is_empty());
        s.insert(-0.0);
        assert_eq!(s.min().map(f64::is_sign_positive), Some(true));
        assert_eq!(round_trip(&s), s);
        let mut set = SketchSet::new();
        set.insert("duration", f64::NAN);
        assert!(set.is_empty());
    }

    #[test]
    fn count_le_on_a_known_set() {
        // Bounds sit well inside the gaps between values, so 1% bins do not blur them.
        let s = sketch_of(&[0.0, 1.0, 2.0, 2.0, 10.0, 100.0, 1000.0]);
        let expected = [
            (-1.0, 0),
            (0.0, 1),
            (0.5, 1),
            (1.5, 2),
            (5.0, 4),
            (50.0, 5),
            (500.0, 6),
            (999.0, 6),
            (1000.0, 7),
            (f64::INFINITY, 7),
            (f64::NAN, 0),
        ];
        for (bound, n) in expected {
            assert_eq!(s.count_le(bound), n, "bound {bound}");
        }
        let t = sketch_of(&[3.0, 4.0]);
        assert_eq!(
            (t.count_le(2.9), t.count_le(3.5), t.count_le(4.0)),
            (0, 1, 2)
        );
    }

    #[test]
    fn mapping_stays_within_accuracy() {
        let mut v = MIN_INDEXABLE;
        while v < 1e300 {
            for x in [v, v * (1.0 + 1e-15), v * (1.0 - 1e-15)] {
                if x >= MIN_INDEXABLE {
                    let est = value_of(index_of(x));
                    assert!((est - x).abs() <= RELATIVE_ACCURACY * x, "{x}: {est}");
                }
            }
            v *= 1.000_7;
        }
        // Bin boundaries themselves.
        for i in MIN_INDEX..MAX_INDEX - 1 {
            let edge = (f64::from(i) * LN_GAMMA).exp();
            for x in [edge, edge.next_up(), edge.next_down()] {
                let est = value_of(index_of(x));
                assert!((est - x).abs() <= RELATIVE_ACCURACY * x, "{x}: {est}");
            }
        }
        assert_eq!(
            (index_of(MIN_INDEXABLE), index_of(f64::MAX)),
            (MIN_INDEX, MAX_INDEX)
        );
    }

    #[test]
    fn mapping_constants() {
        let a = MAPPING_ACCURACY;
        let close = |x: f64, y: f64| (x - y).abs() <= 1e-14 * y.abs();
        assert!(close(LN_GAMMA, ((1.0 + a) / (1.0 - a)).ln()));
        assert!(close(LN_GAMMA, 2.0 * a.atanh()));
        assert!(close(INV_LN_GAMMA, 1.0 / LN_GAMMA));
        assert!(close(LN_ONE_MINUS_A, (-a).ln_1p()));
        // The representative value sits a below the top of its bin and a above its bottom.
        let (top, bottom) = (LN_GAMMA.exp(), 1.0);
        assert!(close(value_of(1), top * (1.0 - a)));
        assert!(close(value_of(1), bottom * (1.0 + a)));
    }

    #[test]
    fn extreme_values() {
        let s = sketch_of(&[MIN_INDEXABLE, 1.0, f64::MAX, f64::MAX]);
        assert_eq!(s.quantile(1.0), Some(f64::MAX));
        let p70 = s.quantile(0.7).unwrap(); // index 2: f64::MAX
        assert!((f64::MAX * 0.99..=f64::MAX).contains(&p70));
        // Index 1: 1.0 is the top edge of bin 0, whose estimate is 1% (less 1e-9) below it.
        let p40 = s.quantile(0.4).unwrap();
        assert!((p40 - 1.0).abs() <= RELATIVE_ACCURACY && p40 < 1.0, "{p40}");
        assert_eq!(round_trip(&s), s);
        assert!(encoded(&s).len() < 50);
    }

    #[test]
    fn saturated_counts_round_trip() {
        let mut s = sketch_of(&[5.0, 0.0]);
        for _ in 0..70 {
            let c = s.clone();
            s.merge(&c);
        }
        assert_eq!(s.count(), u64::MAX);
        assert_eq!(round_trip(&s), s);
        assert!(s.quantile(0.75).is_some());
    }

    #[test]
    fn encoded_sizes() {
        let mut st = 42;
        let s = sketch_of(&lognormal(&mut st, 1000, 300.0, 1.0));
        let n = encoded(&s).len();
        assert!(n < 400, "1000 log-normal latencies took {n} bytes");
        assert_eq!(encoded(&sketch_of(&[123.4])).len(), 10);
        assert_eq!(encoded(&sketch_of(&[0.0, 0.0, 0.0])).len(), 2 + 24 + 2);
    }

    #[test]
    fn decoding_rejects_bad_data() {
        let good = encoded(&sketch_of(&[1.0, 2.0, 3.0]));
        let with = |i: usize, b: u8| {
            let mut x = good.clone();
            x[i] = b;
            Sketch::decode(&x).map(|_| ())
        };
        assert_eq!(with(0, 9), Err(SketchError::BadVersion(9)));
        assert_eq!(with(1, 7), Err(SketchError::BadKind(7)));
        let mut single = vec![SKETCH_VERSION, KIND_SINGLE];
        single.extend_from_slice(&(-1.0f64).to_le_bytes());
        assert_eq!(Sketch::decode(&single), Err(SketchError::InvalidValue));

        // A huge span is refused before anything is allocated for it.
        let mut huge = vec![SKETCH_VERSION, KIND_FULL];
        for v in [1.0f64, 2.0, 3.0] {
            huge.extend_from_slice(&v.to_le_bytes());
        }
        let mut tail = huge.clone();
        put_varint(&mut tail, 0);
        put_varint(&mut tail, 1 << 40);
        put_varint(&mut tail, zigzag(0));
        assert_eq!(Sketch::decode(&tail), Err(SketchError::IndexOutOfRange));

        // Non-minimal varint, zero-count token, run at the start.
        for tokens in [&[0x80u8, 0x00][..], &[0x02, 0x00], &[0x03, 0x02]] {
            let mut x = huge.clone();
            put_varint(&mut x, 0);
            put_varint(&mut x, 3);
            put_varint(&mut x, zigzag(0));
            x.extend_from_slice(tokens);
            x.extend_from_slice(&[0x02, 0x02]);
            assert!(Sketch::decode(&x).is_err(), "{tokens:?}");
        }
    }

    #[test]
    fn sketch_set_basics() {
        let mut set = SketchSet::new();
        assert!(set.is_empty());
        set.insert("ttft", 50.0);
        set.insert("duration", 100.0);
        set.insert("duration", 300.0);
        set.insert("stage:guardrail", 5.0);
        let names: Vec<_> = set.iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["duration", "stage:guardrail", "ttft"]);
        assert_eq!(set.get("duration").unwrap().count(), 2);
        assert_eq!(set.get("nope"), None);
        let bytes = set.to_bytes();
        assert_eq!(SketchSet::from_bytes(&bytes), Ok(set.clone()));
        for cut in 1..bytes.len() {
            assert!(SketchSet::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(
            SketchSet::from_bytes(&trailing),
            Err(SketchError::TrailingBytes(1))
        );

        let mut other = SketchSet::new();
        other.insert("duration", 200.0);
        other.insert("stage:model", 70.0);
        set.merge(&other);
        assert_eq!(set.get("duration").unwrap().count(), 3);
        assert_eq!(set.get("stage:model").unwrap().max(), Some(70.0));
    }

    #[test]
    fn sketch_set_decoding_limits() {
        let entry = |out: &mut Vec<u8>, name: &[u8]| {
            put_varint(out, name.len() as u64);
            out.extend_from_slice(name);
            out.extend_from_slice(&[SKETCH_VERSION, KIND_EMPTY]);
        };
        let set_of = |names: &[&[u8]]| {
            let mut out = vec![SET_VERSION];
            put_varint(&mut out, names.len() as u64);
            names.iter().for_each(|n| entry(&mut out, n));
            out
        };
        let long = vec![b'a'; MAX_NAME_LEN + 1];
        assert_eq!(
            SketchSet::from_bytes(&set_of(&[&long])),
            Err(SketchError::NameTooLong(1025))
        );
        assert!(SketchSet::from_bytes(&set_of(&[&long[1..]])).is_ok());
        assert_eq!(
            SketchSet::from_bytes(&set_of(&[b"b", b"a"])),
            Err(SketchError::UnsortedNames)
        );
        assert_eq!(
            SketchSet::from_bytes(&set_of(&[b"a", b"a"])),
            Err(SketchError::UnsortedNames)
        );
        assert_eq!(
            SketchSet::from_bytes(&set_of(&[b"\xff"])),
            Err(SketchError::InvalidName)
        );
        let mut many = vec![SET_VERSION];
        put_varint(&mut many, 1025);
        assert_eq!(
            SketchSet::from_bytes(&many),
            Err(SketchError::TooManyEntries(1025))
        );
        assert_eq!(SketchSet::from_bytes(&[]), Ok(SketchSet::new()));
        assert_eq!(
            SketchSet::from_bytes(&[2, 0]),
            Err(SketchError::BadVersion(2))
        );
    }

    #[test]
    fn sketch_set_holding_limits() {
        let mut set = SketchSet::new();
        set.insert(&"x".repeat(MAX_NAME_LEN + 1), 1.0);
        assert!(set.is_empty());
        let names: Vec<String> = (0..MAX_SET_ENTRIES + 10)
            .map(|i| format!("n{i:05}"))
            .collect();
        for n in names.iter().rev() {
            set.insert(n, 1.0);
        }
        assert_eq!(set.iter().count(), MAX_SET_ENTRIES);
        assert_eq!(
            set.iter().last().map(|(n, _)| n),
            Some(names[MAX_SET_ENTRIES - 1].as_str())
        );
        let bytes = set.to_bytes();
        assert_eq!(SketchSet::from_bytes(&bytes).unwrap(), set);

        // Two sets whose union is over the limit merge the same either way.
        let (mut a, mut b) = (SketchSet::new(), SketchSet::new());
        for (i, n) in names.iter().enumerate() {
            if i % 3 == 0 { &mut a } else { &mut b }.insert(n, i as f64);
        }
        let mut ab = a.clone();
        ab.merge(&b);
        let mut ba = b.clone();
        ba.merge(&a);
        assert_eq!(ab, ba);
        assert_eq!(
            merge_encoded(&a.to_bytes(), &b.to_bytes()),
            Ok(ab.to_bytes())
        );
    }

    #[test]
    fn merge_encoded_with_empty_inputs() {
        let empty = SketchSet::new().to_bytes();
        assert_eq!(empty, [SET_VERSION, 0]);
        assert_eq!(merge_encoded(&[], &[]), Ok(empty.clone()));
        assert_eq!(merge_encoded(&empty, &[]), Ok(empty.clone()));
        let mut set = SketchSet::new();
        set.insert("duration", 12.5);
        set.insert("duration", 40.0);
        let bytes = set.to_bytes();
        assert_eq!(merge_encoded(&bytes, &[]), Ok(bytes.clone()));
        assert_eq!(merge_encoded(&[], &bytes), Ok(bytes.clone()));
        assert_eq!(merge_encoded(&empty, &bytes), Ok(bytes.clone()));
        let twice = SketchSet::from_bytes(&merge_encoded(&bytes, &bytes).unwrap()).unwrap();
        let d = twice.get("duration").unwrap();
        assert_eq!(
            (d.count(), d.min(), d.max(), d.sum()),
            (4, Some(12.5), Some(40.0), 105.0)
        );
        assert_eq!(merge_encoded(&bytes, &[7]), Err(SketchError::BadVersion(7)));
    }

    /// `cargo test --release -- --ignored --nocapture timing`
    #[test]
    #[ignore]
    fn timing() {
        use std::hint::black_box;
        use std::time::{Duration, Instant};
        const N: usize = 10_000;
        let per = |d: Duration, n: usize| d.as_nanos() / n as u128;
        let mut st = 7;
        let sketches: Vec<Sketch> = (0..N)
            .map(|_| sketch_of(&lognormal(&mut st, 200, 300.0, 1.0)))
            .collect();
        let blobs: Vec<Vec<u8>> = sketches.iter().map(encoded).collect();
        let bytes: usize = blobs.iter().map(Vec::len).sum();
        for round in ["warm-up", "measured"] {
            let mut out = Vec::new();
            let t = Instant::now();
            for s in &sketches {
                out.clear();
                black_box(s).encode(&mut out);
                black_box(&out);
            }
            let enc = t.elapsed();
            let t = Instant::now();
            for b in &blobs {
                black_box(Sketch::decode(black_box(b)).unwrap());
            }
            let dec = t.elapsed();
            let t = Instant::now();
            let mut total = Sketch::new();
            for s in &sketches {
                total.merge(black_box(s));
            }
            let mrg = t.elapsed();
            let t = Instant::now();
            let mut total2 = Sketch::new();
            for b in &blobs {
                total2.merge(&Sketch::decode(black_box(b)).unwrap().0);
            }
            let all = t.elapsed();
            assert_eq!(total, total2);
            println!(
                "{round}: {N} sketches of 200 values ({} bytes on average), per sketch: encode {} \
                 ns, decode {} ns, merge {} ns, decode + merge {} ns; merged: {} bins, p99 {:?}",
                bytes / N,
                per(enc, N),
                per(dec, N),
                per(mrg, N),
                per(all, N),
                total.trimmed().1.len(),
                total.quantile(0.99)
            );
        }

        let sets: Vec<Vec<u8>> = sketches
            .iter()
            .map(|s| {
                let mut set = SketchSet::new();
                for name in ["duration", "ttft", "stage:model_inference"] {
                    set.merge_one(name, s);
                }
                set.to_bytes()
            })
            .collect();
        let t = Instant::now();
        let mut acc = SketchSet::new();
        for b in &sets {
            acc.merge(&SketchSet::from_bytes(b).unwrap());
        }
        println!(
            "SketchSet of 3: from_bytes + merge {} ns per row",
            per(t.elapsed(), N)
        );
        let t = Instant::now();
        let mut blob = Vec::new();
        for b in &sets {
            blob = merge_encoded(&blob, b).unwrap();
        }
        let d = t.elapsed();
        println!(
            "SketchSet of 3: merge_encoded into a growing blob {} ns per call ({} bytes at the end)",
            per(d, N),
            blob.len()
        );

        for sigma in [0.25, 0.5, 1.0, 1.5, 2.0] {
            let s = sketch_of(&lognormal(&mut st, 1000, 300.0, sigma));
            println!(
                "1000 log-normal latencies, sigma {sigma}: {} bytes",
                encoded(&s).len()
            );
        }
        let values = lognormal(&mut st, 1_000_000, 300.0, 1.0);
        let t = Instant::now();
        let mut s = Sketch::new();
        for &v in &values {
            s.insert(black_box(v));
        }
        println!("insert: {} ns per value", per(t.elapsed(), values.len()));
    }
}
