//! The monitor fuzz bodies over fixed hostile inputs and seeded random ones: telnet
//! negotiation garbage, escape sequences, endless lines, deep nesting, huge strings,
//! random bytes, with real commands among them (which must still run).

use super::{hmp_input, qmp_input};
use crate::editor::MAX_LINE;
use crate::qmp::lexer::{MAX_BYTES, MAX_DEPTH, MAX_TOKENS};

/// xorshift64*: the same bytes on every run.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// `chunk` (the first byte) then `body`.
fn with_chunk(chunk: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![chunk];
    v.extend_from_slice(body);
    v
}

fn hostile_hmp() -> Vec<(&'static str, Vec<u8>)> {
    let mut endless = vec![b'x'; 10 * MAX_LINE];
    endless.extend_from_slice(b"\rinfo status\r");
    let mut telnet = Vec::new();
    for i in 0..=255u8 {
        telnet.extend_from_slice(&[0xff, i, i, 0xff, 0xfa, i, 0xff, 0xf0]);
    }
    // The last subnegotiation (`IAC SB IAC IAC SE`) holds an escaped 0xFF: it ends here.
    telnet.extend_from_slice(b"\xff\xf0\xff\xfd\x01\rinfo version\r");
    let mut escapes = Vec::new();
    for seq in [
        &b"\x1b[A"[..],
        b"\x1b[B",
        b"\x1b[C",
        b"\x1b[D",
        b"\x1b[3~",
        b"\x1b[1;5H",
        b"\x1bO",
        b"\x1b[999999999999C",
        b"\x1b",
    ] {
        for _ in 0..50 {
            escapes.extend_from_slice(seq);
        }
        escapes.extend_from_slice(b"abc\x08\x17\x15\x01\x05\x04\t\x0c");
    }
    escapes.extend_from_slice(b"\rinfo version\r");
    vec![
        ("endless line", endless),
        ("telnet garbage", telnet),
        ("escape sequences", escapes),
        (
            "NUL and high bytes",
            [&[0u8; 5000][..], &[0xfe; 5000], b"\r\n\r\ninfo name\r"].concat(),
        ),
    ]
}

#[test]
fn hmp_survives_hostile_input_and_still_runs_commands() {
    for (what, input) in hostile_hmp() {
        for chunk in [0u8, 6, 63] {
            let out = hmp_input(&with_chunk(chunk, &input));
            assert!(
                out.commands >= 1,
                "{what} (chunks of {}): the command after it did not run",
                chunk + 1
            );
        }
    }
    let mut commands = 0;
    for seed in 1..=300u64 {
        let mut input = random_bytes(seed, 3000);
        // Ends a telnet subnegotiation the bytes may have opened, whatever its state, then
        // an escape sequence (whose next byte is swallowed), then the line.
        input.extend_from_slice(b"\xff\xf0\xff\xf0\r\r\rinfo status\r");
        commands += hmp_input(&input).commands;
    }
    assert!(commands >= 300, "random bytes: only {commands} commands ran");
}

fn hostile_qmp() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let deep = [&b"{\"execute\": \"qmp_capabilities\", \"arguments\": "[..], &b"["[..]].concat();
    let deep = [deep, vec![b'['; MAX_DEPTH + 10], vec![b']'; MAX_DEPTH + 11], b"}".to_vec()].concat();
    let huge = [&b"{\"execute\": \""[..], &vec![b'a'; MAX_BYTES + 10], b"\"}"].concat();
    let many = [b"[".to_vec(), b"1,".repeat(MAX_TOKENS), b"1]".to_vec()].concat();
    let stray = b"\x01\x02\xff{]}]]]".to_vec();
    let open_string = [&b"{\"execute\": \"x\", \"arguments\": {\"a\": \"\\u"[..], &b"zzzz"[..], b"\"}}"].concat();
    vec![
        ("deep nesting", deep, "JSON nesting depth limit exceeded"),
        ("huge string", huge, "JSON token size limit exceeded"),
        ("too many tokens", many, "JSON token count limit exceeded"),
        ("stray bytes", stray, "JSON parse error, stray '\\u0001'"),
        ("bad escape", open_string, "JSON parse error"),
    ]
}

#[test]
fn qmp_refuses_hostile_values_with_qemus_errors_and_goes_on() {
    let ok = b"{\"execute\": \"qmp_capabilities\"}{\"execute\": \"query-status\"}";
    for (what, input, _) in hostile_qmp() {
        for chunk in [0u8, 40, 63] {
            let out = qmp_input(&with_chunk(chunk, &[&input[..], ok].concat()));
            assert!(out.errors >= 1, "{what}: no error");
            assert!(out.replies > out.errors, "{what}: the requests after it were not answered");
        }
    }
    let mut replies = 0;
    for seed in 1..=300u64 {
        let mut input = random_bytes(seed, 3000);
        input.extend_from_slice(b"\"}]}]}]}");
        input.extend_from_slice(ok);
        replies += qmp_input(&input).replies;
    }
    assert!(replies >= 600, "random bytes: only {replies} replies");
}
