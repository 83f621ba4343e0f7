//! A chat template and a conversation from arbitrary bytes: the template is everything up to
//! the first NUL, then messages separated by NULs (roles cycle system/user/assistant/tool).
//! Rendering must return `Ok` or `Err` in bounded time (fuel), never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moela::tokenizer::{render_chat_template, ChatMessage};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.split('\0');
    let template = parts.next().unwrap_or("");
    let roles = ["system", "user", "assistant", "tool"];
    let messages: Vec<ChatMessage> = parts
        .enumerate()
        .take(64)
        .map(|(i, c)| ChatMessage::new(roles[i % roles.len()], c))
        .collect();
    let _ = render_chat_template(template, &messages, data.len() % 2 == 0, "<bos>", "<eos>");
});
