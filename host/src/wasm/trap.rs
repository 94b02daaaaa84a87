//! Why a guest call failed, in words for the person reading the job's
//! error: a time limit, a memory limit, an exhausted stack, a panic the
//! guest reported, or else the trap itself.
//!
//! # Stack exhaustion
//!
//! A guest has two stacks, and deep recursion can exhaust either:
//!
//! - Its *call stack* (return addresses, locals kept in Wasm locals) lives
//!   on the host, and wasmtime caps it (`Config::max_wasm_stack`, 512 KiB by
//!   default). Past the cap the call traps with [`Trap::StackOverflow`].
//! - Its *shadow stack* (locals whose address is taken, large arrays) lives
//!   in the guest's own linear memory. rustc links wasm32 guests with the
//!   shadow stack *first*, at the bottom of memory (1 MiB by default),
//!   growing down towards address 0, so that an overflow cannot silently
//!   overwrite the guest's static data: the stack pointer goes below 0, wraps
//!   around to just under 4 GiB, and the next access traps with
//!   [`Trap::MemoryOutOfBounds`].
//!
//! The rule:
//!
//! - a [`Trap::StackOverflow`] is an exhausted call stack;
//! - a [`Trap::MemoryOutOfBounds`] whose faulting address is known (wasmtime
//!   adds `memory fault at wasm address 0x…` to the error when its guard
//!   pages catch the access) is an exhausted shadow stack when the address
//!   is at or above 2 GiB and beyond the memory's size: a guest's memory is
//!   far smaller than 2 GiB (the `memory_mb` limit), so only a wrapped-around
//!   (negative) pointer reaches there, and the stack pointer is the one
//!   pointer a correct Rust guest decrements past zero;
//! - a [`Trap::MemoryOutOfBounds`] whose address is not known (the access
//!   was a bulk-memory instruction, `memory.fill` or `memory.copy`, which
//!   wasmtime bounds-checks explicitly: rustc initialises a large local
//!   array with one) is an exhausted shadow stack when the call was deep in
//!   a recursion: the wasm backtrace (wasmtime keeps its innermost 20
//!   frames) has at least [`RECURSION_FRAMES`] frames, at least half of
//!   them of one function;
//! - any other out-of-bounds access stays "out of bounds memory access".
//!
//! The message names the recursive function when the backtrace shows one,
//! and keeps the original trap (and fault) as its detail.

use wasmtime::Trap;

use super::Limits;
use super::host_state::PanicReport;

/// Faulting addresses at or above this are a wrapped-around stack pointer.
const WRAPPED: u64 = 1 << 31;

/// The prefix of the context wasmtime adds to a memory fault it caught.
const FAULT_PREFIX: &str = "memory fault at wasm address 0x";

/// Explains a failed call of a guest run under `limits` that last reported
/// `panic`.
pub(crate) fn explain(error: &wasmtime::Error, limits: &Limits, panic: Option<&PanicReport>) -> String {
    let trap = error.downcast_ref::<Trap>();
    if trap == Some(&Trap::Interrupt) {
        return format!(
            "the call exceeded its time limit of {} ms and was interrupted",
            limits.call_timeout_ms
        );
    }
    if format!("{error:#}").contains("forcing trap when growing memory") {
        return format!(
            "the instance exceeded its memory limit of {} MiB",
            limits.memory_bytes >> 20
        );
    }
    if let Some(stack) = stack_exhaustion(error, trap) {
        return stack;
    }
    let trap = match trap {
        Some(trap) => trap.to_string(),
        None => first_line(&format!("{}", error.root_cause())).to_string(),
    };
    match panic {
        Some(panic) => format!("{} ({trap})", panic.message),
        None => trap,
    }
}

/// The explanation of an exhausted stack, if the failure is one (see the
/// module docs for the rule).
fn stack_exhaustion(error: &wasmtime::Error, trap: Option<&Trap>) -> Option<String> {
    const EXHAUSTED: &str = "the UDF's stack was exhausted (too deep a recursion?)";
    let recursion = recursive_function(error);
    let within = recursion
        .as_ref()
        .map(|name| format!(" in recursive calls of `{name}`"))
        .unwrap_or_default();
    match trap? {
        Trap::StackOverflow => Some(format!(
            "{EXHAUSTED}: its call stack reached the host's limit{within} ({})",
            Trap::StackOverflow
        )),
        Trap::MemoryOutOfBounds => {
            let fault = error
                .chain()
                .map(|cause| cause.to_string())
                .find(|text| text.starts_with(FAULT_PREFIX));
            let detail = match &fault {
                Some(fault) => {
                    let (address, size) = parse_fault(fault)?;
                    if address < WRAPPED || address < size {
                        return None;
                    }
                    format!("{}; {fault}", Trap::MemoryOutOfBounds)
                }
                None if recursion.is_some() => Trap::MemoryOutOfBounds.to_string(),
                None => return None,
            };
            Some(format!(
                "{EXHAUSTED}: its shadow stack in linear memory overflowed{within}; rustc gives it 1 MiB, link \
                 with `-C link-arg=-zstack-size=BYTES` for more ({detail})"
            ))
        }
        _ => None,
    }
}

/// Frames of a backtrace that, half of them of one function, show a
/// recursion.
const RECURSION_FRAMES: usize = 16;

/// The function the wasm backtrace of `error` recurses in, if it shows a
/// recursion: its name, demangled, or `function #N`.
fn recursive_function(error: &wasmtime::Error) -> Option<String> {
    let frames = error.downcast_ref::<wasmtime::WasmBacktrace>()?.frames();
    if frames.len() < RECURSION_FRAMES {
        return None;
    }
    let mut counts: Vec<(u32, Option<&str>, usize)> = Vec::new();
    for frame in frames {
        let key = (frame.func_index(), frame.func_name());
        match counts.iter_mut().find(|(index, name, _)| (*index, *name) == key) {
            Some(entry) => entry.2 += 1,
            None => counts.push((key.0, key.1, 1)),
        }
    }
    let (index, name, count) = counts.into_iter().max_by_key(|(_, _, count)| *count)?;
    (count * 2 >= frames.len()).then(|| match name {
        Some(name) => demangle(name),
        None => format!("function #{index}"),
    })
}

/// A Rust symbol in the legacy mangling (`_ZN7testkit4deep17h0123456789abcdefE`)
/// as a path without its hash (`testkit::deep`); other names as they are.
fn demangle(symbol: &str) -> String {
    let Some(mut rest) = symbol.strip_prefix("_ZN") else {
        return symbol.to_string();
    };
    let mut parts: Vec<String> = Vec::new();
    while !rest.starts_with('E') {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let Some(len) = rest[..digits].parse::<usize>().ok().filter(|len| *len > 0) else {
            return symbol.to_string();
        };
        let Some(part) = rest.get(digits..digits + len) else {
            return symbol.to_string();
        };
        parts.push(unescape(part));
        rest = &rest[digits + len..];
    }
    let is_hash =
        |part: &String| part.len() == 17 && part.starts_with('h') && part[1..].chars().all(|c| c.is_ascii_hexdigit());
    if parts.last().is_some_and(is_hash) {
        parts.pop();
    }
    parts.join("::")
}

/// The escapes of the legacy mangling: `$LT$` `<`, `$u20$` ` `, `..` `::`…
fn unescape(part: &str) -> String {
    let part = part
        .strip_prefix("_$")
        .map_or(part.to_string(), |rest| format!("${rest}"));
    let mut out = String::with_capacity(part.len());
    let mut rest = part.as_str();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("..") {
            out.push_str("::");
            rest = after;
            continue;
        }
        if rest.starts_with('$')
            && let Some(end) = rest[1..].find('$')
        {
            let code = &rest[1..=end];
            let named = match code {
                "SP" => Some('@'),
                "BP" => Some('*'),
                "RF" => Some('&'),
                "LT" => Some('<'),
                "GT" => Some('>'),
                "LP" => Some('('),
                "RP" => Some(')'),
                "C" => Some(','),
                _ => code
                    .strip_prefix('u')
                    .and_then(|hex| u32::from_str_radix(hex, 16).ok())
                    .and_then(char::from_u32),
            };
            if let Some(c) = named {
                out.push(c);
                rest = &rest[end + 2..];
                continue;
            }
        }
        let c = rest.chars().next().unwrap_or_default();
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    out
}

/// The address and memory size of wasmtime's `memory fault at wasm address
/// 0x… in linear memory of size 0x…`.
fn parse_fault(text: &str) -> Option<(u64, u64)> {
    let rest = text.strip_prefix(FAULT_PREFIX)?;
    let (address, rest) = rest.split_once(' ')?;
    let size = rest.strip_prefix("in linear memory of size 0x")?;
    Some((
        u64::from_str_radix(address, 16).ok()?,
        u64::from_str_radix(size, 16).ok()?,
    ))
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        call_timeout_ms: 300,
        memory_bytes: 64 << 20,
    };

    fn fault(trap: Trap, context: &str) -> wasmtime::Error {
        wasmtime::Error::from(trap).context(context.to_string())
    }

    #[test]
    fn an_out_of_bounds_access_just_under_4_gib_is_an_exhausted_shadow_stack() {
        let error = fault(
            Trap::MemoryOutOfBounds,
            "memory fault at wasm address 0xfffffff0 in linear memory of size 0x110000",
        );
        assert_eq!(
            explain(&error, &LIMITS, None),
            "the UDF's stack was exhausted (too deep a recursion?): its shadow stack in linear memory overflowed; \
             rustc gives it 1 MiB, link with `-C link-arg=-zstack-size=BYTES` for more (wasm trap: out of bounds \
             memory access; memory fault at wasm address 0xfffffff0 in linear memory of size 0x110000)"
        );
    }

    #[test]
    fn other_out_of_bounds_accesses_stay_what_they_are() {
        let low = fault(
            Trap::MemoryOutOfBounds,
            "memory fault at wasm address 0x200000 in linear memory of size 0x110000",
        );
        assert_eq!(explain(&low, &LIMITS, None), "wasm trap: out of bounds memory access");
        let unknown = wasmtime::Error::from(Trap::MemoryOutOfBounds);
        assert_eq!(
            explain(&unknown, &LIMITS, None),
            "wasm trap: out of bounds memory access"
        );
    }

    #[test]
    fn a_call_stack_overflow_is_an_exhausted_stack() {
        let error = wasmtime::Error::from(Trap::StackOverflow);
        assert_eq!(
            explain(&error, &LIMITS, None),
            "the UDF's stack was exhausted (too deep a recursion?): its call stack reached the host's limit \
             (wasm trap: call stack exhausted)"
        );
    }

    #[test]
    fn panics_and_time_limits_are_named() {
        let panic = PanicReport {
            message: "boom".into(),
            record_index: Some(2),
        };
        let unreachable = wasmtime::Error::from(Trap::UnreachableCodeReached);
        assert_eq!(
            explain(&unreachable, &LIMITS, Some(&panic)),
            "boom (wasm trap: wasm `unreachable` instruction executed)"
        );
        let interrupted = wasmtime::Error::from(Trap::Interrupt);
        assert_eq!(
            explain(&interrupted, &LIMITS, None),
            "the call exceeded its time limit of 300 ms and was interrupted"
        );
    }

    #[test]
    fn rust_symbols_are_demangled_without_their_hash() {
        assert_eq!(
            demangle("_ZN7testkit11diagnostics20exhaust_shadow_stack17he2a68fbf5f5b7464E"),
            "testkit::diagnostics::exhaust_shadow_stack"
        );
        assert_eq!(
            demangle("_ZN48_$LT$alloc..vec..Vec$LT$T$GT$$u20$as$u20$Foo$GT$3bar17h0123456789abcdefE"),
            "<alloc::vec::Vec<T> as Foo>::bar"
        );
        assert_eq!(demangle("memcpy"), "memcpy");
        assert_eq!(demangle("_ZN3abc"), "_ZN3abc");
    }
}
