//! Rendezvous (highest-random-weight) hashing: the owner of a key among a set of nodes is the
//! node with the highest score for it. When a node leaves, only its keys move; when it comes
//! back, they move back. The hash is spelled out here (FNV-1a, then a SplitMix64 finalizer) so
//! that every build of aimesh agrees on it, unlike `std`'s hasher, which may change between
//! Rust releases.

/// The score of `node` for `key`.
pub fn score(key: &[u8], node: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.iter().chain([0xffu8].iter()).chain(node.as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // SplitMix64 finalizer: FNV alone leaves the high bits poorly mixed for short inputs.
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

/// The owner of `key` among `nodes` (none when `nodes` is empty). Ties go to the smaller name.
pub fn owner<'a>(key: &[u8], nodes: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    nodes
        .into_iter()
        .map(|n| (score(key, n), n))
        .max_by(|a, b| a.0.cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, n)| n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_evenly_and_only_a_leaving_nodes_keys_move() {
        let nodes = ["n1", "n2", "n3"];
        let mut counts = [0usize; 3];
        let mut moved = 0;
        let mut stayed_wrongly = 0;
        for i in 0u32..30_000 {
            let key = i.to_be_bytes();
            let Some(o) = owner(&key, nodes) else {
                unreachable!("three nodes")
            };
            let at = nodes.iter().position(|n| *n == o).unwrap_or(0);
            counts[at] += 1;
            let without_n2 = owner(&key, ["n1", "n3"]);
            if o == "n2" {
                moved += 1;
            } else if without_n2 != Some(o) {
                stayed_wrongly += 1;
            }
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        assert_eq!(stayed_wrongly, 0, "keys of surviving nodes must not move");
        assert_eq!(moved, counts[1]);
    }

    #[test]
    fn the_score_is_stable_across_builds() {
        // Pinned: a change here re-homes every network of every cluster.
        assert_eq!(score(b"network", "n1"), 0x21c6_3c95_3c58_654e);
        assert_eq!(score(b"", ""), 0x4f2d_b50f_1240_40cd);
        assert_ne!(score(b"network", "n1"), score(b"network", "n2"));
        assert_eq!(owner(b"k", Vec::<&str>::new()), None);
    }
}
