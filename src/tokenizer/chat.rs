//! Chat prompts: the model's own Jinja template (rendered with minijinja the way
//! transformers' `apply_chat_template` renders it), built-in DeepSeek formats for files that
//! carry none, and the R1 `<think>` split.

use minijinja::{context, Environment, ErrorKind};

use super::{PreTokenizerKind, Tokenizer};
use crate::error::{Error, Result};

/// One turn of a conversation. `role` is one of [`CHAT_ROLES`]: "system", "user",
/// "assistant" or "tool"; [`Tokenizer::apply_chat_template`] refuses any other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// Built-in DeepSeek chat formats, used when the tokenizer carries no template. For messages
/// with a role and a content they render exactly what DeepSeek's own templates render.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChatFormat {
    /// DeepSeek-LLM / V2: `{bos}{system}\n\nUser: {user}\n\nAssistant: {answer}{eos}...Assistant:`
    DeepSeekV2,
    /// DeepSeek-V3 / R1 (R1's template: system prompts first, `<think>` reasoning dropped from
    /// assistant turns): `{bos}{system}<｜User｜>{user}<｜Assistant｜>{answer}<｜end▁of▁sentence｜>...<｜Assistant｜>`
    DeepSeekV3,
}

const V3_EOS: &str = "<｜end▁of▁sentence｜>";

/// The roles a chat message may have. DeepSeek's templates render these and silently skip
/// anything else, so [`Tokenizer::apply_chat_template`] refuses other roles instead of
/// dropping the message.
pub const CHAT_ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// Refuses a message whose role would be dropped: one outside [`CHAT_ROLES`], or "tool" with
/// the DeepSeek-V2 format (which has no tool turns). The error names the message and role.
fn check_roles(messages: &[ChatMessage], format: Option<ChatFormat>) -> Result<()> {
    for (i, m) in messages.iter().enumerate() {
        if !CHAT_ROLES.contains(&m.role.as_str()) {
            return Err(Error::InvalidArg(format!(
                "chat message {i} has role {:?}, which the chat template does not render; the roles are \"system\", \"user\", \"assistant\" and \"tool\"",
                m.role
            )));
        }
        if m.role == "tool" && format == Some(ChatFormat::DeepSeekV2) {
            return Err(Error::InvalidArg(format!(
                "chat message {i} has role \"tool\", which the DeepSeek-V2 chat format does not render; the roles are \"system\", \"user\" and \"assistant\""
            )));
        }
    }
    Ok(())
}

impl ChatFormat {
    /// The format matching a pre-tokenizer family.
    pub fn for_pre_tokenizer(kind: PreTokenizerKind) -> Self {
        match kind {
            PreTokenizerKind::DeepSeekLlm => ChatFormat::DeepSeekV2,
            PreTokenizerKind::DeepSeekV3 => ChatFormat::DeepSeekV3,
        }
    }

    /// Renders `messages`; unknown roles are skipped, as the templates skip them
    /// ([`Tokenizer::apply_chat_template`] refuses them first).
    pub fn render(
        self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> String {
        let mut s = String::from(bos);
        match self {
            ChatFormat::DeepSeekV2 => {
                for m in messages {
                    match m.role.as_str() {
                        "user" => {
                            s += "User: ";
                            s += &m.content;
                            s += "\n\n";
                        }
                        "assistant" => {
                            s += "Assistant: ";
                            s += &m.content;
                            s += eos;
                        }
                        "system" => {
                            s += &m.content;
                            s += "\n\n";
                        }
                        _ => {}
                    }
                }
                if add_generation_prompt {
                    s += "Assistant:";
                }
            }
            ChatFormat::DeepSeekV3 => {
                let system: Vec<&str> = messages
                    .iter()
                    .filter(|m| m.role == "system")
                    .map(|m| m.content.as_str())
                    .collect();
                s += &system.join("\n\n");
                let mut is_tool = false;
                let mut is_output_first = true;
                for m in messages {
                    match m.role.as_str() {
                        "user" => {
                            is_tool = false;
                            s += "<｜User｜>";
                            s += &m.content;
                        }
                        "assistant" if is_tool => {
                            s += "<｜tool▁outputs▁end｜>";
                            s += &m.content;
                            s += V3_EOS;
                            is_tool = false;
                        }
                        "assistant" => {
                            let content = match m.content.rfind("</think>") {
                                Some(i) => &m.content[i + "</think>".len()..],
                                None => &m.content,
                            };
                            s += "<｜Assistant｜>";
                            s += content;
                            s += V3_EOS;
                        }
                        "tool" => {
                            is_tool = true;
                            if is_output_first {
                                s += "<｜tool▁outputs▁begin｜>";
                                is_output_first = false;
                            }
                            s += "<｜tool▁output▁begin｜>";
                            s += &m.content;
                            s += "<｜tool▁output▁end｜>";
                        }
                        _ => {}
                    }
                }
                if is_tool {
                    s += "<｜tool▁outputs▁end｜>";
                }
                if add_generation_prompt && !is_tool {
                    s += "<｜Assistant｜>";
                }
            }
        }
        s
    }
}

/// Instructions a chat template may execute per render. The template comes from the model
/// file, so it is untrusted code: fuel bounds its run time (DeepSeek's templates need a few
/// hundred instructions per message), minijinja itself bounds recursion, `range` and string
/// repetition.
pub const CHAT_TEMPLATE_FUEL: u64 = 20_000_000;

/// Renders a Hugging Face chat template (Jinja) the way transformers does: `trim_blocks` and
/// `lstrip_blocks` on, loop controls, Python string/dict methods (`.split`, `.strip`,
/// `.items`...), `raise_exception`, `tojson`; variables `messages` (each with `role` and
/// `content`), `add_generation_prompt`, `bos_token`, `eos_token`.
pub fn render_chat_template(
    template: &str,
    messages: &[ChatMessage],
    add_generation_prompt: bool,
    bos_token: &str,
    eos_token: &str,
) -> Result<String> {
    let err = |e: minijinja::Error| {
        let mut msg = format!("chat template: {e}");
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            msg += &format!(": {s}");
            src = s.source();
        }
        Error::InvalidArg(msg)
    };
    let mut env = Environment::new();
    env.set_syntax(
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(err)?,
    );
    env.set_fuel(Some(CHAT_TEMPLATE_FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
        },
    );
    env.add_template("chat_template", template).map_err(err)?;
    let t = env.get_template("chat_template").map_err(err)?;
    let messages: Vec<minijinja::Value> = messages
        .iter()
        .map(|m| context! { role => m.role.as_str(), content => m.content.as_str() })
        .collect();
    t.render(context! {
        messages => messages,
        add_generation_prompt => add_generation_prompt,
        bos_token => bos_token,
        eos_token => eos_token,
    })
    .map_err(err)
}

/// Splits a DeepSeek-R1 style answer into (reasoning, answer).
///
/// * `"<think>\nR\n</think>\n\nA"` -> `(Some("R"), "\n\nA")`: the reasoning is what lies
///   between an optional leading `<think>` and the last `</think>`, trimmed; the answer is
///   everything after the last `</think>`, untouched — exactly what R1's chat template keeps of
///   an assistant turn, so it is what belongs in the history.
/// * A `<think>` still open (reasoning being streamed): `(Some(rest), "")`.
/// * No tags: `(None, text)`.
pub fn split_reasoning(text: &str) -> (Option<&str>, &str) {
    let body = text.trim_start();
    let body = body.strip_prefix("<think>");
    if let Some(i) = text.rfind("</think>") {
        let before = &text[..i];
        let before = before.trim_start();
        let before = before.strip_prefix("<think>").unwrap_or(before);
        return (Some(before.trim()), &text[i + "</think>".len()..]);
    }
    match body {
        Some(rest) => (Some(rest.trim_start()), ""),
        None => (None, text),
    }
}

impl Tokenizer {
    /// The built-in format matching this tokenizer's family.
    pub fn default_chat_format(&self) -> ChatFormat {
        ChatFormat::for_pre_tokenizer(self.pre_kind)
    }

    /// The BOS and EOS token texts ("" when the tokenizer has none).
    fn bos_eos_text(&self) -> (&str, &str) {
        let t = |id: Option<u32>| id.and_then(|i| self.token_to_str(i)).unwrap_or("");
        (t(self.bos), t(self.eos))
    }

    /// Renders a conversation with the tokenizer's own chat template, or, when it has none,
    /// with the built-in [`ChatFormat`] of its family ([`Self::default_chat_format`]). Encode
    /// the result with `parse_special = true` and `add_bos = false` (the template writes BOS).
    ///
    /// A message whose role is not one of [`CHAT_ROLES`] (or "tool" with the built-in
    /// DeepSeek-V2 format) is `Error::InvalidArg` naming it, never dropped silently.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let format = match &self.chat_template {
            Some(_) => None,
            None => Some(self.default_chat_format()),
        };
        check_roles(messages, format)?;
        let (bos, eos) = self.bos_eos_text();
        match &self.chat_template {
            Some(t) => render_chat_template(t, messages, add_generation_prompt, bos, eos),
            None => {
                Ok(self
                    .default_chat_format()
                    .render(messages, add_generation_prompt, bos, eos))
            }
        }
    }

    /// Renders the conversation ([`Self::apply_chat_template`]) and encodes it so that the
    /// template's own control tokens are recognised but text the messages bring is not: an
    /// added-token string inside a message (a user typing `<｜Assistant｜>`) is tokenized as
    /// plain text. When no message contains one, the ids are exactly
    /// `encode(rendered, false, true)`, i.e. what transformers gives.
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>> {
        let rendered = self.apply_chat_template(messages, add_generation_prompt)?;
        // Byte ranges of added-token strings that come from message contents. Contents appear
        // in the rendering in message order (templates may drop or trim some; those are
        // searched for and skipped when absent).
        let mut plain: Vec<(usize, usize)> = Vec::new();
        let mut from = 0;
        for m in messages {
            let content = m.content.trim();
            if content.is_empty() {
                continue;
            }
            let Some(at) = rendered[from..].find(content).map(|i| i + from) else {
                continue;
            };
            for tok in self.added_tokens() {
                let c = tok.content.as_str();
                if c.is_empty() {
                    continue;
                }
                for (i, _) in content.match_indices(c) {
                    plain.push((at + i, at + i + c.len()));
                }
            }
            from = at + content.len();
        }
        if plain.is_empty() {
            return Ok(self.encode(&rendered, false, true));
        }
        plain.sort_unstable();
        let mut ids = Vec::new();
        let mut pos = 0;
        for (b, e) in plain {
            if b < pos {
                continue; // overlapping matches (a token string inside another)
            }
            ids.extend(self.encode(&rendered[pos..b], false, true));
            ids.extend(self.encode(&rendered[b..e], false, false));
            pos = e;
        }
        ids.extend(self.encode(&rendered[pos..], false, true));
        Ok(ids)
    }

    /// Renders with a built-in format, ignoring the file's template.
    pub fn apply_chat_format(
        &self,
        format: ChatFormat,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> String {
        let (bos, eos) = self.bos_eos_text();
        format.render(messages, add_generation_prompt, bos, eos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runaway_templates_stop() {
        let m = [ChatMessage::user("hi")];
        let t0 = std::time::Instant::now();
        let e = render_chat_template(
            "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            &m,
            true,
            "",
            "",
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArg(_)), "{e}");
        assert!(e.to_string().contains("fuel"), "{e}");
        assert!(t0.elapsed().as_secs() < 30);
        assert!(render_chat_template("{{ 'x' * 10000000000 }}", &m, true, "", "").is_err());
        let e = render_chat_template(
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            &m,
            true,
            "",
            "",
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidArg(_)), "{e}");
    }

    #[test]
    fn reasoning() {
        assert_eq!(
            split_reasoning("<think>\nhmm\n</think>\n\nYes."),
            (Some("hmm"), "\n\nYes.")
        );
        assert_eq!(split_reasoning("hmm</think>Yes"), (Some("hmm"), "Yes"));
        assert_eq!(split_reasoning("<think>\nstill"), (Some("still"), ""));
        assert_eq!(split_reasoning("plain"), (None, "plain"));
    }

    #[test]
    fn v2_format() {
        let m = [
            ChatMessage::system("S"),
            ChatMessage::user("Hi"),
            ChatMessage::assistant("Yo"),
        ];
        assert_eq!(
            ChatFormat::DeepSeekV2.render(&m, true, "<B>", "<E>"),
            "<B>S\n\nUser: Hi\n\nAssistant: Yo<E>Assistant:"
        );
    }

    #[test]
    fn hf_template_features() {
        // transformers' environment: trim_blocks, lstrip_blocks, loop controls, Python string
        // methods, tojson, namespace
        let t = "{% set ns = namespace(n=0) %}\n{% for m in messages %}\n  {% if loop.index > 2 %}{% break %}{% endif %}\n{% set ns.n = ns.n + 1 %}{{ m.content.strip() | tojson }}{{ m['content'].split('|')[-1] }}\n{% endfor %}{{ ns.n }}";
        let m = [
            ChatMessage::user("  a|b  "),
            ChatMessage::user("c"),
            ChatMessage::user("d"),
        ];
        assert_eq!(
            render_chat_template(t, &m, false, "", "").unwrap(),
            "\"a|b\"b  \n\"c\"c\n2"
        );
    }

    #[test]
    fn template_errors_are_reported() {
        let e =
            render_chat_template("{{ raise_exception('nope') }}", &[], false, "", "").unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = render_chat_template("{% if %}", &[], false, "", "").unwrap_err();
        assert!(e.to_string().contains("chat template"), "{e}");
    }
}
