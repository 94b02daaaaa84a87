//! Which element of the batch is being processed, and which key the host
//! has selected for state and timer calls.
//!
//! The host scopes state and timers to a current key, chosen with
//! `key-scope.select-key(index)`. The SDK calls it lazily: only when the
//! function touches state or timers, and only if the element being processed
//! is not the one selected last in this call.

use std::cell::Cell;

use crate::__bindings::weir::udf::{host, key_scope};

/// The element of the input being processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    /// Between elements, or outside of a call.
    None,
    /// Record `i` of the batch.
    Record(u32),
    /// Timer `i` of the timer batch.
    Timer(u32),
}

#[derive(Clone, Copy, Debug)]
struct Scope {
    element: Element,
    /// Whether the call is keyed (state and timers are usable).
    keyed: bool,
    /// The element whose key the host has selected during this call.
    selected: Option<u32>,
}

impl Scope {
    const IDLE: Self = Self {
        element: Element::None,
        keyed: false,
        selected: None,
    };
}

thread_local! {
    static SCOPE: Cell<Scope> = const { Cell::new(Scope::IDLE) };
}

#[inline]
fn update(f: impl FnOnce(&mut Scope)) {
    let mut scope = SCOPE.get();
    f(&mut scope);
    SCOPE.set(scope);
}

/// Starts a call from the host; no key is selected yet.
pub(crate) fn begin_call(keyed: bool) {
    SCOPE.set(Scope { keyed, ..Scope::IDLE });
}

/// Ends a call from the host.
pub(crate) fn end_call() {
    SCOPE.set(Scope::IDLE);
}

/// Record `index` of the batch is being processed.
#[inline]
pub(crate) fn enter_record(index: u32) {
    update(|scope| scope.element = Element::Record(index));
}

/// No element is being processed any more (the call goes on).
pub(crate) fn end_record() {
    update(|scope| scope.element = Element::None);
}

/// Timer `index` of the timer batch is being processed.
pub(crate) fn enter_timer(index: u32) {
    update(|scope| scope.element = Element::Timer(index));
}

/// The index of the record being processed, if any.
pub(crate) fn record_index() -> Option<u32> {
    match SCOPE.get().element {
        Element::Record(index) => Some(index),
        Element::Timer(_) | Element::None => None,
    }
}

/// Makes the key of the element being processed the host's current key.
/// Called before every state and timer call.
pub(crate) fn select_current_key() {
    let scope = SCOPE.get();
    let index = match scope.element {
        Element::Record(index) | Element::Timer(index) if scope.keyed => index,
        _ => panic!(
            "keyed state and timers can only be used while a keyed process function \
             handles a record or a timer (not in `open`)"
        ),
    };
    if scope.selected != Some(index) {
        key_scope::select_key(index);
        SCOPE.set(Scope {
            selected: Some(index),
            ..scope
        });
    }
}

/// Makes panics report their message, location and record to the host
/// before the guest traps.
pub(crate) fn install_panic_hook() {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        std::panic::set_hook(Box::new(|info| {
            host::report_panic(&info.to_string(), record_index());
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_the_record_being_processed() {
        begin_call(false);
        assert_eq!(record_index(), None);
        enter_record(3);
        assert_eq!(record_index(), Some(3));
        end_record();
        assert_eq!(record_index(), None);
        enter_timer(1);
        assert_eq!(record_index(), None);
        end_call();
        assert_eq!(record_index(), None);
    }

    #[test]
    #[should_panic(expected = "keyed state and timers can only be used")]
    fn refuses_state_outside_of_a_keyed_call() {
        begin_call(false);
        enter_record(0);
        select_current_key();
    }
}
