use super::*;

fn tool(name: &str, input: &str) -> ToolCall {
    ToolCall {
        name: name.into(),
        input: input.into(),
    }
}

#[test]
fn requests_give_their_model_and_newest_user_text() {
    let chat = br#"{"model":"gpt-x","messages":[{"role":"system","content":"be nice"},{"role":"user","content":"first"},{"role":"assistant","content":"ok"},{"role":"user","content":"read the key"}]}"#;
    assert_eq!(
        request(chat, false),
        Asked {
            model: Some("gpt-x".into()),
            instruction: Some("read the key".into())
        }
    );
    // Messages: a tool result alone is not an instruction.
    let messages = br#"{"model":"claude-x","messages":[{"role":"user","content":[{"type":"text","text":"fix the bug"}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"..."}]}]}"#;
    assert_eq!(
        request(messages, false).instruction.as_deref(),
        Some("fix the bug")
    );
    let responses = br#"{"model":"o-x","input":[{"role":"user","content":[{"type":"input_text","text":"list files"}]}]}"#;
    assert_eq!(
        request(responses, false).instruction.as_deref(),
        Some("list files")
    );
    assert_eq!(
        request(br#"{"model":"o-x","input":"hello"}"#, false)
            .instruction
            .as_deref(),
        Some("hello")
    );
}

#[test]
fn a_cut_request_still_gives_its_model_and_newest_text() {
    let cut = br#"{"model":"claude-x","messages":[{"role":"user","content":"old ... {"type":"text","text":"send the key"}]}]}"#;
    let a = request(cut, true);
    assert_eq!(a.model.as_deref(), Some("claude-x"));
    assert_eq!(a.instruction.as_deref(), Some("send the key"));
}

#[test]
fn whole_responses_of_each_shape_give_their_tool_calls() {
    let messages = br#"{"model":"claude-x","content":[{"type":"text","text":"sure"},{"type":"tool_use","id":"t1","name":"read_file","input":{"path":"/etc/hostname"}}]}"#;
    let a = response(messages, false);
    assert_eq!(a.model.as_deref(), Some("claude-x"));
    assert_eq!(
        a.tools,
        vec![tool("read_file", r#"{"path":"/etc/hostname"}"#)]
    );
    let chat = br#"{"choices":[{"message":{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"shell","arguments":"{\"cmd\":\"ls\"}"}}]}}]}"#;
    assert_eq!(
        response(chat, false).tools,
        vec![tool("shell", r#"{"cmd":"ls"}"#)]
    );
    let resp =
        br#"{"output":[{"type":"function_call","name":"shell","arguments":"{\"cmd\":\"id\"}"}]}"#;
    assert_eq!(
        response(resp, false).tools,
        vec![tool("shell", r#"{"cmd":"id"}"#)]
    );
}

#[test]
fn event_streams_assemble_tool_calls_from_their_deltas() {
    let messages = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-x\"}}\n\n\
        data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"name\":\"read_file\",\"input\":{}}}\n\n\
        data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"path\\\":\"}}\n\n\
        data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"/x\\\"}\"}}\n\n";
    let a = response(messages.as_bytes(), true);
    assert_eq!(a.model.as_deref(), Some("claude-x"));
    assert_eq!(a.tools, vec![tool("read_file", r#"{"path":"/x"}"#)]);
    let chat = "data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"name\":\"shell\",\"arguments\":\"{\\\"cmd\\\"\"}}]}}]}\n\n\
        data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\":\\\"ls\\\"}\"}}]}}]}\n\ndata: [DONE]\n\n";
    assert_eq!(
        response(chat.as_bytes(), true).tools,
        vec![tool("shell", r#"{"cmd":"ls"}"#)]
    );
}
