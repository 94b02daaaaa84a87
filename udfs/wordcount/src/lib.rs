//! Word count: split lines into words, key by word, count per word.

use std::io::Write as _;

use weir_sdk::{
    Context, Emitter, Error, FlatMap, KeySelector, KeyWriter, KeyedProcessFunction, OpenContext, Record, Result,
    TaskInfo, ValueState,
};

/// Splits a line into words: maximal runs of alphanumeric characters,
/// lowercased.
pub struct Tokenize {
    /// Reused buffer for lowercasing ASCII words.
    word: Vec<u8>,
}

impl FlatMap for Tokenize {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self { word: Vec::new() })
    }

    fn flat_map(&mut self, record: &Record<'_>, out: &mut Emitter<'_>) -> Result<()> {
        let line = std::str::from_utf8(record.payload()).map_err(|_| Error::new("line is not valid UTF-8"))?;
        for word in line
            .split(|c: char| !c.is_alphanumeric())
            .filter(|word| !word.is_empty())
        {
            if word.is_ascii() {
                self.word.clear();
                self.word.extend(word.bytes().map(|byte| byte.to_ascii_lowercase()));
                out.emit(&self.word);
            } else {
                out.emit(word.to_lowercase().as_bytes());
            }
        }
        Ok(())
    }
}

/// Keys a word by itself.
pub struct WordKey;

impl KeySelector for WordKey {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn key(&mut self, record: &Record<'_>, key: &mut KeyWriter<'_>) -> Result<()> {
        key.write_bytes(record.payload());
        Ok(())
    }
}

/// Counts the occurrences of each word and emits `word,count`.
pub struct Count {
    count: ValueState<u64>,
    /// Reused buffer for the output line.
    line: Vec<u8>,
}

impl KeyedProcessFunction for Count {
    fn open(ctx: &mut OpenContext<'_>) -> Result<Self> {
        Ok(Self {
            count: ctx.value_state("count"),
            line: Vec::new(),
        })
    }

    fn process_element(&mut self, _record: &Record<'_>, ctx: &mut Context<'_>) -> Result<()> {
        let count = self.count.get()?.unwrap_or(0) + 1;
        self.count.set(&count)?;
        self.line.clear();
        self.line.extend_from_slice(ctx.key());
        write!(self.line, ",{count}")?;
        ctx.emit(&self.line);
        Ok(())
    }
}

weir_sdk::export_functions! {
    flat_map "tokenize" => Tokenize,
    key_selector "word" => WordKey,
    keyed_process "count" => Count;
    states {
        value "count" => u64,
    }
}
