//! What the `simulated` provider answers besides plain text, so that demos and client
//! libraries see the shapes a real model gives them:
//! - a request with `tools` (and a `tool_choice` other than `"none"`) whose last message is
//!   not a tool result gets one tool call, with arguments shaped by the tool's JSON schema;
//! - `response_format` `json_schema` gets a JSON document shaped by the schema, and
//!   `json_object` a small JSON object.
//!
//! The values are placeholders (`"[simulated]"`, the minimum of a number, the first enum
//! value): valid for the schema's types and required fields, never meaningful.

use serde_json::{json, Map, Value};

use crate::api::ChatRequest;

/// A schema nested deeper than this (or a `$ref` cycle) ends in `null`.
const MAX_DEPTH: u8 = 12;
/// Values generated for one document at most: a schema that fans out through `$ref`s
/// cannot make the answer grow exponentially.
const MAX_VALUES: u32 = 2_000;
/// Arrays get one item; objects at most this many properties (a hostile schema may list
/// thousands).
const MAX_PROPERTIES: usize = 64;

#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    Text,
    ToolCall { name: String, arguments: String },
    Json(String),
}

impl Answer {
    pub fn for_request(request: &ChatRequest) -> Answer {
        if let Some(call) = tool_call(request) {
            return call;
        }
        match request.body.get("response_format") {
            Some(format) if format["type"] == "json_schema" => {
                let schema = &format["json_schema"]["schema"];
                Answer::Json(example(schema, schema).to_string())
            }
            Some(format) if format["type"] == "json_object" => {
                Answer::Json(json!({"answer": "[simulated]"}).to_string())
            }
            _ => Answer::Text,
        }
    }
}

/// A tool's `function`, if it has a name.
fn function(tool: &Value) -> Option<&Value> {
    tool.get("function").filter(|f| f["name"].is_string())
}

fn tool_call(request: &ChatRequest) -> Option<Answer> {
    let tools = request.body.get("tools")?.as_array()?;
    // After a tool result the model answers in text, as a real one would.
    let last_role = request.messages().last().and_then(|m| m.get("role"));
    if last_role.and_then(Value::as_str) == Some("tool") {
        return None;
    }
    let chosen = match request.body.get("tool_choice") {
        Some(Value::String(choice)) if choice == "none" => return None,
        Some(Value::Object(choice)) => {
            let name = &choice.get("function")?["name"];
            tools
                .iter()
                .filter_map(function)
                .find(|f| &f["name"] == name)
        }
        _ => tools.iter().find_map(function),
    }?;
    let schema = chosen.get("parameters").unwrap_or(&Value::Null);
    let arguments = match example(schema, schema) {
        Value::Object(o) => Value::Object(o),
        _ => Value::Object(Map::new()),
    };
    Some(Answer::ToolCall {
        name: chosen["name"].as_str()?.to_string(),
        arguments: arguments.to_string(),
    })
}

/// A value valid for `schema`'s types, enums and required properties; `root` resolves
/// local `$ref`s (`#`, `#/$defs/...`, `#/definitions/...`).
pub fn example(schema: &Value, root: &Value) -> Value {
    let mut budget = MAX_VALUES;
    shaped(schema, root, 0, &mut budget)
}

fn shaped(schema: &Value, root: &Value, depth: u8, budget: &mut u32) -> Value {
    if depth >= MAX_DEPTH || *budget == 0 {
        return Value::Null;
    }
    *budget = budget.saturating_sub(1);
    let next = depth.saturating_add(1);
    let mut example = |schema: &Value, root: &Value, next: u8| shaped(schema, root, next, budget);
    if let Some(target) = schema.get("$ref").and_then(Value::as_str) {
        return resolve(root, target).map_or(Value::Null, |s| example(s, root, next));
    }
    if let Some(value) = schema.get("const") {
        return value.clone();
    }
    if let Some(first) = schema
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return first.clone();
    }
    for combinator in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema
            .get(combinator)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
        {
            return example(first, root, next);
        }
    }
    let kind = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // `["string", "null"]`: the first non-null type.
        Some(Value::Array(types)) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match kind {
        "object" => {
            let mut out = Map::new();
            if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
                for (name, property) in properties.iter().take(MAX_PROPERTIES) {
                    out.insert(name.clone(), example(property, root, next));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let item = schema.get("items").unwrap_or(&Value::Null);
            let min = schema.get("minItems").and_then(Value::as_u64).unwrap_or(1);
            let count = min.clamp(1, 4);
            Value::Array((0..count).map(|_| example(item, root, next)).collect())
        }
        "integer" => json!(bound(schema).map_or(0, |b| b.ceil() as i64)),
        "number" => json!(bound(schema).unwrap_or(0.0)),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!("[simulated]"),
    }
}

/// The smallest value a number schema allows, if it sets one.
fn bound(schema: &Value) -> Option<f64> {
    schema
        .get("minimum")
        .or_else(|| schema.get("exclusiveMinimum"))
        .and_then(Value::as_f64)
        .filter(|b| b.is_finite() && b.abs() < 1e15)
}

fn resolve<'a>(root: &'a Value, target: &str) -> Option<&'a Value> {
    if target == "#" {
        return Some(root);
    }
    let path = target.strip_prefix("#/")?;
    path.split('/').try_fold(root, |at, part| at.get(part))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> ChatRequest {
        ChatRequest::parse(body.to_string().as_bytes()).unwrap()
    }

    const WEATHER: &str = r#"[{"type": "function", "function": {"name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}}, "required": ["city"]}}}]"#;

    #[test]
    fn tools_get_one_call_shaped_by_the_schema_until_a_tool_answered() {
        let tools: Value = serde_json::from_str(WEATHER).unwrap();
        let asked = request(json!({"model": "m", "tools": tools,
            "messages": [{"role": "user", "content": "weather in Paris?"}]}));
        let Answer::ToolCall { name, arguments } = Answer::for_request(&asked) else {
            panic!("no tool call");
        };
        assert_eq!(name, "get_weather");
        let args: Value = serde_json::from_str(&arguments).unwrap();
        assert_eq!(args, json!({"city": "[simulated]", "unit": "celsius"}));

        let answered = request(json!({"model": "m", "tools": tools, "messages": [
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": null, "tool_calls": [{"id": "c", "type": "function",
                "function": {"name": "get_weather", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "c", "content": "18C"}]}));
        assert_eq!(Answer::for_request(&answered), Answer::Text);
        let none = request(json!({"model": "m", "tools": tools, "tool_choice": "none",
            "messages": [{"role": "user", "content": "hi"}]}));
        assert_eq!(Answer::for_request(&none), Answer::Text);
    }

    #[test]
    fn a_named_tool_choice_is_the_one_called() {
        let tools = json!([
            {"type": "function", "function": {"name": "a", "parameters": {"type": "object"}}},
            {"type": "function", "function": {"name": "b", "parameters": {"type": "object"}}}]);
        let r = request(json!({"model": "m", "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "b"}},
            "messages": [{"role": "user", "content": "x"}]}));
        assert!(matches!(Answer::for_request(&r), Answer::ToolCall { name, .. } if name == "b"));
    }

    #[test]
    fn a_json_schema_gets_a_document_of_its_shape() {
        // What pydantic (LangChain's with_structured_output) produces: $defs and anyOf.
        let schema = json!({
            "type": "object",
            "$defs": {"Step": {"type": "object", "properties": {
                "n": {"type": "integer", "minimum": 1}, "text": {"type": "string"}}}},
            "properties": {
                "steps": {"type": "array", "items": {"$ref": "#/$defs/Step"}},
                "score": {"type": "number"},
                "ok": {"type": "boolean"},
                "note": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                "kind": {"type": ["string", "null"]},
                "self": {"$ref": "#"}},
            "required": ["steps", "score", "ok"]});
        let r = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "s", "schema": schema}}}),
        );
        let Answer::Json(text) = Answer::for_request(&r) else {
            panic!("no JSON");
        };
        let doc: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(doc["steps"], json!([{"n": 1, "text": "[simulated]"}]));
        assert_eq!(
            (doc["score"].clone(), doc["ok"].clone()),
            (json!(0.0), json!(false))
        );
        assert_eq!(doc["note"], "[simulated]");
        assert_eq!(doc["kind"], "[simulated]");
        // A recursive schema ends, bounded by depth.
        assert!(doc["self"].is_object());

        // A schema that fans out through `$ref`s is bounded in size, not exponential.
        let props: Map<String, Value> = (0..64)
            .map(|i| (format!("p{i}"), json!({"$ref": "#"})))
            .collect();
        let bomb = json!({"type": "object", "properties": props});
        assert!(example(&bomb, &bomb).to_string().len() < 200_000);

        let r = request(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_object"}}),
        );
        let Answer::Json(text) = Answer::for_request(&r) else {
            panic!("no JSON");
        };
        assert!(serde_json::from_str::<Value>(&text).unwrap().is_object());
    }
}
