//! One simulated client's secrets: which ones the token endpoint accepts now, which ones it had, and
//! how many tokens each issued. OBF's Admin tools > API lets an admin generate a new secret while the
//! old one still works and delete the old one later; this is that list. Knows nothing about tokens,
//! spacing or HTTP: `state.rs` decides what a match means.
//!
//! Secrets are kept in the order they were added and never reordered, so a secret's index (its
//! "slot") is stable and is what counters and tokens refer to; the secret text itself never leaves
//! this module except to be compared. Removed secrets keep their slot (and their count) so a request
//! still sending one can be told apart from a plain wrong secret. The list grows only by explicit
//! `add`/`replace_all` calls (tests, the control API), never with traffic.

/// What a secret sent to the token endpoint is to this client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Match {
    /// One of the secrets accepted now, in this slot.
    Valid(usize),
    /// A secret the client had, since removed.
    Removed,
    /// Never one of the client's secrets.
    Unknown,
}

pub(super) struct Secrets {
    slots: Vec<Slot>,
}

struct Slot {
    secret: String,
    valid: bool,
    tokens_issued: u64,
}

impl Secrets {
    /// A client's first secret, in slot 0.
    pub(crate) fn new(first: &str) -> Self {
        Self {
            slots: vec![Slot::new(first)],
        }
    }

    pub(crate) fn find(&self, secret: &str) -> Match {
        // A secret removed and later added again has two slots; the valid one wins.
        let mut removed = false;
        for (i, slot) in self.slots.iter().enumerate() {
            if slot.secret == secret {
                if slot.valid {
                    return Match::Valid(i);
                }
                removed = true;
            }
        }
        if removed {
            Match::Removed
        } else {
            Match::Unknown
        }
    }

    /// Accepts `secret` too. A secret already accepted keeps its slot; a new one (or one removed
    /// earlier and added again) gets the next slot. Returns the slot.
    pub(crate) fn add(&mut self, secret: &str) -> usize {
        if let Match::Valid(slot) = self.find(secret) {
            return slot;
        }
        self.slots.push(Slot::new(secret));
        self.slots.len() - 1
    }

    /// Stops accepting `secret`; returns the slot it had, `None` if it was not accepted now.
    pub(crate) fn remove(&mut self, secret: &str) -> Option<usize> {
        let Match::Valid(slot) = self.find(secret) else {
            return None;
        };
        self.slots[slot].valid = false;
        Some(slot)
    }

    /// Makes `secret` the only secret accepted (what `add_client` does to an existing client).
    pub(crate) fn replace_all(&mut self, secret: &str) {
        let keep = self.add(secret);
        for (i, slot) in self.slots.iter_mut().enumerate() {
            slot.valid = i == keep;
        }
    }

    pub(crate) fn count_issued(&mut self, slot: usize) {
        if let Some(slot) = self.slots.get_mut(slot) {
            slot.tokens_issued += 1;
        }
    }

    /// How many secrets are accepted now.
    pub(crate) fn valid_count(&self) -> u64 {
        let n = self.slots.iter().filter(|s| s.valid).count();
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// Tokens issued per slot, in the order the secrets were added.
    pub(crate) fn issued_per_slot(&self) -> Vec<u64> {
        self.slots.iter().map(|s| s.tokens_issued).collect()
    }
}

impl Slot {
    fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            valid: true,
            tokens_issued: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_keep_their_slot_in_the_order_added() {
        let mut secrets = Secrets::new("old");
        assert_eq!(secrets.add("new"), 1);
        assert_eq!(secrets.add("old"), 0, "an accepted secret keeps its slot");
        assert_eq!(secrets.find("new"), Match::Valid(1));
        assert_eq!(secrets.valid_count(), 2);
        assert_eq!(secrets.remove("old"), Some(0));
        assert_eq!(secrets.remove("old"), None);
        assert_eq!(secrets.find("old"), Match::Removed);
        assert_eq!(secrets.find("never"), Match::Unknown);
        // Added again after removal: a new slot, and it is accepted again.
        assert_eq!(secrets.add("old"), 2);
        assert_eq!(secrets.find("old"), Match::Valid(2));
    }

    #[test]
    fn counts_follow_slots_and_survive_removal() {
        let mut secrets = Secrets::new("a");
        secrets.add("b");
        secrets.count_issued(0);
        secrets.count_issued(1);
        secrets.count_issued(1);
        secrets.count_issued(7);
        secrets.remove("a");
        assert_eq!(secrets.issued_per_slot(), vec![1, 2]);
        assert_eq!(secrets.valid_count(), 1);
    }

    #[test]
    fn replace_all_leaves_exactly_one_secret() {
        let mut secrets = Secrets::new("a");
        secrets.add("b");
        secrets.replace_all("c");
        assert_eq!(secrets.valid_count(), 1);
        assert_eq!(secrets.find("c"), Match::Valid(2));
        assert_eq!(secrets.find("a"), Match::Removed);
        secrets.replace_all("c");
        assert_eq!(
            secrets.issued_per_slot().len(),
            3,
            "same secret, no new slot"
        );
        secrets.replace_all("b");
        assert_eq!(
            (secrets.find("b"), secrets.find("c")),
            (Match::Valid(3), Match::Removed)
        );
    }
}
