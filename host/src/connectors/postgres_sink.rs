//! The exactly-once PostgreSQL sink: each record becomes one row of a table,
//! committed with a checkpoint through PostgreSQL's two-phase commit
//! (`PREPARE TRANSACTION` / `COMMIT PREPARED`).
//!
//! # Protocol
//!
//! Each sink subtask holds two connections of its own:
//!
//! - the *data* connection holds the open transaction. The first
//!   [`TransactionalSink::write`] after a checkpoint opens it (`BEGIN`); each
//!   write sends the whole batch with one `COPY <table> (<column>) FROM STDIN`
//!   (text format, a prepared statement), so a batch costs one round trip
//!   whatever its size. The payload of a record (UTF-8 text) is the text form
//!   of the column's value: `text`, `varchar`, `jsonb`... all work.
//! - At a checkpoint barrier, [`TransactionalSink::pre_commit`] runs
//!   `PREPARE TRANSACTION '<gid>'` on the data connection: the rows are
//!   durable on the server but invisible, and survive the end of the
//!   connection (and a server restart). The handle saved in the checkpoint is
//!   the gid. Nothing written means nothing prepared: the handle is empty.
//! - The *control* connection never holds a transaction: it runs
//!   `COMMIT PREPARED` when the checkpoint completes (while the data
//!   connection may already hold the next transaction, where
//!   `COMMIT PREPARED` is not allowed) and `ROLLBACK PREPARED` on recovery.
//!   Committing a gid the server does not know is a success: it was committed
//!   before (by this instance or by one that failed afterwards).
//! - [`TransactionalSink::recover`] commits the gids of the restored
//!   checkpoint, then rolls back every other prepared transaction of this
//!   subtask, found in `pg_prepared_xacts` by its gid prefix.
//!
//! # Transaction names
//!
//! A gid is `weir:<job>:<sink uid>:<subtask>:<sequence>`. Job and sink uid
//! are percent-encoded (every byte outside `[A-Za-z0-9_.-]`), so a `:` in a
//! name cannot make one subtask's prefix match another's, and no quote ever
//! reaches SQL. The whole gid must fit in PostgreSQL's 199 bytes.
//!
//! The sequence must never name, in a later run, a transaction that an
//! earlier run already used: a restored checkpoint may hold a gid that was
//! committed long ago, and committing it again must not commit the new run's
//! (uncommitted, about to be replayed) rows. So the sequence starts at the
//! wall clock in microseconds since the Unix epoch, or above the highest
//! sequence still prepared for this subtask (or named by the restored
//! checkpoint) if that is higher (a clock that went backwards), and grows by
//! one per prepared transaction. A run prepares far fewer than one
//! transaction per microsecond, so a later run always starts above every
//! sequence an earlier run used.
//!
//! # Server requirements
//!
//! `max_prepared_transactions` must be above zero (it is zero by default),
//! and at least the number of transactions that can be prepared but not yet
//! committed at once: the sink's parallelism times the checkpoints in flight,
//! plus one.

use std::collections::HashSet;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use super::{ConnectorError, TransactionalSink};
use crate::record::batch::RecordBatch;

/// The column written when the configuration names none.
pub(crate) const DEFAULT_COLUMN: &str = "line";

/// The longest transaction name PostgreSQL accepts, in bytes.
const MAX_GID_BYTES: usize = 199;

/// The longest identifier PostgreSQL keeps whole, in bytes.
const MAX_IDENTIFIER_BYTES: usize = 63;

/// Where a PostgreSQL sink writes.
#[derive(Clone, PartialEq, Eq, serde::Deserialize)]
pub(crate) struct PostgresSinkConfig {
    /// A libpq-style connection string:
    /// `host=127.0.0.1 port=5432 user=postgres dbname=postgres`.
    pub connection: String,
    /// The table, optionally schema-qualified (`schema.table`). Names match
    /// exactly (they are quoted): a table created without quotes has a
    /// lowercase name.
    pub table: String,
    /// The column each record goes into (`line` by default).
    #[serde(default = "default_column")]
    pub column: String,
}

fn default_column() -> String {
    DEFAULT_COLUMN.to_string()
}

impl PostgresSinkConfig {
    /// A configuration writing into `table`'s default column.
    pub(crate) fn new(connection: &str, table: &str) -> Self {
        Self {
            connection: connection.to_string(),
            table: table.to_string(),
            column: default_column(),
        }
    }
}

impl std::fmt::Debug for PostgresSinkConfig {
    // The connection string may hold a password: it is not printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSinkConfig")
            .field("table", &self.table)
            .field("column", &self.column)
            .finish_non_exhaustive()
    }
}

/// A transactional sink inserting each record as a row of a PostgreSQL table
/// (see the module documentation for the protocol).
pub(crate) struct PostgresSink {
    /// Holds the open transaction.
    data: Client,
    /// Commits and rolls back prepared transactions; never in a transaction.
    control: Client,
    /// `COPY <table> (<column>) FROM STDIN`, prepared on `data`.
    copy: Statement,
    /// `<table> (<column>)` as the user wrote it, for messages.
    target: String,
    /// `weir:<job>:<sink uid>:<subtask>:`.
    prefix: String,
    /// The sequence of the next prepared transaction.
    sequence: u64,
    /// Whether `data` holds an open transaction with rows in it.
    open: bool,
    /// Why the open transaction was lost, if a write failed: preparing it
    /// would silently drop rows, so the sink refuses until it is recovered.
    failed: Option<String>,
    /// Rows of the batch being written, in `COPY` text format.
    buffer: Vec<u8>,
}

impl std::fmt::Debug for PostgresSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSink")
            .field("target", &self.target)
            .field("prefix", &self.prefix)
            .field("sequence", &self.sequence)
            .field("open", &self.open)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl PostgresSink {
    /// Connects subtask `subtask` of sink `sink_uid` of job `job`: opens its
    /// two connections, checks that the server allows prepared transactions
    /// and that the table and column exist.
    pub(crate) fn connect(
        config: &PostgresSinkConfig,
        job: &str,
        sink_uid: &str,
        subtask: u32,
    ) -> Result<Self, ConnectorError> {
        let table = quote_table(&config.table)?;
        let column = quote_identifier("column", &config.column)?;
        let target = format!("{} ({})", config.table, config.column);
        let prefix = format!("weir:{}:{}:{subtask}:", encode_name(job), encode_name(sink_uid));
        if prefix.len() + u64::MAX.to_string().len() > MAX_GID_BYTES {
            return Err(invalid(
                format!("cannot name the transactions of sink `{sink_uid}` of job `{job}`"),
                format!("job name and sink uid are too long (transaction names are limited to {MAX_GID_BYTES} bytes)"),
            ));
        }

        let mut params: postgres::Config = config
            .connection
            .parse()
            .map_err(|e| database("invalid PostgreSQL connection string", &e))?;
        if params.get_application_name().is_none() {
            params.application_name(&format!("weir {job} {sink_uid}#{subtask}"));
        }
        if params.get_connect_timeout().is_none() {
            params.connect_timeout(Duration::from_secs(30));
        }
        let server = describe(&params);
        let mut data = params
            .connect(NoTls)
            .map_err(|e| database(format!("cannot connect to PostgreSQL at {server}"), &e))?;
        let mut control = params
            .connect(NoTls)
            .map_err(|e| database(format!("cannot connect to PostgreSQL at {server}"), &e))?;

        let max_prepared: String = control
            .query_one("SHOW max_prepared_transactions", &[])
            .and_then(|row| row.try_get(0))
            .map_err(|e| database(format!("cannot read max_prepared_transactions at {server}"), &e))?;
        if max_prepared.trim() == "0" {
            return Err(invalid(
                format!("PostgreSQL at {server} cannot be used by an exactly-once sink"),
                "max_prepared_transactions is 0, which disables PREPARE TRANSACTION; set it above the sink's \
                 parallelism (in postgresql.conf, then restart the server)"
                    .to_string(),
            ));
        }
        data.prepare(&format!("SELECT {column} FROM {table} WHERE false"))
            .map_err(|e| database(format!("cannot write into {target} at {server}"), &e))?;
        let copy = data
            .prepare(&format!("COPY {table} ({column}) FROM STDIN"))
            .map_err(|e| database(format!("cannot prepare the COPY into {target}"), &e))?;

        let mut sink = Self {
            data,
            control,
            copy,
            target,
            prefix,
            sequence: 0,
            open: false,
            failed: None,
            buffer: Vec::new(),
        };
        let highest = sink
            .prepared()?
            .iter()
            .filter_map(|gid| sink.sequence_of(gid))
            .max()
            .unwrap_or(0);
        sink.sequence = wall_clock_micros().max(highest.saturating_add(1));
        Ok(sink)
    }

    /// The gids of this subtask's prepared transactions in this database.
    fn prepared(&mut self) -> Result<Vec<String>, ConnectorError> {
        let rows = self
            .control
            .query(
                "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()",
                &[],
            )
            .map_err(|e| database("cannot list the prepared transactions", &e))?;
        let mut gids = Vec::new();
        for row in rows {
            let gid: String = row
                .try_get(0)
                .map_err(|e| database("cannot list the prepared transactions", &e))?;
            if gid.starts_with(&self.prefix) {
                gids.push(gid);
            }
        }
        Ok(gids)
    }

    /// The sequence of `gid` if it is one of this subtask's.
    fn sequence_of(&self, gid: &str) -> Option<u64> {
        gid.strip_prefix(&self.prefix)?.parse().ok()
    }

    /// Rolls back the open transaction, if any, after a failed write or
    /// before a recovery.
    fn abandon(&mut self) {
        // The transaction may be aborted already, or the connection broken:
        // either way, nothing of it will ever be committed.
        let _ = self.data.batch_execute("ROLLBACK");
        self.open = false;
    }

    /// Runs `COMMIT PREPARED` or `ROLLBACK PREPARED` (`verb`) on `gid`; a
    /// transaction that no longer exists was resolved before.
    fn resolve(&mut self, verb: &str, gid: &str) -> Result<(), ConnectorError> {
        match self
            .control
            .batch_execute(&format!("{verb} PREPARED {}", quote_literal(gid)))
        {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some(&SqlState::UNDEFINED_OBJECT) => {
                tracing::debug!(gid, "prepared transaction already resolved");
                Ok(())
            }
            Err(e) => Err(database(
                format!("cannot {} prepared transaction {gid}", verb.to_lowercase()),
                &e,
            )),
        }
    }
}

impl TransactionalSink for PostgresSink {
    fn write(&mut self, batch: &RecordBatch) -> Result<(), ConnectorError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(why) = &self.failed {
            return Err(invalid(format!("cannot write into {}", self.target), why.clone()));
        }
        encode_rows(batch, &mut self.buffer).map_err(|source| ConnectorError::Row {
            what: format!("cannot write into {}", self.target),
            source,
        })?;
        if !self.open {
            self.data
                .batch_execute("BEGIN")
                .map_err(|e| database(format!("cannot begin a transaction on {}", self.target), &e))?;
            self.open = true;
        }
        let copied = match self.data.copy_in(&self.copy) {
            Ok(mut writer) => match writer.write_all(&self.buffer) {
                Ok(()) => writer.finish().map_err(|e| error_message(&e)),
                Err(e) => Err(e.to_string()),
            },
            Err(e) => Err(error_message(&e)),
        };
        if let Err(message) = copied {
            self.abandon();
            let what = format!("cannot insert {} rows into {}", batch.len(), self.target);
            self.failed = Some(format!(
                "an earlier write failed and its transaction was rolled back ({what})"
            ));
            return Err(ConnectorError::Database { what, message });
        }
        Ok(())
    }

    fn pre_commit(&mut self) -> Result<Vec<u8>, ConnectorError> {
        if let Some(why) = &self.failed {
            return Err(invalid(format!("cannot pre-commit into {}", self.target), why.clone()));
        }
        if !self.open {
            return Ok(Vec::new()); // an empty transaction
        }
        let gid = format!("{}{}", self.prefix, self.sequence);
        self.sequence += 1;
        // Whatever happens, the transaction is no longer open: a failed
        // PREPARE TRANSACTION rolls it back.
        self.open = false;
        self.data
            .batch_execute(&format!("PREPARE TRANSACTION {}", quote_literal(&gid)))
            .map_err(|e| database(format!("cannot prepare transaction {gid} on {}", self.target), &e))?;
        // In an aborted transaction PREPARE TRANSACTION rolls back without an
        // error: make sure the rows are really there.
        let prepared = self
            .control
            .query_opt(
                "SELECT 1 FROM pg_prepared_xacts WHERE gid = $1 AND database = current_database()",
                &[&gid],
            )
            .map_err(|e| database(format!("cannot check prepared transaction {gid}"), &e))?;
        if prepared.is_none() {
            return Err(invalid(
                format!("cannot prepare transaction {gid} on {}", self.target),
                "the server rolled it back instead".to_string(),
            ));
        }
        Ok(gid.into_bytes())
    }

    fn commit(&mut self, transaction: &[u8]) -> Result<(), ConnectorError> {
        if transaction.is_empty() {
            return Ok(());
        }
        let gid = parse_handle(transaction)?;
        self.resolve("COMMIT", gid)
    }

    fn recover(&mut self, pending: &[Vec<u8>]) -> Result<(), ConnectorError> {
        if self.open {
            self.abandon();
        }
        self.failed = None;
        let mut keep = HashSet::new();
        for transaction in pending.iter().filter(|t| !t.is_empty()) {
            let gid = parse_handle(transaction)?;
            self.resolve("COMMIT", gid)?;
            if let Some(sequence) = self.sequence_of(gid) {
                self.sequence = self.sequence.max(sequence.saturating_add(1));
            }
            keep.insert(gid.to_string());
        }
        let mut aborted = 0;
        for gid in self.prepared()? {
            if !keep.contains(&gid) {
                self.resolve("ROLLBACK", &gid)?;
                aborted += 1;
            }
        }
        tracing::info!(
            prefix = %self.prefix,
            committed = keep.len(),
            aborted,
            "recovered PostgreSQL sink transactions"
        );
        Ok(())
    }
}

/// Why a record cannot be a row of `COPY` text (the user's record is at
/// fault); records are numbered from 1 in their batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RowError {
    /// The payload is not UTF-8.
    #[error("record {record} of the batch is not UTF-8 text ({source})")]
    NotUtf8 {
        /// The record's number in its batch.
        record: usize,
        /// Where the bytes stop being UTF-8.
        source: std::str::Utf8Error,
    },
    /// The payload holds a NUL character, which `COPY` text cannot carry.
    #[error("record {record} of the batch holds a NUL character")]
    Nul {
        /// The record's number in its batch.
        record: usize,
    },
}

/// Appends the records of `batch` to `out` (cleared first) as rows in
/// `COPY` text format, or says why a record cannot be a row.
fn encode_rows(batch: &RecordBatch, out: &mut Vec<u8>) -> Result<(), RowError> {
    out.clear();
    out.reserve(batch.payload_bytes() + batch.len());
    for (i, record) in batch.iter().enumerate() {
        let text = std::str::from_utf8(record.payload).map_err(|source| RowError::NotUtf8 { record: i + 1, source })?;
        let bytes = text.as_bytes();
        let mut start = 0;
        for (at, &byte) in bytes.iter().enumerate() {
            let escaped: &[u8] = match byte {
                b'\\' => b"\\\\",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0 => return Err(RowError::Nul { record: i + 1 }),
                _ => continue,
            };
            out.extend_from_slice(&bytes[start..at]);
            out.extend_from_slice(escaped);
            start = at + 1;
        }
        out.extend_from_slice(&bytes[start..]);
        out.push(b'\n');
    }
    Ok(())
}

/// `name` with every byte outside `[A-Za-z0-9_.-]` percent-encoded.
fn encode_name(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The gid in a transaction handle, if it is one this sink could have made.
fn parse_handle(transaction: &[u8]) -> Result<&str, ConnectorError> {
    let valid = transaction.len() <= MAX_GID_BYTES
        && transaction.starts_with(b"weir:")
        && transaction
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'%' | b':'));
    match std::str::from_utf8(transaction) {
        Ok(gid) if valid => Ok(gid),
        _ => Err(invalid(
            "cannot commit a transaction".to_string(),
            format!(
                "`{}` is not the name of a PostgreSQL sink transaction",
                String::from_utf8_lossy(transaction)
            ),
        )),
    }
}

/// `text` as an SQL string literal.
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A table name, optionally schema-qualified, quoted for SQL.
fn quote_table(table: &str) -> Result<String, ConnectorError> {
    match table.split_once('.') {
        Some((schema, name)) => Ok(format!(
            "{}.{}",
            quote_identifier("schema", schema)?,
            quote_identifier("table", name)?
        )),
        None => quote_identifier("table", table),
    }
}

/// An identifier (`[A-Za-z_][A-Za-z0-9_]*`) quoted for SQL.
fn quote_identifier(kind: &str, name: &str) -> Result<String, ConnectorError> {
    let mut bytes = name.bytes();
    let valid = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.len() <= MAX_IDENTIFIER_BYTES;
    if !valid {
        return Err(invalid(
            format!("invalid {kind} name `{name}` for the PostgreSQL sink"),
            format!(
                "expected letters, digits and `_`, not starting with a digit, at most {MAX_IDENTIFIER_BYTES} bytes"
            ),
        ));
    }
    Ok(format!("\"{name}\""))
}

/// Where `params` connects, without the password.
fn describe(params: &postgres::Config) -> String {
    let hosts: Vec<String> = params
        .get_hosts()
        .iter()
        .map(|host| match host {
            postgres::config::Host::Tcp(name) => name.clone(),
            #[cfg(unix)]
            postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = params.get_ports().iter().map(u16::to_string).collect();
    format!(
        "host={} port={} dbname={}",
        if hosts.is_empty() {
            "localhost".to_string()
        } else {
            hosts.join(",")
        },
        if ports.is_empty() {
            "5432".to_string()
        } else {
            ports.join(",")
        },
        params.get_dbname().or(params.get_user()).unwrap_or("postgres"),
    )
}

/// Microseconds since the Unix epoch.
fn wall_clock_micros() -> u64 {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_micros();
    u64::try_from(micros).unwrap_or(u64::MAX / 2)
}

/// A driver error in one line, with the server's message, code, detail and
/// hint when the server refused.
fn error_message(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut message = format!("{} (SQLSTATE {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return message;
    }
    let mut message = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        message.push_str(&format!(": {c}"));
        cause = c.source();
    }
    message
}

fn database(what: impl Into<String>, e: &postgres::Error) -> ConnectorError {
    ConnectorError::Database {
        what: what.into(),
        message: error_message(e),
    }
}

fn invalid(what: String, message: String) -> ConnectorError {
    ConnectorError::Database { what, message }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test server's connection string.
    fn server() -> String {
        std::env::var("WEIR_TEST_PG").unwrap_or_else(|_| {
            panic!(
                "WEIR_TEST_PG is not set: the PostgreSQL sink tests need a live server. Run ./scripts/test.sh, \
                 or `source scripts/postgres.sh; weir_postgres_start` first"
            )
        })
    }

    /// A fresh table (and job name) of its own for test `name`.
    fn table(name: &str) -> (postgres::Client, String) {
        let mut client = postgres::Client::connect(&server(), NoTls).unwrap();
        let table = format!("weir_test_{name}_{}", std::process::id());
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (line text NOT NULL)"
            ))
            .unwrap();
        (client, table)
    }

    fn sink(table: &str) -> PostgresSink {
        PostgresSink::connect(&PostgresSinkConfig::new(&server(), table), table, "out", 0).unwrap()
    }

    fn batch(lines: &[&str]) -> RecordBatch {
        let mut batch = RecordBatch::default();
        for line in lines {
            batch.push(line.as_bytes(), 0);
        }
        batch
    }

    fn rows(client: &mut postgres::Client, table: &str) -> Vec<String> {
        client
            .query(&format!("SELECT line FROM {table} ORDER BY line"), &[])
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    }

    /// Prepared transactions whose gid starts with `weir:<table>:`.
    fn prepared(client: &mut postgres::Client, table: &str) -> Vec<String> {
        let mut gids: Vec<String> = client
            .query("SELECT gid FROM pg_prepared_xacts", &[])
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0))
            .filter(|gid| gid.starts_with(&format!("weir:{table}:")))
            .collect();
        gids.sort();
        gids
    }

    #[test]
    fn rows_appear_only_when_committed_and_commit_is_idempotent() {
        let (mut client, table) = table("visibility");
        let mut sink = sink(&table);
        let lines = ["a", "tab\there", "back\\slash\nnew line", "été", r"\N", ""];
        sink.write(&batch(&lines[..3])).unwrap();
        sink.write(&batch(&lines[3..])).unwrap();
        assert!(rows(&mut client, &table).is_empty());
        let first = sink.pre_commit().unwrap();
        let gid = String::from_utf8(first.clone()).unwrap();
        assert!(gid.starts_with(&format!("weir:{table}:out:0:")), "{gid}");
        assert_eq!(prepared(&mut client, &table), vec![gid]);
        assert!(rows(&mut client, &table).is_empty(), "prepared rows must be invisible");

        // The next transaction is open on the data connection while the
        // first one commits.
        sink.write(&batch(&["z"])).unwrap();
        sink.commit(&first).unwrap();
        let mut expected: Vec<String> = lines.iter().map(|l| l.to_string()).collect();
        expected.sort();
        assert_eq!(rows(&mut client, &table), expected);
        sink.commit(&first).unwrap();
        assert!(prepared(&mut client, &table).is_empty());

        sink.finish().unwrap();
        assert_eq!(rows(&mut client, &table).len(), lines.len() + 1);
        assert!(prepared(&mut client, &table).is_empty());
        drop(sink);
        client.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }

    #[test]
    fn recovery_commits_pending_transactions_and_rolls_back_orphans() {
        let (mut client, table) = table("recovery");
        let mut crashed = sink(&table);
        crashed.write(&batch(&["a", "b"])).unwrap();
        let pending = crashed.pre_commit().unwrap();
        crashed.write(&batch(&["c"])).unwrap();
        let orphan = crashed.pre_commit().unwrap();
        crashed.write(&batch(&["d"])).unwrap(); // open, never prepared
        assert_ne!(pending, orphan);
        // Another subtask's transaction must survive this subtask's recovery.
        let mut other = PostgresSink::connect(&PostgresSinkConfig::new(&server(), &table), &table, "out", 1).unwrap();
        other.write(&batch(&["other"])).unwrap();
        let other_gid = other.pre_commit().unwrap();
        drop(crashed); // a crash: `pending` was saved in the checkpoint, `orphan` was not
        assert_eq!(prepared(&mut client, &table).len(), 3);

        let mut sink = sink(&table);
        sink.recover(std::slice::from_ref(&pending)).unwrap();
        assert_eq!(rows(&mut client, &table), vec!["a", "b"]);
        assert_eq!(
            prepared(&mut client, &table),
            vec![String::from_utf8(other_gid.clone()).unwrap()]
        );
        // Recovering again (a second failure before the next checkpoint) is
        // harmless.
        sink.recover(std::slice::from_ref(&pending)).unwrap();
        assert_eq!(rows(&mut client, &table), vec!["a", "b"]);

        // The new instance never reuses a name of the earlier one.
        sink.write(&batch(&["e"])).unwrap();
        let next = sink.pre_commit().unwrap();
        let sequence = |gid: &[u8]| -> u64 {
            let gid = std::str::from_utf8(gid).unwrap();
            gid.rsplit(':').next().unwrap().parse().unwrap()
        };
        assert!(sequence(&next) > sequence(&pending).max(sequence(&orphan)));
        sink.commit(&next).unwrap();
        assert_eq!(rows(&mut client, &table), vec!["a", "b", "e"]);

        other.commit(&other_gid).unwrap();
        assert!(prepared(&mut client, &table).is_empty());
        drop((sink, other));
        client.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }

    #[test]
    fn an_empty_transaction_prepares_nothing() {
        let (mut client, table) = table("empty");
        let mut sink = sink(&table);
        assert_eq!(sink.pre_commit().unwrap(), Vec::<u8>::new());
        sink.write(&RecordBatch::default()).unwrap();
        let handle = sink.pre_commit().unwrap();
        assert!(handle.is_empty());
        assert!(prepared(&mut client, &table).is_empty());
        sink.commit(&handle).unwrap();
        sink.recover(&[Vec::new()]).unwrap();
        sink.finish().unwrap();
        assert!(rows(&mut client, &table).is_empty());
        assert!(prepared(&mut client, &table).is_empty());
        drop(sink);
        client.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }

    #[test]
    fn bad_records_and_missing_tables_are_reported() {
        let (mut client, table) = table("errors");
        let mut sink = sink(&table);
        let mut bad = batch(&["fine"]);
        bad.push(b"\xff\xfe", 0);
        let error = sink.write(&bad).unwrap_err().to_string();
        assert!(error.contains("record 2 of the batch is not UTF-8"), "{error}");
        let error = sink.write(&batch(&["nul\0"])).unwrap_err().to_string();
        assert!(error.contains("NUL"), "{error}");
        // Nothing was sent: the sink is still usable.
        sink.write(&batch(&["ok"])).unwrap();
        sink.finish().unwrap();
        assert_eq!(rows(&mut client, &table), vec!["ok"]);

        let missing = PostgresSinkConfig::new(&server(), &format!("{table}_missing"));
        let error = PostgresSink::connect(&missing, &table, "out", 0)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot write into") && error.contains("does not exist"),
            "{error}"
        );
        let mut wrong_column = PostgresSinkConfig::new(&server(), &table);
        wrong_column.column = "nope".to_string();
        let error = PostgresSink::connect(&wrong_column, &table, "out", 0)
            .unwrap_err()
            .to_string();
        assert!(error.contains("nope"), "{error}");
        let nowhere = PostgresSinkConfig::new("host=127.0.0.1 port=1 user=postgres password=secret", &table);
        let error = PostgresSink::connect(&nowhere, &table, "out", 0)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("cannot connect to PostgreSQL at host=127.0.0.1 port=1"),
            "{error}"
        );
        assert!(!error.contains("secret"), "{error}");
        assert!(!format!("{nowhere:?}").contains("secret"));
        drop(sink);
        client.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }

    #[test]
    fn a_failed_write_loses_its_transaction_until_recovery() {
        let (mut client, table) = table("failed");
        client
            .batch_execute(&format!("ALTER TABLE {table} ADD CHECK (line <> 'bad')"))
            .unwrap();
        let mut sink = sink(&table);
        sink.write(&batch(&["a"])).unwrap();
        let error = sink.write(&batch(&["b", "bad"])).unwrap_err().to_string();
        assert!(
            error.contains("cannot insert 2 rows into") && error.contains("23514"),
            "{error}"
        );
        // `a` was rolled back with the failed batch: preparing now would
        // silently lose it.
        let error = sink.pre_commit().unwrap_err().to_string();
        assert!(error.contains("an earlier write failed"), "{error}");
        assert!(sink.write(&batch(&["c"])).is_err());
        sink.recover(&[]).unwrap();
        sink.write(&batch(&["c"])).unwrap();
        sink.finish().unwrap();
        assert_eq!(rows(&mut client, &table), vec!["c"]);
        assert!(prepared(&mut client, &table).is_empty());
        drop(sink);
        client.batch_execute(&format!("DROP TABLE {table}")).unwrap();
    }

    #[test]
    fn rows_are_copied_in_text_format() {
        let mut out = Vec::new();
        encode_rows(&batch(&["a\tb", "c\\d\r\n", ""]), &mut out).unwrap();
        assert_eq!(out, b"a\\tb\nc\\\\d\\r\\n\n\n");
    }

    #[test]
    fn names_are_validated_and_encoded() {
        assert_eq!(quote_table("events").unwrap(), "\"events\"");
        assert_eq!(quote_table("app.Events_2").unwrap(), "\"app\".\"Events_2\"");
        for bad in ["", "1st", "a-b", "a.b.c", "x\"; DROP TABLE y; --", "é"] {
            assert!(quote_table(bad).is_err(), "{bad}");
        }
        assert_eq!(encode_name("job:1 é/x_y.z-w"), "job%3A1%20%C3%A9%2Fx_y.z-w");
        assert!(parse_handle(b"weir:job:out:0:17").is_ok());
        assert!(parse_handle(b"weir:job'; DROP TABLE x").is_err());
        assert!(parse_handle(b"other").is_err());
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
