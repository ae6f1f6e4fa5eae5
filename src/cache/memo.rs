//! A second's memory of KV reads, per isolate. Under a rotation, one isolate answers
//! the same tag many times a second; each answer would read the same KV record. An entry read in
//! this second is given again for the rest of it, so a hot record costs at most one KV read per
//! isolate per second, whatever the request rate.
//!
//! What this can make a reader see is older than KV's own answer by less than a second — while
//! KV itself serves a value up to 60 s old at the edge (its read cache), and a tag pointer is
//! trusted for `TAG_TTL_SECONDS` anyway. Within the isolate nothing is older: every write and
//! delete through this isolate forgets the key first. Only values that exist and are small are
//! kept (a missing key is read again: the fill that writes it may land this second).

use crate::ports::Entry;
use std::collections::HashMap;

/// The largest value kept (a tag pointer carrying its manifest is a few KiB; the cap is the
/// pointer's own, `crate::cache::INLINE_MANIFEST_BYTES`, plus its JSON line).
pub const MAX_VALUE_BYTES: usize = super::INLINE_MANIFEST_BYTES + 1024;
/// The most bytes kept in all (then the memory starts again).
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct Memo {
    entries: HashMap<String, (u64, Entry)>,
    bytes: usize,
}

impl Memo {
    /// The entry read under `key` in second `now`, if there is one.
    pub fn get(&self, key: &str, now: u64) -> Option<Entry> {
        match self.entries.get(key) {
            Some((second, entry)) if *second == now => Some(entry.clone()),
            _ => None,
        }
    }

    /// Remembers what KV gave for `key` in second `now`.
    pub fn put(&mut self, key: &str, entry: &Entry, now: u64) {
        if entry.value.len() > MAX_VALUE_BYTES {
            return;
        }
        self.forget(key);
        if self.bytes + entry.value.len() > MAX_BYTES {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += entry.value.len();
        self.entries.insert(key.to_owned(), (now, entry.clone()));
    }

    /// `key` is being written or deleted: it is read from KV again.
    pub fn forget(&mut self, key: &str) {
        if let Some((_, old)) = self.entries.remove(key) {
            self.bytes -= old.value.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            value: vec![1; n],
            read_day: Some(20_000),
        }
    }

    #[test]
    fn an_entry_is_given_again_only_in_the_second_it_was_read() {
        let mut memo = Memo::default();
        assert_eq!(memo.get("k", 100), None);
        memo.put("k", &entry(10), 100);
        assert_eq!(memo.get("k", 100), Some(entry(10)));
        assert_eq!(memo.get("k", 101), None, "the next second reads KV again");
        assert_eq!(memo.get("other", 100), None);
        memo.forget("k");
        assert_eq!(memo.get("k", 100), None, "a write forgets it");
    }

    #[test]
    fn large_values_are_not_kept_and_the_memory_is_bounded() {
        let mut memo = Memo::default();
        memo.put("big", &entry(MAX_VALUE_BYTES + 1), 5);
        assert_eq!(memo.get("big", 5), None);
        let each = MAX_VALUE_BYTES;
        let fit = MAX_BYTES / each;
        for i in 0..fit {
            memo.put(&format!("k{i}"), &entry(each), 5);
        }
        assert!(memo.get("k0", 5).is_some());
        assert_eq!(memo.bytes, fit * each);
        memo.put("one-more", &entry(each), 5);
        assert_eq!(memo.get("k0", 5), None, "full: it starts again");
        assert!(memo.get("one-more", 5).is_some());
        assert_eq!(memo.bytes, each);
        // Putting a key again replaces it without counting it twice.
        memo.put("one-more", &entry(10), 5);
        assert_eq!(memo.bytes, 10);
    }
}
