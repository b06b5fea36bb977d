//! Starting the real `strata` binary and talking HTTP/1.1 to it, for end-to-end tests.
//!
//! A [`Strata`] guard owns the child process: dropping it kills the process with SIGKILL (the
//! crash tests rely on that being an unclean stop) and reaps it, on every path including
//! panics. The server listens on an ephemeral loopback port, read from its `storage ready`
//! log line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Path of the `strata` binary next to the running test executable
/// (`target/<profile>/deps/<test>` → `target/<profile>/strata`).
pub fn strata_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("strata"))
        .ok_or_else(|| anyhow::anyhow!("unexpected test executable path {}", exe.display()))?;
    anyhow::ensure!(
        bin.exists(),
        "{} not found: run `cargo test --workspace` (or `cargo build -p strata-server`) first",
        bin.display()
    );
    Ok(bin)
}

/// A child process that is killed (if still running) and reaped on drop, on every path
/// including panics.
pub struct ChildGuard(pub Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// A free TCP port on 127.0.0.1 (bound and released; a race with other processes is possible
/// but harmless in tests).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The Python interpreter of the virtualenv holding the OpenTelemetry SDK, installed by
/// `tests/install-peers.sh` (`$STRATA_OTEL_VENV`, default `~/.cache/strata/otel-venv`).
pub fn otel_python() -> anyhow::Result<PathBuf> {
    let venv = std::env::var_os("STRATA_OTEL_VENV").map_or_else(
        || {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default())
                .join(".cache/strata/otel-venv")
        },
        PathBuf::from,
    );
    let py = venv.join("bin/python");
    anyhow::ensure!(
        py.exists(),
        "{} missing: run `bash tests/install-peers.sh` to install the OpenTelemetry Python SDK",
        py.display()
    );
    Ok(py)
}

/// A running `strata serve`; killed (SIGKILL) and reaped on drop.
pub struct Strata {
    child: Child,
    /// `host:port` of the HTTP API.
    pub addr: String,
    /// `host:port` of the OTLP gRPC listener (empty when disabled).
    pub grpc: String,
    /// `host:port` of the OTLP HTTP listener (empty when disabled).
    pub otlp_http: String,
}

impl Strata {
    /// Starts `strata --data-dir <data> <extra>` on a loopback port (OTLP listeners off) and
    /// waits up to 60 s for it to be ready.
    pub fn start(data: &Path, extra: &[&str]) -> anyhow::Result<Strata> {
        Strata::spawn(data, extra, None)
    }

    /// Like [`Strata::start`], with the OTLP gRPC and HTTP listeners on free loopback ports.
    pub fn start_with_otlp(data: &Path) -> anyhow::Result<Strata> {
        let grpc = format!("127.0.0.1:{}", free_port()?);
        let http = format!("127.0.0.1:{}", free_port()?);
        Strata::spawn(data, &[], Some((grpc, http)))
    }

    fn spawn(
        data: &Path,
        extra: &[&str],
        otlp: Option<(String, String)>,
    ) -> anyhow::Result<Strata> {
        let (grpc, otlp_http) = otlp.unwrap_or_default();
        let or_none = |a: &str| {
            if a.is_empty() {
                "none".to_string()
            } else {
                a.to_string()
            }
        };
        let child = Command::new(strata_bin()?)
            .arg("--data-dir")
            .arg(data)
            .arg("--http-addr")
            .arg("127.0.0.1:0")
            .args(extra)
            .env("STRATA_OTLP_GRPC_ADDR", or_none(&grpc))
            .env("STRATA_OTLP_HTTP_ADDR", or_none(&otlp_http))
            .env("STRATA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut s = Strata {
            child,
            addr: String::new(),
            grpc,
            otlp_http,
        };
        let stderr = s
            .child
            .stderr
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stderr pipe"))?;
        let (tx, rx) = mpsc::channel::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut log = String::new();
        while Instant::now() < deadline {
            if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                log.push_str(&line);
                log.push('\n');
                if line.contains("storage ready")
                    && let Some(addr) = line
                        .split_whitespace()
                        .find_map(|w| w.strip_prefix("http_addr="))
                {
                    s.addr = addr.trim_matches('"').to_string();
                    // Keep draining so the child never blocks on a full pipe.
                    std::thread::spawn(move || while rx.recv().is_ok() {});
                    return Ok(s);
                }
            }
            if let Some(status) = s.child.try_wait()? {
                anyhow::bail!("strata exited with {status}; log:\n{log}");
            }
        }
        anyhow::bail!("strata did not become ready within 60 s; log:\n{log}")
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits up to 30 s for a clean exit; returns whether it exited with
    /// success.
    pub fn stop(mut self) -> anyhow::Result<bool> {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(s) = self.child.try_wait()? {
                return Ok(s.success());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        anyhow::bail!("strata did not exit within 30 s of SIGTERM")
    }
}

impl Drop for Strata {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request over a fresh connection; returns status and body (chunked bodies
/// are reassembled).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow::anyhow!("no header end in response"))?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| anyhow::anyhow!("no status line"))?
        .parse()?;
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Ok((status, rest.to_string()));
    }
    let mut out = String::new();
    let mut r = rest;
    loop {
        let (size, after) = r
            .split_once("\r\n")
            .ok_or_else(|| anyhow::anyhow!("bad chunk header"))?;
        let n = usize::from_str_radix(size.trim(), 16)?;
        if n == 0 {
            break;
        }
        out.push_str(
            after
                .get(..n)
                .ok_or_else(|| anyhow::anyhow!("short chunk"))?,
        );
        r = after.get(n + 2..).unwrap_or("");
    }
    Ok((status, out))
}

/// The value of an unlabelled or labelled sample line `name{...} value` in a Prometheus text
/// exposition, if present.
pub fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l.as_bytes().get(series.len()) == Some(&b' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs the script `tests/otel/<name>` with the OpenTelemetry SDK's Python ([`otel_python`])
/// and returns its stdout. Fails if it exits unsuccessfully, runs longer than 60 s, or reports
/// an export failure on stderr (the SDK logs export failures instead of failing).
pub fn run_otel_script(name: &str, args: &[&str]) -> anyhow::Result<String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("otel")
        .join(name);
    let mut child = ChildGuard(
        Command::new(otel_python()?)
            .arg(&script)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.0.try_wait()? {
            let (mut out, mut err) = (String::new(), String::new());
            if let Some(mut o) = child.0.stdout.take() {
                o.read_to_string(&mut out)?;
            }
            if let Some(mut e) = child.0.stderr.take() {
                e.read_to_string(&mut err)?;
            }
            anyhow::ensure!(status.success(), "{name} failed ({status}):\n{err}");
            anyhow::ensure!(!err.contains("Failed to export"), "{name} reported:\n{err}");
            return Ok(out);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{name} did not finish within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
