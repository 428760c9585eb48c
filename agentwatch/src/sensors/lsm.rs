//! Attaching the BPF LSM tier (`agentwatch-ebpf/src/lsm.rs`): all hooks
//! or none, so a file call is never half covered.
use agentwatch_common::names::program as prog;
use aya::{
    programs::{links::FdLink, Lsm},
    Btf, Ebpf,
};

use super::loader::Held;
use tracing::{debug, info};

/// Program name and the LSM hook it goes on.
pub const PROGRAMS: [(&str, &str); 11] = [
    (prog::DENY_FILE_OPEN, "file_open"),
    (prog::DENY_PATH_MKNOD, "path_mknod"),
    (prog::DENY_PATH_MKDIR, "path_mkdir"),
    (prog::DENY_PATH_SYMLINK, "path_symlink"),
    (prog::DENY_PATH_UNLINK, "path_unlink"),
    (prog::DENY_PATH_RMDIR, "path_rmdir"),
    (prog::DENY_PATH_RENAME, "path_rename"),
    (prog::DENY_PATH_LINK, "path_link"),
    (prog::DENY_PATH_CHMOD, "path_chmod"),
    (prog::DENY_PATH_CHOWN, "path_chown"),
    (prog::DENY_BPRM_CHECK, "bprm_check_security"),
];

/// Loads and attaches every LSM program. On the first refusal the ones
/// already loaded are unloaded (which detaches them) and the reason is
/// returned: the caller falls back to SIGKILL at syscall entry.
pub fn attach(ebpf: &mut Ebpf, btf: &Btf) -> Result<Vec<Held>, String> {
    let mut done = Vec::new();
    let mut links = Vec::new();
    let mut attach_one = |name: &'static str, hook: &str| -> Result<(), String> {
        let p: &mut Lsm = ebpf
            .program_mut(name)
            .ok_or_else(|| format!("program {name} missing from the object"))?
            .try_into()
            .map_err(|_| format!("program {name} is not an LSM program"))?;
        p.load(hook, btf)
            .map_err(|e| format!("loading lsm/{hook}: {e:#}"))?;
        done.push(name);
        let id = p
            .attach()
            .map_err(|e| format!("attaching lsm/{hook}: {e:#}"))?;
        let link = p
            .take_link(id)
            .map_err(|e| format!("holding lsm/{hook}: {e:#}"))?;
        links.push(Held::Fd(name.to_string(), FdLink::from(link)));
        Ok(())
    };
    let result = PROGRAMS
        .iter()
        .try_for_each(|(name, hook)| attach_one(name, hook));
    match result {
        Ok(()) => {
            info!("BPF LSM tier attached: denied file calls and execs fail with EPERM");
            Ok(links)
        }
        Err(why) => {
            drop(links);
            for name in done {
                if let Some(Ok(p)) = ebpf.program_mut(name).map(<&mut Lsm>::try_from) {
                    let _ = p.unload();
                }
            }
            debug!(reason = %why, "BPF LSM tier not available");
            Err(why)
        }
    }
}
