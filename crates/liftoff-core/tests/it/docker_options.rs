//! `resource_args.local-container`: the allow-list of the reference
//! (acceptance checklist item 39) and the conversion to Engine API settings.

use liftoff_core::docker_options::{ContainerOptions, OptionError, SUPPORTED_OPTIONS, parse};
use serde_json::{Value, json};

fn errors(args: Value) -> Vec<OptionError> {
    match parse(&args) {
        Ok(o) => panic!("{args} should be refused, got {o:?}"),
        Err(e) => e,
    }
}

#[test]
fn dangerous_flags_are_refused_by_name() {
    for key in [
        "privileged",
        "privileged=true",
        "v",
        "volume",
        "Volume",
        "p",
        "pid",
        "userns",
        "cap-add",
        "cap_add",
        "capAdd",
        "device",
        "security-opt",
        "network",
        "net",
        "ipc",
        "sysctl",
        "add-host",
        "--privileged",
        "-v",
        "mount",
        "runtime",
        "entrypoint",
        "user",
        "rm",
    ] {
        for value in [json!(true), json!("x"), json!(["/:/host"])] {
            let errs = errors(json!({ key: value }));
            assert_eq!(errs.len(), 1, "{key}: {errs:?}");
            let e = &errs[0];
            assert_eq!(e.path, format!("resource_args.local-container.{key}"));
            assert!(
                e.message.starts_with(&format!("unsupported resource_args.local-container option '{key}'; ")),
                "{e}"
            );
            assert!(e.message.contains("supported options are: command, cpu, cpu-period"), "{e}");
        }
    }
}

#[test]
fn every_supported_option_is_accepted_in_every_spelling() {
    let good = |name: &str| match name {
        "command" => json!("python train.py --epochs 10"),
        "cpu" | "cpus" => json!(1.5),
        "cpu-period" => json!(100000),
        "cpu-quota" => json!("50000"),
        "cpu-shares" => json!(512),
        "cpuset-cpus" => json!("0-1"),
        "cpuset-mems" => json!(0),
        "e" | "env" => json!("A=1"),
        "gpus" => json!("all"),
        "m" | "memory" | "memory-reservation" | "memory-swap" | "shm-size" => json!("64m"),
        "name" => json!("run-1"),
        "pids-limit" => json!(100),
        "platform" => json!("linux/amd64"),
        "ulimit" => json!("nofile=1024:2048"),
        "w" | "workdir" => json!("/work"),
        other => panic!("no sample for {other}"),
    };
    for name in SUPPORTED_OPTIONS {
        let upper_snake = format!("--{}", name.replace('-', "_").to_uppercase());
        for key in [name.to_string(), format!("-{name}"), upper_snake] {
            let parsed = parse(&json!({ &key: good(name) }));
            assert!(parsed.is_ok(), "{key}: {parsed:?}");
        }
    }
}

#[test]
fn values_must_be_single_strings_or_numbers() {
    for (key, value) in [
        ("memory", json!(["1g", "2g"])),
        ("cpus", json!([1])),
        ("name", json!({"a": 1})),
        ("env", json!({"A": "1"})),
        ("workdir", json!(true)),
        ("gpus", json!(false)),
        ("memory", json!(null)),
        ("ulimit", json!(["nofile=1:1", ["x"]])),
        ("e", json!([null])),
    ] {
        let errs = errors(json!({ key: value }));
        assert_eq!(errs.len(), 1, "{key}: {errs:?}");
        assert!(
            errs[0].message.starts_with(&format!(
                "resource_args.local-container option '{key}' must be a single string or numeric value"
            )),
            "{}",
            errs[0]
        );
    }
    assert_eq!(errors(json!({"ulimit": ["nofile=1:1", ["x"]]}))[0].path, "resource_args.local-container.ulimit[1]");
    for key in ["e", "env", "ulimit"] {
        let errs = errors(json!({ key: [] }));
        assert_eq!(errs[0].message, format!("resource_args.local-container option '{key}' must not be an empty list"));
    }
}

#[test]
fn a_flag_as_a_value_stays_a_value_and_fails_to_parse() {
    // The reference emits `--cpus --privileged`; here there is no command
    // line at all, and the value simply is not a number.
    let errs = errors(json!({"cpus": "--privileged"}));
    assert_eq!(errs[0].path, "resource_args.local-container.cpus");
    assert!(errs[0].message.contains("'cpus'") && errs[0].message.contains("'--privileged'"), "{}", errs[0]);
    for key in ["memory", "shm-size", "cpu-shares", "pids-limit", "workdir", "name", "platform", "ulimit", "gpus"] {
        let errs = errors(json!({ key: "--privileged" }));
        assert!(errs[0].message.contains(&format!("'{key}'")) && errs[0].message.contains("'--privileged'"), "{key}");
    }
    // env values and the command are data, never parsed as flags
    let ok = parse(&json!({"env": "X=--privileged", "command": "echo --privileged"})).unwrap();
    assert_eq!(ok.env, vec![("X".to_string(), "--privileged".to_string())]);
    assert_eq!(ok.command, Some(vec!["echo".to_string(), "--privileged".to_string()]));
}

#[test]
fn all_errors_are_reported_at_once_and_name_their_option() {
    let errs = errors(json!({"privileged": true, "memory": "lots", "cpus": true, "env": ["A=1", "no-equals"]}));
    let paths: Vec<&str> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "resource_args.local-container.cpus",
            "resource_args.local-container.env[1]",
            "resource_args.local-container.memory",
            "resource_args.local-container.privileged",
        ]
    );
    assert!(errs[1].message.contains("'no-equals' is not KEY=VALUE"), "{}", errs[1]);
    assert!(errs[2].message.contains("'lots' is not a size"), "{}", errs[2]);
}

#[test]
fn the_example_converts_to_engine_settings() {
    let o = parse(&json!({
        "memory": "512m",
        "cpus": 1.5,
        "env": ["A=1", "B=2=3"],
        "e": "C=",
        "ulimit": ["nofile=1024:2048", "nproc=64"],
        "shm-size": "64m",
        "workdir": "/x",
        "name": "my-run",
        "memory-swap": -1,
        "memory_reservation": "1g",
        "cpu-shares": 512,
        "cpu-period": "100000",
        "cpu-quota": 50000,
        "cpuset-cpus": "0-1,3",
        "cpuset-mems": 0,
        "pids-limit": -1,
        "platform": "linux/amd64",
        "command": "sh -c 'echo \"hi there\"; exit 3'",
        "gpus": "2",
    }))
    .unwrap();
    let expected = ContainerOptions {
        // keys are read in sorted order: `e` before `env`
        env: vec![("C".into(), "".into()), ("A".into(), "1".into()), ("B".into(), "2=3".into())],
        memory_bytes: Some(512 << 20),
        memory_reservation_bytes: Some(1 << 30),
        memory_swap_bytes: Some(-1),
        nano_cpus: Some(1_500_000_000),
        cpu_shares: Some(512),
        cpu_period: Some(100_000),
        cpu_quota: Some(50_000),
        cpuset_cpus: Some("0-1,3".into()),
        cpuset_mems: Some("0".into()),
        pids_limit: Some(-1),
        shm_size_bytes: Some(64 << 20),
        ulimits: vec![("nofile".into(), 1024, 2048), ("nproc".into(), 64, 64)],
        workdir: Some("/x".into()),
        name: Some("my-run".into()),
        command: Some(vec!["sh".into(), "-c".into(), "echo \"hi there\"; exit 3".into()]),
        platform: Some("linux/amd64".into()),
        gpus: o.gpus.clone(),
    };
    assert_eq!(o, expected);
    let gpus = o.gpus.unwrap();
    assert_eq!((gpus.count, gpus.capabilities), (2, vec!["gpu".to_string()]));
    assert_eq!(parse(&json!({"m": 1073741824})).unwrap().memory_bytes, Some(1 << 30));
    assert_eq!(parse(&json!(null)).unwrap(), ContainerOptions::default());
    assert_eq!(parse(&json!({})).unwrap(), ContainerOptions::default());
}

#[test]
fn bad_values_name_the_option_and_the_value() {
    for (key, value, needle) in [
        ("memory", json!("12q"), "'12q' is not a size"),
        ("m", json!(-5), "'-5' is not a size"),
        ("cpus", json!(0), "more than 0 CPUs"),
        ("cpus", json!("1.0000000001"), "too precise"),
        ("cpu-shares", json!(1.5), "'1.5' is not a whole number"),
        ("cpu-period", json!(-1), "must be at least 0"),
        ("cpuset-cpus", json!("0-a"), "'0-a' is not a CPU"),
        ("env", json!("=1"), "invalid variable name ''"),
        ("env", json!("A B=1"), "invalid variable name 'A B'"),
        ("e", json!("HOME"), "'HOME' is not KEY=VALUE"),
        ("ulimit", json!("nofile"), "is not name=soft[:hard]"),
        ("ulimit", json!("bogus=1"), "unknown ulimit 'bogus'"),
        ("ulimit", json!("nofile=10:5"), "soft limit above the hard limit"),
        ("ulimit", json!(["nofile=1", "nofile=2"]), "sets ulimit 'nofile' a second time"),
        ("workdir", json!("relative/dir"), "not an absolute path"),
        ("name", json!("-bad name"), "not a container name"),
        ("platform", json!("amd64"), "not a platform"),
        ("gpus", json!("some"), "'some' is not 'all' or a count"),
        ("command", json!("echo 'unclosed"), "unclosed quote"),
        ("command", json!("   "), "is empty"),
    ] {
        let errs = errors(json!({ key: value }));
        assert!(errs[0].path.starts_with(&format!("resource_args.local-container.{key}")), "{:?}", errs[0]);
        assert!(errs[0].message.contains(&format!("option '{key}'")), "{}", errs[0]);
        assert!(errs[0].message.contains(needle), "{key}: {} lacks {needle:?}", errs[0]);
    }
}

#[test]
fn one_option_under_two_spellings_is_refused_except_env() {
    let errs = errors(json!({"m": "1g", "memory": "2g"}));
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.contains("repeats"), "{}", errs[0]);
    assert!(errors(json!({"workdir": "/a", "-w": "/b"}))[0].message.contains("repeats"));
    assert_eq!(parse(&json!({"e": "A=1", "env": "B=2"})).unwrap().env.len(), 2);
}

#[test]
fn the_options_must_be_an_object() {
    let errs = errors(json!(["memory", "1g"]));
    assert_eq!(errs[0].path, "resource_args.local-container");
    assert!(errs[0].message.contains("must be an object"), "{}", errs[0]);
}
