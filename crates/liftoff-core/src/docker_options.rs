//! `resource_args` for the `local-container` runner: docker-run-style options,
//! checked against an allow-list and parsed into typed Engine API settings.
//!
//! The allow-list is W&B Launch's (`validate_launch_resource_args`): anything
//! that could widen the container's access to the host (`privileged`,
//! `volume`, `cap-add`, `network`, `pid`, `device`, ...) is refused by name.
//! Liftoff never builds a `docker run` command line: values become fields of
//! the Engine API's create request, so a value such as `"--privileged"` can
//! never turn into a flag; it fails to parse as the option's type instead.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

/// Options accepted in `resource_args.local-container`, after normalisation
/// (leading `-` stripped, `_` → `-`, lower-cased). Same list as the reference.
pub const SUPPORTED_OPTIONS: [&str; 22] = [
    "command",
    "cpu",
    "cpu-period",
    "cpu-quota",
    "cpu-shares",
    "cpus",
    "cpuset-cpus",
    "cpuset-mems",
    "e",
    "env",
    "gpus",
    "m",
    "memory",
    "memory-reservation",
    "memory-swap",
    "name",
    "pids-limit",
    "platform",
    "shm-size",
    "ulimit",
    "w",
    "workdir",
];

/// Options that may be given as a non-empty list (each item is one use of the flag).
const REPEATABLE: [&str; 3] = ["e", "env", "ulimit"];

/// Where the options live in a launch spec or queue template, for error paths.
const ROOT: &str = "resource_args.local-container";

/// Container settings from validated `resource_args.local-container`, ready
/// for the Engine API's create request. `None`/empty means "engine default".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerOptions {
    /// `-e`/`--env K=V`, in the order given; later entries win on the same key.
    pub env: Vec<(String, String)>,
    /// `-m`/`--memory`, bytes.
    pub memory_bytes: Option<i64>,
    /// `--memory-reservation`, bytes.
    pub memory_reservation_bytes: Option<i64>,
    /// `--memory-swap`, bytes of memory plus swap; `-1` = unlimited swap.
    pub memory_swap_bytes: Option<i64>,
    /// `--cpus` (or `cpu`), in billionths of a CPU.
    pub nano_cpus: Option<i64>,
    /// `--cpu-shares`, relative weight.
    pub cpu_shares: Option<i64>,
    /// `--cpu-period`, microseconds.
    pub cpu_period: Option<i64>,
    /// `--cpu-quota`, microseconds per period.
    pub cpu_quota: Option<i64>,
    /// `--cpuset-cpus`, e.g. `0-3,5`.
    pub cpuset_cpus: Option<String>,
    /// `--cpuset-mems`, e.g. `0,1`.
    pub cpuset_mems: Option<String>,
    /// `--pids-limit`; `-1` = unlimited.
    pub pids_limit: Option<i64>,
    /// `--shm-size`, bytes.
    pub shm_size_bytes: Option<i64>,
    /// `--ulimit name=soft[:hard]` as `(name, soft, hard)`.
    pub ulimits: Vec<(String, i64, i64)>,
    /// `-w`/`--workdir`, an absolute path inside the container.
    pub workdir: Option<String>,
    /// `--name`, the container's name.
    pub name: Option<String>,
    /// `command`: the whole command line the container runs, split like a
    /// POSIX shell would split words (quotes kept, nothing expanded, no shell
    /// run). The first word replaces the entrypoint, the rest the arguments.
    pub command: Option<Vec<String>>,
    /// `--platform`, `os/arch[/variant]`.
    pub platform: Option<String>,
    /// `--gpus`, parsed like the docker CLI does.
    pub gpus: Option<GpuRequest>,
}

/// A `--gpus` request (`all`, a count, or `device=..,count=..,driver=..,capabilities=..`).
#[derive(Debug, Clone, PartialEq)]
pub struct GpuRequest {
    /// The value as given, for messages.
    pub spec: String,
    /// How many GPUs; `-1` = all. `0` when only device ids are given.
    pub count: i64,
    /// Device ids or UUIDs from `device=`.
    pub device_ids: Vec<String>,
    /// `driver=`, empty for the engine's default (nvidia).
    pub driver: String,
    /// Capabilities; always includes `gpu`, as the docker CLI does.
    pub capabilities: Vec<String>,
}

/// One problem in `resource_args.local-container`, naming the option and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// Field path, e.g. `resource_args.local-container.memory` or `...env[1]`.
    pub path: String,
    /// A lowercase fragment naming the option (and the value when it is at fault).
    pub message: String,
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OptionError {}

/// The allow-list's name normalisation: strip leading `-`, `_` → `-`, lower-case.
pub fn normalise_name(name: &str) -> String {
    name.trim_start_matches('-').replace('_', "-").to_lowercase()
}

/// Checks `resource_args.local-container` (a JSON object, or null for none)
/// and converts it; every problem is reported, not just the first.
pub fn parse(args: &Value) -> Result<ContainerOptions, Vec<OptionError>> {
    let map = match args {
        Value::Null => return Ok(ContainerOptions::default()),
        Value::Object(map) => map,
        other => {
            return Err(vec![OptionError {
                path: ROOT.to_string(),
                message: format!("{ROOT} must be an object of docker run options, not {}", kind(other)),
            }]);
        }
    };
    let mut errors = Vec::new();
    // canonical name -> the key the user wrote, to refuse `m` next to `memory`
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    let mut out = ContainerOptions::default();
    for (key, value) in map {
        let path = format!("{ROOT}.{key}");
        let normalised = normalise_name(key);
        let Some(option) = SUPPORTED_OPTIONS.iter().find(|o| **o == normalised) else {
            errors.push(OptionError {
                message: format!(
                    "unsupported {ROOT} option '{key}'; supported options are: {}",
                    SUPPORTED_OPTIONS.join(", ")
                ),
                path,
            });
            continue;
        };
        let canonical = canonical(option);
        if let Some(first) = seen.insert(canonical, key)
            && !REPEATABLE.contains(option)
        {
            errors
                .push(OptionError { path, message: format!("{ROOT} option '{key}' repeats '{first}': give it once") });
            continue;
        }
        let values = match scalars(key, &path, value) {
            Ok(v) => v,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for (path, raw) in values {
            let bad = |what: &str| OptionError { path: path.clone(), message: format!("{ROOT} option '{key}' {what}") };
            let result = match canonical {
                "command" => parse_command(&raw).map(|c| out.command = Some(c)),
                "cpus" => parse_cpus(&raw).map(|n| out.nano_cpus = Some(n)),
                "cpu-period" => parse_int(&raw, 0).map(|n| out.cpu_period = Some(n)),
                "cpu-quota" => parse_int(&raw, -1).map(|n| out.cpu_quota = Some(n)),
                "cpu-shares" => parse_int(&raw, 0).map(|n| out.cpu_shares = Some(n)),
                "cpuset-cpus" => parse_cpuset(&raw).map(|s| out.cpuset_cpus = Some(s)),
                "cpuset-mems" => parse_cpuset(&raw).map(|s| out.cpuset_mems = Some(s)),
                "env" => parse_env(&raw).map(|kv| out.env.push(kv)),
                "gpus" => parse_gpus(&raw).map(|g| out.gpus = Some(g)),
                "memory" => parse_bytes(&raw).map(|n| out.memory_bytes = Some(n)),
                "memory-reservation" => parse_bytes(&raw).map(|n| out.memory_reservation_bytes = Some(n)),
                "memory-swap" => {
                    if raw == "-1" { Ok(-1) } else { parse_bytes(&raw) }.map(|n| out.memory_swap_bytes = Some(n))
                }
                "name" => parse_name(&raw).map(|s| out.name = Some(s)),
                "pids-limit" => parse_int(&raw, -1).map(|n| out.pids_limit = Some(n)),
                "platform" => parse_platform(&raw).map(|s| out.platform = Some(s)),
                "shm-size" => parse_bytes(&raw).map(|n| out.shm_size_bytes = Some(n)),
                "ulimit" => parse_ulimit(&raw).and_then(|u| {
                    if out.ulimits.iter().any(|(name, _, _)| *name == u.0) {
                        Err(format!("value '{raw}' sets ulimit '{}' a second time", u.0))
                    } else {
                        out.ulimits.push(u);
                        Ok(())
                    }
                }),
                "workdir" => parse_workdir(&raw).map(|s| out.workdir = Some(s)),
                other => unreachable!("option '{other}' is in SUPPORTED_OPTIONS but has no parser"),
            };
            if let Err(what) = result {
                errors.push(bad(&what));
            }
        }
    }
    if errors.is_empty() { Ok(out) } else { Err(errors) }
}

/// Folds the short and alternative spellings onto one name.
fn canonical(option: &'static str) -> &'static str {
    match option {
        "m" => "memory",
        "w" => "workdir",
        "e" => "env",
        // not a docker run flag (docker itself would refuse `--cpu`); read as `cpus`
        "cpu" => "cpus",
        other => other,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a bool",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The option's value(s) as strings, with the path of each: a single string
/// or number, or for repeatable options a non-empty list of them.
fn scalars(key: &str, path: &str, value: &Value) -> Result<Vec<(String, String)>, OptionError> {
    let single = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let not_single = |path: &str, v: &Value| OptionError {
        path: path.to_string(),
        message: format!("{ROOT} option '{key}' must be a single string or numeric value, not {}", kind(v)),
    };
    match value {
        Value::Array(items) if REPEATABLE.contains(&normalise_name(key).as_str()) => {
            if items.is_empty() {
                return Err(OptionError {
                    path: path.to_string(),
                    message: format!("{ROOT} option '{key}' must not be an empty list"),
                });
            }
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let item_path = format!("{path}[{i}]");
                    single(item).map(|s| (item_path.clone(), s)).ok_or_else(|| not_single(&item_path, item))
                })
                .collect()
        }
        v => single(v).map(|s| vec![(path.to_string(), s)]).ok_or_else(|| not_single(path, v)),
    }
}

fn parse_command(raw: &str) -> Result<Vec<String>, String> {
    match split_words(raw) {
        Some(words) if !words.is_empty() => Ok(words),
        Some(_) => Err("is empty: give the command line to run".to_string()),
        None => Err(format!("value '{raw}' has an unclosed quote or a trailing backslash")),
    }
}

/// POSIX shell word splitting without expansion or execution (`shlex`):
/// `None` on an unclosed quote or a trailing backslash. `#` starts a comment.
pub fn split_words(line: &str) -> Option<Vec<String>> {
    shlex::split(line)
}

/// Docker's `--cpus`: a decimal number of CPUs, at most nine decimal places.
fn parse_cpus(raw: &str) -> Result<i64, String> {
    let bad = || format!("value '{raw}' is not a number of CPUs (e.g. 1.5)");
    let t = raw.trim();
    let (whole, frac) = t.split_once('.').unwrap_or((t, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(bad());
    }
    if frac.len() > 9 {
        return Err(format!("value '{raw}' is too precise (at most 9 decimal places)"));
    }
    let whole: i64 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| bad())? };
    let frac: i64 = format!("{frac:0<9}").parse().map_err(|_| bad())?;
    let nano = whole.checked_mul(1_000_000_000).and_then(|n| n.checked_add(frac)).ok_or_else(bad)?;
    if nano == 0 {
        return Err(format!("value '{raw}' must be more than 0 CPUs"));
    }
    Ok(nano)
}

fn parse_int(raw: &str, min: i64) -> Result<i64, String> {
    let n: i64 = raw.trim().parse().map_err(|_| format!("value '{raw}' is not a whole number"))?;
    if n < min {
        return Err(format!("value '{raw}' must be at least {min}"));
    }
    Ok(n)
}

/// Docker's `RAMInBytes`: a number with an optional binary unit
/// (`b`, `k`, `m`, `g`, `t`, `p`, optionally followed by `i` and/or `b`).
pub fn parse_bytes(raw: &str) -> Result<i64, String> {
    let bad = || format!("value '{raw}' is not a size: give bytes or a number with a unit (e.g. 512m, 1.5g)");
    let split = raw.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let unit = unit.strip_prefix(' ').unwrap_or(unit).to_ascii_lowercase();
    let dotted_ok = number.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    if number.is_empty() || !dotted_ok || number.matches('.').count() > 1 {
        return Err(bad());
    }
    let (prefix, rest) = match unit.chars().next() {
        Some(c @ ('k' | 'm' | 'g' | 't' | 'p')) => (Some(c), &unit[1..]),
        _ => (None, unit.as_str()),
    };
    if !matches!(rest, "" | "b" | "i" | "ib") || (prefix.is_none() && rest.starts_with('i')) {
        return Err(bad());
    }
    let power = match prefix {
        None => 0,
        Some('k') => 1,
        Some('m') => 2,
        Some('g') => 3,
        Some('t') => 4,
        _ => 5,
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * 1024f64.powi(power);
    if !bytes.is_finite() || bytes >= i64::MAX as f64 {
        return Err(format!("value '{raw}' is too large"));
    }
    Ok(bytes as i64)
}

fn parse_cpuset(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.split(',').all(|part| {
            let (a, b) = part.split_once('-').unwrap_or((part, part));
            !a.is_empty()
                && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit())
        });
    if ok { Ok(raw.to_string()) } else { Err(format!("value '{raw}' is not a CPU or memory-node list (e.g. 0-3,5)")) }
}

/// `K=V`. Names are non-empty and free of `=`, whitespace and control
/// characters; a bare `K` (copy from the agent's environment in the docker
/// CLI) is refused, since the agent's environment must not leak into jobs.
pub(crate) fn parse_env(raw: &str) -> Result<(String, String), String> {
    let Some((k, v)) = raw.split_once('=') else {
        return Err(format!("value '{raw}' is not KEY=VALUE"));
    };
    if k.is_empty() || k.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("value '{raw}' has an invalid variable name '{k}'"));
    }
    if v.contains('\0') {
        return Err(format!("value for '{k}' contains a NUL character"));
    }
    Ok((k.to_string(), v.to_string()))
}

/// Docker's `--gpus` syntax: comma-separated fields, double quotes around a
/// field that itself holds commas (`"device=0,1"`), as the CLI's CSV reader.
fn parse_gpus(raw: &str) -> Result<GpuRequest, String> {
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    for c in raw.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    if quoted {
        return Err(format!("value '{raw}' has an unclosed quote"));
    }
    fields.push(field);
    let count_of = |s: &str| -> Result<i64, String> {
        if s == "all" {
            return Ok(-1);
        }
        s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| format!("value '{raw}': '{s}' is not 'all' or a count"))
    };
    let mut req = GpuRequest {
        spec: raw.to_string(),
        count: 0,
        device_ids: Vec::new(),
        driver: String::new(),
        capabilities: Vec::new(),
    };
    let mut seen = Vec::new();
    for f in &fields {
        let f = f.trim();
        let (key, val) = match f.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => ("count", None),
        };
        if seen.contains(&key) {
            return Err(format!("value '{raw}' gives '{key}' more than once"));
        }
        seen.push(key);
        match (key, val) {
            ("count", None) => req.count = count_of(f)?,
            ("count", Some(v)) => req.count = count_of(v)?,
            ("driver", Some(v)) => req.driver = v.to_string(),
            ("device", Some(v)) => req.device_ids = v.split(',').map(str::to_string).collect(),
            ("capabilities", Some(v)) => req.capabilities = v.split(',').map(str::to_string).collect(),
            (k, _) => return Err(format!("value '{raw}' has an unexpected key '{k}'")),
        }
    }
    if !seen.contains(&"count") && req.device_ids.is_empty() {
        req.count = 1;
    }
    if !req.capabilities.iter().any(|c| c == "gpu") {
        req.capabilities.push("gpu".to_string());
    }
    Ok(req)
}

/// Docker's container name rule: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
fn parse_name(raw: &str) -> Result<String, String> {
    let name = raw.strip_prefix('/').unwrap_or(raw);
    let mut chars = name.chars();
    let ok = name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!("value '{raw}' is not a container name ([a-zA-Z0-9][a-zA-Z0-9_.-]+)"))
    }
}

fn parse_platform(raw: &str) -> Result<String, String> {
    let parts: Vec<&str> = raw.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-'));
    if ok {
        Ok(raw.to_string())
    } else {
        Err(format!("value '{raw}' is not a platform (os/arch[/variant], e.g. linux/amd64)"))
    }
}

/// The ulimit names docker knows (go-units `ulimitNameMapping`).
const ULIMIT_NAMES: [&str; 15] = [
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// Docker's `--ulimit name=soft[:hard]`; a missing hard limit equals the soft one.
fn parse_ulimit(raw: &str) -> Result<(String, i64, i64), String> {
    let Some((name, limits)) = raw.split_once('=') else {
        return Err(format!("value '{raw}' is not name=soft[:hard] (e.g. nofile=1024:2048)"));
    };
    if !ULIMIT_NAMES.contains(&name) {
        return Err(format!("value '{raw}' names an unknown ulimit '{name}' (known: {})", ULIMIT_NAMES.join(", ")));
    }
    let number = |s: &str| s.parse::<i64>().map_err(|_| format!("value '{raw}': '{s}' is not a whole number"));
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (number(s)?, number(h)?),
        None => {
            let n = number(limits)?;
            (n, n)
        }
    };
    if soft > hard {
        return Err(format!("value '{raw}' has a soft limit above the hard limit"));
    }
    Ok((name.to_string(), soft, hard))
}

fn parse_workdir(raw: &str) -> Result<String, String> {
    if raw.starts_with('/') && !raw.contains('\0') {
        Ok(raw.to_string())
    } else {
        Err(format!("value '{raw}' is not an absolute path"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_docker_units() {
        assert_eq!(parse_bytes("512m"), Ok(512 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("1.5G"), Ok(3 << 29));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("100 kb"), Ok(102_400));
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("10b"), Ok(10));
        for bad in ["", "m", "-1", "1x", "1.2.3", "1ib", "1mm", "--privileged", " 1m", "1e9"] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn cpus_are_exact_decimals() {
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
        assert_eq!(parse_cpus("0.01"), Ok(10_000_000));
        assert_eq!(parse_cpus("2"), Ok(2_000_000_000));
        assert_eq!(parse_cpus(".5"), Ok(500_000_000));
        for bad in ["0", "", ".", "-1", "inf", "NaN", "1e3", "--privileged", "0.0000000001"] {
            assert!(parse_cpus(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn words_split_like_a_shell_without_running_one() {
        let w = |s: &str| split_words(s).map(|v| v.iter().map(String::as_str).map(str::to_owned).collect::<Vec<_>>());
        assert_eq!(w("echo hello world"), Some(vec!["echo".into(), "hello".into(), "world".into()]));
        assert_eq!(
            w("  a  'b c'  \"d \\\" e\" f\\ g "),
            Some(vec!["a".into(), "b c".into(), "d \" e".into(), "f g".into()])
        );
        assert_eq!(w("x; echo HACKED"), Some(vec!["x;".into(), "echo".into(), "HACKED".into()]));
        assert_eq!(w("'' \"a\\n\" $HOME"), Some(vec!["".into(), "a\\n".into(), "$HOME".into()]));
        assert_eq!(w("a'b'\"c\""), Some(vec!["abc".into()]));
        assert_eq!(w("'open"), None);
        assert_eq!(w("\"open"), None);
        assert_eq!(w("trailing\\"), None);
        assert_eq!(w("   "), Some(vec![]));
        assert_eq!(w("python x.py # a note"), Some(vec!["python".into(), "x.py".into()]));
    }

    #[test]
    fn gpus_follow_the_cli() {
        let all = parse_gpus("all").unwrap();
        assert_eq!((all.count, all.capabilities.clone()), (-1, vec!["gpu".to_string()]));
        assert_eq!(parse_gpus("2").unwrap().count, 2);
        let dev = parse_gpus("\"device=0,1\",driver=nvidia").unwrap();
        assert_eq!((dev.count, dev.device_ids, dev.driver.as_str()), (0, vec!["0".into(), "1".into()], "nvidia"));
        assert!(parse_gpus("bogus").is_err());
        assert!(parse_gpus("all,count=2").is_err(), "count twice");
    }
}
