//! Compiles the C CO-RE accessors (c/shim.c) to LLVM bitcode and hands the
//! bitcode to bpf-linker, which links it with the Rust programs so clang's
//! field relocations end up in the object's .BTF.ext.
use std::{env, path::PathBuf, process::Command};

fn main() {
    println!("cargo:rerun-if-changed=c/shim.c");
    println!("cargo:rerun-if-changed=c/kernel_types.h");
    // Rebuild when bpf-linker is upgraded: it is the real linker here.
    if let Ok(linker) = which::which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", linker.display());
    }
    if env::var("CARGO_CFG_TARGET_ARCH").as_deref() != Ok("bpf") {
        return;
    }
    let clang = env::var("AGENTWATCH_CLANG").unwrap_or_else(|_| "clang-22".into());
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("shim.bc");
    let status = Command::new(&clang)
        .args([
            "-target",
            "bpf",
            "-O2",
            "-g",
            "-emit-llvm",
            "-c",
            "-Wall",
            "-Werror",
        ])
        .arg("-D__TARGET_ARCH_x86")
        .arg("c/shim.c")
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap_or_else(|e| panic!("cannot run {clang} (install clang-22: ./setup.sh): {e}"));
    assert!(status.success(), "{clang} failed to compile c/shim.c");
    println!("cargo:rustc-link-arg={}", out.display());
}
