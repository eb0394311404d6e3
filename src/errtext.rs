//! Error texts in the C library's words ("No such file or directory"), without the
//! " (os error N)" suffix Rust adds, so godwit's messages read like QEMU's.

pub fn io(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno(code),
        None => e.to_string(),
    }
}

pub fn errno(code: i32) -> String {
    let s = std::io::Error::from_raw_os_error(code).to_string();
    match s.rfind(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

/// For kvm-ioctls errors (an errno underneath).
pub fn kvm(e: &kvm_ioctls::Error) -> String {
    errno(e.errno())
}

#[cfg(test)]
mod tests {
    #[test]
    fn plain_text() {
        assert_eq!(super::errno(libc::ENOENT), "No such file or directory");
        assert_eq!(super::io(&std::io::Error::from_raw_os_error(libc::EACCES)), "Permission denied");
    }
}
