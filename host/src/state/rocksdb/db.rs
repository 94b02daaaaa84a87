//! Opening the database, its options, the key layout and the stored
//! metadata of the RocksDB backend.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use rocksdb::{BlockBasedOptions, BoundColumnFamily, ColumnFamilyDescriptor, DBCompressionType, Options, ReadOptions};

use crate::state::{KeyGroup, StateDescriptor, StateError, StateResult, TtlConfig};
use crate::storage::files::{FileRef, FileStore, StorageError};

use super::*;

pub(super) fn storage(error: impl std::fmt::Display) -> StateError {
    StateError::Storage(error.to_string())
}

pub(super) fn io_error<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |source| StorageError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

pub(super) fn format_error(error: impl std::fmt::Display) -> StorageError {
    StorageError::Format(format!("cannot write keyed state: {error}"))
}

/// The options every database of this backend is opened with.
pub(super) fn db_options() -> Options {
    let mut options = Options::default();
    // The folder is scratch space: closing need not flush what the WAL-less
    // memtables hold (the crate has no setter for this option).
    if let Ok(tuned) = options.get_options_from_string("avoid_flush_during_shutdown=true") {
        options = tuned;
    }
    options.create_if_missing(true);
    options.create_missing_column_families(true);
    options.set_compression_type(DBCompressionType::Lz4);
    options.set_max_background_jobs(2);
    options.set_keep_log_file_num(2);
    options.set_max_log_file_size(1 << 20);
    // Every incremental checkpoint copies the MANIFEST: keep it small.
    options.set_max_manifest_file_size(1 << 20);
    let mut table = BlockBasedOptions::default();
    table.set_bloom_filter(10.0, false);
    options.set_block_based_table_factory(&table);
    options
}

/// Read options of bulk scans, which should not evict the hot blocks.
pub(super) fn scan_options() -> ReadOptions {
    let mut options = ReadOptions::default();
    options.fill_cache(false);
    options
}

/// An identifier that no other backend instance, in this process or any
/// other, gets.
pub(super) fn unique_id(seed: &Path) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let mut bytes = Vec::with_capacity(64);
    bytes.extend_from_slice(&std::process::id().to_le_bytes());
    bytes.extend_from_slice(&nanos.to_le_bytes());
    bytes.extend_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    bytes.extend_from_slice(seed.as_os_str().as_encoded_bytes());
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(&bytes))
}

pub(super) fn cf_name(state: &str) -> String {
    format!("{STATE_CF_PREFIX}{state}")
}

/// Appends `key group | key length | key` to `out`.
pub(super) fn encode_prefix(out: &mut Vec<u8>, key_group: KeyGroup, key: &[u8]) {
    // The key group fits: `max_parallelism` is at most 2^16.
    out.extend_from_slice(&(key_group.0 as u16).to_be_bytes());
    out.extend_from_slice(&u32::try_from(key.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(key);
}

/// Splits a stored key into key group, key and user key.
pub(super) fn decode_key(raw: &[u8]) -> Option<(u32, &[u8], &[u8])> {
    let key_group = u16::from_be_bytes(raw.get(..2)?.try_into().ok()?);
    let len = u32::from_be_bytes(raw.get(2..KEY_HEADER)?.try_into().ok()?) as usize;
    let key = raw.get(KEY_HEADER..KEY_HEADER.checked_add(len)?)?;
    let user_key = raw.get(KEY_HEADER + len..)?;
    Some((u32::from(key_group), key, user_key))
}

/// The least byte string greater than every string that starts with
/// `prefix`, if there is one.
pub(super) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != u8::MAX)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// Whether a file of a RocksDB folder never changes once written (and may
/// therefore be shared between checkpoints and hard-linked).
pub(super) fn is_immutable(file: &str) -> bool {
    file.ends_with(".sst") || file.ends_with(".blob")
}

/// A file name that stays inside the folder it is joined to.
pub(super) fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\'])
}

pub(super) fn column_family<'a>(db: &'a Db, state: &RocksState) -> StateResult<Arc<BoundColumnFamily<'a>>> {
    db.cf_handle(&state.cf)
        .ok_or_else(|| StateError::Storage(format!("the column family `{}` is missing", state.cf)))
}

/// The states a database's metadata declares.
pub(super) fn load_states(db: &Db) -> StateResult<Vec<RocksState>> {
    let mut states = Vec::new();
    let mut iter = db.raw_iterator();
    iter.seek(META_STATE);
    while let Some((key, value)) = iter.item() {
        let Some(name) = key.strip_prefix(META_STATE) else {
            break;
        };
        let name = String::from_utf8(name.to_vec()).map_err(|_| StateError::Corrupt {
            name: String::from_utf8_lossy(name).into_owned(),
            reason: "the state name is not UTF-8".into(),
        })?;
        let stored: StoredDescriptor = postcard::from_bytes(value).map_err(|e| StateError::Corrupt {
            name: name.clone(),
            reason: format!("bad descriptor: {e}"),
        })?;
        states.push(RocksState {
            cf: cf_name(&name),
            descriptor: StateDescriptor {
                name,
                kind: stored.kind,
                ttl: stored
                    .ttl
                    .map(|(ttl_ms, update_on_read)| TtlConfig { ttl_ms, update_on_read }),
            },
        });
        iter.next();
    }
    iter.status().map_err(storage)?;
    Ok(states)
}

/// Links (immutable files) or copies (the others, which RocksDB may rewrite)
/// the native files of a snapshot into `folder`.
pub(super) fn materialise(files: &FileStore, native: &[(String, FileRef)], folder: &Path) -> StateResult<()> {
    for (name, file) in native {
        if !is_plain_file_name(name) {
            return Err(StateError::Storage(format!(
                "a native snapshot names the file `{name}`, which is not a plain file name"
            )));
        }
        let source = files.path(file);
        let target = folder.join(name);
        if is_immutable(name) && std::fs::hard_link(&source, &target).is_ok() {
            continue;
        }
        std::fs::copy(&source, &target)
            .map_err(|e| StateError::Storage(format!("cannot copy {}: {e}", source.display())))?;
    }
    Ok(())
}

/// Opens the database in `folder` with every column family it has.
pub(super) fn open_db(folder: &Path, read_only: bool) -> StateResult<Db> {
    let options = db_options();
    let names = if folder.join("CURRENT").exists() {
        Db::list_cf(&options, folder).map_err(storage)?
    } else {
        vec![rocksdb::DEFAULT_COLUMN_FAMILY_NAME.to_string()]
    };
    let families = names
        .into_iter()
        .map(|name| ColumnFamilyDescriptor::new(name, options.clone()));
    if read_only {
        Db::open_cf_descriptors_read_only(&options, folder, families, false).map_err(storage)
    } else {
        Db::open_cf_descriptors(&options, folder, families).map_err(storage)
    }
}
