//! A local moto server (PyPI `moto[server]`, installed by scripts/test.sh): an AWS-compatible
//! API (EC2, EFS, S3, Cost Explorer, …) on 127.0.0.1, for the compute provider tests and
//! benchmarks. One server per test: its state is its own.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto server, killed when dropped.
pub struct Moto {
    pub port: u16,
    child: Option<Child>,
}

/// A free TCP port on 127.0.0.1 (the OS's pick, released before moto binds it).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Moto {
    /// Starts moto on a free port and waits until it answers.
    pub fn start() -> Moto {
        let mut moto = Moto {
            port: free_port(),
            child: None,
        };
        moto.resume();
        moto
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Kills the server (its state is lost): requests to the port are refused until
    /// [`Moto::resume`].
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port.
    pub fn resume(&mut self) {
        self.stop();
        let python = std::env::var("LIUTONG_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("python3 -m moto.server starts (pip install 'moto[server]')");
        self.child = Some(child);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(60) {
            if self.get("/moto-api/").is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("moto server did not start; install it with pip install 'moto[server]'");
    }

    /// Sets what Cost Explorer's `GetCostAndUsage` answers (moto's
    /// `/moto-api/static/ce/cost-and-usage-results`): `results` is a JSON list of answers,
    /// each with `ResultsByTime`, served in order.
    pub fn set_cost_and_usage(&self, results: &str) {
        let body = format!(r#"{{"results": {results}}}"#);
        let status = self
            .request("POST", "/moto-api/static/ce/cost-and-usage-results", &body)
            .map(|(status, _)| status);
        assert!(
            matches!(status, Some(200..=299)),
            "configuring moto's Cost Explorer results: {status:?}"
        );
    }

    /// What the provider's own API lists, through boto3 (installed with moto):
    /// `DescribeInstances`, `DescribeFileSystems` and `ListBuckets`, as the JSON text
    /// `{"instances": [{"id", "state", "type", "token"}], "fileSystems": [{"id", "state",
    /// "token"}], "buckets": [name]}`.
    pub fn inventory(&self) -> String {
        const SCRIPT: &str = r#"
import json, sys, boto3
kw = dict(endpoint_url=sys.argv[1], region_name="us-east-1",
          aws_access_key_id="testing", aws_secret_access_key="testing")
ec2 = boto3.client("ec2", **kw)
instances = [
    {"id": i["InstanceId"], "state": i["State"]["Name"], "type": i["InstanceType"],
     "token": i.get("ClientToken", "")}
    for page in ec2.get_paginator("describe_instances").paginate()
    for r in page["Reservations"] for i in r["Instances"]]
efs = boto3.client("efs", **kw)
fss = [{"id": f["FileSystemId"], "state": f["LifeCycleState"], "token": f["CreationToken"]}
       for f in efs.describe_file_systems()["FileSystems"]]
s3 = boto3.client("s3", **kw)
buckets = [b["Name"] for b in s3.list_buckets()["Buckets"]]
print(json.dumps({"instances": instances, "fileSystems": fss, "buckets": buckets}))
"#;
        let python = std::env::var("LIUTONG_TEST_PYTHON").unwrap_or_else(|_| "python3".to_owned());
        let out = Command::new(python)
            .args(["-c", SCRIPT])
            .arg(self.endpoint())
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "listing moto's resources: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("UTF-8")
    }

    /// A plain GET of moto's own API: the body of a 2xx answer.
    pub fn get(&self, path: &str) -> Option<String> {
        match self.request("GET", path, "") {
            Some((200..=299, body)) => Some(body),
            _ => None,
        }
    }

    /// One HTTP/1.0 request (moto closes the connection after it): status and body.
    fn request(&self, method: &str, path: &str, body: &str) -> Option<(u16, String)> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .ok()?;
        write!(
            stream,
            "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            self.port,
            body.len()
        )
        .ok()?;
        let mut response = String::new();
        stream.read_to_string(&mut response).ok()?;
        let status = response.split(' ').nth(1)?.parse().ok()?;
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        Some((status, body))
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.stop();
    }
}
