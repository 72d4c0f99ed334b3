//! The `causalkv` binary.
fn main() {
    println!("causalkv");
}
