//! Where a memory item lives: shard = jump consistent hash of (network, key).
//!
//! Jump consistent hashing (Lamping & Veach, 2014) moves only 1/n of the keys when a shard is
//! added, which is what lets the cluster place shards on nodes later.

use std::hash::{Hash, Hasher};

use crate::ids::{MemoryId, NetworkId};

/// The bucket of `key` among `buckets` (0 when there are none).
pub fn jump_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = i64::from(buckets.max(1));
    let mut b: i64 = -1;
    let mut j: i64 = 0;
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let shifted = ((key >> 33) + 1) as f64;
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / shifted)) as i64;
    }
    u32::try_from(b.max(0)).unwrap_or(0)
}

/// The shard of memory item `key` of `network`.
pub fn shard_of(network: NetworkId, key: MemoryId, shards: u32) -> u32 {
    // SipHash with fixed keys: the same on every node running the same build.
    let mut h = std::hash::DefaultHasher::new();
    network.as_uuid().hash(&mut h);
    key.as_uuid().hash(&mut h);
    jump_hash(h.finish(), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_spread_over_all_shards_and_stay_put() {
        let net = NetworkId::new();
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let id = MemoryId::new();
            let s = shard_of(net, id, 4);
            assert_eq!(s, shard_of(net, id, 4));
            counts[s as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }

    #[test]
    fn growing_by_one_shard_moves_about_one_in_n_keys() {
        let moved = (0..10_000u64)
            .filter(|&k| {
                jump_hash(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), 4)
                    != jump_hash(k.wrapping_mul(0x9E37_79B9_7F4A_7C15), 5)
            })
            .count();
        assert!((1_500..2_500).contains(&moved), "{moved}");
    }
}
