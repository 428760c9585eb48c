//! What a pinned file is: a model's weights (by extension, confirmed by
//! the format's magic bytes) or a file that steers an agent (by name).
use std::io::Read;

/// A model weight format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelFormat {
    Gguf,
    /// The older llama.cpp formats (ggml, ggmf, ggjt).
    Ggml,
    Safetensors,
    Onnx,
    /// A PyTorch checkpoint: a zip archive with a pickle inside.
    TorchZip,
    /// A Python pickle (old PyTorch checkpoints, joblib, `.pkl`).
    Pickle,
    Hdf5,
    Tflite,
}

impl ModelFormat {
    pub fn name(self) -> &'static str {
        match self {
            ModelFormat::Gguf => "GGUF",
            ModelFormat::Ggml => "GGML",
            ModelFormat::Safetensors => "safetensors",
            ModelFormat::Onnx => "ONNX",
            ModelFormat::TorchZip => "PyTorch",
            ModelFormat::Pickle => "pickle",
            ModelFormat::Hdf5 => "HDF5",
            ModelFormat::Tflite => "TFLite",
        }
    }
}

/// Extensions of model weight files: the kernel sends an allowed read of
/// any of them to userspace, which confirms the format by its magic.
pub const MODEL_EXTENSIONS: &[&str] = &[
    "gguf",
    "ggml",
    "safetensors",
    "onnx",
    "pt",
    "pth",
    "ckpt",
    "bin",
    "pkl",
    "pickle",
    "h5",
    "keras",
    "tflite",
];

/// Names of files that steer an agent: instructions, rules and tool
/// (MCP) configuration. `learn` pins the ones the agent read.
pub const INSTRUCTION_NAMES: &[&str] = &[
    "AGENTS.md",
    "CLAUDE.md",
    "CLAUDE.local.md",
    "GEMINI.md",
    ".cursorrules",
    ".windsurfrules",
    ".clinerules",
    "copilot-instructions.md",
    ".mcp.json",
    "mcp.json",
    "mcp_config.json",
    "claude_desktop_config.json",
];

/// Directories whose files are all rules (`.cursor/rules/x.mdc`).
const INSTRUCTION_DIRS: &[&str] = &["/.cursor/rules/", "/.clinerules/", "/.windsurf/rules/"];

/// Whether `path` names a file that steers an agent.
pub fn is_instruction(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    INSTRUCTION_NAMES.contains(&name) || INSTRUCTION_DIRS.iter().any(|d| path.contains(d))
}

/// Whether `path` has a model file's extension.
pub fn has_model_extension(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    name.rsplit_once('.')
        .is_some_and(|(stem, ext)| !stem.is_empty() && MODEL_EXTENSIONS.contains(&ext))
}

/// The model format of a file whose first bytes are `head`, named
/// `path`: the extension says which formats to try, the magic decides.
/// None for a file with a model's extension that is not one (a `.bin`
/// that is firmware, a `.pkl` that is empty).
pub fn model_format(path: &str, head: &[u8]) -> Option<ModelFormat> {
    if !has_model_extension(path) {
        return None;
    }
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let at = |i: usize, m: &[u8]| head.get(i..i + m.len()) == Some(m);
    if at(0, b"GGUF") {
        return Some(ModelFormat::Gguf);
    }
    // ggml, ggmf and ggjt, as little-endian u32 magics.
    if at(0, b"lmgg") || at(0, b"fmgg") || at(0, b"tjgg") {
        return Some(ModelFormat::Ggml);
    }
    if safetensors_header(head) {
        return Some(ModelFormat::Safetensors);
    }
    if at(4, b"TFL3") {
        return Some(ModelFormat::Tflite);
    }
    if at(0, b"\x89HDF\r\n\x1a\n") {
        return Some(ModelFormat::Hdf5);
    }
    if at(0, b"PK\x03\x04") && matches!(ext, "pt" | "pth" | "ckpt" | "bin") {
        return Some(ModelFormat::TorchZip);
    }
    // A pickle's PROTO opcode and a protocol from 2 to 5.
    if head.first() == Some(&0x80) && head.get(1).is_some_and(|p| (2..=5).contains(p)) {
        return Some(ModelFormat::Pickle);
    }
    // A ModelProto begins with its ir_version (field 1, varint).
    if ext == "onnx" && head.first() == Some(&0x08) {
        return Some(ModelFormat::Onnx);
    }
    None
}

/// A safetensors file: a little-endian u64 header length, then a JSON
/// object of that length.
fn safetensors_header(head: &[u8]) -> bool {
    let Some(len) = head.get(0..8) else {
        return false;
    };
    let mut n = [0u8; 8];
    n.copy_from_slice(len);
    let n = u64::from_le_bytes(n);
    (2..100 << 20).contains(&n) && head.get(8) == Some(&b'{')
}

/// The first bytes of a file, as many as the magics need.
pub fn head_of(f: &mut impl Read) -> Vec<u8> {
    let mut buf = vec![0u8; 16];
    let mut got = 0;
    while got < buf.len() {
        match f.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    buf.truncate(got);
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_by_extension_and_magic() {
        let st = {
            let mut h = 20u64.to_le_bytes().to_vec();
            h.extend_from_slice(b"{\"__metadata__\"");
            h
        };
        assert_eq!(
            model_format("/m/x.gguf", b"GGUF\x03\0\0\0"),
            Some(ModelFormat::Gguf)
        );
        assert_eq!(
            model_format("/m/x.safetensors", &st),
            Some(ModelFormat::Safetensors)
        );
        assert_eq!(
            model_format("/m/pytorch_model.bin", b"PK\x03\x04rest"),
            Some(ModelFormat::TorchZip)
        );
        assert_eq!(
            model_format("/m/model.pkl", b"\x80\x04\x95"),
            Some(ModelFormat::Pickle)
        );
        assert_eq!(
            model_format("/m/m.tflite", b"\x1c\0\0\0TFL3"),
            Some(ModelFormat::Tflite)
        );
        // The magic without the extension, and the extension without it.
        assert_eq!(model_format("/m/notes.txt", b"GGUF\x03\0\0\0"), None);
        assert_eq!(model_format("/m/firmware.bin", b"\x7fELF\x02"), None);
        assert_eq!(model_format("/m/x.gguf", b""), None);
        // A zip that is no checkpoint by name.
        assert_eq!(model_format("/m/x.pkl", b"PK\x03\x04"), None);
        assert_eq!(model_format("/m/.bin", b"GGUF"), None);
    }

    #[test]
    fn instruction_files_are_told_by_name() {
        assert!(is_instruction("/w/AGENTS.md"));
        assert!(is_instruction("/w/sub/CLAUDE.md"));
        assert!(is_instruction("/w/.cursor/rules/style.mdc"));
        assert!(is_instruction(
            "/home/a/.config/Claude/claude_desktop_config.json"
        ));
        assert!(!is_instruction("/w/README.md"));
        assert!(!is_instruction("/w/agents.md.bak"));
    }
}
