//! An order-independent summary of a key set: its count, how many keys are not NULL, and
//! the exact sum of a keyed 64-bit hash of every key (`hashint8extended` of an integer
//! key, `hashtextextended` of a key's text), computed inside each database. The seed is a
//! secret of the job's state, so nobody can build a different key set that sums the same.
//!
//! For an integer key, elt computes the same summary over the keys it loaded into an empty
//! target (PostgreSQL's `hashint8extended`, ported below), so A need not be read then.

use postgres::Transaction;

use crate::error::{Db, Error, Result, pg};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeySummary {
    pub rows: i64,
    pub non_null: i64,
    pub sum: i128,
    /// a key loaded was not an integer: this summary cannot be compared
    pub invalid: bool,
}

/// The SQL of a key's keyed hash and of what is NULL exactly when the hash is (the key
/// column itself, or `*` for a composite key, whose row text is never NULL).
pub struct HashSql<'a> {
    pub hash: &'a str,
    pub present: &'a str,
}

impl KeySummary {
    /// The summary of the keys over `from` (`$1` the seed). The hash appears once in the
    /// statement: PostgreSQL evaluates an expression once per aggregate that names it.
    pub fn query(
        tx: &mut Transaction<'_>,
        db: Db,
        key: HashSql<'_>,
        from: &str,
        seed: i64,
    ) -> Result<KeySummary> {
        let HashSql { hash, present } = key;
        let sql = format!(
            "SELECT count(*), count({present}), coalesce(sum({hash}), 0)::text FROM {from}"
        );
        let what = || pg(db, "summarising the keys");
        let row = tx.query_one(&sql, &[&seed]).map_err(what())?;
        let sum: String = row.try_get(2).map_err(what())?;
        Ok(KeySummary {
            rows: row.try_get(0).map_err(what())?,
            non_null: row.try_get(1).map_err(what())?,
            sum: sum
                .parse()
                .map_err(|_| Error::Job(format!("{db} summed key hashes to {sum:?}")))?,
            invalid: false,
        })
    }

    /// Adds one key given as its text field in COPY binary form (an integer's text, or
    /// length -1 for NULL).
    pub fn add_field(&mut self, field: &[u8], seed: i64) {
        self.rows += 1;
        let Some(len) = field.get(..4) else {
            self.invalid = true;
            return;
        };
        if i32::from_be_bytes([len[0], len[1], len[2], len[3]]) < 0 {
            return;
        }
        match std::str::from_utf8(&field[4..])
            .ok()
            .and_then(|t| t.parse::<i64>().ok())
        {
            Some(v) => {
                self.rows -= 1;
                self.add_int(Some(v), seed);
            }
            None => self.invalid = true,
        }
    }

    /// Adds one integer key (`None`: NULL).
    pub fn add_int(&mut self, v: Option<i64>, seed: i64) {
        self.rows += 1;
        if let Some(v) = v {
            let h = hashint8extended(v, seed);
            self.non_null += 1;
            self.sum += h as i128;
        }
    }

    pub fn merge(&mut self, other: &KeySummary) {
        self.rows += other.rows;
        self.non_null += other.non_null;
        self.sum += other.sum;
        self.invalid |= other.invalid;
    }

    pub fn is_valid(&self) -> bool {
        !self.invalid
    }
}

/// PostgreSQL's `hashint8extended(v, seed)` (src/backend/access/hash/hashfunc.c): equal
/// to what the database computes, so a summary of keys elt saw matches one M computes.
pub fn hashint8extended(v: i64, seed: i64) -> i64 {
    let lo = v as u32;
    let hi = (v >> 32) as u32;
    let k = lo ^ if v >= 0 { hi } else { !hi };
    hash_uint32_extended(k, seed as u64) as i64
}

/// `hash_bytes_uint32_extended` of src/common/hashfn.c (Bob Jenkins' lookup3 final mix).
fn hash_uint32_extended(k: u32, seed: u64) -> u64 {
    let init = 0x9e37_79b9_u32.wrapping_add(4).wrapping_add(3_923_095);
    let (mut a, mut b, mut c) = (init, init, init);
    if seed != 0 {
        a = a.wrapping_add((seed >> 32) as u32);
        b = b.wrapping_add(seed as u32);
        mix(&mut a, &mut b, &mut c);
    }
    a = a.wrapping_add(k);
    finish(&mut a, &mut b, &mut c);
    ((b as u64) << 32) | c as u64
}

fn mix(a: &mut u32, b: &mut u32, c: &mut u32) {
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(4);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(6);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(8);
    *b = b.wrapping_add(*a);
    *a = a.wrapping_sub(*c);
    *a ^= c.rotate_left(16);
    *c = c.wrapping_add(*b);
    *b = b.wrapping_sub(*a);
    *b ^= a.rotate_left(19);
    *a = a.wrapping_add(*c);
    *c = c.wrapping_sub(*b);
    *c ^= b.rotate_left(4);
    *b = b.wrapping_add(*a);
}

fn finish(a: &mut u32, b: &mut u32, c: &mut u32) {
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(14));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(11));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(25));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(16));
    *a ^= *c;
    *a = a.wrapping_sub(c.rotate_left(4));
    *b ^= *a;
    *b = b.wrapping_sub(a.rotate_left(14));
    *c ^= *b;
    *c = c.wrapping_sub(b.rotate_left(24));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(t: Option<&str>) -> Vec<u8> {
        let mut f = Vec::new();
        crate::pipeline::digest::push_field(&mut f, t.map(str::as_bytes));
        f
    }

    #[test]
    fn summaries_do_not_depend_on_order_and_tell_sets_apart() {
        let sum = |keys: &[Option<&str>]| {
            let mut s = KeySummary::default();
            for k in keys {
                s.add_field(&field(*k), 42);
            }
            s
        };
        let a = sum(&[Some("1"), Some("4"), None]);
        assert_eq!(a, sum(&[None, Some("4"), Some("1")]));
        assert_ne!(a, sum(&[Some("2"), Some("3"), None]));
        assert_ne!(a, sum(&[Some("1"), Some("4")]));
        assert!(!sum(&[Some("x")]).is_valid());
        assert!(sum(&[Some("-9223372036854775808")]).is_valid());
    }

    #[test]
    fn the_hash_is_postgresqls() {
        // SELECT hashint8extended(v, s) on PostgreSQL 15
        for (v, s, h) in [
            (0i64, 0i64, 4154612158245552303i64),
            (1, 0, -3670598878359251130),
            (1, 42, 2207685931686633351),
            (-1, 42, -2218543911767281624),
            (i64::MAX, -5, 5695659297123186832),
            (i64::MIN, 123456789012, -5077760569410042607),
            (123456789, 987654321, -4651044976886598794),
        ] {
            assert_eq!(hashint8extended(v, s), h, "{v} {s}");
        }
    }
}
