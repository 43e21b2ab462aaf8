//! Finding a row's group without building a key per row: the merge sees one partial row per
//! group and leg (hundreds of thousands for a GROUP BY on a user column), and a `Vec` of
//! owned keys per row (text cloned, numerics printed) was most of its time. Rows are hashed by
//! their key values in place, with SQL equality (1.0 = 1.00, -0.0 = 0.0, NaN = NaN, NULL with
//! NULL, as [`Value::group_key`]); rows whose hashes match are compared value by value.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};

use crate::model::value::{GroupKey, Value};

/// No further group in a hash chain.
const END: usize = usize::MAX;

/// The groups seen so far, by the hash of their keys.
#[derive(Default)]
pub struct GroupIndex {
    hasher: std::collections::hash_map::RandomState,
    /// First group (its index) with each hash.
    first: HashMap<u64, usize>,
    /// For each group, the next group with the same hash (or END).
    next: Vec<usize>,
}

impl GroupIndex {
    /// The group of `key` among `groups` (whose first `key.len()` values are their keys), or
    /// None after registering `groups.len()` as the group the caller is about to push.
    pub fn find_or_add(&mut self, key: &[Value], groups: &[Vec<Value>]) -> Option<usize> {
        let h = self.hash(key);
        let mut g = self.first.get(&h).copied().unwrap_or(END);
        let mut last = END;
        while g != END {
            if same_key(key, &groups[g][..key.len()]) {
                return Some(g);
            }
            last = g;
            g = self.next[g];
        }
        let new = groups.len();
        self.next.push(END);
        match last {
            END => {
                self.first.insert(h, new);
            }
            l => self.next[l] = new,
        }
        None
    }

    fn hash(&self, key: &[Value]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for v in key {
            hash_value(v, &mut h);
        }
        h.finish()
    }
}

/// Feeds `v` to `h` so that values equal as group keys hash alike.
fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, *b as i64).hash(h),
        Value::Int(i) => (1u8, *i).hash(h),
        Value::Date(d) => (1u8, *d as i64).hash(h),
        Value::Timestamp(t) | Value::TimestampTz(t) | Value::Time(t) => (1u8, *t).hash(h),
        Value::Text(s) | Value::Other(s) => (3u8, s.as_str()).hash(h),
        Value::Bytes(b) => (4u8, b.as_slice()).hash(h),
        // floats and numerics through their key (a numeric's normal form is printed)
        Value::Float(_) | Value::Numeric(_) => v.group_key().hash(h),
    }
}

/// Whether two keys are the same group.
fn same_key(a: &[Value], b: &[Value]) -> bool {
    a.iter().zip(b).all(|(x, y)| same_value(x, y))
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Int(x), Value::Int(y)) => x == y,
        (Value::Text(x), Value::Text(y)) => x == y,
        (Value::Null, Value::Null) => true,
        _ => a.group_key() == b.group_key(),
    }
}

/// The owned key of some values (DISTINCT still builds them: its rows are the answer's few).
pub fn owned_key(values: &[Value]) -> Vec<GroupKey> {
    values.iter().map(Value::group_key).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::decimal::Decimal;

    #[test]
    fn equal_keys_find_their_group_and_others_do_not() {
        let n = |s: &str| Value::Numeric(Decimal::parse(s).expect("decimal"));
        let rows = [
            vec![Value::Int(1), Value::Text("a".into())],
            vec![Value::Int(1), Value::Text("b".into())],
            vec![n("1.0"), Value::Null],
            vec![Value::Float(-0.0), Value::Float(f64::NAN)],
        ];
        let mut index = GroupIndex::default();
        let mut groups: Vec<Vec<Value>> = Vec::new();
        for r in &rows {
            assert_eq!(index.find_or_add(r, &groups), None, "{r:?} is new");
            groups.push(r.clone());
        }
        let same = [
            (vec![Value::Int(1), Value::Text("b".into())], 1),
            (vec![n("1.00"), Value::Null], 2),
            (vec![Value::Float(0.0), Value::Float(f64::NAN)], 3),
        ];
        for (key, g) in same {
            assert_eq!(index.find_or_add(&key, &groups), Some(g), "{key:?}");
        }
    }
}
