//! Builds the kernel programs (agentwatch-ebpf) for the BPF target with the
//! nightly toolchain and bpf-linker; the object is embedded in the binary.
use anyhow::{anyhow, Context as _};
use aya_build::Toolchain;

fn main() -> anyhow::Result<()> {
    // The fuzz targets (fuzz/) link the library from another workspace
    // and never load programs: they get an empty object.
    println!("cargo:rerun-if-env-changed=AGENTWATCH_NO_EBPF");
    if std::env::var_os("AGENTWATCH_NO_EBPF").is_some() {
        let out = std::env::var("OUT_DIR").context("OUT_DIR")?;
        std::fs::write(std::path::Path::new(&out).join("agentwatch"), b"")?;
        return Ok(());
    }
    let meta = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let pkg = meta
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "agentwatch-ebpf")
        .ok_or_else(|| anyhow!("agentwatch-ebpf package not found in the workspace"))?;
    let root = pkg
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("agentwatch-ebpf has no directory"))?;
    // The common crate is a dependency of both; rebuild when it changes.
    println!("cargo:rerun-if-changed={}/../agentwatch-common/src", root);
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "agentwatch-ebpf",
            root_dir: root.as_str(),
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
