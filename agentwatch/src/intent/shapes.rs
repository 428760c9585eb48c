//! The common model API shapes, read for what an agent was told and what
//! its model asked it to do: chat completions (`messages`, `tool_calls`),
//! responses (`input`, `function_call` items), messages (`content` blocks
//! with `tool_use`), each as one JSON body or as server-sent events.
use serde_json::Value;

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub name: String,
    /// Its input, as JSON text.
    pub input: String,
}

/// What a request says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Asked {
    pub model: Option<String>,
    /// The newest user text.
    pub instruction: Option<String>,
}

/// What a response says.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Answered {
    pub model: Option<String>,
    pub tools: Vec<ToolCall>,
}

/// The text of a message's content: a string, or the text of its blocks.
fn text_of(content: &Value) -> Option<String> {
    if let Some(s) = content.as_str() {
        return Some(s.to_string());
    }
    let parts: Vec<&str> = content
        .as_array()?
        .iter()
        .filter(|b| matches!(b["type"].as_str(), Some("text" | "input_text")))
        .filter_map(|b| b["text"].as_str())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n"))
}

/// A request body: its model and newest user text (a tool result alone
/// is not an instruction). With `gap`, the body was cut in its middle:
/// the newest text is looked for in what survives.
pub fn request(body: &[u8], gap: bool) -> Asked {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return if gap {
            request_fragments(body)
        } else {
            Asked::default()
        };
    };
    let model = v["model"].as_str().map(str::to_string);
    let mut messages: Vec<&Value> = Vec::new();
    for key in ["messages", "input"] {
        if let Some(a) = v[key].as_array() {
            messages.extend(a.iter());
        }
    }
    let instruction = match v["input"].as_str() {
        Some(s) => Some(s.to_string()),
        None => messages
            .iter()
            .rev()
            .filter(|m| m["role"] == "user")
            .find_map(|m| text_of(&m["content"])),
    };
    Asked { model, instruction }
}

/// A cut body: the model from `"model":"..."`, the newest text from the
/// last `"text":"..."` or `"content":"..."` string that parses.
fn request_fragments(body: &[u8]) -> Asked {
    let text = String::from_utf8_lossy(body);
    let last_string = |key: &str| -> Option<String> {
        let pat = format!("\"{key}\":");
        text.rmatch_indices(&pat).find_map(|(i, _)| {
            let rest = text[i + pat.len()..].trim_start();
            let mut de = serde_json::Deserializer::from_str(rest).into_iter::<Value>();
            de.next()?.ok()?.as_str().map(str::to_string)
        })
    };
    Asked {
        model: last_string("model"),
        instruction: last_string("text").or_else(|| last_string("content")),
    }
}

/// A response: one JSON body, or an event stream (`data: {...}` lines).
pub fn response(body: &[u8], sse: bool) -> Answered {
    let text = String::from_utf8_lossy(body);
    if sse || text.trim_start().starts_with("event:") || text.trim_start().starts_with("data:") {
        return events(&text);
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(v) => whole(&v),
        Err(_) => Answered::default(),
    }
}

/// Tool calls of a complete response of any of the three shapes.
fn whole(v: &Value) -> Answered {
    let mut a = Answered {
        model: v["model"].as_str().map(str::to_string),
        tools: Vec::new(),
    };
    // Messages: content blocks.
    for b in v["content"].as_array().into_iter().flatten() {
        if b["type"] == "tool_use" {
            a.tools.push(call(&b["name"], &b["input"]));
        }
    }
    // Chat completions: the first choice's message.
    for c in v["choices"][0]["message"]["tool_calls"]
        .as_array()
        .into_iter()
        .flatten()
    {
        a.tools
            .push(call(&c["function"]["name"], &c["function"]["arguments"]));
    }
    // Responses: output items.
    for o in v["output"].as_array().into_iter().flatten() {
        if o["type"] == "function_call" {
            a.tools.push(call(&o["name"], &o["arguments"]));
        }
    }
    a
}

/// A tool call from its name and input (an object, or JSON text).
fn call(name: &Value, input: &Value) -> ToolCall {
    ToolCall {
        name: name.as_str().unwrap_or("?").to_string(),
        input: match input.as_str() {
            Some(s) => s.to_string(),
            None => input.to_string(),
        },
    }
}

/// An event stream: tool calls assembled from their start and deltas.
fn events(text: &str) -> Answered {
    let mut a = Answered::default();
    // (index, name, input so far), in order of appearance.
    let mut calls: Vec<(i64, String, String)> = Vec::new();
    let at = |index: i64, calls: &mut Vec<(i64, String, String)>| -> usize {
        match calls.iter().position(|c| c.0 == index) {
            Some(i) => i,
            None => {
                calls.push((index, String::new(), String::new()));
                calls.len() - 1
            }
        }
    };
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(data.trim()) else {
            continue;
        };
        if let Some(m) = v["message"]["model"].as_str().or(v["model"].as_str()) {
            a.model = Some(m.to_string());
        }
        let index = v["index"].as_i64().unwrap_or(0);
        match v["type"].as_str() {
            // Messages.
            Some("content_block_start") if v["content_block"]["type"] == "tool_use" => {
                let i = at(index, &mut calls);
                calls[i].1 = v["content_block"]["name"].as_str().unwrap_or("?").into();
            }
            Some("content_block_delta") if v["delta"]["type"] == "input_json_delta" => {
                let i = at(index, &mut calls);
                calls[i].2 += v["delta"]["partial_json"].as_str().unwrap_or("");
            }
            // Responses: the completed response says it all.
            Some("response.completed") => {
                let done = whole(&v["response"]);
                a.tools.extend(done.tools);
            }
            _ => {}
        }
        // Chat completions.
        for t in v["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let i = at(1000 + t["index"].as_i64().unwrap_or(0), &mut calls);
            if let Some(n) = t["function"]["name"].as_str() {
                calls[i].1 = n.into();
            }
            calls[i].2 += t["function"]["arguments"].as_str().unwrap_or("");
        }
    }
    a.tools.extend(
        calls
            .into_iter()
            .map(|(_, name, input)| ToolCall { name, input }),
    );
    a
}

#[cfg(test)]
#[path = "shapes_tests.rs"]
mod tests;
