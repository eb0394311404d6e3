//! What godwit's monitor prints about the machine, in QEMU 7.2's words and layouts.
pub mod registers;
