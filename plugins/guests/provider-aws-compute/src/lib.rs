//! `aws-compute`: the reference provider plugin, for an AWS-compatible API.
//!
//! - cloud hosts: EC2 instances (`RunInstances`, `DescribeInstances`, `Start`/`Stop`/
//!   `RebootInstances`, `ModifyInstanceAttribute` to resize, `TerminateInstances`);
//! - bare metal: the same, with an `*.metal` instance type;
//! - file services: EFS file systems (`CreateFileSystem`, `DescribeFileSystems`,
//!   `DeleteFileSystem`);
//! - storage services: S3 buckets (`CreateBucket`, `HeadBucket`, `DeleteBucket`);
//! - bills: Cost Explorer `GetCostAndUsage`, daily, grouped by resource id.
//!
//! Every request is signed with SigV4 here, in the plugin. Config per offering:
//! `{"endpoint": "http://127.0.0.1:5000", "region": "us-east-1",
//!   "accessKeySecret": "aws-access-key-id", "secretKeySecret": "aws-secret-access-key"}`;
//! `endpoint` may be left out for AWS itself, `region` defaults to the offering's.
//!
//! Idempotency: the host calls `provision` again after a failure or its own restart, with the
//! same client token. EC2 gets it as `ClientToken` and as the tag `liutong-client-token`, and
//! an instance carrying the tag is returned instead of running another (an API that ignores
//! `ClientToken` still gets one instance); EFS gets it as `CreationToken`; an S3 bucket's name
//! is derived from it.

// Natively (unit tests) nothing is exported, so the calls look unused.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod aws;
mod money;
mod sigv4;

use liutong_plugin_sdk::config::parse_config;
use liutong_plugin_sdk::provider::{
    Account, Action, BillLine, Guest, Period, ProviderError, ProvisionRequest, Resource,
    ResourceState, ResourceType,
};
use serde::Deserialize;
use serde_json::json;

use aws::{Client, Ec2Error, JsonError, element, tag, unescape};

const TOKEN_TAG: &str = "liutong-client-token";

fn default_timeout() -> u64 {
    30_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Config {
    #[serde(default)]
    endpoint: Option<String>,
    #[serde(default)]
    region: Option<String>,
    access_key_secret: String,
    secret_key_secret: String,
    #[serde(default = "default_timeout")]
    timeout_ms: u64,
    #[serde(default)]
    idempotency: Idempotency,
}

/// How provisioning an instance twice for one order is prevented.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Idempotency {
    /// Look the order's tag up before `RunInstances` (one more call): safe on APIs that ignore
    /// `ClientToken`, such as moto.
    #[default]
    TagLookup,
    /// Rely on `RunInstances`' `ClientToken`, as AWS EC2 honours it: one call.
    ClientToken,
}

/// What an order may ask for (the offering's spec with the order's over it).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Spec {
    #[serde(default)]
    instance_type: Option<String>,
    #[serde(default)]
    image_id: Option<String>,
    #[serde(default)]
    performance_mode: Option<String>,
    #[serde(default)]
    bucket_prefix: Option<String>,
}

fn client(account: &Account) -> Result<Client, ProviderError> {
    let config: Config = parse_config(&account.config).map_err(ProviderError::InvalidConfig)?;
    let secret = |name: &str, field: &str| {
        account.secret(name).map(str::to_string).ok_or_else(|| {
            ProviderError::InvalidConfig(format!(
                "{field}: the secret `{name}` was not passed (is it granted to this plugin?)"
            ))
        })
    };
    let region = config
        .region
        .clone()
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| account.region.clone());
    if region.is_empty() {
        return Err(ProviderError::InvalidConfig("region: missing".into()));
    }
    Ok(Client {
        endpoint: config.endpoint.clone(),
        access_key: secret(&config.access_key_secret, "accessKeySecret")?,
        secret_key: secret(&config.secret_key_secret, "secretKeySecret")?,
        region,
        timeout_ms: config.timeout_ms,
    })
}

fn spec(text: &str) -> Result<Spec, ProviderError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(Spec::default());
    }
    serde_json::from_str(text).map_err(|e| ProviderError::InvalidRequest(format!("spec: {e}")))
}

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

// ---- EC2: cloud hosts and bare metal ---------------------------------------------------

fn instance_state(name: &str) -> ResourceState {
    match name {
        "pending" => ResourceState::Pending,
        "running" => ResourceState::Running,
        "stopping" | "shutting-down" => ResourceState::Stopping,
        "stopped" => ResourceState::Stopped,
        "terminated" => ResourceState::Deleted,
        _ => ResourceState::Unknown,
    }
}

/// The first instance of a `DescribeInstances`/`RunInstances` answer.
fn instance(xml: &str) -> Option<Resource> {
    let set = element(xml, "instancesSet")?;
    let id = tag(set, "instanceId")?.to_string();
    let state = element(set, "instanceState")
        .and_then(|s| tag(s, "name"))
        .map(instance_state)
        .unwrap_or(ResourceState::Unknown);
    let field = |name: &str| tag(set, name).filter(|v| !v.is_empty()).map(unescape);
    let endpoint = json!({
        "instanceType": field("instanceType"),
        "privateIpAddress": field("privateIpAddress"),
        "publicIpAddress": field("ipAddress"),
        "privateDnsName": field("privateDnsName"),
        "publicDnsName": field("dnsName"),
    });
    Some(Resource {
        resource_id: id,
        state,
        endpoint: endpoint.to_string(),
    })
}

fn describe_instance(c: &Client, id: &str) -> Result<Resource, ProviderError> {
    match c.ec2("DescribeInstances", &[p("InstanceId.1", id)]) {
        Ok(xml) => instance(&xml).ok_or_else(|| ProviderError::NotFound(id.to_string())),
        Err(Ec2Error::Api { code, .. }) if code.starts_with("InvalidInstanceID") => {
            Err(ProviderError::NotFound(id.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn provision_instance(
    c: &Client,
    kind: ResourceType,
    request: &ProvisionRequest,
    idempotency: Idempotency,
) -> Result<Resource, ProviderError> {
    let spec = spec(&request.spec)?;
    let instance_type = spec
        .instance_type
        .ok_or_else(|| ProviderError::InvalidRequest("spec.instanceType: missing".into()))?;
    let metal = instance_type.ends_with(".metal");
    if kind == ResourceType::BareMetal && !metal {
        return Err(ProviderError::InvalidRequest(format!(
            "spec.instanceType: bare metal needs an *.metal type, not {instance_type}"
        )));
    }
    if kind == ResourceType::CloudHost && metal {
        return Err(ProviderError::InvalidRequest(format!(
            "spec.instanceType: {instance_type} is bare metal, not a cloud host"
        )));
    }
    let image = spec
        .image_id
        .ok_or_else(|| ProviderError::InvalidRequest("spec.imageId: missing".into()))?;
    // An instance of an earlier attempt, still alive, is the answer.
    if idempotency == Idempotency::TagLookup
        && let Some(r) = instance(&c.ec2(
            "DescribeInstances",
            &[
                p("Filter.1.Name", &format!("tag:{TOKEN_TAG}")),
                p("Filter.1.Value.1", &request.client_token),
                p("Filter.2.Name", "instance-state-name"),
                p("Filter.2.Value.1", "pending"),
                p("Filter.2.Value.2", "running"),
                p("Filter.2.Value.3", "stopping"),
                p("Filter.2.Value.4", "stopped"),
            ],
        )?)
    {
        return Ok(r);
    }
    let xml = c.ec2(
        "RunInstances",
        &[
            p("ImageId", &image),
            p("InstanceType", &instance_type),
            p("MinCount", "1"),
            p("MaxCount", "1"),
            p("ClientToken", &request.client_token),
            p("TagSpecification.1.ResourceType", "instance"),
            p("TagSpecification.1.Tag.1.Key", TOKEN_TAG),
            p("TagSpecification.1.Tag.1.Value", &request.client_token),
            p("TagSpecification.1.Tag.2.Key", "liutong-order"),
            p("TagSpecification.1.Tag.2.Value", &request.order_id),
        ],
    )?;
    instance(&xml).ok_or_else(|| {
        ProviderError::BadResponse("RunInstances answered without an instance".into())
    })
}

fn operate_instance(c: &Client, id: &str, action: Action) -> Result<Resource, ProviderError> {
    let one = [p("InstanceId.1", id)];
    let result = match &action {
        Action::Start => c.ec2("StartInstances", &one),
        Action::Stop => c.ec2("StopInstances", &one),
        Action::Reboot => c.ec2("RebootInstances", &one),
        Action::Resize(size) => {
            if size.is_empty() {
                return Err(ProviderError::InvalidRequest("resize: no size".into()));
            }
            c.ec2(
                "ModifyInstanceAttribute",
                &[p("InstanceId", id), p("InstanceType.Value", size)],
            )
        }
    };
    match result {
        Ok(_) => describe_instance(c, id),
        Err(Ec2Error::Api { code, .. }) if code.starts_with("InvalidInstanceID") => {
            Err(ProviderError::NotFound(id.to_string()))
        }
        Err(e) => Err(e.into()),
    }
}

fn reclaim_instance(c: &Client, id: &str) -> Result<(), ProviderError> {
    match c.ec2("TerminateInstances", &[p("InstanceId.1", id)]) {
        Ok(_) => Ok(()),
        Err(Ec2Error::Api { code, .. }) if code.starts_with("InvalidInstanceID") => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ---- EFS: file services -----------------------------------------------------------------

const EFS: &str = "elasticfilesystem";
const EFS_PATH: &str = "/2015-02-01/file-systems";

fn file_system(c: &Client, v: &serde_json::Value) -> Option<Resource> {
    let id = v.get("FileSystemId")?.as_str()?.to_string();
    let state = match v.get("LifeCycleState").and_then(|s| s.as_str()) {
        Some("creating") => ResourceState::Pending,
        Some("available") => ResourceState::Available,
        Some("updating") => ResourceState::Available,
        Some("deleting") => ResourceState::Deleting,
        Some("deleted") => ResourceState::Deleted,
        _ => ResourceState::Unknown,
    };
    let endpoint = json!({
        "dnsName": format!("{id}.efs.{}.amazonaws.com", c.region),
        "performanceMode": v.get("PerformanceMode"),
    });
    Some(Resource {
        resource_id: id,
        state,
        endpoint: endpoint.to_string(),
    })
}

fn first_file_system(c: &Client, v: &serde_json::Value) -> Result<Option<Resource>, ProviderError> {
    let list = v
        .get("FileSystems")
        .and_then(|l| l.as_array())
        .ok_or_else(|| ProviderError::BadResponse("DescribeFileSystems: no FileSystems".into()))?;
    Ok(list.first().and_then(|fs| file_system(c, fs)))
}

fn describe_file_system(c: &Client, id: &str) -> Result<Resource, ProviderError> {
    match c.json(EFS, "GET", EFS_PATH, &[p("FileSystemId", id)], &[], None) {
        Ok(v) => first_file_system(c, &v)?.ok_or_else(|| ProviderError::NotFound(id.into())),
        Err(JsonError::Api { status: 404, .. }) => Err(ProviderError::NotFound(id.into())),
        Err(e) => Err(e.into()),
    }
}

fn provision_file_system(
    c: &Client,
    request: &ProvisionRequest,
) -> Result<Resource, ProviderError> {
    let spec = spec(&request.spec)?;
    let body = json!({
        "CreationToken": request.client_token,
        "PerformanceMode": spec.performance_mode.unwrap_or_else(|| "generalPurpose".into()),
        "Tags": [
            {"Key": TOKEN_TAG, "Value": request.client_token},
            {"Key": "liutong-order", "Value": request.order_id},
        ],
    });
    let headers = [("content-type", "application/json".to_string())];
    match c.json(EFS, "POST", EFS_PATH, &[], &headers, Some(&body)) {
        Ok(v) => file_system(c, &v)
            .ok_or_else(|| ProviderError::BadResponse("CreateFileSystem: no FileSystemId".into())),
        // An earlier attempt created it: the creation token finds it.
        Err(JsonError::Api { code, .. }) if code == "FileSystemAlreadyExists" => {
            let v = c.json(
                EFS,
                "GET",
                EFS_PATH,
                &[p("CreationToken", &request.client_token)],
                &[],
                None,
            )?;
            first_file_system(c, &v)?.ok_or_else(|| {
                ProviderError::BadResponse("the existing file system is not listed".into())
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn reclaim_file_system(c: &Client, id: &str) -> Result<(), ProviderError> {
    let path = format!("{EFS_PATH}/{}", sigv4::uri_encode(id));
    match c.json(EFS, "DELETE", &path, &[], &[], None) {
        Ok(_) => Ok(()),
        Err(JsonError::Api { status: 404, .. }) => Ok(()),
        Err(JsonError::Api { code, .. }) if code == "FileSystemNotFound" => Ok(()),
        Err(e) => Err(e.into()),
    }
}

// ---- S3: storage services ---------------------------------------------------------------

/// A valid bucket name (3–63 of `a-z0-9-`, starting and ending alphanumeric) derived from the
/// client token, so that a repeated provision names the same bucket.
fn bucket_name(prefix: Option<&str>, token: &str) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| c.to_ascii_lowercase())
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect()
    };
    let mut name = format!("{}-{}", clean(prefix.unwrap_or("liutong")), clean(token));
    name.truncate(63);
    let name = name.trim_matches('-').to_string();
    if name.len() < 3 {
        format!("lt-{name}x")
    } else {
        name
    }
}

fn bucket_resource(c: &Client, name: &str) -> Resource {
    let base = c
        .endpoint
        .clone()
        .unwrap_or_else(|| format!("https://s3.{}.amazonaws.com", c.region));
    Resource {
        resource_id: name.to_string(),
        state: ResourceState::Available,
        endpoint: json!({
            "bucket": name,
            "url": format!("{}/{name}", base.trim_end_matches('/')),
            "region": c.region,
        })
        .to_string(),
    }
}

fn s3_error(reply: &aws::Reply) -> (String, String) {
    let text = reply.text();
    (
        tag(&text, "Code").unwrap_or_default().to_string(),
        tag(&text, "Message").unwrap_or_default().to_string(),
    )
}

fn provision_bucket(c: &Client, request: &ProvisionRequest) -> Result<Resource, ProviderError> {
    let spec = spec(&request.spec)?;
    let name = bucket_name(spec.bucket_prefix.as_deref(), &request.client_token);
    let body = if c.region == "us-east-1" {
        String::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">\
             <LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            c.region
        )
    };
    let reply = c.send("s3", "PUT", &format!("/{name}"), &[], &[], body.as_bytes())?;
    if (200..300).contains(&reply.status) {
        return Ok(bucket_resource(c, &name));
    }
    let (code, message) = s3_error(&reply);
    if code == "BucketAlreadyOwnedByYou" {
        return Ok(bucket_resource(c, &name));
    }
    Err(ProviderError::UpstreamStatus((
        reply.status,
        format!("{code}: {message}"),
    )))
}

fn describe_bucket(c: &Client, name: &str) -> Result<Resource, ProviderError> {
    let reply = c.send("s3", "HEAD", &format!("/{name}"), &[], &[], b"")?;
    match reply.status {
        200..=299 => Ok(bucket_resource(c, name)),
        404 => Err(ProviderError::NotFound(name.to_string())),
        status => Err(ProviderError::UpstreamStatus((
            status,
            format!("HeadBucket {name}"),
        ))),
    }
}

fn reclaim_bucket(c: &Client, name: &str) -> Result<(), ProviderError> {
    let reply = c.send("s3", "DELETE", &format!("/{name}"), &[], &[], b"")?;
    match reply.status {
        200..=299 | 404 => Ok(()),
        status => {
            let (code, message) = s3_error(&reply);
            Err(ProviderError::UpstreamStatus((
                status,
                format!("{code}: {message}"),
            )))
        }
    }
}

// ---- Cost Explorer: bills ---------------------------------------------------------------

fn list_bills(c: &Client, period: &Period) -> Result<Vec<BillLine>, ProviderError> {
    let mut lines = Vec::new();
    let mut token: Option<String> = None;
    let headers = [
        ("content-type", "application/x-amz-json-1.1".to_string()),
        (
            "x-amz-target",
            "AWSInsightsIndexService.GetCostAndUsage".to_string(),
        ),
    ];
    // Cost Explorer pages its answer; a bounded number of pages keeps a broken API from
    // looping forever.
    for _ in 0..1000 {
        let mut body = json!({
            "TimePeriod": {"Start": period.start, "End": period.end},
            "Granularity": "DAILY",
            "Metrics": ["UnblendedCost", "UsageQuantity"],
            "GroupBy": [{"Type": "DIMENSION", "Key": "RESOURCE_ID"}],
        });
        if let Some(t) = &token {
            body["NextPageToken"] = json!(t);
        }
        let v = c.json("ce", "POST", "/", &[], &headers, Some(&body))?;
        let bad = |what: &str| ProviderError::BadResponse(format!("GetCostAndUsage: {what}"));
        let results = v
            .get("ResultsByTime")
            .and_then(|r| r.as_array())
            .ok_or_else(|| bad("no ResultsByTime"))?;
        for r in results {
            let start = r
                .pointer("/TimePeriod/Start")
                .and_then(|s| s.as_str())
                .ok_or_else(|| bad("no TimePeriod.Start"))?;
            let end = r
                .pointer("/TimePeriod/End")
                .and_then(|s| s.as_str())
                .ok_or_else(|| bad("no TimePeriod.End"))?;
            let groups = r.get("Groups").and_then(|g| g.as_array());
            for g in groups.into_iter().flatten() {
                let Some(resource_id) = g.pointer("/Keys/0").and_then(|k| k.as_str()) else {
                    continue;
                };
                let cost = g
                    .pointer("/Metrics/UnblendedCost")
                    .ok_or_else(|| bad("a group without UnblendedCost"))?;
                let amount = cost.get("Amount").and_then(|a| a.as_str()).unwrap_or("0");
                let currency = cost.get("Unit").and_then(|a| a.as_str()).unwrap_or("USD");
                let usage = g.pointer("/Metrics/UsageQuantity");
                let quantity = usage
                    .and_then(|u| u.get("Amount"))
                    .and_then(|a| a.as_str())
                    .unwrap_or("0");
                let unit = usage
                    .and_then(|u| u.get("Unit"))
                    .and_then(|a| a.as_str())
                    .unwrap_or("");
                lines.push(BillLine {
                    resource_id: resource_id.to_string(),
                    period: Period {
                        start: start.to_string(),
                        end: end.to_string(),
                    },
                    quantity_milli: money::to_milli(quantity)
                        .ok_or_else(|| bad(&format!("quantity {quantity:?}")))?,
                    unit: unit.to_string(),
                    amount_minor: money::to_minor(amount)
                        .ok_or_else(|| bad(&format!("amount {amount:?}")))?,
                    currency: currency.to_string(),
                });
            }
        }
        token = v
            .get("NextPageToken")
            .and_then(|t| t.as_str())
            .filter(|t| !t.is_empty())
            .map(str::to_string);
        if token.is_none() {
            return Ok(lines);
        }
    }
    Err(ProviderError::BadResponse(
        "GetCostAndUsage: more than 1000 pages".into(),
    ))
}

// ---- The exports ------------------------------------------------------------------------

struct AwsCompute;

impl Guest for AwsCompute {
    fn provision(account: Account, request: ProvisionRequest) -> Result<Resource, ProviderError> {
        let c = client(&account)?;
        match account.resource_type {
            t @ (ResourceType::CloudHost | ResourceType::BareMetal) => {
                let config: Config =
                    parse_config(&account.config).map_err(ProviderError::InvalidConfig)?;
                provision_instance(&c, t, &request, config.idempotency)
            }
            ResourceType::FileService => provision_file_system(&c, &request),
            ResourceType::StorageService => provision_bucket(&c, &request),
        }
    }

    fn describe(account: Account, resource_id: String) -> Result<Resource, ProviderError> {
        let c = client(&account)?;
        match account.resource_type {
            ResourceType::CloudHost | ResourceType::BareMetal => {
                describe_instance(&c, &resource_id)
            }
            ResourceType::FileService => describe_file_system(&c, &resource_id),
            ResourceType::StorageService => describe_bucket(&c, &resource_id),
        }
    }

    fn operate(
        account: Account,
        resource_id: String,
        action: Action,
    ) -> Result<Resource, ProviderError> {
        let c = client(&account)?;
        match account.resource_type {
            ResourceType::CloudHost | ResourceType::BareMetal => {
                operate_instance(&c, &resource_id, action)
            }
            ResourceType::FileService | ResourceType::StorageService => {
                Err(ProviderError::Unsupported(format!(
                    "{action:?} is not an operation of EFS file systems or S3 buckets"
                )))
            }
        }
    }

    fn reclaim(account: Account, resource_id: String) -> Result<(), ProviderError> {
        let c = client(&account)?;
        match account.resource_type {
            ResourceType::CloudHost | ResourceType::BareMetal => reclaim_instance(&c, &resource_id),
            ResourceType::FileService => reclaim_file_system(&c, &resource_id),
            ResourceType::StorageService => reclaim_bucket(&c, &resource_id),
        }
    }

    fn list_bills(account: Account, period: Period) -> Result<Vec<BillLine>, ProviderError> {
        list_bills(&client(&account)?, &period)
    }
}

#[cfg(target_arch = "wasm32")]
liutong_plugin_sdk::export_provider!(AwsCompute);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_names_are_valid_and_stable() {
        let a = bucket_name(None, "0192F0A1-7c3e-7000-8000-ABCDEF012345");
        assert_eq!(a, "liutong-0192f0a1-7c3e-7000-8000-abcdef012345");
        assert_eq!(a, bucket_name(None, "0192F0A1-7c3e-7000-8000-ABCDEF012345"));
        let long = bucket_name(Some("x".repeat(80).as_str()), "t");
        assert!(long.len() <= 63);
    }

    #[test]
    fn reads_an_instance() {
        let xml = "<RunInstancesResponse><instancesSet><item><instanceId>i-1</instanceId>\
                   <instanceState><code>0</code><name>pending</name></instanceState>\
                   <privateIpAddress>10.0.0.5</privateIpAddress><instanceType>t3.micro</instanceType>\
                   </item></instancesSet></RunInstancesResponse>";
        let r = instance(xml).expect("an instance");
        assert_eq!(r.resource_id, "i-1");
        assert_eq!(r.state, ResourceState::Pending);
        assert!(r.endpoint.contains("10.0.0.5"), "{}", r.endpoint);
        assert!(
            instance("<DescribeInstancesResponse><reservationSet/></DescribeInstancesResponse>")
                .is_none()
        );
    }
}
