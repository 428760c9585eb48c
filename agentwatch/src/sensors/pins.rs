//! Pinning the sensors in bpffs, so enforcement outlives the daemon: every
//! map under DIR/maps/NAME and every attachment under DIR/links/NAME. While
//! the pins exist the programs stay attached and keep deciding, pausing and
//! denying in the kernel; a restarted daemon adopts them (`adopt`) instead
//! of loading a second copy. Removing the directory (`remove`) detaches
//! everything.
use agentwatch_common::names::map as kmap;
use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::Arc,
};

use aya::{
    maps::{HashMap, Map, MapData},
    programs::links::PinnedLink,
    Ebpf,
};
use tracing::info;

use super::{
    gate::WatchGate,
    loader::{Held, SensorError},
    policy_maps::{DfaCapacity, PolicyMaps},
    Sensors,
};

const BPFFS: &str = "/sys/fs/bpf";

fn pin_err(what: String) -> impl Fn(String) -> SensorError {
    move |reason| SensorError::Pin {
        what: what.clone(),
        reason,
    }
}

/// Mounts bpffs at /sys/fs/bpf when `dir` is under it and nothing is
/// mounted there, then creates `dir`'s maps/ and links/.
fn prepare(dir: &Path) -> Result<(), SensorError> {
    if dir.starts_with(BPFFS) && !mounted_bpffs() {
        nix::mount::mount(
            Some("bpf"),
            BPFFS,
            Some("bpf"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| SensorError::Pin {
            what: BPFFS.into(),
            reason: format!("cannot mount bpffs: {e}"),
        })?;
        info!("mounted bpffs at {BPFFS}");
    }
    for sub in ["maps", "links"] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).map_err(|e| SensorError::Pin {
            what: d.display().to_string(),
            reason: format!("{e} (the pin directory must be on a bpffs mount)"),
        })?;
    }
    Ok(())
}

fn mounted_bpffs() -> bool {
    super::host::mounts()
        .iter()
        .any(|(point, fstype)| point == BPFFS && fstype == "bpf")
}

/// Pins every map of the freshly loaded object (before any is taken).
pub(super) fn pin_maps(ebpf: &Ebpf, dir: &Path) -> Result<(), SensorError> {
    prepare(dir)?;
    // The object's own sections (.rodata, .bss) live as long as the
    // programs that use them; bpffs takes no names beginning with a dot.
    for (name, map) in ebpf.maps().filter(|(n, _)| !n.starts_with('.')) {
        let path = dir.join("maps").join(name);
        map.pin(&path).map_err(|e| {
            let why = std::error::Error::source(&e).map_or(e.to_string(), |s| format!("{e}: {s}"));
            pin_err(path.display().to_string())(why)
        })?;
    }
    Ok(())
}

/// Pins every attachment; returns them as held pins.
pub(super) fn pin_links(links: Vec<Held>, dir: &Path) -> Result<Vec<Held>, SensorError> {
    links
        .into_iter()
        .map(|h| match h {
            Held::Fd(name, fd) => {
                let path = dir.join("links").join(&name);
                fd.pin(&path)
                    .map(Held::Pinned)
                    .map_err(|e| pin_err(path.display().to_string())(e.to_string()))
            }
            pinned => Ok(pinned),
        })
        .collect()
}

/// Whether `dir` holds pinned sensors.
pub fn exist(dir: &Path) -> bool {
    dir.join("links").is_dir()
        && dir.join("maps").is_dir()
        && std::fs::read_dir(dir.join("links")).is_ok_and(|mut d| d.next().is_some())
}

/// Removes the pins: every program they kept attached is detached (unless
/// a running process still holds it) and the maps are freed.
pub fn remove(dir: &Path) -> std::io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// Opens the sensors pinned under `dir`: the maps by name, the links
/// held. `capacity` and `lsm` are what the loading process recorded.
/// Points the tamper guard at this process.
pub fn adopt(
    dir: &Path,
    capacity: DfaCapacity,
    lsm: Result<(), String>,
) -> Result<(Sensors, PolicyMaps), SensorError> {
    let entries = |sub: &str| -> Result<Vec<(String, PathBuf)>, SensorError> {
        let d = dir.join(sub);
        let mut out: Vec<_> = std::fs::read_dir(&d)
            .map_err(|e| pin_err(d.display().to_string())(e.to_string()))?
            .flatten()
            .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
            .collect();
        out.sort();
        Ok(out)
    };
    let open = |path: &Path| -> Result<MapData, SensorError> {
        MapData::from_pin(path).map_err(|e| pin_err(path.display().to_string())(e.to_string()))
    };
    let mut maps = BTreeMap::new();
    for (name, path) in entries("maps")? {
        let m = Map::from_map_data(open(&path)?)
            .map_err(|e| pin_err(path.display().to_string())(e.to_string()))?;
        maps.insert(name, m);
    }
    let mut links = Vec::new();
    for (_, path) in entries("links")? {
        // Held by the pin: dropping it leaves the program attached.
        let l = PinnedLink::from_pin(&path)
            .map_err(|e| pin_err(path.display().to_string())(e.to_string()))?;
        links.push(Held::Pinned(l));
    }
    // Pins of an agentwatch older than the gate: their programs read none.
    let gate = Arc::new(match maps.get(kmap::WATCH_GATE) {
        Some(Map::Array(m)) => WatchGate::map(m)?,
        _ => WatchGate::absent(),
    });
    let policy = PolicyMaps::open_with(
        |name| open(&dir.join("maps").join(name)),
        gate.clone(),
        capacity,
        lsm,
    )?;
    let watched = HashMap::try_from(
        maps.remove(kmap::WATCHED)
            .ok_or(SensorError::MissingMap(kmap::WATCHED))?,
    )
    .map_err(|e| pin_err(kmap::WATCHED.into())(e.to_string()))?;
    let mut s = Sensors::adopted(maps, links, watched, gate);
    s.point_tamper_guard_here()?;
    Ok((s, policy))
}
