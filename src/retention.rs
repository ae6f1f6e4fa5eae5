//! Retention: the cron trigger deletes what nobody has pulled for `RETENTION_DAYS`.
//!
//! Every record under `v1/` carries, in its KV metadata, the day (Unix days) it was last read.
//! The door marks a record when it writes it and, when it reads one whose mark is older than
//! today, rewrites it with today's mark — one KV write per record per day at most, never one per
//! hit. A blob's bytes live in R2 and its mark is `v1/blobs/<alg>/<hex>`; every read of a blob goes
//! through its repository's link, and the day a link's mark moves the blob's mark moves too, so a
//! blob's mark is never older than any of its links'.
//!
//! The sweep lists `RETENTION_BATCH` keys per run, from a cursor kept in KV (`retention`), so a
//! cache of any size is swept in bounded steps, each run resuming where the last one stopped;
//! when the listing ends the cursor is dropped and the next run starts a new pass. A key whose mark
//! is more than `RETENTION_DAYS` days old is deleted (a blob mark takes the R2 object with it),
//! except what a pin needs: the pinned tag, its manifest (an index's platform manifests too), and
//! their blobs and links. A record with no mark (written before marks existed) is marked today
//! rather than deleted: its age is unknown.

use crate::cache::{keys, ManifestRecord};
use crate::config::{split_pin_key, Config};
use crate::oci::{Digest, References, Repository};
use crate::ports::{Blobs, Kv, StoreError};
use crate::proxy::SECONDS_PER_DAY;
use serde::Serialize;
use std::collections::HashSet;

/// One run of the sweep.
pub struct Sweep<'a, K, B> {
    pub config: &'a Config,
    pub kv: &'a K,
    pub blobs: &'a B,
    /// Unix seconds (the cron trigger's scheduled time).
    pub now: u64,
}

/// What one run did, for the log.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Keys looked at.
    pub examined: u32,
    /// Records deleted (manifests, tags, links, marks, remembered 404s).
    pub deleted: u32,
    /// Of those, blob marks whose R2 object was deleted with them.
    pub blobs_deleted: u32,
    /// Old enough to go, kept because a pin needs them.
    pub kept_pinned: u32,
    /// Records without a mark, marked today.
    pub marked: u32,
    /// This run reached the end of the listing; the next starts a new pass.
    pub pass_complete: bool,
    pub errors: Vec<String>,
}

impl<K: Kv, B: Blobs> Sweep<'_, K, B> {
    /// Looks at the next `RETENTION_BATCH` keys and deletes those not read for `RETENTION_DAYS`.
    pub async fn step(&self) -> Swept {
        let mut swept = Swept::default();
        if self.config.retention_days == 0 {
            swept.pass_complete = true;
            return swept;
        }
        if let Err(e) = self.step_into(&mut swept).await {
            swept.errors.push(e.to_string());
        }
        swept
    }

    async fn step_into(&self, swept: &mut Swept) -> Result<(), StoreError> {
        let today = self.now / SECONDS_PER_DAY;
        let cursor = self
            .kv
            .get(keys::RETENTION_STATE)
            .await?
            .and_then(|e| String::from_utf8(e.value).ok())
            .filter(|c| !c.is_empty());
        // Worked out before anything is deleted, and the run stops if it cannot be.
        let pinned = self.pinned().await?;
        let page = self
            .kv
            .list(
                keys::RECORDS,
                cursor.as_deref(),
                self.config.retention_batch,
            )
            .await?;
        for (key, read_day) in page.keys {
            swept.examined += 1;
            match read_day {
                None => {
                    if let Some(entry) = self.kv.get(&key).await? {
                        self.kv.put(&key, entry.value, today).await?;
                        swept.marked += 1;
                    }
                }
                Some(day) if today.saturating_sub(day) <= self.config.retention_days => {}
                Some(_) if pinned.contains(&key) => swept.kept_pinned += 1,
                Some(_) => {
                    if let Err(e) = self.delete(&key, swept).await {
                        swept.errors.push(format!("{key}: {e}"));
                    }
                }
            }
        }
        match page.cursor {
            Some(next) => {
                self.kv
                    .put(keys::RETENTION_STATE, next.into_bytes(), today)
                    .await?
            }
            None => {
                self.kv.delete(keys::RETENTION_STATE).await?;
                swept.pass_complete = true;
            }
        }
        Ok(())
    }

    /// Deletes a record; a blob mark goes only after its R2 object did, so a failed delete is
    /// retried on the next pass instead of leaving bytes nothing points at.
    async fn delete(&self, key: &str, swept: &mut Swept) -> Result<(), StoreError> {
        if let Some(blob) = keys::blob_of_mark(key) {
            self.blobs.delete(&blob).await?;
            swept.blobs_deleted += 1;
        }
        self.kv.delete(key).await?;
        swept.deleted += 1;
        Ok(())
    }

    /// Every key a pin needs: the tag, the pinned manifest and, through it, an index's platform
    /// manifests and each image's config and layers (their links and blob marks).
    async fn pinned(&self) -> Result<HashSet<String>, StoreError> {
        let mut keep = HashSet::new();
        for (pin, digest) in &self.config.pins {
            let Some((registry, repository, tag)) = split_pin_key(pin) else {
                continue;
            };
            let Ok(repo) = Repository::parse(repository) else {
                continue;
            };
            keep.insert(keys::tag(registry, &repo, tag));
            let mut pending: Vec<Digest> = vec![digest.clone()];
            while let Some(digest) = pending.pop() {
                let key = keys::manifest(registry, &repo, &digest);
                if !keep.insert(key.clone()) {
                    continue;
                }
                // Read without marking it read: the sweep is not a client.
                let Some(record) = self
                    .kv
                    .get(&key)
                    .await?
                    .and_then(|e| ManifestRecord::decode(&e.value, &digest))
                else {
                    continue;
                };
                let refs = References::of(&record.bytes);
                pending.extend(refs.manifests);
                for blob in refs.blobs {
                    keep.insert(keys::link(registry, &repo, &blob));
                    keep.insert(keys::blob_read(&blob));
                }
            }
        }
        Ok(keep)
    }
}
