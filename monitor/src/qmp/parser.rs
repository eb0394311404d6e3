//! The tokens of one framed value turned into a `serde_json::Value`, with QEMU 7.2's
//! parse error texts. The framer has bounded the nesting, so the recursion is bounded.

use super::lexer::Token;
use serde_json::{Map, Number, Value};

/// Parses one value; `Err` is the whole `desc` QEMU answers (`JSON parse error, ...`).
pub fn parse(tokens: &[Token]) -> Result<Value, String> {
    let mut p = Parser { tokens, at: 0 };
    let v = p.value().map_err(|e| format!("JSON parse error, {e}"))?;
    if p.at != tokens.len() {
        // Only a stray closing bracket can follow a complete value here.
        return Err("JSON parse error, expecting value".into());
    }
    Ok(v)
}

struct Parser<'a> {
    tokens: &'a [Token],
    at: usize,
}

impl Parser<'_> {
    fn next(&mut self) -> Result<&Token, String> {
        let t = self.tokens.get(self.at).ok_or("premature EOI")?;
        self.at += 1;
        Ok(t)
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn value(&mut self) -> Result<Value, String> {
        match self.next()?.clone() {
            Token::LCurly => self.object(),
            Token::LSquare => self.array(),
            Token::Str(s) => Ok(Value::String(s)),
            Token::BadStr(why) => Err(why.to_string()),
            Token::Num(n) => number(&n),
            Token::Word(w) => match w.as_str() {
                "true" => Ok(Value::Bool(true)),
                "false" => Ok(Value::Bool(false)),
                "null" => Ok(Value::Null),
                _ => Err(format!("invalid keyword '{w}'")),
            },
            _ => Err("expecting value".into()),
        }
    }

    fn object(&mut self) -> Result<Value, String> {
        let mut map = Map::new();
        if self.peek() == Some(&Token::RCurly) {
            self.at += 1;
            return Ok(Value::Object(map));
        }
        loop {
            // Like QEMU, the key is read as any value first (`{bad: 1}` is a bad keyword).
            let key = match self.value()? {
                Value::String(s) => s,
                _ => return Err("key is not a string in object".into()),
            };
            if self.next()? != &Token::Colon {
                return Err("missing : in object pair".into());
            }
            let v = self.value()?;
            if map.contains_key(&key) {
                return Err(format!("duplicate key '{key}'"));
            }
            map.insert(key, v);
            match self.next()? {
                Token::RCurly => return Ok(Value::Object(map)),
                Token::Comma => {}
                _ => return Err("expected separator in dict".into()),
            }
        }
    }

    fn array(&mut self) -> Result<Value, String> {
        let mut list = Vec::new();
        if self.peek() == Some(&Token::RSquare) {
            self.at += 1;
            return Ok(Value::Array(list));
        }
        loop {
            list.push(self.value()?);
            match self.next()? {
                Token::RSquare => return Ok(Value::Array(list)),
                Token::Comma => {}
                _ => return Err("expected separator in list".into()),
            }
        }
    }
}

/// A number as QEMU reads it: a signed 64-bit integer if it is one, else unsigned, else
/// a double.
fn number(text: &str) -> Result<Value, String> {
    let integer = !text.contains(['.', 'e', 'E']);
    if integer {
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Number(i.into()));
        }
        if let Ok(u) = text.parse::<u64>() {
            return Ok(Value::Number(u.into()));
        }
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("invalid number '{text}'"))
}

#[cfg(test)]
mod tests {
    use super::super::lexer::{Framed, Framer};
    use super::*;
    use serde_json::json;

    fn one(text: &str) -> Result<Value, String> {
        let mut f = Framer::new();
        let mut got = f.feed(text.as_bytes());
        got.extend(f.feed(b" "));
        match got.remove(0) {
            Framed::Value(t) => parse(&t),
            Framed::Error(e) => Err(e),
        }
    }

    #[test]
    fn values() {
        assert_eq!(
            one(r#"{"execute": 'stop', "id": [1, -2, 1.5, 18446744073709551615, true, null]}"#),
            Ok(json!({"execute": "stop", "id": [1, -2, 1.5, 18446744073709551615u64, true, null]}))
        );
        assert_eq!(one("{}"), Ok(json!({})));
    }

    #[test]
    fn errors_read_like_qemu() {
        assert_eq!(one("{bad json}").unwrap_err(), "JSON parse error, invalid keyword 'bad'");
        assert_eq!(one("}").unwrap_err(), "JSON parse error, expecting value");
        assert_eq!(one("]").unwrap_err(), "JSON parse error, expecting value");
        assert_eq!(one(r#"{"a":}"#).unwrap_err(), "JSON parse error, expecting value");
        assert_eq!(one(r#"{"a" 1}"#).unwrap_err(), "JSON parse error, missing : in object pair");
        assert_eq!(one(r#"{1: 1}"#).unwrap_err(), "JSON parse error, key is not a string in object");
        assert_eq!(one(r#"[1 2]"#).unwrap_err(), "JSON parse error, expected separator in list");
        assert_eq!(one(r#"{"a":1 "b":2}"#).unwrap_err(), "JSON parse error, expected separator in dict");
    }
}
