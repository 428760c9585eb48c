//! What the context may not show: secrets by their shape (private key
//! blocks, cloud and forge tokens, `key=value` where the key says secret,
//! long opaque tokens) and the content of guardrail files the agent read.
//! Then bounded, on a character boundary.

/// Shown in place of what was taken out.
pub const REDACTED: &str = "[redacted]";

/// Words that make a `key=value` or `"key": value` a secret.
const SECRET_KEYS: [&str; 7] = [
    "secret", "token", "password", "passwd", "api_key", "apikey", "private",
];

/// Token prefixes that are credentials whatever follows.
const TOKEN_PREFIXES: [&str; 7] = ["AKIA", "ASIA", "sk-", "ghp_", "gho_", "github_pat_", "xox"];

/// `text` with secrets taken out (`known`: exact texts to take out, such as
/// the lines of a secret file the agent read), at most `max` characters.
pub fn redact(text: &str, known: &[String], max: usize) -> String {
    let mut s = text.to_string();
    for k in known {
        if k.len() >= 6 && s.contains(k.as_str()) {
            s = s.replace(k.as_str(), REDACTED);
        }
    }
    let s = private_key_blocks(&s);
    let s = tokens(&s);
    bound(&s, max)
}

/// PEM private key blocks, however cut.
fn private_key_blocks(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("-----BEGIN") {
        out.push_str(&rest[..i]);
        let after = &rest[i..];
        match after.find("-----END") {
            Some(j) => {
                let end = after[j + 8..]
                    .find("-----")
                    .map(|k| j + 8 + k + 5)
                    .unwrap_or(after.len());
                out.push_str(REDACTED);
                rest = &after[end..];
            }
            None => {
                out.push_str(REDACTED);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

fn token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "+/_-.".contains(c)
}

/// Credentials by shape, and the value after a secret-sounding key.
fn tokens(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut secret_value_next = false;
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String, secret_next: &mut bool| {
        if word.is_empty() {
            return;
        }
        let lower = word.to_ascii_lowercase();
        let opaque = word.len() >= 32
            && word.chars().any(|c| c.is_ascii_digit())
            && word.chars().any(|c| c.is_ascii_alphabetic())
            && !word.contains('/');
        if *secret_next
            || TOKEN_PREFIXES
                .iter()
                .any(|p| word.starts_with(p) && word.len() >= 16)
            || opaque
        {
            out.push_str(REDACTED);
            *secret_next = false;
        } else {
            out.push_str(word);
            *secret_next = SECRET_KEYS.iter().any(|k| lower.contains(k));
        }
        word.clear();
    };
    for c in s.chars() {
        if token_char(c) {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out, &mut secret_value_next);
        out.push(c);
        // Only `=`, `:` and quotes and blanks keep a key's promise.
        if !matches!(c, '=' | ':' | '"' | '\'' | ' ') {
            secret_value_next = false;
        }
    }
    flush(&mut word, &mut out, &mut secret_value_next);
    out
}

/// At most `max` characters, marked when cut.
pub fn bound(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_taken_out_by_shape_and_by_content() {
        let known = vec!["hunter2-the-db-password".to_string()];
        let t = "use AKIAABCDEFGHIJKLMNOP and token=abc123 then hunter2-the-db-password; keep /src/main.rs";
        assert_eq!(
            redact(t, &known, 500),
            "use [redacted] and token=[redacted] then [redacted]; keep /src/main.rs"
        );
        let pem = "key: -----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n-----END OPENSSH PRIVATE KEY----- done";
        assert_eq!(redact(pem, &[], 500), "key: [redacted] done");
        assert_eq!(
            redact(r#"{"api_key": "zzzz", "path": "a.txt"}"#, &[], 500),
            r#"{"api_key": "[redacted]", "path": "a.txt"}"#
        );
        assert_eq!(
            redact("sha 0123456789abcdef0123456789abcdef01 x", &[], 500),
            "sha [redacted] x"
        );
    }

    #[test]
    fn excerpts_are_bounded_on_a_character() {
        assert_eq!(bound("ééééé", 3), "ééé…");
        assert_eq!(bound("abc", 3), "abc");
    }
}
