//! The `secagg` command-line tool.

fn main() {}
