//! Requests a plugin handles and responses it returns, as the node's wire protocol has them
//! (docs/PROTOCOL.md): a msgpack map with a string `type` and the type's fields.

use std::fmt;

use crate::msgpack::Value;

/// Any request, by its `type` and fields. Plugins may handle types the node does not know.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub type_name: String,
    pub fields: Value,
}

impl Request {
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }

    pub fn str_field(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(Value::as_str)
    }

    /// A `bin` field, or a `str` one as its UTF-8 bytes (JSON clients such as `aspen-cli rpc`
    /// can only send text).
    pub fn bytes_field(&self, name: &str) -> Option<&[u8]> {
        self.get(name).and_then(Value::as_bytes)
    }

    pub fn int_field(&self, name: &str) -> Option<i64> {
        self.get(name).and_then(Value::as_i64)
    }

    pub fn bool_field(&self, name: &str) -> Option<bool> {
        self.get(name).and_then(Value::as_bool)
    }
}

/// The request handed to `AspenPlugin::handle`. The node's KV requests have their own variants;
/// every other type (a plugin's own request types included) arrives as `Other`.
#[derive(Clone, Debug, PartialEq)]
pub enum ClientRpcRequest {
    Ping,
    ReadKey { key: String },
    WriteKey { key: String, value: Vec<u8> },
    DeleteKey { key: String },
    ScanKeys { prefix: String, limit: Option<u32> },
    CompareAndSwapKey { key: String, expected: Option<Vec<u8>>, new_value: Vec<u8> },
    Other(Request),
}

impl ClientRpcRequest {
    pub fn type_name(&self) -> &str {
        match self {
            ClientRpcRequest::Ping => "Ping",
            ClientRpcRequest::ReadKey { .. } => "ReadKey",
            ClientRpcRequest::WriteKey { .. } => "WriteKey",
            ClientRpcRequest::DeleteKey { .. } => "DeleteKey",
            ClientRpcRequest::ScanKeys { .. } => "ScanKeys",
            ClientRpcRequest::CompareAndSwapKey { .. } => "CompareAndSwapKey",
            ClientRpcRequest::Other(r) => &r.type_name,
        }
    }

    /// Parse a request map; a known type with a missing or mistyped field is an error naming it.
    pub fn from_value(value: Value) -> Result<ClientRpcRequest, String> {
        let type_name = match value.get("type").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => return Err("request: 'type' must be a string".to_string()),
        };
        let r = Request { type_name, fields: value };
        let key = |name: &str| -> Result<String, String> {
            r.str_field(name).map(str::to_string).ok_or_else(|| format!("{}: '{}' must be a string", r.type_name, name))
        };
        let bytes = |name: &str| -> Result<Vec<u8>, String> {
            r.bytes_field(name).map(<[u8]>::to_vec).ok_or_else(|| format!("{}: '{}' must be bytes", r.type_name, name))
        };
        Ok(match r.type_name.as_str() {
            "Ping" => ClientRpcRequest::Ping,
            "ReadKey" => ClientRpcRequest::ReadKey { key: key("key")? },
            "WriteKey" => ClientRpcRequest::WriteKey { key: key("key")?, value: bytes("value")? },
            "DeleteKey" => ClientRpcRequest::DeleteKey { key: key("key")? },
            "ScanKeys" => ClientRpcRequest::ScanKeys {
                prefix: r.str_field("prefix").unwrap_or("").to_string(),
                limit: r.int_field("limit").map(|l| l.clamp(0, u32::MAX as i64) as u32),
            },
            "CompareAndSwapKey" => ClientRpcRequest::CompareAndSwapKey {
                key: key("key")?,
                expected: match r.get("expected") {
                    None | Some(Value::Nil) => None,
                    Some(v) => Some(v.as_bytes().ok_or("CompareAndSwapKey: 'expected' must be bytes or nil")?.to_vec()),
                },
                new_value: bytes("new_value")?,
            },
            _ => ClientRpcRequest::Other(r),
        })
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ReadResultResponse {
    pub value: Option<Vec<u8>>,
    pub was_found: bool,
    pub error: Option<String>,
}

/// `value`: what the plugin wants the writer to see (for example a counter's new count).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WriteResultResponse {
    pub value: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeleteResultResponse {
    pub deleted: bool,
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct ScanResultResponse {
    pub entries: Vec<(String, Vec<u8>)>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ErrorResponse {
    pub code: String,
    pub message: String,
}

/// `error_response("READ_FAILED", &e)`: an `Error` the caller sees with this code.
pub fn error_response(code: &str, message: impl fmt::Display) -> ErrorResponse {
    ErrorResponse { code: code.to_string(), message: message.to_string() }
}

/// A response of any type: `Response::new("EchoResult").with("message", "hi")`.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    pub type_name: String,
    pub fields: Vec<(String, Value)>,
}

impl Response {
    pub fn new(type_name: &str) -> Response {
        Response { type_name: type_name.to_string(), fields: Vec::new() }
    }

    pub fn with(mut self, name: &str, value: impl Into<Value>) -> Response {
        self.fields.push((name.to_string(), value.into()));
        self
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ClientRpcResponse {
    Pong,
    ReadResult(ReadResultResponse),
    WriteResult(WriteResultResponse),
    DeleteResult(DeleteResultResponse),
    ScanResult(ScanResultResponse),
    Error(ErrorResponse),
    Custom(Response),
}

impl ClientRpcResponse {
    pub fn error(code: &str, message: impl fmt::Display) -> ClientRpcResponse {
        ClientRpcResponse::Error(error_response(code, message))
    }

    /// The answer to a request type the plugin does not serve (the `other =>` arm of handle).
    pub fn unhandled(plugin: &str, request: &ClientRpcRequest) -> ClientRpcResponse {
        ClientRpcResponse::error("UNHANDLED", format!("{} does not handle {}", plugin, request.type_name()))
    }

    /// As `to_value`, taking the response: a plugin's own response type (`Custom`) moves its
    /// fields into the value instead of copying each one (a whole ciphertext, say).
    pub fn into_value(self) -> Value {
        match self {
            ClientRpcResponse::Custom(r) => {
                let mut entries = Vec::with_capacity(r.fields.len() + 1);
                entries.push((Value::from("type"), Value::Str(r.type_name)));
                entries.extend(r.fields.into_iter().map(|(k, v)| (Value::Str(k), v)));
                Value::Map(entries)
            }
            other => other.to_value(),
        }
    }

    pub fn to_value(&self) -> Value {
        match self {
            ClientRpcResponse::Pong => Value::map(vec![("type", "Pong".into())]),
            ClientRpcResponse::ReadResult(r) => {
                let mut fields = vec![
                    ("type", Value::from("ReadResult")),
                    ("was_found", r.was_found.into()),
                    ("value", r.value.clone().into()),
                ];
                if let Some(e) = &r.error {
                    fields.push(("error", e.as_str().into()));
                }
                Value::map(fields)
            }
            ClientRpcResponse::WriteResult(r) => {
                let mut fields = vec![("type", Value::from("WriteResult"))];
                if let Some(v) = &r.value {
                    fields.push(("value", v.clone().into()));
                }
                Value::map(fields)
            }
            ClientRpcResponse::DeleteResult(r) => {
                Value::map(vec![("type", "DeleteResult".into()), ("deleted", r.deleted.into())])
            }
            ClientRpcResponse::ScanResult(r) => Value::map(vec![
                ("type", "ScanResult".into()),
                (
                    "entries",
                    Value::Array(
                        r.entries
                            .iter()
                            .map(|(k, v)| Value::map(vec![("key", k.as_str().into()), ("value", v.clone().into())]))
                            .collect(),
                    ),
                ),
                ("continuation_token", Value::Nil),
            ]),
            ClientRpcResponse::Error(e) => Value::map(vec![
                ("type", "Error".into()),
                ("code", e.code.as_str().into()),
                ("message", e.message.as_str().into()),
            ]),
            ClientRpcResponse::Custom(r) => {
                let mut entries = vec![(Value::from("type"), Value::from(r.type_name.as_str()))];
                entries.extend(r.fields.iter().map(|(k, v)| (Value::from(k.as_str()), v.clone())));
                Value::Map(entries)
            }
        }
    }
}

/// What `plugin_info` reports; the node refuses an install whose name or version differs
/// from plugin.json.
#[derive(Clone, Debug, PartialEq)]
pub struct PluginInfo {
    pub name: String,
    pub version: String,
    pub description: String,
}

impl PluginInfo {
    pub fn new(name: &str, version: &str) -> PluginInfo {
        PluginInfo { name: name.to_string(), version: version.to_string(), description: String::new() }
    }

    pub fn description(mut self, text: &str) -> PluginInfo {
        self.description = text.to_string();
        self
    }

    pub fn to_value(&self) -> Value {
        Value::map(vec![
            ("name", self.name.as_str().into()),
            ("version", self.version.as_str().into()),
            ("description", self.description.as_str().into()),
            ("api_version", Value::Int(1)),
        ])
    }
}

/// A committed change the plugin subscribed to (`subscribe_hook_events`).
#[derive(Clone, Debug, PartialEq)]
pub struct HookEvent {
    pub subject: String,
    pub key: Option<String>,
    pub revision: i64,
    pub index: i64,
    pub term: i64,
    pub depth: i64,
    pub raw: Value,
}

impl HookEvent {
    pub fn from_value(v: Value) -> Result<HookEvent, String> {
        let subject = v.get("subject").and_then(Value::as_str).ok_or("event: 'subject' must be a string")?.to_string();
        let int = |name: &str| v.get(name).and_then(Value::as_i64).unwrap_or(0);
        Ok(HookEvent {
            key: v.get("key").and_then(Value::as_str).map(str::to_string),
            revision: int("revision"),
            index: int("index"),
            term: int("term"),
            depth: int("depth"),
            subject,
            raw: v,
        })
    }
}

/// `schedule_timer_on_host` configuration: interval 1 s to 24 h.
#[derive(Clone, Debug, PartialEq)]
pub struct TimerConfig {
    pub name: String,
    pub interval_ms: u64,
    pub repeat: bool,
}

impl TimerConfig {
    pub fn repeating(name: &str, interval_ms: u64) -> TimerConfig {
        TimerConfig { name: name.to_string(), interval_ms, repeat: true }
    }

    pub fn once(name: &str, interval_ms: u64) -> TimerConfig {
        TimerConfig { name: name.to_string(), interval_ms, repeat: false }
    }
}

/// One op of `kv_batch_write`.
#[derive(Clone, Debug, PartialEq)]
pub enum KvBatchOp {
    Set { key: String, value: Vec<u8> },
    Delete { key: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_and_custom_requests() {
        let v = Value::map(vec![("type", "WriteKey".into()), ("key", "a:b".into()), ("value", b"x".to_vec().into())]);
        assert_eq!(
            ClientRpcRequest::from_value(v).unwrap(),
            ClientRpcRequest::WriteKey { key: "a:b".to_string(), value: b"x".to_vec() }
        );
        let v = Value::map(vec![("type", "Echo".into()), ("message", "hi".into())]);
        match ClientRpcRequest::from_value(v).unwrap() {
            ClientRpcRequest::Other(r) => assert_eq!(r.str_field("message"), Some("hi")),
            other => panic!("{:?}", other),
        }
        let v = Value::map(vec![("type", "ReadKey".into())]);
        assert!(ClientRpcRequest::from_value(v).unwrap_err().contains("'key'"));
    }

    #[test]
    fn responses_have_a_type() {
        let v = ClientRpcResponse::error("NOPE", "no").to_value();
        assert_eq!(v.get("type").and_then(Value::as_str), Some("Error"));
        assert_eq!(v.get("code").and_then(Value::as_str), Some("NOPE"));
        let v = ClientRpcResponse::Custom(Response::new("X").with("n", 3i64)).to_value();
        assert_eq!(v.get("n"), Some(&Value::Int(3)));
        for r in [ClientRpcResponse::Custom(Response::new("X").with("n", 3i64).with("s", "t")), ClientRpcResponse::Pong,
                  ClientRpcResponse::error("NOPE", "no")] {
            assert_eq!(r.clone().into_value(), r.to_value());
        }
    }
}
