//! A hash map split into shards that successive versions share: cloning a version is 128
//! pointer copies, changing one key copies only its shard (1/128 of the map), and two versions
//! differ only in the shards that are not the same allocation. The store publishes a new version
//! per API change and the kubernetes index follows the difference, so one change costs time in
//! proportion to the change, not to the cluster.

use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

use foldhash::fast::FixedState;
use hashbrown::{Equivalent, HashMap};

const SHARDS: usize = 128;
/// One hasher for every shard of every version, so a key's shard never changes. Keys come from
/// the API server, not from clients.
const HASHER: FixedState = FixedState::with_seed(0x636c_7573_7465_7264);

type Shard<K, V> = Arc<HashMap<K, V, FixedState>>;

/// The sharded map.
#[derive(Debug)]
pub struct Shards<K, V> {
    shards: Box<[Shard<K, V>]>,
    len: usize,
}

impl<K, V> Clone for Shards<K, V> {
    fn clone(&self) -> Self {
        Self {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl<K, V> Default for Shards<K, V> {
    fn default() -> Self {
        let empty = Arc::new(HashMap::with_hasher(HASHER));
        Self {
            shards: (0..SHARDS).map(|_| empty.clone()).collect(),
            len: 0,
        }
    }
}

/// The shard of a hash: bits the shard's own table does not use for its buckets or tags.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

impl<K: Hash + Eq + Clone, V: Clone> Shards<K, V> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn shard<Q: Hash + ?Sized>(&self, q: &Q) -> usize {
        shard_of(HASHER.hash_one(q))
    }

    /// The value of `q`.
    pub fn get<Q: Hash + Equivalent<K> + ?Sized>(&self, q: &Q) -> Option<&V> {
        self.shards[self.shard(q)].get(q)
    }

    /// The key and value of `q`.
    pub fn get_key_value<Q: Hash + Equivalent<K> + ?Sized>(&self, q: &Q) -> Option<(&K, &V)> {
        self.shards[self.shard(q)].get_key_value(q)
    }

    /// Whether `q` is present.
    pub fn contains_key<Q: Hash + Equivalent<K> + ?Sized>(&self, q: &Q) -> bool {
        self.get(q).is_some()
    }

    /// Inserts, copying the key's shard first if another version shares it.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let i = self.shard(&k);
        let old = Arc::make_mut(&mut self.shards[i]).insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// Removes, copying the key's shard first if another version shares it (and only if the
    /// key is there).
    pub fn remove<Q: Hash + Equivalent<K> + ?Sized>(&mut self, q: &Q) -> Option<V> {
        let i = self.shard(q);
        if !self.shards[i].contains_key(q) {
            return None;
        }
        let old = Arc::make_mut(&mut self.shards[i]).remove(q);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    /// Makes room for `additional` more entries spread over the shards (each shard's share and a
    /// margin), so a bulk build does not grow its tables step by step: every step leaves the
    /// old table behind as free memory the allocator keeps.
    pub fn reserve(&mut self, additional: usize) {
        let per = additional / SHARDS;
        // Shares vary by about their square root.
        let per = per + 3 * per.isqrt() + 1;
        for shard in self.shards.iter_mut() {
            Arc::make_mut(shard).reserve(per);
        }
    }

    /// Replaces the value of `k` with `f(old)`; `None` removes it.
    pub fn update(&mut self, k: K, f: impl FnOnce(Option<V>) -> Option<V>) {
        let old = self.remove(&k);
        if let Some(v) = f(old) {
            self.insert(k, v);
        }
    }

    /// Every entry, in no order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|s| s.iter())
    }

    /// Every key, in no order.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(k, _)| k)
    }

    /// The keys whose values differ between `old` and `self` (by `same`), with the old and the
    /// new value. Shards both versions share are skipped without a look.
    pub fn diff<'a>(
        &'a self,
        old: &'a Self,
        same: fn(&V, &V) -> bool,
    ) -> impl Iterator<Item = (&'a K, Option<&'a V>, Option<&'a V>)> + 'a {
        self.shards
            .iter()
            .zip(old.shards.iter())
            .filter(|(n, o)| !Arc::ptr_eq(n, o))
            .flat_map(move |(n, o)| {
                let changed = n.iter().filter_map(move |(k, v)| match o.get(k) {
                    Some(ov) if same(ov, v) => None,
                    ov => Some((k, ov, Some(v))),
                });
                let gone = o
                    .iter()
                    .filter(move |(k, _)| !n.contains_key(*k))
                    .map(|(k, v)| (k, Some(v), None));
                changed.chain(gone)
            })
    }
}

impl<K: Hash + Eq + Clone, V: Clone> FromIterator<(K, V)> for Shards<K, V> {
    /// Each shard's table is made at its final size (counted first), not grown step by step.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let items: Vec<(usize, K, V)> = iter
            .into_iter()
            .map(|(k, v)| (shard_of(HASHER.hash_one(&k)), k, v))
            .collect();
        let mut counts = [0usize; SHARDS];
        for (i, _, _) in &items {
            counts[*i] += 1;
        }
        let mut maps: Vec<HashMap<K, V, FixedState>> = counts
            .iter()
            .map(|&n| HashMap::with_capacity_and_hasher(n, HASHER))
            .collect();
        for (i, k, v) in items {
            maps[i].insert(k, v);
        }
        let len = maps.iter().map(HashMap::len).sum();
        Self {
            shards: maps.into_iter().map(Arc::new).collect(),
            len,
        }
    }
}

/// Looks up a `(namespace, name)` key by borrowed strings, without building the key.
#[derive(Debug, Clone, Copy)]
pub struct NsName<'a>(pub &'a str, pub &'a str);

impl Hash for NsName<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        // Exactly as `(Arc<str>, Arc<str>)` hashes.
        self.0.hash(h);
        self.1.hash(h);
    }
}

impl Equivalent<(Arc<str>, Arc<str>)> for NsName<'_> {
    fn equivalent(&self, k: &(Arc<str>, Arc<str>)) -> bool {
        *k.0 == *self.0 && *k.1 == *self.1
    }
}

/// One value or a few, without a heap allocation for the common one.
#[derive(Debug, Clone)]
pub enum Few<T> {
    /// Exactly one.
    One(T),
    /// Two or more.
    Many(Box<[T]>),
}

impl<T: Clone> Few<T> {
    /// All of them.
    pub fn as_slice(&self) -> &[T] {
        match self {
            Self::One(t) => std::slice::from_ref(t),
            Self::Many(v) => v,
        }
    }

    fn from_vec(mut v: Vec<T>) -> Option<Self> {
        match v.len() {
            0 => None,
            1 => v.pop().map(Self::One),
            _ => Some(Self::Many(v.into_boxed_slice())),
        }
    }

    /// `few` with `t` added before the first element `t` sorts before (`before(t, x)`).
    pub fn insert(few: Option<Self>, t: T, before: impl Fn(&T, &T) -> bool) -> Option<Self> {
        let mut v: Vec<T> = few.map(|f| f.as_slice().to_vec()).unwrap_or_default();
        let at = v.iter().position(|x| before(&t, x)).unwrap_or(v.len());
        v.insert(at, t);
        Self::from_vec(v)
    }

    /// `few` without the elements `drop` selects; `None` when nothing is left.
    pub fn remove(few: Option<Self>, drop: impl Fn(&T) -> bool) -> Option<Self> {
        let few = few?;
        if !few.as_slice().iter().any(&drop) {
            return Some(few);
        }
        Self::from_vec(
            few.as_slice()
                .iter()
                .filter(|t| !drop(t))
                .cloned()
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_share_shards_and_diff_finds_only_changes() {
        let a: Shards<u32, u32> = (0..10_000).map(|i| (i, i)).collect();
        let mut b = a.clone();
        b.insert(5, 50);
        b.remove(&7);
        b.insert(20_000, 1);
        assert_eq!((a.len(), b.len()), (10_000, 10_000));
        let shared = a
            .shards
            .iter()
            .zip(b.shards.iter())
            .filter(|(x, y)| Arc::ptr_eq(x, y))
            .count();
        assert!(shared >= SHARDS - 3, "{shared}");
        let mut d: Vec<_> = b
            .diff(&a, |x, y| x == y)
            .map(|(k, o, n)| (*k, o.copied(), n.copied()))
            .collect();
        d.sort();
        assert_eq!(
            d,
            [
                (5, Some(5), Some(50)),
                (7, Some(7), None),
                (20_000, None, Some(1))
            ]
        );
        assert_eq!(a.get(&5), Some(&5));
        assert_eq!(b.get(&5), Some(&50));
    }

    #[test]
    fn namespaced_keys_are_found_by_borrowed_strings() {
        let mut m: Shards<(Arc<str>, Arc<str>), u8> = Shards::default();
        m.insert((Arc::from("ns1"), Arc::from("web")), 1);
        assert_eq!(m.get(&NsName("ns1", "web")), Some(&1));
        assert_eq!(m.get(&NsName("ns1", "db")), None);
        assert!(m.remove(&NsName("ns1", "web")).is_some());
        assert!(m.is_empty());
    }

    #[test]
    fn few_keeps_order_and_empties_to_none() {
        let f = Few::insert(None, 3, |a, b| a < b);
        let f = Few::insert(f, 1, |a, b| a < b);
        let f = Few::insert(f, 2, |a, b| a < b);
        assert_eq!(f.as_ref().unwrap().as_slice(), [1, 2, 3]);
        let f = Few::remove(f, |x| *x != 2);
        assert!(matches!(f, Some(Few::One(2))));
        assert!(Few::remove(f, |_| true).is_none());
    }
}
