//! A small JSON reader into [`Value`], so a plugin's own tests can read its `plugin.json`
//! (the generated `plugin_info_matches_manifest` test) without a dependency.

use crate::msgpack::{Value, DEPTH_MAX};

pub fn parse(text: &str) -> Result<Value, String> {
    let mut p = Parser { s: text.as_bytes(), pos: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.pos != p.s.len() {
        return Err(format!("json: unexpected text at byte {}", p.pos));
    }
    Ok(v)
}

struct Parser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl<'a> Parser<'a> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && matches!(self.s[self.pos], b' ' | b'\n' | b'\r' | b'\t') {
            self.pos += 1;
        }
    }

    fn err<T>(&self, what: &str) -> Result<T, String> {
        Err(format!("json: {} at byte {}", what, self.pos))
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.pos..].starts_with(lit.as_bytes()) {
            self.pos += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > DEPTH_MAX {
            return self.err("nested too deep");
        }
        self.ws();
        match self.s.get(self.pos) {
            None => self.err("unexpected end"),
            Some(b'{') => {
                self.pos += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Value::Map(entries));
                }
                loop {
                    self.ws();
                    let k = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return self.err("expected ':'");
                    }
                    let v = self.value(depth + 1)?;
                    entries.push((Value::Str(k), v));
                    self.ws();
                    if self.eat("}") {
                        return Ok(Value::Map(entries));
                    }
                    if !self.eat(",") {
                        return self.err("expected ',' or '}'");
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Value::Array(items));
                }
                loop {
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat("]") {
                        return Ok(Value::Array(items));
                    }
                    if !self.eat(",") {
                        return self.err("expected ',' or ']'");
                    }
                }
            }
            Some(b'"') => Ok(Value::Str(self.string()?)),
            Some(b't') if self.eat("true") => Ok(Value::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Value::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Value::Nil),
            Some(_) => self.number(),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if !self.eat("\"") {
            return self.err("expected a string");
        }
        let mut out = String::new();
        loop {
            let rest = &self.s[self.pos..];
            let stop = match rest.iter().position(|b| *b == b'"' || *b == b'\\') {
                Some(i) => i,
                None => return self.err("unterminated string"),
            };
            match std::str::from_utf8(&rest[..stop]) {
                Ok(chunk) => out.push_str(chunk),
                Err(_) => return self.err("string is not UTF-8"),
            }
            self.pos += stop + 1;
            if rest[stop] == b'"' {
                return Ok(out);
            }
            let esc = match self.s.get(self.pos) {
                Some(c) => *c,
                None => return self.err("unterminated escape"),
            };
            self.pos += 1;
            match esc {
                b'"' => out.push('"'),
                b'\\' => out.push('\\'),
                b'/' => out.push('/'),
                b'b' => out.push('\u{8}'),
                b'f' => out.push('\u{c}'),
                b'n' => out.push('\n'),
                b'r' => out.push('\r'),
                b't' => out.push('\t'),
                b'u' => {
                    let code = self.hex4()?;
                    let c = if (0xd800..0xdc00).contains(&code) && self.eat("\\u") {
                        let low = self.hex4()?;
                        char::from_u32(0x10000 + ((code - 0xd800) << 10) + (low.wrapping_sub(0xdc00) & 0x3ff))
                    } else {
                        char::from_u32(code)
                    };
                    out.push(c.unwrap_or('\u{fffd}'));
                }
                _ => return self.err("bad escape"),
            }
        }
    }

    fn hex4(&mut self) -> Result<u32, String> {
        let digits = match self.s.get(self.pos..self.pos + 4) {
            Some(d) => d,
            None => return self.err("short \\u escape"),
        };
        let text = std::str::from_utf8(digits).map_err(|_| "json: bad \\u escape".to_string())?;
        let code = u32::from_str_radix(text, 16).map_err(|_| format!("json: bad \\u escape at byte {}", self.pos))?;
        self.pos += 4;
        Ok(code)
    }

    fn number(&mut self) -> Result<Value, String> {
        let start = self.pos;
        while self.pos < self.s.len() && matches!(self.s[self.pos], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
            self.pos += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.pos]).unwrap_or("");
        if text.is_empty() {
            return self.err("unexpected character");
        }
        if let Ok(i) = text.parse::<i64>() {
            return Ok(Value::Int(i));
        }
        match text.parse::<f64>() {
            Ok(f) => Ok(Value::F64(f)),
            Err(_) => self.err("bad number"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_manifest() {
        let v = parse(r#"{"name": "a\u00e9\"", "priority": 950, "permissions": {"kv_read": true}, "kv_prefixes": [], "t": 1.5, "s": null}"#).unwrap();
        assert_eq!(v.get("name").and_then(Value::as_str), Some("a\u{e9}\""));
        assert_eq!(v.get("priority").and_then(Value::as_i64), Some(950));
        assert_eq!(v.get("permissions").and_then(|p| p.get("kv_read")).and_then(Value::as_bool), Some(true));
        assert_eq!(v.get("t"), Some(&Value::F64(1.5)));
    }

    #[test]
    fn refuses_broken_json() {
        for bad in ["{", "{\"a\" 1}", "[1,]", "\"abc", "{} x", "tru"] {
            assert!(parse(bad).is_err(), "{}", bad);
        }
    }
}
