//! Feature probes for `agentwatch doctor`: load (never attach) the probe
//! programs in the object and report what the kernel says.
use agentwatch_common::names::map as kmap;
use agentwatch_common::names::program as prog;
use aya::{
    programs::{BtfTracePoint, CgroupSockAddr, FEntry, Lsm, TracePoint},
    Btf, EbpfLoader,
};

use super::EBPF_OBJECT;

/// Outcome of loading one program: Ok, or the kernel's refusal.
pub struct ProbeResult {
    pub program: &'static str,
    pub outcome: Result<(), String>,
}

/// Loads the object and tries each probe program. Err when the object
/// itself cannot be loaded (its maps, including the ring buffer, are
/// created here, so this also probes ring buffer support).
pub fn probe_programs() -> Result<Vec<ProbeResult>, String> {
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(kmap::EVENTS, 4096 * 16)
        .allow_unsupported_maps()
        .load(EBPF_OBJECT)
        .map_err(|e| format!("{e:#}"))?;
    let btf = Btf::from_sys_fs().map_err(|e| format!("{e:#}"));
    let mut out = Vec::new();
    let mut run =
        |program: &'static str,
         f: &mut dyn FnMut(&mut aya::programs::Program) -> Result<(), String>| {
            let outcome = match ebpf.program_mut(program) {
                Some(p) => f(p),
                None => Err("missing from the object".into()),
            };
            out.push(ProbeResult { program, outcome });
        };
    fn e(err: impl std::fmt::Display) -> String {
        // Keep the first line: verifier logs are long.
        let s = err.to_string();
        let first = s.lines().next().unwrap_or_default();
        first
            .split(". Verifier output")
            .next()
            .unwrap_or(first)
            .to_string()
    }
    let btf_ref = btf.as_ref().map_err(Clone::clone);
    run(prog::SYS_ENTER, &mut |p| {
        let tp: &mut TracePoint = p.try_into().map_err(e)?;
        tp.load().map_err(e)
    });
    run(prog::PROBE_SEND_SIGNAL, &mut |p| {
        let tp: &mut TracePoint = p.try_into().map_err(e)?;
        tp.load().map_err(e)
    });
    run(prog::SCHED_PROCESS_EXEC, &mut |p| {
        let btf = btf_ref.clone()?;
        let tp: &mut BtfTracePoint = p.try_into().map_err(e)?;
        tp.load("sched_process_exec", btf).map_err(e)
    });
    run(prog::PROBE_CONNECT4, &mut |p| {
        let cg: &mut CgroupSockAddr = p.try_into().map_err(e)?;
        cg.load().map_err(e)
    });
    run(prog::PROBE_LSM, &mut |p| {
        let btf = btf_ref.clone()?;
        let lsm: &mut Lsm = p.try_into().map_err(e)?;
        lsm.load("file_open", btf).map_err(e)
    });
    run(prog::PROBE_FENTRY, &mut |p| {
        let btf = btf_ref.clone()?;
        let f: &mut FEntry = p.try_into().map_err(e)?;
        f.load("do_unlinkat", btf).map_err(e)
    });
    Ok(out)
}
