//! TLS to PostgreSQL (every sslmode, against a private cluster with a self-signed CA), TLS and
//! ACL users for Redis (a private TLS redis-server), connection strings from owner-only
//! files, and the least-privilege roles the README documents.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::fixture::*;

/// A private cluster with `ssl = on` (server certificate for `localhost`, signed by
/// `certs`' CA) where the role `tls_only` may log in over TLS only.
fn tls_cluster(certs: &Certs) -> PrivateCluster {
    let c = PrivateCluster::start();
    c.give_to_server(&certs.path("server.key"), 0o600);
    c.give_to_server(&certs.path("server.crt"), 0o644);
    let mut admin = c.admin();
    for sql in [
        format!(
            "ALTER SYSTEM SET ssl_cert_file = '{}'",
            certs.path("server.crt").display()
        ),
        format!(
            "ALTER SYSTEM SET ssl_key_file = '{}'",
            certs.path("server.key").display()
        ),
        "ALTER SYSTEM SET ssl = on".to_string(),
        "CREATE ROLE tls_only LOGIN SUPERUSER".to_string(),
    ] {
        admin.batch_execute(&sql).unwrap();
    }
    // TLS is mandatory for tls_only: a connection in the clear is turned away.
    let hba = c.pg_data.join("pg_hba.conf");
    let old = fs::read_to_string(&hba).unwrap();
    fs::write(&hba, format!("hostnossl all tls_only all reject\n{old}")).unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let url = c.url.clone();
    assert!(
        wait_until(std::time::Duration::from_secs(10), || {
            postgres::Client::connect(&url, postgres::NoTls)
                .and_then(|mut a| a.query_one("SHOW ssl", &[]))
                .map(|r| r.get::<_, String>(0) == "on")
                .unwrap_or(false)
        }),
        "ssl did not turn on"
    );
    c
}

fn tls_url(c: &PrivateCluster, host: &str, db: &str, query: &str) -> String {
    format!("postgres://tls_only@{host}:{}/{db}?{query}", c.port)
}

fn connects(url: &str) -> Result<(), String> {
    elt::db::Conn::connect(url, elt::error::Db::Master)
        .and_then(|mut c| c.begin(elt::db::Access::ReadOnly).map(|_| ()))
        .map_err(|e| elt::error::chain(&e))
}

#[test]
fn postgres_tls_modes_check_what_libpq_checks() {
    let certs = Certs::make();
    let c = tls_cluster(&certs);
    let ca = certs.path("ca.crt").display().to_string();
    let other = certs.path("other-ca.crt").display().to_string();

    // In the clear: refused by the server for this role.
    let e = connects(&tls_url(&c, "localhost", "postgres", "sslmode=disable")).unwrap_err();
    assert!(e.contains("pg_hba.conf"), "{e}");
    // Encrypted, certificate not checked (even one from an unknown CA).
    connects(&tls_url(&c, "127.0.0.1", "postgres", "sslmode=require")).unwrap();
    connects(&tls_url(&c, "127.0.0.1", "postgres", "sslmode=prefer")).unwrap();
    // verify-full: chain and name.
    connects(&tls_url(
        &c,
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap();
    let e = connects(&tls_url(
        &c,
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap_err();
    assert!(e.to_lowercase().contains("not valid for"), "{e}");
    let e = connects(&tls_url(
        &c,
        "localhost",
        "postgres",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ))
    .unwrap_err();
    assert!(
        e.contains("UnknownIssuer") && e.contains("other-ca.crt"),
        "{e}"
    );
    // verify-ca: chain only, so another name is fine but another CA is not.
    connects(&tls_url(
        &c,
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={ca}"),
    ))
    .unwrap();
    let e = connects(&tls_url(
        &c,
        "127.0.0.1",
        "postgres",
        &format!("sslmode=verify-ca&sslrootcert={other}"),
    ))
    .unwrap_err();
    assert!(
        e.contains("UnknownIssuer") && e.contains("other-ca.crt"),
        "{e}"
    );
    // libpq's rule: require with a root certificate checks the chain.
    let e = connects(&tls_url(
        &c,
        "127.0.0.1",
        "postgres",
        &format!("sslmode=require&sslrootcert={other}"),
    ))
    .unwrap_err();
    assert!(
        e.contains("UnknownIssuer") && e.contains("other-ca.crt"),
        "{e}"
    );
    // The key=value form, with a quoted path.
    connects(&format!(
        "host=localhost port={} user=tls_only dbname=postgres sslmode=verify-full sslrootcert='{ca}'",
        c.port
    ))
    .unwrap();
    // verify-full without any root certificate is explained.
    let e = elt::db::Conn::connect(
        &tls_url(&c, "localhost", "postgres", "sslmode=verify-full"),
        elt::error::Db::Analytics,
    )
    .err()
    .map(|e| elt::error::chain(&e))
    .unwrap_or_default();
    if !Path::new(&std::env::var("HOME").unwrap_or_default())
        .join(".postgresql/root.crt")
        .exists()
    {
        assert!(e.contains("sslrootcert"), "{e}");
    }
}

#[test]
fn a_run_over_verify_full_tls_syncs_and_a_bad_ca_fails_clearly() {
    let certs = Certs::make();
    let c = tls_cluster(&certs);
    let env = TestEnv::new("tls_run");
    let (m_db, a_db) = ("m_tls", "a_tls");
    c.create_db(m_db);
    c.create_db(a_db);
    let mut m = connect(&c.url_for(m_db));
    m.batch_execute(PRODUCTS_M_SQL).unwrap();
    m.batch_execute(
        "INSERT INTO products (id, title, price) SELECT g, 'p' || g, g FROM generate_series(1, 500) g",
    )
    .unwrap();
    env.write_job("products", PRODUCTS_JOB);
    let ca = certs.path("ca.crt").display().to_string();
    let q = format!("sslmode=verify-full&sslrootcert={ca}");
    let out = env
        .elt()
        .env("ELT_MASTER_URL", tls_url(&c, "localhost", m_db, &q))
        .env("ELT_ANALYTICS_URL", tls_url(&c, "localhost", a_db, &q))
        .args(["run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let mut a = connect(&c.url_for(a_db));
    assert_same_rows(
        &TestEnv::rows_text(&mut m, PRODUCTS_Q),
        &TestEnv::rows_text(&mut a, PRODUCTS_Q),
        "M",
        "A",
    );
    // A CA that did not sign the server's certificate: the job fails, saying why.
    let other = certs.path("other-ca.crt").display().to_string();
    let bad = format!("sslmode=verify-full&sslrootcert={other}");
    let out = env
        .elt()
        .env("ELT_MASTER_URL", tls_url(&c, "localhost", m_db, &bad))
        .env("ELT_ANALYTICS_URL", tls_url(&c, "localhost", a_db, &q))
        .args(["run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let text = output_text(&out).to_lowercase();
    assert!(
        text.contains("master database") && text.contains("not issued by a ca in"),
        "{text}"
    );
    // An unknown sslmode is named.
    let out = env
        .elt()
        .env(
            "ELT_MASTER_URL",
            tls_url(&c, "localhost", m_db, "sslmode=verify_full"),
        )
        .env("ELT_ANALYTICS_URL", tls_url(&c, "localhost", a_db, &q))
        .args(["run"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("sslmode `verify_full`"),
        "{}",
        output_text(&out)
    );
}

/// The roles the README documents are enough: M read-only (SELECT + pg_read_all_stats), A
/// limited to its schema plus TEMP.
#[test]
fn least_privilege_roles_are_enough() {
    let c = PrivateCluster::start();
    let env = TestEnv::new("least_priv");
    let (m_db, a_db) = ("m_lp", "a_lp");
    c.create_db(m_db);
    c.create_db(a_db);
    let mut m = connect(&c.url_for(m_db));
    m.batch_execute(PRODUCTS_M_SQL).unwrap();
    m.batch_execute(
        "INSERT INTO products (id, title, price) SELECT g, 'p' || g, g FROM generate_series(1, 300) g;
         CREATE ROLE elt_reader LOGIN PASSWORD 'reader-pw';
         REVOKE ALL ON DATABASE m_lp FROM PUBLIC;
         GRANT CONNECT ON DATABASE m_lp TO elt_reader;
         GRANT USAGE ON SCHEMA public TO elt_reader;
         GRANT SELECT ON ALL TABLES IN SCHEMA public TO elt_reader;
         GRANT pg_read_all_stats TO elt_reader;",
    )
    .unwrap();
    let mut a = connect(&c.url_for(a_db));
    a.batch_execute(
        "CREATE ROLE elt_writer LOGIN PASSWORD 'writer-pw';
         REVOKE ALL ON DATABASE a_lp FROM PUBLIC;
         REVOKE ALL ON SCHEMA public FROM PUBLIC;
         GRANT CONNECT, TEMPORARY ON DATABASE a_lp TO elt_writer;
         CREATE SCHEMA analytics;
         GRANT USAGE, CREATE ON SCHEMA analytics TO elt_writer;",
    )
    .unwrap();
    let job = PRODUCTS_JOB
        .replace("EXISTS products", "EXISTS analytics.products")
        .replace("INSERT INTO products", "INSERT INTO analytics.products")
        .replace("TARGET_TABLE: products", "TARGET_TABLE: analytics.products");
    env.write_job("products", &job);
    let m_url = format!(
        "postgres://elt_reader:reader-pw@127.0.0.1:{}/{m_db}",
        c.port
    );
    let a_url = format!(
        "postgres://elt_writer:writer-pw@127.0.0.1:{}/{a_db}",
        c.port
    );
    let run = |expect: i32| {
        let out = env
            .elt()
            .env("ELT_MASTER_URL", &m_url)
            .env("ELT_ANALYTICS_URL", &a_url)
            .args(["run", "--json"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(expect), "{}", output_text(&out));
    };
    run(0);
    m.batch_execute(
        "UPDATE products SET price = price + 1 WHERE id <= 10; DELETE FROM products WHERE id > 290",
    )
    .unwrap();
    run(0);
    assert_same_rows(
        &TestEnv::rows_text(&mut m, PRODUCTS_Q),
        &TestEnv::rows_text(
            &mut a,
            "SELECT id, title, price, updated_at FROM analytics.products",
        ),
        "M",
        "A",
    );
    // The reader really is read-only.
    let mut reader = connect(&m_url);
    assert!(reader.batch_execute("DELETE FROM products").is_err());
}

/// A TLS-only redis-server with the test CA's certificate for localhost and an ACL user
/// `elt` limited to `prefix` and the commands the README lists.
fn tls_redis(certs: &Certs, prefix: &str) -> PrivateRedis {
    let s = |p: &str| certs.path(p).display().to_string();
    let acl = format!(
        "elt on >acl-secret-pw ~{prefix}:* resetchannels -@all +get +set +mget +strlen +pexpire \
         +del +eval +hset +hdel +hgetall +hincrby +scan +unlink"
    );
    let mut args: Vec<String> = vec![
        "--tls-cert-file".into(),
        s("server.crt"),
        "--tls-key-file".into(),
        s("server.key"),
        "--tls-ca-cert-file".into(),
        s("ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
        "--user".into(),
    ];
    args.extend(acl.split(' ').map(String::from));
    PrivateRedis::start_with(args, false)
}

#[test]
fn redis_over_tls_with_an_acl_user_limited_to_the_prefix() {
    let certs = Certs::make();
    let env = TestEnv::new("redis_tls_acl");
    let r = tls_redis(&certs, &env.prefix);
    env.products_fixture(200);
    let ca = certs.path("ca.crt").display().to_string();
    let url = format!(
        "rediss://elt:acl-secret-pw@localhost:{}/0?sslrootcert={ca}",
        r.port
    );
    let elt_with = |redis_url: &str, args: &[&str]| {
        env.elt()
            .env("ELT_REDIS_URL", redis_url)
            .args(args)
            .output()
            .unwrap()
    };
    let out = elt_with(&url, &["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    env.m_exec(
        "UPDATE products SET price = price * 2 WHERE id <= 5; DELETE FROM products WHERE id = 200",
    );
    let out = elt_with(&url, &["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(counts(&v, "products").upserted, 5, "{v:#}");
    assert_eq!(counts(&v, "products").deleted, 1, "{v:#}");
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    for args in [&["status", "--json"][..], &["reset-state", "products"][..]] {
        let out = elt_with(&url, args);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{args:?}: {}",
            output_text(&out)
        );
    }
    let out = elt_with(&url, &["run", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);

    // The ACL really limits the user: keys outside the prefix and other commands are refused.
    let mut con = elt::redis_conn::RedisTarget::parse(&url)
        .unwrap()
        .connect()
        .unwrap();
    let denied: redis::RedisResult<()> = redis::cmd("SET").arg("other:key").arg(1).query(&mut con);
    assert!(denied.is_err(), "ACL let elt write outside its prefix");
    let denied: redis::RedisResult<()> = redis::cmd("FLUSHALL").query(&mut con);
    assert!(denied.is_err(), "ACL let elt flush the server");

    // Failures are clear and never show the password.
    let cases = [
        // a CA that did not sign the certificate
        format!(
            "rediss://elt:acl-secret-pw@localhost:{}/0?sslrootcert={}",
            r.port,
            certs.path("other-ca.crt").display()
        ),
        // the wrong password
        format!(
            "rediss://elt:wrong-acl-secret-pw@localhost:{}/0?sslrootcert={ca}",
            r.port
        ),
        // in the clear to a TLS port
        format!("redis://elt:acl-secret-pw@localhost:{}/0", r.port),
    ];
    for bad in &cases {
        let out = elt_with(bad, &["run"]);
        assert_eq!(out.status.code(), Some(1), "{bad}: {}", output_text(&out));
        assert!(output_text(&out).contains("Redis"), "{}", output_text(&out));
        for secret in ["acl-secret-pw", "wrong-acl-secret-pw"] {
            assert!(!output_text(&out).contains(secret), "{}", output_text(&out));
            assert!(!env.elt_log().contains(secret));
            assert!(!env.error_log().contains(secret));
        }
    }
    // `#insecure` encrypts without checking the certificate (like sslmode=require).
    let insecure = format!("rediss://elt:acl-secret-pw@127.0.0.1:{}/0#insecure", r.port);
    let out = elt_with(&insecure, &["run"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
}

fn secret_file(dir: &Path, name: &str, text: &str, mode: u32) -> std::path::PathBuf {
    let p = dir.join(name);
    fs::write(&p, format!("{text}\n")).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    p
}

#[test]
fn connection_strings_come_from_owner_only_files() {
    let env = TestEnv::new("url_files");
    env.products_fixture(20);
    let p = pg_parts(env.pg_url());
    let with_pw = |db: &str| {
        format!(
            "postgres://{}:file-secret-pw@{}:{}/{db}",
            p.user, p.host, p.port
        )
    };
    let m_file = secret_file(env.path(), "m.url", &with_pw(&env.m_db), 0o600);
    let a_file = secret_file(env.path(), "a.url", &with_pw(&env.a_db), 0o400);
    let r_file = secret_file(env.path(), "r.url", env.redis_url(), 0o600);
    let out = env
        .elt_bare()
        .env("ELT_JOBS_DIR", &env.jobs_dir)
        .env("ELT_LOG_DIR", &env.log_dir)
        .env("ELT_REDIS_PREFIX", &env.prefix)
        .env("ELT_ANALYTICS_URL_FILE", &a_file)
        .arg("--master-url-file")
        .arg(&m_file)
        .arg("--redis-url-file")
        .arg(&r_file)
        .args(["-v", "run", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    env.assert_a_equals_m(PRODUCTS_Q, PRODUCTS_Q);
    assert!(!output_text(&out).contains("file-secret-pw"));
    assert!(!env.elt_log().contains("file-secret-pw"));

    // A file others may read is refused, exit 2, without showing what it holds.
    let loose = secret_file(env.path(), "loose.url", &with_pw(&env.m_db), 0o644);
    let out = env
        .elt()
        .env_remove("ELT_MASTER_URL")
        .arg("--master-url-file")
        .arg(&loose)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let text = output_text(&out);
    assert!(
        text.contains("loose.url") && text.contains("chmod 600"),
        "{text}"
    );
    assert!(!text.contains("file-secret-pw"), "{text}");
    // Both a URL and a file for the same setting: exit 2.
    let out = env
        .elt()
        .arg("--master-url-file")
        .arg(&m_file)
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(output_text(&out).contains("--master-url-file"));
    // A missing file: exit 2.
    let out = env
        .elt()
        .env_remove("ELT_REDIS_URL")
        .env("ELT_REDIS_URL_FILE", env.path().join("nope.url"))
        .arg("run")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}
