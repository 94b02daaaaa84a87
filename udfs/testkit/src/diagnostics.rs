//! Functions for the tests of what the host tells about a failing or
//! chatty UDF: exhausted stacks and output on stdout and stderr.

use std::hint::black_box;

use weir_sdk::{Map, Record, RecordWriter, Result, TaskInfo};

/// Recurses with 4 KiB of locals whose address is taken in each frame, so
/// the frames live on the shadow stack in linear memory, until it is
/// exhausted (rustc gives it 1 MiB: about 250 frames). Each frame is
/// filled with one byte (`memory.fill`).
#[inline(never)]
pub fn exhaust_shadow_stack(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = black_box([depth.to_le_bytes()[0]; 4096]);
    let below = exhaust_shadow_stack(black_box(depth + 1));
    below.wrapping_add(u64::from(frame[(depth % 4096) as usize]))
}

/// [`exhaust_shadow_stack`] with frames written by plain stores (a `u64`
/// pattern, which `memory.fill` cannot write).
#[inline(never)]
pub fn exhaust_shadow_stack_by_stores(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    let frame = [depth; 512];
    black_box(&frame);
    let below = exhaust_shadow_stack_by_stores(black_box(depth + 1));
    below.wrapping_add(frame[(depth % 512) as usize])
}

/// Recurses with small frames that need no shadow stack, until the host's
/// limit on the call stack stops it.
#[inline(never)]
pub fn exhaust_call_stack(depth: u64) -> u64 {
    if depth == u64::MAX {
        return 0;
    }
    exhaust_call_stack(depth + 1).wrapping_mul(3).wrapping_add(depth)
}

/// Copies each record, printing it on stdout and stderr, tagged with its
/// subtask: `TEXT (subtask N)` and `TEXT on stderr (subtask N)`. Two records
/// print otherwise: `long` prints a line of 5,000 `y` on stderr, `partial`
/// prints `no newline from subtask N` on stderr with no newline after it.
pub struct Print {
    subtask: u32,
}

impl Map for Print {
    fn open(task: &TaskInfo) -> Result<Self> {
        Ok(Self {
            subtask: task.subtask_index,
        })
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        let text = record.payload_str()?;
        let subtask = self.subtask;
        match text {
            "long" => eprintln!("{}", "y".repeat(5000)),
            "partial" => eprint!("no newline from subtask {subtask}"),
            _ => {
                println!("{text} (subtask {subtask})");
                eprintln!("{text} on stderr (subtask {subtask})");
            }
        }
        out.write_bytes(record.payload());
        Ok(())
    }
}

/// Tries to open a TCP connection to the address in each record (the
/// sandbox must refuse) and writes `connected to ADDR` or `refused ADDR:
/// ERROR` for it.
pub struct ConnectTo;

impl Map for ConnectTo {
    fn open(_task: &TaskInfo) -> Result<Self> {
        Ok(Self)
    }

    fn map(&mut self, record: &Record<'_>, out: &mut RecordWriter<'_>) -> Result<()> {
        let address = record.payload_str()?.trim();
        match std::net::TcpStream::connect(address) {
            Ok(_) => out.write_bytes(format!("connected to {address}").as_bytes()),
            Err(error) => out.write_bytes(format!("refused {address}: {:?}", error.kind()).as_bytes()),
        }
        Ok(())
    }
}
