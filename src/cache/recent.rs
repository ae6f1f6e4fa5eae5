//! Read-your-writes memory for a coalescing owner: the KV values it wrote lately, so its next
//! requests do not depend on KV's propagation (a KV read may lag a write for a minute). Bounded;
//! pure: it holds what it is given and reads no store.

use crate::ports::Entry;
use std::cell::RefCell;
use std::collections::HashMap;

/// Bound on remembered KV writes per object owner; an owner handles a handful of keys, so
/// reaching it means something unusual: the memory is cleared and starts again.
pub const RECENT_MAX: usize = 64;

/// KV values one owner wrote lately. Shared by the requests an owner serves (one at a time), so
/// it takes `&self`.
#[derive(Debug, Default)]
pub struct Recent(RefCell<HashMap<String, Entry>>);

impl Recent {
    /// What was last written under `key`, if remembered.
    pub fn get(&self, key: &str) -> Option<Entry> {
        self.0.borrow().get(key).cloned()
    }

    /// Remembers a write; at [`RECENT_MAX`] keys, forgets everything else first.
    pub fn put(&self, key: &str, entry: Entry) {
        let mut map = self.0.borrow_mut();
        if map.len() >= RECENT_MAX {
            map.clear();
        }
        map.insert(key.to_owned(), entry);
    }

    /// Forgets `key` (it was deleted: KV is the truth again).
    pub fn forget(&self, key: &str) {
        self.0.borrow_mut().remove(key);
    }

    /// How many keys are remembered.
    pub fn len(&self) -> usize {
        self.0.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value: &str, day: u64) -> Entry {
        Entry {
            value: value.as_bytes().to_vec(),
            read_day: Some(day),
        }
    }

    #[test]
    fn a_write_is_read_back_until_forgotten_or_overwritten() {
        let recent = Recent::default();
        assert_eq!(recent.get("m/a"), None);
        recent.put("m/a", entry("one", 1));
        assert_eq!(recent.get("m/a"), Some(entry("one", 1)));
        assert_eq!(recent.get("m/b"), None, "only the key written");
        recent.put("m/a", entry("two", 2));
        assert_eq!(recent.get("m/a"), Some(entry("two", 2)), "the latest write");
        recent.forget("m/a");
        assert_eq!(recent.get("m/a"), None);
        recent.forget("m/never");
        assert!(recent.is_empty());
    }

    #[test]
    fn the_memory_is_bounded_and_starts_again_when_full() {
        let recent = Recent::default();
        for i in 0..RECENT_MAX {
            recent.put(&format!("k{i}"), entry("v", 1));
        }
        assert_eq!(recent.len(), RECENT_MAX);
        assert_eq!(
            recent.get("k0"),
            Some(entry("v", 1)),
            "all kept up to the bound"
        );
        recent.put("new", entry("n", 2));
        assert_eq!(recent.len(), 1, "full: cleared before the new write");
        assert_eq!(recent.get("k0"), None);
        assert_eq!(recent.get(&format!("k{}", RECENT_MAX - 1)), None);
        assert_eq!(recent.get("new"), Some(entry("n", 2)));
    }
}
