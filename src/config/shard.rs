//! `--shard K/N`: which orgs this process handles, so N replicas split a fleet with no overlap.
//!
//! An org belongs to shard `FNV-1a-64(normalised host + "\n" + client_id, UTF-8) mod N`: by its
//! credential, not its name, so that orgs sharing a credential (one token, one 10 s budget at
//! OBF) are always handled by the same replica. The hash is fixed by the contract: it must give
//! the same split in every version and on every platform. The host must be the normalised one
//! (`config::host`), the same the token cache is keyed by.

use std::fmt;
use std::str::FromStr;

/// Shard `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Whether orgs of the credential (`host`, normalised, and `client_id`) belong to this shard.
    pub fn owns(&self, host: &str, client_id: &str) -> bool {
        credential_hash(host, client_id) % self.count == self.index
    }
}

/// FNV-1a 64 of `host`, a newline, `client_id`: fed in pieces, no string is built. The newline
/// cannot occur in either (both are validated), so two credentials never join to the same text.
pub fn credential_hash(host: &str, client_id: &str) -> u64 {
    fnv1a64_continue(
        fnv1a64_continue(fnv1a64(host.as_bytes()), b"\n"),
        client_id.as_bytes(),
    )
}

/// FNV-1a, 64-bit (offset basis 0xcbf29ce484222325, prime 0x100000001b3).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_continue(0xcbf2_9ce4_8422_2325, bytes)
}

/// FNV-1a over `bytes`, going on from `hash`.
fn fnv1a64_continue(mut hash: u64, bytes: &[u8]) -> u64 {
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = || format!("invalid shard {text:?}: expected K/N with 0 <= K < N, e.g. 0/3");
        let (index, count) = text.split_once('/').ok_or_else(invalid)?;
        let index: u64 = index.trim().parse().map_err(|_| invalid())?;
        let count: u64 = count.trim().parse().map_err(|_| invalid())?;
        if count == 0 || index >= count {
            return Err(invalid());
        }
        Ok(Shard { index, count })
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fnv1a64_matches_the_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn the_credential_hash_is_fnv1a_of_host_newline_client_id() {
        let host = "https://openbadgefactory.com";
        assert_eq!(
            credential_hash(host, "ABC123"),
            fnv1a64(b"https://openbadgefactory.com\nABC123")
        );
        // A fixed vector, so that a change of the split across versions is caught.
        // A fixed vector (computed independently, in Python), so that a change of the split
        // across versions is caught.
        assert_eq!(credential_hash(host, "ABC123"), 0xa57a362aaab59aa0);
        assert!(Shard { index: 1, count: 3 }.owns(host, "ABC123"));
    }

    #[test]
    fn parses_k_of_n_and_rejects_the_rest() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        for bad in ["3/3", "0/0", "1", "a/b", "-1/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_credential_belongs_to_exactly_one_shard(
            credentials in proptest::collection::vec(
                ("https?://[a-z0-9.-]{1,20}(:[0-9]{1,4})?", "[A-Za-z0-9_]{1,20}"),
                1..200,
            ),
            count in 1u64..12,
        ) {
            for (host, client_id) in &credentials {
                let owners = (0..count)
                    .filter(|&index| Shard { index, count }.owns(host, client_id))
                    .count();
                prop_assert_eq!(owners, 1);
            }
        }
    }
}
