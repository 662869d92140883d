//! Command line: help, exit codes, settings from flags and environment, JSON and human
//! output, logs.
use crate::fixture::*;
use serde_json::Value;

fn text(out: &std::process::Output) -> String {
    output_text(out)
}

#[test]
fn help_lists_the_subcommands() {
    let env = TestEnv::new("help");
    let out = env.elt_bare().arg("--help").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let help = String::from_utf8_lossy(&out.stdout);
    for sub in ["run", "run-job", "validate", "reset-state", "status"] {
        assert!(help.contains(sub), "--help must mention `{sub}`:\n{help}");
    }
    for sub in ["run", "run-job", "validate", "reset-state", "status"] {
        let out = env.elt_bare().args([sub, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{sub} --help: {}", text(&out));
    }
    let out = env.elt_bare().arg("run").arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--dry-run",
        "--json",
        "--master-url",
        "--analytics-url",
        "--redis-url",
        "--jobs-dir",
        "--log-dir",
    ] {
        assert!(
            help.contains(flag),
            "run --help must mention {flag}:\n{help}"
        );
    }
}

#[test]
fn unknown_subcommand_or_flag_exits_2() {
    let env = TestEnv::new("bad_invocation");
    let out = env.elt().arg("frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = env.elt().args(["run", "--no-such-flag"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = env.elt_bare().output().unwrap();
    assert_eq!(out.status.code(), Some(2), "no subcommand: {}", text(&out));
}

/// The hidden `--fault-point` of test builds names one of the points; a misspelt one is an
/// invalid invocation, not a fault that silently never fires.
#[test]
fn unknown_fault_point_exits_2() {
    let env = TestEnv::new("bad_fault_point");
    env.products_fixture(2);
    let out = env
        .elt()
        .args(["run", "--fault-point", "lod"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("unknown fault point `lod`"), "{t}");
    assert_eq!(env.a_count("products"), None, "nothing was done");
}

#[test]
fn run_without_master_url_exits_2() {
    let env = TestEnv::new("no_master");
    env.products_fixture(2);
    let out = env
        .elt()
        .env_remove("ELT_MASTER_URL")
        .args(["run"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.to_lowercase().contains("master"),
        "the message names the missing setting: {t}"
    );
    assert_eq!(env.a_count("products"), None, "nothing was done");
}

#[test]
fn run_without_analytics_url_exits_2() {
    let env = TestEnv::new("no_analytics");
    env.products_fixture(2);
    let out = env
        .elt()
        .env_remove("ELT_ANALYTICS_URL")
        .args(["run", "--json"])
        .output()
        .unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(
        t.to_lowercase().contains("analytics"),
        "the message names the missing setting: {t}"
    );
}

#[test]
fn run_job_with_unknown_name_exits_2() {
    let env = TestEnv::new("unknown_job");
    env.products_fixture(2);
    let out = env.elt().args(["run-job", "no_such_job"]).output().unwrap();
    let t = text(&out);
    assert_eq!(out.status.code(), Some(2), "{t}");
    assert!(t.contains("no_such_job"), "{t}");
    assert_eq!(env.a_count("products"), None, "the other job must not run");
}

#[test]
fn json_report_has_the_documented_shape() {
    let env = TestEnv::new("json_shape");
    env.products_fixture(3);
    let out = env.elt().args(["run", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let v: Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}):\n{stdout}"));
    let obj = v.as_object().expect("top level object");
    assert!(obj.contains_key("jobs"), "{v:#}");
    let list = jobs(&v);
    assert_eq!(list.len(), 1, "{v:#}");
    let j = &list[0];
    assert_eq!(j["job"], "products");
    assert_eq!(j["status"], "ok");
    for k in [
        "rows_read",
        "rows_upserted",
        "rows_unchanged",
        "rows_deleted",
        "duration_ms",
    ] {
        assert!(j[k].is_u64(), "{k} must be a non-negative integer: {j:#}");
    }
    assert!(
        j.get("error").is_some() && j["error"].is_null(),
        "error is null on success: {j:#}"
    );
    assert_eq!(j["rows_read"], 3);
    assert_eq!(j["rows_upserted"], 3);
}

#[test]
fn json_report_of_a_failed_job_has_an_error_message() {
    let env = TestEnv::new("json_failed");
    env.write_job(
        "broken",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS broken (id int PRIMARY KEY)",
            "SELECT id FROM missing_source_table WHERE updated_at > %s",
            "INSERT INTO broken (id) VALUES (%s) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id",
            "SELECT id FROM missing_source_table",
            "broken",
            &["id"],
        ),
    );
    let (code, v) = env.run_json();
    assert_eq!(code, 1, "{v:#}");
    let j = job(&v, "broken");
    assert_eq!(j["status"], "failed", "{j:#}");
    let err = j["error"]
        .as_str()
        .unwrap_or_else(|| panic!("error must be a string: {j:#}"));
    assert!(
        err.contains("missing_source_table"),
        "the error names the cause: {err}"
    );
}

#[test]
fn human_summary_line_per_job() {
    let env = TestEnv::new("human_output");
    env.products_fixture(3);
    env.write_job(
        "zz_broken",
        &job_yaml(
            "CREATE TABLE IF NOT EXISTS zz (id int PRIMARY KEY)",
            "SELECT id FROM missing_source_table WHERE updated_at > %s",
            "INSERT INTO zz (id) VALUES (%s) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id",
            "SELECT id FROM missing_source_table",
            "zz",
            &["id"],
        ),
    );
    let out = env.elt().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("products") && l.contains("ok")),
        "a summary line with `products` and `ok`:\n{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("zz_broken") && l.contains("failed")),
        "a summary line with `zz_broken` and `failed`:\n{stdout}"
    );
    assert!(
        serde_json::from_str::<Value>(stdout.trim()).is_err(),
        "human output is not JSON"
    );
}

/// Settings given as flags, before or after the subcommand, with no ELT_* variables.
#[test]
fn settings_as_flags_before_or_after_the_subcommand() {
    let env = TestEnv::new("flags_position");
    env.products_fixture(4);
    let settings = |c: &mut assert_cmd::Command| {
        c.arg("--master-url")
            .arg(env.m_url())
            .arg("--analytics-url")
            .arg(env.a_url())
            .arg("--redis-url")
            .arg(env.redis_url())
            .arg("--jobs-dir")
            .arg(&env.jobs_dir)
            .arg("--log-dir")
            .arg(&env.log_dir)
            .arg("--redis-prefix")
            .arg(&env.prefix);
    };
    // before
    let mut c = env.elt_bare();
    settings(&mut c);
    c.args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "products"), "ok");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // after
    env.m_exec("UPDATE products SET price = 1 WHERE id = 1");
    let mut c = env.elt_bare();
    c.args(["run", "--json"]);
    settings(&mut c);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(
        counts(&v, "products").upserted,
        1,
        "same state as the first run (same prefix): {v:#}"
    );
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    // run-job with flags after the job name
    let mut c = env.elt_bare();
    c.args(["run-job", "products", "--json"]);
    settings(&mut c);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "products"), "ok");
}

/// A flag wins over the environment variable.
#[test]
fn flag_wins_over_environment() {
    let env = TestEnv::new("flag_precedence");
    env.products_fixture(2);
    // The environment points M at a dead server and the jobs at a folder with another job.
    let other_jobs = env.path().join("other_jobs");
    std::fs::create_dir_all(&other_jobs).unwrap();
    std::fs::write(
        other_jobs.join("decoy.yaml"),
        PRODUCTS_JOB.replace("products", "decoy"),
    )
    .unwrap();
    let mut c = env.elt();
    c.env("ELT_MASTER_URL", "postgres://postgres@127.0.0.1:1/nowhere")
        .env("ELT_JOBS_DIR", &other_jobs)
        .arg("--master-url")
        .arg(env.m_url())
        .arg("--jobs-dir")
        .arg(&env.jobs_dir)
        .args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    let names: Vec<&str> = jobs(&v)
        .iter()
        .map(|j| j["job"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["products"], "--jobs-dir wins over ELT_JOBS_DIR");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

/// The environment alone is enough (the harness default), and settings reach the program.
#[test]
fn environment_variables_are_used() {
    let env = TestEnv::new("env_settings");
    env.products_fixture(2);
    let c = env.run_ok("products");
    assert_eq!(c.upserted, 2);
    assert!(env.log_dir.join("elt.log").exists(), "ELT_LOG_DIR is used");
    assert!(
        !env.redis_keys().is_empty(),
        "state is kept under ELT_REDIS_PREFIX ({}:...)",
        env.prefix
    );
}

#[test]
fn defaults_jobs_and_logs_in_working_directory() {
    let env = TestEnv::new("default_dirs");
    env.products_fixture(2); // writes <tmp>/jobs/products.yaml; cwd is <tmp>
    std::fs::remove_dir_all(&env.log_dir).unwrap();
    let mut c = env.elt();
    c.env_remove("ELT_JOBS_DIR")
        .env_remove("ELT_LOG_DIR")
        .args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(status(&v, "products"), "ok");
    assert!(
        env.path().join("logs/elt.log").exists(),
        "./logs/elt.log is the default log file"
    );
}

#[test]
fn empty_jobs_folder_is_success() {
    let env = TestEnv::new("empty_jobs");
    let (code, v) = env.run_json();
    assert_eq!(code, 0, "{v:#}");
    assert!(jobs(&v).is_empty(), "{v:#}");
}

#[test]
fn libpq_key_value_connection_strings_work() {
    let env = TestEnv::new("keyvalue_conninfo");
    env.products_fixture(3);
    let p = pg_parts(env.pg_url());
    let kv = |db: &str| {
        format!(
            "host={} port={} user={} dbname={} connect_timeout=10",
            p.host, p.port, p.user, db
        )
    };
    let mut c = env.elt();
    c.env("ELT_MASTER_URL", kv(&env.m_db))
        .env("ELT_ANALYTICS_URL", kv(&env.a_db))
        .args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn postgres_url_with_query_parameters_works() {
    let env = TestEnv::new("url_query");
    env.products_fixture(3);
    let mut c = env.elt();
    c.env(
        "ELT_MASTER_URL",
        format!("{}?sslmode=disable&connect_timeout=10", env.m_url()),
    )
    .env(
        "ELT_ANALYTICS_URL",
        format!("{}?application_name=elt_test", env.a_url()),
    )
    .args(["run", "--json"]);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
}

#[test]
fn logs_have_timestamps_and_job_names() {
    let env = TestEnv::new("log_files");
    env.products_fixture(2);
    env.run_ok("products");
    let log = env.elt_log();
    let job_lines: Vec<&str> = log.lines().filter(|l| l.contains("products")).collect();
    assert!(!job_lines.is_empty(), "elt.log mentions the job:\n{log}");
    for l in log.lines().filter(|l| !l.trim().is_empty()) {
        assert!(has_date(l), "every log line has a timestamp: {l:?}");
    }
    assert!(
        env.error_log().trim().is_empty(),
        "error.log holds errors only, and there were none:\n{}",
        env.error_log()
    );
}

#[test]
fn status_lists_jobs() {
    let env = TestEnv::new("status_cmd");
    env.products_fixture(4);
    // Before any run the job is listed, without a watermark.
    let out = env.elt().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("status --json: {e}: {}", text(&out)));
    assert!(v.to_string().contains("\"products\""), "{v:#}");

    env.run_ok("products");
    let out = env.elt().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let j = find_job_object(&v, "products")
        .unwrap_or_else(|| panic!("no object for products in {v:#}"));
    let obj = j.as_object().unwrap();
    let watermark = obj
        .iter()
        .find(|(k, _)| k.contains("watermark"))
        .unwrap_or_else(|| panic!("no watermark field: {j:#}"));
    assert!(
        !watermark.1.is_null(),
        "watermark set after a successful run: {j:#}"
    );
    let tracked = obj
        .iter()
        .find(|(k, v)| k.contains("rows") && v.is_u64())
        .unwrap_or_else(|| panic!("no rows-tracked field: {j:#}"));
    assert_eq!(
        tracked.1.as_u64(),
        Some(4),
        "rows tracked = rows in M: {j:#}"
    );

    let out = env.elt().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("products"),
        "{}",
        text(&out)
    );
}

/// The job object for `name` anywhere in a status document.
fn find_job_object<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    match v {
        Value::Object(m) => {
            if m.values().any(|x| x == name) {
                return Some(v);
            }
            if let Some(x) = m.get(name) {
                if x.is_object() {
                    return Some(x);
                }
            }
            m.values().find_map(|x| find_job_object(x, name))
        }
        Value::Array(a) => a.iter().find_map(|x| find_job_object(x, name)),
        _ => None,
    }
}

/// Mistyped job names and a wrong `--jobs-dir`: exit 2, said once, naming the folder and
/// the job meant; nothing is run or reset.
#[test]
fn mistyped_job_names_and_a_missing_jobs_folder() {
    let env = TestEnv::new("mistyped");
    env.products_fixture(3);
    env.run_ok("products");
    let state_before = env.redis_snapshot();
    let folder = std::fs::canonicalize(&env.jobs_dir).unwrap();
    let once = |out: &std::process::Output, what: &str| {
        let t = text(out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert_eq!(t.matches(what).count(), 1, "said once: {t}");
        t
    };

    let out = env.elt().args(["run-job", "prodcts"]).output().unwrap();
    let t = once(&out, "unknown job `prodcts`");
    assert!(t.contains("did you mean `products`?"), "{t}");
    assert!(
        t.contains(&folder.display().to_string()),
        "names the folder: {t}"
    );

    for name in ["prodcts", "nosuchjob"] {
        let out = env.elt().args(["reset-state", name]).output().unwrap();
        let t = once(&out, &format!("unknown job `{name}`"));
        assert_eq!(
            t.contains("did you mean `products`?"),
            name == "prodcts",
            "{t}"
        );
        assert!(!t.contains("key(s) removed"), "{t}");
    }
    assert_eq!(env.redis_snapshot(), state_before, "nothing was reset");

    let missing = env.path().join("no-such-folder");
    for args in [&["status"][..], &["run"][..], &["status", "--json"][..]] {
        let out = env
            .elt()
            .args(args)
            .arg("--jobs-dir")
            .arg(&missing)
            .output()
            .unwrap();
        let t = once(&out, "cannot read the jobs folder");
        assert!(t.contains(&missing.display().to_string()), "{t}");
        assert!(!t.contains("orphan"), "{t}");
    }
    assert_eq!(env.redis_snapshot(), state_before);
}

/// Every `ELT_*` variable the command line defines (src/cli.rs), the hidden
/// `ELT_FAULT_POINT` of test builds included.
fn elt_variables() -> Vec<String> {
    let src = std::fs::read_to_string(repo_root().join("src/cli.rs")).unwrap();
    let mut vars: Vec<String> = src
        .split('"')
        .filter(|s| {
            s.starts_with("ELT_")
                && s.len() > 4
                && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .map(str::to_string)
        .collect();
    vars.sort();
    vars.dedup();
    assert!(vars.len() >= 10, "{vars:?}");
    vars
}

/// `--help` names each setting's variable but never its value: not with the variable set
/// (no password shown) and not with it set empty (no dangling `[env: ELT_JOBS_DIR=]`).
#[test]
fn help_names_the_variables_without_their_values() {
    let env = TestEnv::new("help_env_values");
    let vars = elt_variables();
    for value in ["", "value-of-the-variable"] {
        for args in [&["--help"][..], &["run", "--help"], &["run-job", "--help"]] {
            let mut c = env.elt_bare();
            for v in &vars {
                c.env(v, value);
            }
            let out = c.args(args).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
            let help = String::from_utf8_lossy(&out.stdout);
            assert!(help.contains("[env: ELT_JOBS_DIR]"), "{args:?}:\n{help}");
            assert!(!help.contains("=]"), "{args:?} with {value:?}:\n{help}");
            assert!(!help.contains("value-of-the"), "{args:?}:\n{help}");
            for v in &vars {
                assert!(!help.contains(&format!("{v}=")), "{v} in {args:?}:\n{help}");
            }
        }
    }
}

/// `run --help` and `run-job --help` list their own flags under `Options:`, apart from the
/// settings every command shares, which come under their own heading.
#[test]
fn run_help_shows_its_own_flags_apart_from_the_settings() {
    let env = TestEnv::new("help_headings");
    let own = ["--dry-run", "--force-deletes", "--json", "--metrics-file"];
    let settings = [
        "--master-url",
        "--analytics-url",
        "--redis-url",
        "--jobs-dir",
        "--log-dir",
        "--redis-prefix",
        "--overlap-seconds",
        "--lock-ttl-seconds",
        "--log-retention-days",
        "--verbose",
        "--quiet",
    ];
    for sub in ["run", "run-job"] {
        let out = env.elt_bare().args([sub, "--help"]).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", text(&out));
        let help = String::from_utf8_lossy(&out.stdout);
        let (options, shared) = help
            .split_once("\nOptions:\n")
            .and_then(|(_, rest)| {
                rest.split_once("\nSettings (every command; flag or environment variable):\n")
            })
            .unwrap_or_else(|| panic!("{sub} --help: Options:, then Settings …:\n{help}"));
        for flag in own {
            assert!(
                options.contains(flag),
                "{sub}: {flag} under Options:\n{help}"
            );
            assert!(
                !shared.contains(flag),
                "{sub}: {flag} not a setting:\n{help}"
            );
        }
        for flag in settings {
            assert!(
                shared.contains(flag),
                "{sub}: {flag} under Settings:\n{help}"
            );
            assert!(
                !options.contains(flag),
                "{sub}: {flag} not under Options:\n{help}"
            );
        }
    }
}

/// `reset-state` without a job and without `--all` or `--orphans` is a usage error that
/// shows its three forms and says nothing about database URLs (which it does not need).
#[test]
fn reset_state_usage_error_shows_its_forms_and_no_database_url() {
    let env = TestEnv::new("reset_usage");
    for mut c in [env.elt_bare(), env.elt()] {
        let out = c.arg("reset-state").output().unwrap();
        let t = text(&out);
        assert_eq!(out.status.code(), Some(2), "{t}");
        assert!(
            t.contains(
                "Usage: elt reset-state <JOB>...\n       elt reset-state --all\n       \
                 elt reset-state --orphans\n"
            ),
            "{t}"
        );
        let lower = t.to_lowercase();
        for word in ["master", "analytics", "-url", "elt_"] {
            assert!(!lower.contains(word), "{word}: {t}");
        }
        assert_eq!(String::from_utf8_lossy(&out.stdout), "", "{t}");
    }
}

/// `run-job` logs `run started` as `run` does, and every path in a log line is absolute
/// although the folders and the metrics file were given relative to the working directory
/// (the jobs folder, the job file, rotated and removed log files, the metrics file).
#[test]
fn run_job_logs_run_started_and_log_lines_show_absolute_paths() {
    let env = TestEnv::new("absolute_log_paths");
    env.products_fixture(2);
    let root = std::fs::canonicalize(env.path()).unwrap();
    let jobs = root.join("rel-jobs");
    let logs = root.join("rel-logs");
    std::fs::create_dir_all(&jobs).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    std::fs::write(jobs.join("products.yaml"), PRODUCTS_JOB).unwrap();
    // yesterday's elt.log (rotated at the first start today) and a rotated file past its
    // retention (removed)
    std::fs::write(logs.join("elt.log"), "yesterday\n").unwrap();
    let yesterday = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(logs.join("elt.log"))
        .unwrap()
        .set_modified(yesterday)
        .unwrap();
    std::fs::write(logs.join("error.log.2000-01-01"), "old\n").unwrap();
    let elt = |args: &[&str]| {
        let mut c = env.elt();
        c.current_dir(&root)
            .args(["-v", "--jobs-dir", "rel-jobs", "--log-dir", "rel-logs"])
            .args(args)
            .args(["--metrics-file", "rel-metrics.prom"]);
        let out = c.output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", text(&out));
        std::fs::read_to_string(logs.join("elt.log")).unwrap()
    };

    let log = elt(&["run-job", "products", "--dry-run"]);
    let shown = |p: &std::path::Path| p.display().to_string();
    let metrics = shown(&root.join("rel-metrics.prom"));
    for line in [
        format!(
            "INFO  run started: job products from {}",
            shown(&jobs.join("products.yaml"))
        ),
        format!(
            "log rotation: elt.log of {} moved to {}/elt.log.",
            &humantime::format_rfc3339_seconds(yesterday).to_string()[..10],
            shown(&logs)
        ),
        format!(
            "log rotation: {} removed (older than 14 days)",
            shown(&logs.join("error.log.2000-01-01"))
        ),
        format!(
            "[products] job file {} (sha256 ",
            shown(&jobs.join("products.yaml"))
        ),
        format!("dry run: metrics file {metrics} left as it was"),
    ] {
        assert!(log.contains(&line), "{line}\nin elt.log:\n{log}");
    }
    let log = elt(&["run"]);
    for line in [
        format!("INFO  run started: 1 job(s) in {}", shown(&jobs)),
        format!(", jobs {}, overlap ", shown(&jobs)),
        format!("metrics written to {metrics}"),
    ] {
        assert!(log.contains(&line), "{line}\nin elt.log:\n{log}");
    }
    // and no path relative to the working directory anywhere
    let prefix = format!("{}/", root.display());
    for (at, _) in log.match_indices("rel-") {
        assert!(
            log[..at].ends_with(&prefix),
            "a relative path in elt.log: {}",
            &log[at.saturating_sub(80)..(at + 40).min(log.len())]
        );
    }
}
