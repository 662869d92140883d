//! Operations, as an operator meets them: the metrics file read with a Prometheus text-format
//! parser, the progress display (only on a terminal), `status` and `reset-state --orphans`,
//! log rotation and verbosity, completions, man pages, `--version` and `make install`.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command as StdCommand;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fixture::*;
use openmetrics_parser::prometheus::parse_prometheus;
use openmetrics_parser::{PrometheusType, PrometheusValue};
use serde_json::Value;

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A job whose source table does not exist: fails at extraction.
const BROKEN_JOB: &str = r#"CREATE_TABLE_SQL: "CREATE TABLE IF NOT EXISTS broken (id int PRIMARY KEY)"
SELECT_SOURCE_SQL: "SELECT id FROM missing_source_table WHERE updated_at > %s"
UPSERT_TARGET_SQL: "INSERT INTO broken (id) VALUES (%s) ON CONFLICT (id) DO UPDATE SET id = EXCLUDED.id"
SELECT_KEYS_SQL: "SELECT id FROM missing_source_table"
TARGET_TABLE: broken
KEY_COLUMNS: [id]
"#;

/// A job name that needs escaping in a label value: quote and backslash.
const ODD_NAME: &str = "odd\"na\\me";

/// A series: family name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Parsed metrics: series → (type, value), plus the help texts.
struct Metrics {
    samples: HashMap<Series, (PrometheusType, f64)>,
    help: HashMap<String, String>,
    text: String,
}

impl Metrics {
    fn read(path: &Path) -> Metrics {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("metrics file {}: {e}", path.display()));
        let parsed = parse_prometheus(&text)
            .unwrap_or_else(|e| panic!("not valid Prometheus text format: {e:?}\n{text}"));
        let mut samples = HashMap::new();
        let mut help = HashMap::new();
        for (name, family) in &parsed.families {
            help.insert(name.clone(), family.help.clone());
            for s in family.iter_samples() {
                let mut labels: Vec<(String, String)> = s
                    .get_labelset()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                labels.sort();
                let v = match &s.value {
                    PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                    PrometheusValue::Counter(c) => c.value.as_f64(),
                    other => panic!("unexpected value {other:?}"),
                };
                samples.insert((name.clone(), labels), (family.family_type.clone(), v));
            }
        }
        Metrics {
            samples,
            help,
            text,
        }
    }

    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<(PrometheusType, f64)> {
        let mut l: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        l.sort();
        self.samples.get(&(name.to_string(), l)).cloned()
    }

    fn job(&self, name: &str, job: &str) -> f64 {
        self.get(name, &[("job", job)])
            .unwrap_or_else(|| panic!("no {name}{{job={job:?}}} in\n{}", self.text))
            .1
    }

    fn run(&self, name: &str) -> f64 {
        self.get(name, &[])
            .unwrap_or_else(|| panic!("no {name} in\n{}", self.text))
            .1
    }
}

fn run_with_metrics(env: &TestEnv, args: &[&str], prom: &Path) -> (i32, Value) {
    let mut c = env.elt();
    c.args(args).arg("--json").arg("--metrics-file").arg(prom);
    run_cmd_json(c)
}

#[test]
fn metrics_file_parses_and_shows_successes_and_failures() {
    let env = TestEnv::new("ops_metrics");
    env.products_fixture(5);
    env.write_job("broken", BROKEN_JOB);
    env.write_job(ODD_NAME, "this is: [not a job file");
    let textfile_dir = env.path().join("textfile");
    fs::create_dir_all(&textfile_dir).unwrap();
    let prom = textfile_dir.join("elt.prom");

    let before = now_s();
    let (code, v) = run_with_metrics(&env, &["run"], &prom);
    assert_eq!(code, 1, "{v:#}");
    let m = Metrics::read(&prom);

    // every family has HELP and TYPE; the counter is typed as one
    for family in [
        "elt_job_up",
        "elt_job_rows_read",
        "elt_job_rows_upserted",
        "elt_job_rows_unchanged",
        "elt_job_rows_deleted",
        "elt_job_rows_repaired",
        "elt_job_duration_seconds",
        "elt_job_last_success_timestamp_seconds",
        "elt_job_failures_total",
        "elt_job_status",
        "elt_run_jobs",
        "elt_run_rows_read",
        "elt_run_duration_seconds",
        "elt_run_timestamp_seconds",
    ] {
        assert!(
            m.help.get(family).is_some_and(|h| !h.is_empty()),
            "{family} has a HELP line:\n{}",
            m.text
        );
    }
    assert_eq!(
        m.get("elt_job_failures_total", &[("job", "broken")])
            .unwrap()
            .0,
        PrometheusType::Counter
    );
    assert_eq!(
        m.get("elt_job_up", &[("job", "products")]).unwrap().0,
        PrometheusType::Gauge
    );

    // the successful job
    assert_eq!(m.job("elt_job_up", "products"), 1.0);
    assert_eq!(m.job("elt_job_rows_read", "products"), 5.0);
    assert_eq!(m.job("elt_job_rows_upserted", "products"), 5.0);
    assert_eq!(m.job("elt_job_rows_unchanged", "products"), 0.0);
    assert_eq!(m.job("elt_job_rows_deleted", "products"), 0.0);
    assert_eq!(m.job("elt_job_rows_repaired", "products"), 0.0);
    assert_eq!(m.job("elt_job_failures_total", "products"), 0.0);
    let success = m.job("elt_job_last_success_timestamp_seconds", "products");
    assert!(
        success >= before - 1.0 && success <= now_s() + 1.0,
        "{success} is now"
    );
    assert!(m.job("elt_job_duration_seconds", "products") > 0.0);
    assert_eq!(
        m.get("elt_job_status", &[("job", "products"), ("status", "ok")])
            .unwrap()
            .1,
        1.0
    );

    // the failing jobs, one of them with a name that needs escaping
    for job in ["broken", ODD_NAME] {
        assert_eq!(m.job("elt_job_up", job), 0.0, "{job}");
        assert_eq!(m.job("elt_job_failures_total", job), 1.0, "{job}");
        assert_eq!(
            m.job("elt_job_last_success_timestamp_seconds", job),
            0.0,
            "{job} never succeeded"
        );
        assert_eq!(
            m.get("elt_job_status", &[("job", job), ("status", "failed")])
                .unwrap()
                .1,
            1.0
        );
    }

    // run-level totals
    assert_eq!(m.get("elt_run_jobs", &[("status", "ok")]).unwrap().1, 1.0);
    assert_eq!(
        m.get("elt_run_jobs", &[("status", "failed")]).unwrap().1,
        2.0
    );
    assert_eq!(m.run("elt_run_rows_read"), 5.0);
    assert!(m.run("elt_run_timestamp_seconds") >= before - 1.0);
    assert!(
        !m.text.contains("postgres://") && !m.text.contains("redis://"),
        "no connection strings in metrics"
    );

    // written atomically: readable by node_exporter, no temporary file left behind
    let mode = fs::metadata(&prom).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644);
    let names: Vec<String> = fs::read_dir(&textfile_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["elt.prom"]);

    // products breaks: it keeps its last success time, its failure counter rises
    env.m_exec("ALTER TABLE products RENAME TO products_gone");
    let (code, _) = run_with_metrics(&env, &["run"], &prom);
    assert_eq!(code, 1);
    let m2 = Metrics::read(&prom);
    assert_eq!(m2.job("elt_job_up", "products"), 0.0);
    assert_eq!(
        m2.job("elt_job_last_success_timestamp_seconds", "products"),
        success,
        "a failed run keeps the previous success time"
    );
    assert_eq!(m2.job("elt_job_failures_total", "products"), 1.0);
    assert_eq!(m2.job("elt_job_failures_total", "broken"), 2.0);
    assert_eq!(m2.job("elt_job_failures_total", ODD_NAME), 2.0);

    // a dry run leaves the file alone
    let text = fs::read_to_string(&prom).unwrap();
    let (_, _) = run_with_metrics(&env, &["run", "--dry-run"], &prom);
    assert_eq!(fs::read_to_string(&prom).unwrap(), text);

    // run-job replaces its own job's series and keeps the others; the variable works too
    env.m_exec("ALTER TABLE products_gone RENAME TO products");
    let mut c = env.elt();
    c.args(["run-job", "products", "--json"])
        .env("ELT_METRICS_FILE", &prom);
    let (code, v) = run_cmd_json(c);
    assert_eq!(code, 0, "{v:#}");
    let m3 = Metrics::read(&prom);
    assert_eq!(m3.job("elt_job_up", "products"), 1.0);
    assert!(m3.job("elt_job_last_success_timestamp_seconds", "products") > success);
    assert_eq!(
        m3.job("elt_job_up", "broken"),
        0.0,
        "kept from the last run"
    );
    assert_eq!(m3.job("elt_job_failures_total", "broken"), 2.0);
    assert_eq!(m3.get("elt_run_jobs", &[("status", "ok")]).unwrap().1, 1.0);
    assert_eq!(
        m3.get("elt_run_jobs", &[("status", "failed")]).unwrap().1,
        0.0,
        "run totals describe the last invocation"
    );

    // a job file removed: `elt run` drops its series
    fs::remove_file(env.job_path("broken")).unwrap();
    run_with_metrics(&env, &["run"], &prom);
    let m4 = Metrics::read(&prom);
    assert!(m4.get("elt_job_up", &[("job", "broken")]).is_none());
    assert_eq!(m4.job("elt_job_up", "products"), 1.0);

    // Redis down: the file is still written, the last success and the counter carry on from it
    let mut c = env.elt();
    c.env("ELT_REDIS_URL", "redis://127.0.0.1:1/0")
        .args(["run", "--json", "--metrics-file"])
        .arg(&prom);
    let (code, _) = run_cmd_json(c);
    assert_eq!(code, 1);
    let m5 = Metrics::read(&prom);
    assert_eq!(m5.job("elt_job_up", "products"), 0.0);
    assert_eq!(
        m5.job("elt_job_last_success_timestamp_seconds", "products"),
        m4.job("elt_job_last_success_timestamp_seconds", "products")
    );
    assert_eq!(
        m5.job("elt_job_failures_total", "products"),
        m4.job("elt_job_failures_total", "products") + 1.0
    );
}

#[test]
fn unwritable_metrics_file_is_an_error_in_the_log_not_a_failed_run() {
    let env = TestEnv::new("ops_metrics_unwritable");
    env.products_fixture(2);
    let prom = env.path().join("no/such/folder/elt.prom");
    let (code, v) = run_with_metrics(&env, &["run"], &prom);
    assert_eq!(code, 0, "{v:#}");
    assert!(
        env.error_log().contains("metrics not written"),
        "{}",
        env.error_log()
    );
}

fn has_escape_codes(bytes: &[u8]) -> bool {
    bytes.contains(&0x1b) || bytes.contains(&b'\r')
}

/// Under cron, systemd or a pipe there is no terminal: no progress display, no escape codes.
#[test]
fn no_progress_display_without_a_terminal() {
    let env = TestEnv::new("ops_no_progress");
    env.products_fixture(20);
    let out = env.elt().env("TERM", "xterm").arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(!has_escape_codes(&out.stdout), "{}", output_text(&out));
    assert!(!has_escape_codes(&out.stderr), "{}", output_text(&out));
    assert!(
        !output_text(&out).contains("rows read ·"),
        "{}",
        output_text(&out)
    );
}

/// Runs `args` of elt inside a pseudo-terminal with `script`; None when `script` is missing.
fn in_terminal(env: &TestEnv, args: &str) -> Option<(i32, String)> {
    if StdCommand::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: `script` (util-linux) is not installed");
        return None;
    }
    let cmd = format!("'{}' {args}", elt_bin().display());
    let mut c = env.wrapper("timeout");
    c.args(["120", "script", "-q", "-e", "-c", &cmd, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null());
    let out = c.output().unwrap();
    Some((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    ))
}

/// A person at a terminal watching a long job sees its stage, rows and rate.
#[test]
fn progress_display_on_a_terminal() {
    let env = TestEnv::new("ops_progress_tty");
    env.products_fixture(5);
    // Not an ordering: the job must last long enough (1.5 s in M) for the progress line to
    // be drawn at its redraw rate.
    env.write_job(
        "products",
        &PRODUCTS_JOB.replace(
            "FROM products WHERE updated_at > %s",
            "FROM products WHERE id > (SELECT -1 FROM pg_sleep(1.5)) AND updated_at > %s",
        ),
    );
    let Some((code, screen)) = in_terminal(&env, "run-job products") else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("products: extracting"),
        "the stage is shown:\n{screen}"
    );
    assert!(screen.contains("rows read"), "{screen}");
    assert!(screen.contains("rows/s"), "{screen}");
    assert!(
        screen.contains("products: ok"),
        "the summary follows:\n{screen}"
    );

    // --json on a terminal: one clean document, no progress
    let Some((code, screen)) = in_terminal(&env, "run-job products --json") else {
        return;
    };
    assert_eq!(code, 0, "{screen}");
    assert!(!screen.contains("rows read"), "{screen}");
    assert!(!screen.contains('\x1b'), "{screen:?}");
    let v: Value =
        serde_json::from_str(screen.trim()).unwrap_or_else(|e| panic!("{e}: {screen:?}"));
    assert_eq!(v["jobs"][0]["status"], "ok");
}

fn status_json(env: &TestEnv) -> Value {
    let out = env.elt().args(["status", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn status_of<'a>(v: &'a Value, job: &str) -> &'a Value {
    v["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job"] == job)
        .unwrap_or_else(|| panic!("{job} not in {v:#}"))
}

#[test]
fn status_marks_changed_files_orphans_and_failures_and_reset_removes_orphans() {
    let env = TestEnv::new("ops_status");
    env.products_fixture(3);
    // a second job on the same table, whose file will disappear
    env.write_job("gone", PRODUCTS_JOB);
    env.write_job("broken", BROKEN_JOB);
    let (code, _) = env.run_json();
    assert_eq!(code, 1);
    // the products file changes, the gone file disappears
    let p = env.job_path("products");
    let text = fs::read_to_string(&p).unwrap();
    // a change of what the job does (a comment alone is only `edited`)
    let edited = text.replace(
        "SELECT id FROM products",
        "SELECT id FROM products WHERE true",
    );
    fs::write(&p, format!("# reviewed\n{edited}")).unwrap();
    fs::remove_file(env.job_path("gone")).unwrap();

    let v = status_json(&env);
    let products = status_of(&v, "products");
    assert_eq!(products["state"], "ok");
    assert_eq!(products["file_changed_since_last_run"], true);
    assert_eq!(products["rows_tracked"], 3);
    assert!(products["watermark"].is_string());
    assert!(products["last_success_age_s"].as_u64().unwrap() < 120);
    let gone = status_of(&v, "gone");
    assert_eq!(gone["state"], "orphan");
    assert_eq!(gone["orphan"], true);
    assert_eq!(gone["has_file"], false);
    let broken = status_of(&v, "broken");
    assert_eq!(broken["state"], "failing");
    assert_eq!(broken["failures"], 1);
    assert!(
        broken["last_error"]
            .as_str()
            .unwrap()
            .contains("missing_source_table")
    );

    let out = env.elt().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let table = String::from_utf8_lossy(&out.stdout).into_owned();
    let line = |job: &str| {
        table
            .lines()
            .find(|l| l.starts_with(&format!("{job} ")))
            .unwrap_or_else(|| panic!("no line for {job}:\n{table}"))
            .to_string()
    };
    assert!(table.lines().next().unwrap().starts_with("JOB "), "{table}");
    for col in [
        "STATE",
        "LAST SUCCESS",
        "AGE",
        "WATERMARK",
        "ROWS",
        "LAST ERROR",
    ] {
        assert!(table.contains(col), "{col}:\n{table}");
    }
    assert!(line("products").contains(" changed "), "{table}");
    assert!(
        line("gone").contains(" orphan ") && line("gone").contains(" missing "),
        "{table}"
    );
    assert!(
        line("broken").contains(" failing ") && line("broken").contains("missing_source_table"),
        "{table}"
    );
    assert!(table.contains("reset-state --orphans"), "{table}");

    // reset-state --orphans removes only the orphan's state
    let keys_before = env.redis_keys();
    assert!(keys_before.iter().any(|k| k.contains(":job:gone:")));
    let out = env
        .elt()
        .args(["reset-state", "--orphans"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("gone"),
        "{}",
        output_text(&out)
    );
    let keys = env.redis_keys();
    assert!(!keys.iter().any(|k| k.contains(":job:gone:")), "{keys:?}");
    assert!(
        keys.iter().any(|k| k.contains(":job:products:")),
        "{keys:?}"
    );
    assert!(keys.iter().any(|k| k.contains(":job:broken:")), "{keys:?}");
    let v = status_json(&env);
    assert!(!v.to_string().contains("\"gone\""), "{v:#}");

    // nothing left to remove
    let out = env
        .elt()
        .args(["reset-state", "--orphans"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // an empty (or wrong) jobs folder is refused rather than wiping every job's state
    let empty = env.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    let out = env
        .elt()
        .args(["reset-state", "--orphans", "--jobs-dir"])
        .arg(&empty)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        env.redis_keys()
            .iter()
            .any(|k| k.contains(":job:products:"))
    );

    // --orphans with names or --all is an invalid invocation
    for args in [
        &["reset-state", "--orphans", "products"][..],
        &["reset-state", "--orphans", "--all"][..],
    ] {
        let out = env.elt().args(args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            output_text(&out)
        );
    }
}

fn set_mtime(path: &Path, when: SystemTime) {
    fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

fn utc_day(t: SystemTime) -> String {
    elt::logging::utc_date(t)
}

#[test]
fn logs_rotate_daily_and_old_ones_are_deleted() {
    let env = TestEnv::new("ops_log_rotation");
    env.products_fixture(2);
    let logs = &env.log_dir;
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 86_400);
    let old_day = utc_day(two_days_ago);
    fs::write(logs.join("elt.log"), "old line\n").unwrap();
    set_mtime(&logs.join("elt.log"), two_days_ago);
    fs::write(logs.join("error.log"), "old error\n").unwrap();
    set_mtime(&logs.join("error.log"), two_days_ago);
    let ancient = SystemTime::now() - Duration::from_secs(30 * 86_400);
    let ancient_name = format!("elt.log.{}", utc_day(ancient));
    fs::write(logs.join(&ancient_name), "ancient\n").unwrap();

    let out = env
        .elt()
        .args(["run", "--log-retention-days", "7"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let rotated = logs.join(format!("elt.log.{old_day}"));
    assert_eq!(fs::read_to_string(&rotated).unwrap(), "old line\n");
    assert_eq!(
        fs::read_to_string(logs.join(format!("error.log.{old_day}"))).unwrap(),
        "old error\n"
    );
    let today = env.elt_log();
    assert!(!today.contains("old line"), "{today}");
    assert!(today.contains("products"), "{today}");
    assert!(
        today.contains("log rotation"),
        "the rotation is logged:\n{today}"
    );
    assert!(
        !logs.join(&ancient_name).exists(),
        "older than the retention"
    );
    assert!(env.error_log().is_empty(), "{}", env.error_log());

    // the same day again: nothing moves; retention from the environment
    let out = env
        .elt()
        .env("ELT_LOG_RETENTION_DAYS", "1")
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(env.elt_log().contains("products"));
    assert!(!rotated.exists(), "two days old, retention 1 day");
}

#[test]
fn verbosity_flags() {
    let env = TestEnv::new("ops_verbosity");
    env.products_fixture(2);
    // -v: debug lines in elt.log, info lines on standard error
    let out = env.elt().args(["-v", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("elt: info: [products]"), "{stderr}");
    assert!(env.elt_log().contains(" DEBUG "), "{}", env.elt_log());
    for l in env.elt_log().lines() {
        assert!(has_date(l), "{l}");
    }

    // -v shows the settings in force, but never a password
    let out = env
        .elt()
        .env("ELT_MASTER_URL", "postgres://u:S3cretPw@127.0.0.1:1/db")
        .args(["run", "-v"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        env.elt_log().contains("u:***@127.0.0.1:1"),
        "{}",
        env.elt_log()
    );
    for text in [output_text(&out), env.elt_log(), env.error_log()] {
        assert!(!text.contains("S3cretPw"), "{text}");
    }

    // default: a skipped job is said once, on standard output (its summary line), not
    // again on standard error; warnings there read `warning:`
    env.hold_lock("products", 60);
    let out = env.elt().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("products"), "{stderr}");
    assert!(
        !stderr.contains("info") && !stderr.contains("warn:"),
        "{stderr}"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("products: skipped"));
    let out = env.elt().args(["run", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("products: skipped"),
        "the summary still goes to stdout"
    );
    // a warning does go to standard error, with the job's name (a truncated target: the run
    // re-synchronises in full); -q silences it
    env.a_exec("TRUNCATE products");
    let mut con = env.redis();
    let _: i64 = redis::cmd("DEL")
        .arg(env.lock_key("products"))
        .query(&mut con)
        .unwrap();
    let out = env.elt().arg("run").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("elt: warning: [products]"), "{stderr}");
    assert!(!stderr.contains("info"), "{stderr}");
    env.a_exec("TRUNCATE products");
    let out = env.elt().args(["run", "-q"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("products: ok"),
        "the summary still goes to stdout"
    );
    // -v and -q together make no sense
    let out = env.elt().args(["-v", "-q", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn version_shows_the_commit() {
    let env = TestEnv::new("ops_version");
    let out = env.elt_bare().arg("--version").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        v.starts_with(&format!("elt {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{v}"
    );
    let git = StdCommand::new("git")
        .args(["rev-parse", "--short=10", "HEAD"])
        .current_dir(repo_root())
        .output();
    match git {
        Ok(g) if g.status.success() && std::env::var("ELT_GIT_COMMIT").is_err() => {
            let head = String::from_utf8_lossy(&g.stdout).trim().to_string();
            assert_eq!(
                v,
                format!("elt {} (commit {head})", env!("CARGO_PKG_VERSION"))
            );
        }
        _ => assert!(v.ends_with(')'), "{v}"),
    }
}

#[test]
fn completions_and_man_pages_come_from_the_cli() {
    let env = TestEnv::new("ops_completions");
    for (shell, marker) in [
        ("bash", "complete -F _elt"),
        ("zsh", "#compdef elt"),
        ("fish", "complete -c elt"),
    ] {
        let out = env
            .elt_bare()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(script.contains("metrics-file"), "{shell}");
        assert!(script.contains("reset-state"), "{shell}");
    }
    let out = env
        .elt_bare()
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));

    let out = env.elt_bare().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(page.contains(".TH elt 1"), "{page}");
    assert!(page.contains("reset\\-state"), "{page}");

    let dir = env.path().join("man");
    let out = env
        .elt_bare()
        .arg("man")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let run_page = fs::read_to_string(dir.join("elt-run.1")).unwrap();
    assert!(run_page.contains("metrics\\-file"), "{run_page}");
    assert!(dir.join("elt.1").exists() && dir.join("elt-status.1").exists());
}

fn make_available() -> bool {
    StdCommand::new("make").arg("--version").output().is_ok()
}

fn make_install(destdir: &Path, extra: &[&str]) -> std::process::Output {
    StdCommand::new("make")
        .arg("--no-print-directory")
        .arg("install")
        .arg(format!("DESTDIR={}", destdir.display()))
        .arg(format!("BIN={}", elt_bin().display()))
        .args(extra)
        .current_dir(repo_root())
        .env_remove("MAKEFLAGS")
        .output()
        .unwrap()
}

#[test]
fn make_install_places_everything_and_keeps_an_existing_env_file() {
    if !make_available() {
        eprintln!("skipping: make is not installed");
        return;
    }
    let dest = tempfile::tempdir().unwrap();
    let d = dest.path();
    let out = make_install(d, &[]);
    assert!(out.status.success(), "{}", output_text(&out));

    let bin = d.join("usr/local/bin/elt");
    assert_eq!(
        fs::metadata(&bin).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let env_file = d.join("etc/elt/elt.env");
    assert_eq!(
        fs::metadata(&env_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        fs::read_to_string(&env_file)
            .unwrap()
            .contains("ELT_MASTER_URL=")
    );
    let unit = fs::read_to_string(d.join("usr/local/lib/systemd/system/elt.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/elt run"), "{unit}");
    assert!(d.join("usr/local/lib/systemd/system/elt.timer").exists());
    for f in [
        "usr/local/share/doc/elt/crontab.example",
        "usr/local/share/doc/elt/elt.env.example",
        "usr/local/share/doc/elt/README.md",
        "usr/local/share/man/man1/elt.1",
        "usr/local/share/man/man1/elt-run.1",
        "usr/local/share/bash-completion/completions/elt",
        "usr/local/share/zsh/site-functions/_elt",
        "usr/local/share/fish/vendor_completions.d/elt.fish",
    ] {
        assert!(d.join(f).is_file(), "{f} installed");
    }
    let cron = fs::read_to_string(d.join("usr/local/share/doc/elt/crontab.example")).unwrap();
    assert!(cron.contains("/usr/local/bin/elt run"), "{cron}");
    // the installed binary runs
    let out = StdCommand::new(&bin).arg("--version").output().unwrap();
    assert!(out.status.success());

    // an operator's env file is never overwritten
    fs::write(&env_file, "ELT_MASTER_URL=mine\n").unwrap();
    let out = make_install(d, &[]);
    assert!(out.status.success(), "{}", output_text(&out));
    assert_eq!(
        fs::read_to_string(&env_file).unwrap(),
        "ELT_MASTER_URL=mine\n"
    );

    // PREFIX=/usr (as a package would): the units point at /usr/bin/elt
    let dest2 = tempfile::tempdir().unwrap();
    let out = make_install(dest2.path(), &["PREFIX=/usr"]);
    assert!(out.status.success(), "{}", output_text(&out));
    let unit = fs::read_to_string(dest2.path().join("usr/lib/systemd/system/elt.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/bin/elt run"), "{unit}");
    assert!(dest2.path().join("usr/bin/elt").is_file());
}

/// The lines of the man page section `name` (after `.SH name`, up to the next `.SH`).
fn man_section<'a>(page: &'a str, name: &str) -> &'a str {
    let start = page
        .lines()
        .position(|l| l == format!(".SH {name}") || l == format!(".SH \"{name}\""))
        .unwrap_or_else(|| panic!("no section {name}:\n{page}"));
    let rest: usize = page.lines().take(start + 1).map(|l| l.len() + 1).sum();
    let body = &page[rest..];
    &body[..body.find("\n.SH ").unwrap_or(body.len())]
}

/// Roman text of roff as clap_mangen escapes it, back to plain text.
fn unroff(line: &str) -> String {
    line.replace("\\-", "-")
        .replace("\\*(Aq", "'")
        .replace("\\(aq", "'")
        .replace("\\e", "\\")
        .replace("\\&", "")
}

/// `elt man`: ENVIRONMENT names every variable of src/cli.rs but the hidden test hook,
/// EXIT STATUS every status, FILES the jobs folder and both logs, and EXAMPLE a job file
/// that `validate` accepts; `man --dir` writes the same elt.1.
#[test]
fn man_page_lists_environment_exit_status_files_and_a_valid_example_job() {
    let env = TestEnv::new("ops_man_sections");
    let out = env.elt_bare().arg("man").output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let page = String::from_utf8_lossy(&out.stdout).into_owned();

    let src = fs::read_to_string(repo_root().join("src/cli.rs")).unwrap();
    let mut vars: Vec<&str> = src
        .split('"')
        .filter(|s| {
            s.len() > 4
                && s.starts_with("ELT_")
                && s.chars().all(|c| c.is_ascii_uppercase() || c == '_')
        })
        .collect();
    vars.sort();
    vars.dedup();
    let environment = man_section(&page, "ENVIRONMENT");
    for var in vars.iter().filter(|v| **v != "ELT_FAULT_POINT") {
        assert!(
            environment.contains(&format!(".TP\n\\fB{var}\\fR\n")),
            "{var} in ENVIRONMENT:\n{environment}"
        );
    }
    assert!(
        vars.contains(&"ELT_METRICS_FILE") && vars.len() >= 14,
        "{vars:?}"
    );
    assert!(
        !page.contains("FAULT_POINT"),
        "the test hook is not documented"
    );

    let exit = man_section(&page, "EXIT STATUS");
    for code in ["0", "1", "2", "130", "143"] {
        assert!(
            exit.contains(&format!(".TP\n\\fB{code}\\fR\n")),
            "{code}:\n{exit}"
        );
    }
    let files = man_section(&page, "FILES");
    for file in ["./jobs/*.yaml", "./logs/elt.log", "./logs/error.log"] {
        assert!(
            files.contains(&format!("\\fB{file}\\fR")),
            "{file}:\n{files}"
        );
    }

    // the example, as a reader copies it from the page, is a valid job file
    let example = man_section(&page, "EXAMPLE");
    let job: String = example
        .split_once("\n.nf\n")
        .and_then(|(_, rest)| rest.split_once("\n.fi"))
        .unwrap_or_else(|| panic!("no .nf … .fi block:\n{example}"))
        .0
        .lines()
        .filter(|l| *l != ".br")
        .map(|l| unroff(l) + "\n")
        .collect();
    assert!(job.contains("KEY_COLUMNS:"), "{job}");
    let file = env.path().join("example.yaml");
    fs::write(&file, &job).unwrap();
    let out = env.elt_bare().arg("validate").arg(&file).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{job}\n{}", output_text(&out));

    let dir = env.path().join("man");
    let out = env
        .elt_bare()
        .arg("man")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert_eq!(fs::read_to_string(dir.join("elt.1")).unwrap(), page);
}

/// The hidden `--fault-point` of test builds (this binary has it: `run --fault-point lod`
/// is refused by name) is in no completion script, no `--help` and no man page.
#[test]
fn the_hidden_fault_point_flag_is_in_no_completion_script_help_or_man_page() {
    let env = TestEnv::new("ops_hidden_flag");
    let out = env
        .elt_bare()
        .args(["run", "--fault-point", "lod"])
        .output()
        .unwrap();
    assert!(
        output_text(&out).contains("unknown fault point `lod`"),
        "this binary has the flag: {}",
        output_text(&out)
    );
    let hidden = |what: &str, text: &str| {
        for word in [
            "fault-point",
            "fault_point",
            "FAULT_POINT",
            "ault injection",
        ] {
            assert!(!text.contains(word), "{word} in {what}:\n{text}");
        }
    };
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = env
            .elt_bare()
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
        let script = String::from_utf8_lossy(&out.stdout);
        // the other global flags are there, on the subcommands too
        assert!(script.contains("lock-ttl-seconds"), "{shell}:\n{script}");
        assert!(script.contains("force-deletes"), "{shell}:\n{script}");
        hidden(shell, &script);
    }
    let subcommands = [
        "run",
        "run-job",
        "validate",
        "verify",
        "new",
        "reset-state",
        "status",
        "completions",
        "man",
    ];
    for help in ["--help", "-h"] {
        let out = env.elt_bare().arg(help).output().unwrap();
        assert_eq!(out.status.code(), Some(0));
        hidden(help, &String::from_utf8_lossy(&out.stdout));
        for sub in subcommands {
            let out = env.elt_bare().args([sub, help]).output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{sub} {help}");
            hidden(
                &format!("{sub} {help}"),
                &String::from_utf8_lossy(&out.stdout),
            );
        }
    }
    let dir = env.path().join("man");
    let out = env
        .elt_bare()
        .arg("man")
        .arg("--dir")
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let mut pages = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        hidden(
            &path.display().to_string(),
            &fs::read_to_string(&path).unwrap(),
        );
        pages += 1;
    }
    assert!(pages > subcommands.len(), "{pages} pages");
}
