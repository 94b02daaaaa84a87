//! Sources and sinks of the job file.

use std::path::PathBuf;

use toml::Spanned;

use super::{Builder, Draft, DraftInput};
use crate::connectors::generator::GeneratorConfig;
use crate::job::spec::{SinkKind, SinkSpec, SourceKind, SourceSpec};
use crate::plan::{SinkConfig, SourceConfig, VertexKind};

impl Builder<'_> {
    /// The draft vertex of `[[source]]` `spanned`.
    pub(super) fn source(&mut self, spanned: &Spanned<SourceSpec>, default_parallelism: u32) -> Draft {
        let source = spanned.get_ref();
        let uid = source.uid.get_ref().clone();
        let field = |name: &str| format!("source `{uid}` → {name}");
        let mut parallelism = source
            .parallelism
            .as_ref()
            .map_or(default_parallelism, |p| self.positive(p, &field("parallelism")));
        let kind = match source.kind.get_ref() {
            SourceKind::File => {
                let path = match &source.path {
                    Some(path) => self.path(path),
                    None => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            field("path"),
                            "a file source needs `path`",
                        ));
                        PathBuf::new()
                    }
                };
                // One file is read by one subtask; a folder's files are
                // split over the subtasks.
                if !path.is_dir() {
                    parallelism = 1;
                }
                SourceConfig::File {
                    path,
                    follow: source.follow.unwrap_or(false),
                }
            }
            SourceKind::Generator => {
                let defaults = GeneratorConfig::default();
                let config = GeneratorConfig {
                    events: source.events.as_ref().map(|e| *e.get_ref()),
                    seed: source.seed.unwrap_or(defaults.seed),
                    rate: source
                        .rate
                        .as_ref()
                        .map_or(defaults.rate, |r| self.positive_u64(r, &field("rate"))),
                    cameras: source
                        .cameras
                        .as_ref()
                        .map_or(defaults.cameras, |c| self.positive(c, &field("cameras"))),
                    plates: source
                        .plates
                        .as_ref()
                        .map_or(defaults.plates, |p| self.positive(p, &field("plates"))),
                    dirty: source.dirty.unwrap_or(defaults.dirty),
                    events_per_second: source
                        .events_per_second
                        .as_ref()
                        .map(|r| self.positive_u64(r, &field("events_per_second"))),
                    ..defaults
                };
                SourceConfig::Generator(config)
            }
            SourceKind::Kafka => SourceConfig::Kafka(self.kafka_source(spanned, &uid)),
        };
        let watermarks = source.watermarks.as_ref().map(|w| self.watermarks(w, &uid, None));
        Draft {
            uid,
            line: self.locator.line_of(spanned.span().start),
            parallelism,
            kind: VertexKind::Source(kind),
            input: None,
            is_sink: false,
            watermarks,
            second_input: None,
        }
    }

    /// The draft vertex of `[[sink]]` `spanned`.
    pub(super) fn sink(&mut self, spanned: &Spanned<SinkSpec>) -> Draft {
        let sink = spanned.get_ref();
        let uid = sink.uid.get_ref().clone();
        let kind = match sink.kind.get_ref() {
            SinkKind::Stdout => SinkConfig::Stdout,
            SinkKind::Kafka => SinkConfig::Kafka(self.kafka_sink(spanned, &uid)),
            SinkKind::Postgres => {
                let field = |name: &str| format!("sink `{uid}` → {name}");
                let mut required = |value: &Option<Spanned<String>>, name: &str| match value {
                    Some(value) => self.text(value).unwrap_or_default(),
                    None => {
                        self.errors.push(self.locator.error(
                            spanned.span(),
                            field(name),
                            format!("a postgres sink needs `{name}`"),
                        ));
                        String::new()
                    }
                };
                let connection = required(&sink.connection, "connection");
                let table = required(&sink.table, "table");
                let mut config = crate::connectors::postgres_sink::PostgresSinkConfig::new(&connection, &table);
                if let Some(column) = &sink.column {
                    config.column = column.clone();
                }
                SinkConfig::Postgres(config)
            }
            SinkKind::Files => match &sink.path {
                Some(path) => SinkConfig::Files { path: self.path(path) },
                None => {
                    self.errors.push(self.locator.error(
                        spanned.span(),
                        format!("sink `{uid}` → path"),
                        "a files sink needs `path` (a folder)",
                    ));
                    SinkConfig::Stdout
                }
            },
            SinkKind::File => match &sink.path {
                Some(path) => SinkConfig::File { path: self.path(path) },
                None => {
                    self.errors.push(self.locator.error(
                        spanned.span(),
                        format!("sink `{uid}` → path"),
                        "a file sink needs `path`",
                    ));
                    SinkConfig::Stdout
                }
            },
        };
        Draft {
            uid,
            line: self.locator.line_of(spanned.span().start),
            parallelism: 1,
            kind: VertexKind::Sink(kind),
            input: Some(DraftInput {
                uid: sink.input.clone(),
                partitioning: None,
                side_output: sink.side_output.clone(),
            }),
            is_sink: true,
            watermarks: None,
            second_input: None,
        }
    }
}
