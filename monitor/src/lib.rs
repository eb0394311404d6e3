//! The QEMU human monitor (HMP) language for godwit.
