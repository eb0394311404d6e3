//! Integer expressions for `i` and `l` arguments (`info registers 1`,
//! `info registers 0x1`, `(1+2)*3`), with QEMU's operators, precedence and
//! error messages.
//!
//! Precedence, loosest first: `+ -`, then `& | ^`, then `* / %`, then the
//! unary `+ - ~`, parentheses, character constants (`'a'`) and numbers in C
//! notation (`0x1f`, `017`, `42`). Arithmetic wraps like QEMU's `int64_t`.

use thiserror::Error;

/// An expression error; the text is what QEMU prints.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ExprError {
    #[error("')' expected")]
    CloseParenExpected,
    #[error("character constant expected")]
    CharConstantExpected,
    #[error("missing terminating ' character")]
    MissingQuote,
    #[error("unknown register")]
    UnknownRegister,
    #[error("unexpected end of expression")]
    UnexpectedEnd,
    #[error("number too large")]
    NumberTooLarge,
    #[error("invalid char '{0}' in expression")]
    InvalidChar(char),
    #[error("division by zero")]
    DivisionByZero,
}

/// Evaluates the expression at the start of `text` (after optional
/// whitespace). Returns the value and the number of bytes consumed, trailing
/// whitespace included; what follows is left to the caller.
pub fn eval_prefix(text: &str) -> Result<(i64, usize), ExprError> {
    let mut p = Cursor {
        s: text.as_bytes(),
        pos: 0,
    };
    p.skip_space();
    let value = p.sum()?;
    Ok((value, p.pos))
}

struct Cursor<'a> {
    s: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(is_space) {
            self.pos += 1;
        }
    }

    /// Moves past the current character and any whitespace after it.
    fn next(&mut self) {
        if self.pos < self.s.len() {
            self.pos += 1;
            self.skip_space();
        }
    }

    fn sum(&mut self) -> Result<i64, ExprError> {
        let mut value = self.logic()?;
        while let Some(op @ (b'+' | b'-')) = self.peek() {
            self.next();
            let rhs = self.logic()?;
            value = if op == b'+' {
                value.wrapping_add(rhs)
            } else {
                value.wrapping_sub(rhs)
            };
        }
        Ok(value)
    }

    fn logic(&mut self) -> Result<i64, ExprError> {
        let mut value = self.product()?;
        while let Some(op @ (b'&' | b'|' | b'^')) = self.peek() {
            self.next();
            let rhs = self.product()?;
            value = match op {
                b'&' => value & rhs,
                b'|' => value | rhs,
                _ => value ^ rhs,
            };
        }
        Ok(value)
    }

    fn product(&mut self) -> Result<i64, ExprError> {
        let mut value = self.unary()?;
        while let Some(op @ (b'*' | b'/' | b'%')) = self.peek() {
            self.next();
            let rhs = self.unary()?;
            value = match op {
                b'*' => value.wrapping_mul(rhs),
                _ if rhs == 0 => return Err(ExprError::DivisionByZero),
                b'/' => value.wrapping_div(rhs),
                _ => value.wrapping_rem(rhs),
            };
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<i64, ExprError> {
        match self.peek() {
            Some(b'+') => {
                self.next();
                self.unary()
            }
            Some(b'-') => {
                self.next();
                Ok(self.unary()?.wrapping_neg())
            }
            Some(b'~') => {
                self.next();
                Ok(!self.unary()?)
            }
            Some(b'(') => {
                self.next();
                let value = self.sum()?;
                if self.peek() != Some(b')') {
                    return Err(ExprError::CloseParenExpected);
                }
                self.next();
                Ok(value)
            }
            Some(b'\'') => {
                self.pos += 1;
                // C's `char` is signed on x86, so bytes >= 0x80 come out negative.
                let value = self.peek().ok_or(ExprError::CharConstantExpected)? as i8;
                self.pos += 1;
                if self.peek() != Some(b'\'') {
                    return Err(ExprError::MissingQuote);
                }
                self.next();
                Ok(i64::from(value))
            }
            Some(b'$') => {
                // Registers are not reachable from here: any name is unknown.
                self.pos += 1;
                while self.peek().is_some_and(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.') {
                    self.pos += 1;
                }
                self.skip_space();
                Err(ExprError::UnknownRegister)
            }
            None => Err(ExprError::UnexpectedEnd),
            Some(c) => {
                let (value, used) = c_number(&self.s[self.pos..])?;
                if used == 0 {
                    return Err(ExprError::InvalidChar(char::from(c)));
                }
                self.pos += used;
                self.skip_space();
                Ok(value as i64)
            }
        }
    }
}

/// C `isspace` in the C locale.
pub(crate) fn is_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `strtoull(s, &end, 0)` without the whitespace and sign handling (the
/// caller has dealt with both): returns the value and the bytes used.
fn c_number(s: &[u8]) -> Result<(u64, usize), ExprError> {
    let (radix, start) = match s {
        [b'0', b'x' | b'X', d, ..] if d.is_ascii_hexdigit() => (16, 2),
        [b'0', ..] => (8, 0),
        _ => (10, 0),
    };
    let len = s[start..].iter().take_while(|c| char::from(**c).is_digit(radix)).count();
    if len == 0 {
        return Ok((0, 0));
    }
    let digits = std::str::from_utf8(&s[start..start + len]).map_err(|_| ExprError::UnexpectedEnd)?;
    let value = u64::from_str_radix(digits, radix).map_err(|_| ExprError::NumberTooLarge)?;
    Ok((value, start + len))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(s: &str) -> Result<i64, ExprError> {
        eval_prefix(s).map(|(v, _)| v)
    }

    #[test]
    fn arithmetic_and_precedence() {
        assert_eq!(eval("1"), Ok(1));
        assert_eq!(eval("  0x1f "), Ok(31));
        assert_eq!(eval("017"), Ok(15));
        assert_eq!(eval("1 + 2 * 3"), Ok(7));
        assert_eq!(eval("(1+2)*3"), Ok(9));
        // & | ^ bind tighter than + and -.
        assert_eq!(eval("1 + 6 & 3"), Ok(3));
        assert_eq!(eval("-5 % 3"), Ok(-2));
        assert_eq!(eval("~0"), Ok(-1));
        assert_eq!(eval("'a'"), Ok(97));
    }

    #[test]
    fn stops_before_trailing_text() {
        assert_eq!(eval_prefix("1 2"), Ok((1, 2)));
        assert_eq!(eval_prefix("08"), Ok((0, 1)));
    }

    #[test]
    fn errors() {
        assert_eq!(eval("x"), Err(ExprError::InvalidChar('x')));
        assert_eq!(eval("(1"), Err(ExprError::CloseParenExpected));
        assert_eq!(eval("1/0"), Err(ExprError::DivisionByZero));
        assert_eq!(eval("$eax"), Err(ExprError::UnknownRegister));
        assert_eq!(eval("99999999999999999999999"), Err(ExprError::NumberTooLarge));
        assert_eq!(eval("1+"), Err(ExprError::UnexpectedEnd));
        assert_eq!(eval("'"), Err(ExprError::CharConstantExpected));
        assert_eq!(eval("'ab'"), Err(ExprError::MissingQuote));
        assert_eq!(ExprError::InvalidChar('x').to_string(), "invalid char 'x' in expression");
    }
}
