//! Copy kernels: move one document's values into the output, narrowing to the output type and
//! checking the range in the same pass (each value is read once; the loops vectorise).

use super::input::{IntValues, IGNORE_INDEX};

/// A value narrowed to an output type, and whether it was out of range.
trait Narrow: Copy {
    /// Token id as int32; bad if negative or above `i32::MAX`.
    fn id(self) -> (i32, bool);
    /// Loss-mask flag as int8; bad unless 0 or 1.
    fn flag(self) -> (i8, bool);
    /// Label as int32; bad unless `-100` or in `0..=i32::MAX`.
    fn label(self) -> (i32, bool);
    /// The value, widened for error messages.
    fn wide(self) -> i128;
}

macro_rules! narrow_signed {
    ($($t:ty),*) => {$(
        impl Narrow for $t {
            #[inline(always)]
            fn id(self) -> (i32, bool) {
                (self as i32, (self as i64 as u64) > i32::MAX as u64)
            }
            #[inline(always)]
            fn flag(self) -> (i8, bool) {
                (self as i8, (self as i64 as u64) > 1)
            }
            #[inline(always)]
            fn label(self) -> (i32, bool) {
                let w = self as i64;
                (self as i32, (w != IGNORE_INDEX as i64) & ((w as u64) > i32::MAX as u64))
            }
            fn wide(self) -> i128 {
                self as i128
            }
        }
    )*};
}

macro_rules! narrow_unsigned {
    ($($t:ty),*) => {$(
        impl Narrow for $t {
            #[inline(always)]
            fn id(self) -> (i32, bool) {
                (self as i32, (self as u64) > i32::MAX as u64)
            }
            #[inline(always)]
            fn flag(self) -> (i8, bool) {
                (self as i8, (self as u64) > 1)
            }
            #[inline(always)]
            fn label(self) -> (i32, bool) {
                self.id()
            }
            fn wide(self) -> i128 {
                self as i128
            }
        }
    )*};
}

narrow_signed!(i8, i16, i32, i64);
narrow_unsigned!(u8, u16, u32, u64);

/// An out-of-range value: its position inside the copied range and the value.
pub(crate) type Bad = Option<(usize, i128)>;

#[inline(always)]
fn copy_checked<T: Narrow, U>(src: &[T], dst: &mut [U], f: impl Fn(T) -> (U, bool)) -> Bad {
    let mut bad = false;
    for (d, &s) in dst.iter_mut().zip(src) {
        let (v, b) = f(s);
        *d = v;
        bad |= b;
    }
    if bad {
        src.iter().position(|&s| f(s).1).map(|p| (p, src[p].wide()))
    } else {
        None
    }
}

/// The OR of all values (8 lanes, so the loop vectorises): an int32 id is bad exactly when it
/// is negative, i.e. when the OR has its sign bit set.
#[inline(always)]
fn or_all(src: &[i32]) -> i32 {
    let mut acc = [0i32; 8];
    let mut s = src.chunks_exact(8);
    for s in s.by_ref() {
        for k in 0..8 {
            acc[k] |= s[k];
        }
    }
    let tail = s.remainder().iter().fold(0, |a, &b| a | b);
    acc.iter().fold(tail, |a, &b| a | b)
}

#[inline(always)]
fn find_bad<T: Narrow, U>(src: &[T], f: impl Fn(T) -> (U, bool)) -> Bad {
    src.iter().position(|&s| f(s).1).map(|p| (p, src[p].wide()))
}

macro_rules! dispatch {
    ($values:expr, $start:expr, $len:expr, |$s:ident| $body:expr, bool => $b:expr) => {
        match $values {
            IntValues::I8(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::I16(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::I32(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::I64(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::U8(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::U16(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::U32(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::U64(v) => {
                let $s = &v[$start..$start + $len];
                $body
            }
            IntValues::Bool(bits) => {
                let _ = bits;
                $b
            }
        }
    };
}

/// Copies token ids `values[start..start + dst.len()]` into `dst` as int32.
pub(crate) fn copy_ids(values: &IntValues, start: usize, dst: &mut [i32]) -> Bad {
    let len = dst.len();
    if let IntValues::I32(v) = values {
        let src = &v[start..start + len];
        // One memcpy (the library's widest stores), then a check of the values just read.
        dst.copy_from_slice(src);
        if or_all(src) < 0 {
            return find_bad(src, Narrow::id);
        }
        return None;
    }
    dispatch!(values, start, len, |s| copy_checked(s, dst, Narrow::id), bool => None)
}

/// Copies a loss mask into `dst` as int8 (0/1).
pub(crate) fn copy_flags(values: &IntValues, start: usize, dst: &mut [i8]) -> Bad {
    let len = dst.len();
    dispatch!(values, start, len, |s| copy_checked(s, dst, Narrow::flag), bool => {
        if let IntValues::Bool(bits) = values {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = bits.value(start + i) as i8;
            }
        }
        None
    })
}

/// Copies labels into `dst` as int32 (-100 = ignored).
pub(crate) fn copy_labels(values: &IntValues, start: usize, dst: &mut [i32]) -> Bad {
    let len = dst.len();
    dispatch!(values, start, len, |s| copy_checked(s, dst, Narrow::label), bool => None)
}

/// Checks ids without copying (for tokens the overflow policy discards).
pub(crate) fn check_ids(values: &IntValues, start: usize, len: usize) -> Bad {
    dispatch!(values, start, len, |s| find_bad(s, Narrow::id), bool => None)
}

/// Checks mask values without copying.
pub(crate) fn check_flags(values: &IntValues, start: usize, len: usize) -> Bad {
    dispatch!(values, start, len, |s| find_bad(s, Narrow::flag), bool => None)
}

/// Checks labels without copying.
pub(crate) fn check_labels(values: &IntValues, start: usize, len: usize) -> Bad {
    dispatch!(values, start, len, |s| find_bad(s, Narrow::label), bool => None)
}

/// Loss mask derived from labels: 1 where the label is not `-100`.
pub(crate) fn flags_from_labels(labels: &[i32], dst: &mut [i8]) {
    for (d, &l) in dst.iter_mut().zip(labels) {
        *d = (l != IGNORE_INDEX) as i8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_reject_negative_and_too_large() {
        let mut dst = [0i32; 3];
        assert_eq!(
            copy_ids(&IntValues::I32(&[1, -2, 3]), 0, &mut dst),
            Some((1, -2))
        );
        let big = [0i64, 5, i32::MAX as i64 + 1];
        assert_eq!(
            copy_ids(&IntValues::I64(&big), 0, &mut dst),
            Some((2, i32::MAX as i128 + 1))
        );
        assert_eq!(copy_ids(&IntValues::U32(&[7, 8, 9, 10]), 1, &mut dst), None);
        assert_eq!(dst, [8, 9, 10]);
    }

    #[test]
    fn flags_only_zero_or_one() {
        let mut dst = [0i8; 3];
        assert_eq!(copy_flags(&IntValues::I64(&[0, 1, 1]), 0, &mut dst), None);
        assert_eq!(
            copy_flags(&IntValues::U8(&[0, 2, 1]), 0, &mut dst),
            Some((1, 2))
        );
        assert_eq!(
            copy_flags(&IntValues::I8(&[0, -1, 1]), 0, &mut dst),
            Some((1, -1))
        );
    }

    #[test]
    fn labels_allow_ignore_index_only() {
        let mut dst = [0i32; 3];
        assert_eq!(
            copy_labels(&IntValues::I64(&[-100, 5, 0]), 0, &mut dst),
            None
        );
        assert_eq!(dst, [-100, 5, 0]);
        assert_eq!(
            copy_labels(&IntValues::I32(&[-100, -1, 0]), 0, &mut dst),
            Some((1, -1))
        );
        assert_eq!(
            check_labels(&IntValues::I16(&[3, -100, -7]), 0, 3),
            Some((2, -7))
        );
    }
}
