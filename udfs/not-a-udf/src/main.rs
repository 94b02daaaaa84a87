//! A plain WASI command: a valid component that is not a Weir module, for
//! the runtime's tests.

fn main() {
    println!("hello from a component that is not a Weir module");
}
