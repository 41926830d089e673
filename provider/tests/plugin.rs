//! The plugin binary as Terraform meets it: launch checks, the handshake line, the unix and
//! tcp listeners, AutoMTLS (client certificate required and verified), `--debug`, and the
//! gRPC services over the socket (health, GetSchema, a create through the real platform).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::extension::{BasicConstraints, ExtendedKeyUsage, SubjectAlternativeName};
use openssl::x509::{X509, X509NameBuilder};
use terraform_provider_novacron::proto::tfplugin5::provider_client::ProviderClient;
use terraform_provider_novacron::proto::tfplugin5::{DynamicValue, apply_resource_change, configure, get_provider_schema, plan_resource_change};
use terraform_provider_novacron::server::{MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE};
use terraform_provider_novacron::value::Val;

const BIN: &str = env!("CARGO_BIN_EXE_terraform-provider-novacron");

struct Plugin {
    child: Child,
    line: String,
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn launch(envs: &[(&str, &str)], args: &[&str]) -> Plugin {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).env_remove("PLUGIN_CLIENT_CERT").env_remove("PLUGIN_MIN_PORT").env_remove("PLUGIN_MAX_PORT");
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn the plugin");
    let mut reader = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    if args.contains(&"--debug") {
        while !line.contains("TF_REATTACH_PROVIDERS=") {
            line.clear();
            assert!(reader.read_line(&mut line).expect("read") > 0, "no reattach line");
        }
    } else {
        reader.read_line(&mut line).expect("read handshake");
    }
    std::thread::spawn(move || for _ in reader.lines() {});
    Plugin { child, line: line.trim().to_string() }
}

fn client_identity() -> (X509, PKey<Private>) {
    // Like go-plugin's: a self-signed CA certificate used as the client's own identity.
    let key = PKey::from_ec_key(EcKey::generate(&EcGroup::from_curve_name(Nid::SECP521R1).expect("curve")).expect("key")).expect("pkey");
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_nid(Nid::COMMONNAME, "localhost").expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(&key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time")).expect("nb");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("time")).expect("na");
    b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc")).expect("ext");
    b.append_extension(ExtendedKeyUsage::new().client_auth().server_auth().build().expect("eku")).expect("ext");
    let san = SubjectAlternativeName::new().dns("localhost").build(&b.x509v3_context(None, None)).expect("san");
    b.append_extension(san).expect("ext");
    b.sign(&key, MessageDigest::sha512()).expect("sign");
    (b.build(), key)
}

fn cookie() -> (&'static str, &'static str) {
    (MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE)
}

#[test]
fn refuses_to_start_without_terraform() {
    let out = Command::new(BIN).env_remove(MAGIC_COOKIE_KEY).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("This binary is a plugin") && err.contains("Terraform starts it"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn refuses_protocol_versions_it_does_not_speak() {
    let out = Command::new(BIN).env(MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE).env("PLUGIN_PROTOCOL_VERSIONS", "6").output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("speaks only version 5"));
}

#[test]
fn handshake_on_a_unix_socket_in_the_requested_dir() {
    let dir = tempfile::tempdir().expect("dir");
    let p = launch(&[cookie(), ("PLUGIN_PROTOCOL_VERSIONS", "5,6"), ("PLUGIN_UNIX_SOCKET_DIR", dir.path().to_str().expect("utf8"))], &[]);
    let parts: Vec<&str> = p.line.split('|').collect();
    assert_eq!(parts.len(), 6, "{}", p.line);
    assert_eq!(&parts[..3], ["1", "5", "unix"]);
    assert!(parts[3].starts_with(dir.path().to_str().expect("utf8")) && std::path::Path::new(parts[3]).exists());
    assert_eq!((parts[4], parts[5]), ("grpc", ""), "no certificate without PLUGIN_CLIENT_CERT");
}

#[test]
fn tcp_where_asked() {
    let p = launch(&[cookie(), ("PLUGIN_MIN_PORT", "41000"), ("PLUGIN_MAX_PORT", "41999")], &[]);
    let parts: Vec<&str> = p.line.split('|').collect();
    assert_eq!(parts[2], "tcp");
    let port: u16 = parts[3].rsplit(':').next().and_then(|p| p.parse().ok()).expect("port");
    assert!((41000..=41999).contains(&port));
    std::net::TcpStream::connect(parts[3]).expect("listening");
}

#[test]
fn debug_mode_prints_reattach_instructions() {
    let p = launch(&[], &["--debug"]);
    let json = p.line.split_once("TF_REATTACH_PROVIDERS='").map(|(_, r)| r.trim_end_matches('\'')).expect("reattach value");
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    let entry = &v["registry.terraform.io/novacron/novacron"];
    assert_eq!(entry["ProtocolVersion"], 5);
    assert_eq!(entry["Addr"]["Network"], "unix");
    assert!(std::path::Path::new(entry["Addr"]["String"].as_str().expect("path")).exists());
}

#[tokio::test]
async fn auto_mtls_requires_and_verifies_the_client_certificate() {
    use base64::Engine as _;

    let (cert, key) = client_identity();
    let pem = String::from_utf8(cert.to_pem().expect("pem")).expect("utf8");
    let p = launch(&[cookie(), ("PLUGIN_CLIENT_CERT", &pem)], &[]);
    let parts: Vec<&str> = p.line.split('|').collect();
    let der = base64::engine::general_purpose::STANDARD_NO_PAD.decode(parts[5]).expect("raw base64 DER");
    let server_cert = X509::from_der(&der).expect("server certificate");
    let sans: Vec<String> = server_cert.subject_alt_names().expect("SAN").iter().filter_map(|n| n.dnsname().map(str::to_string)).collect();
    assert_eq!(sans, ["localhost"]);
    let socket = parts[3].to_string();

    let handshake = |with_cert: bool| {
        let (server_cert, cert, key, socket) = (server_cert.clone(), cert.clone(), key.clone(), socket.clone());
        async move {
            let mut b = SslConnector::builder(SslMethod::tls()).expect("connector");
            b.cert_store_mut().add_cert(server_cert).expect("trust the server");
            b.set_verify(SslVerifyMode::PEER);
            b.set_alpn_protos(b"\x02h2").expect("alpn");
            if with_cert {
                b.set_certificate(&cert).expect("cert");
                b.set_private_key(&key).expect("key");
            }
            let ssl = b.build().configure().expect("configure").into_ssl("localhost").expect("ssl");
            let stream = tokio::net::UnixStream::connect(&socket).await.expect("connect");
            let mut tls = tokio_openssl::SslStream::new(ssl, stream).expect("stream");
            let ok = std::pin::Pin::new(&mut tls).connect().await.is_ok();
            // TLS 1.3 reports a missing client certificate on the first read, not in connect.
            let mut buf = [0u8; 1];
            let readable =
                ok && tokio::time::timeout(Duration::from_millis(500), tokio::io::AsyncReadExt::read(&mut tls, &mut buf)).await.map_or(true, |r| r.is_ok());
            (ok && readable, tls.ssl().selected_alpn_protocol().map(<[u8]>::to_vec))
        }
    };
    let (ok, alpn) = handshake(true).await;
    assert!(ok, "the client with Terraform's certificate is accepted");
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    let (ok, _) = handshake(false).await;
    assert!(!ok, "a client without the certificate is refused");
}

fn dv(v: &Val) -> Option<DynamicValue> {
    Some(v.to_dynamic())
}

fn obj(pairs: &[(&str, Val)]) -> Val {
    Val::Obj(pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

#[tokio::test]
async fn serves_health_schema_and_a_create_over_the_socket() {
    let p = launch(&[cookie()], &[]);
    let socket = p.line.split('|').nth(3).expect("address").to_string();
    let channel = tonic::transport::Endpoint::try_from("http://plugin.local")
        .expect("endpoint")
        .connect_with_connector(tower::service_fn(move |_| {
            let socket = socket.clone();
            async move { Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tokio::net::UnixStream::connect(socket).await?)) }
        }))
        .await
        .expect("connect");
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health.check(tonic_health::pb::HealthCheckRequest { service: "plugin".into() }).await.expect("health").into_inner();
    assert_eq!(status.status, tonic_health::pb::health_check_response::ServingStatus::Serving as i32);

    let mut provider = ProviderClient::new(channel);
    let schema = provider.get_schema(get_provider_schema::Request {}).await.expect("schema").into_inner();
    let mut types: Vec<&String> = schema.resource_schemas.keys().collect();
    types.sort();
    assert_eq!(types, ["novacron_network", "novacron_policy", "novacron_storage", "novacron_vm"]);
    assert_eq!(schema.data_source_schemas.len(), 3);

    let dir = tempfile::tempdir().expect("dir");
    let platform = novacron_platform::start(novacron_platform::PlatformConfig::for_tests(dir.path())).await.expect("platform");
    let config = obj(&[
        ("endpoint", Val::Str(platform.endpoint())),
        ("api_key", Val::Str(novacron_platform::TEST_API_KEY.1.into())),
        ("timeout", Val::Null),
        ("max_retries", Val::Null),
    ]);
    let diags = provider
        .configure(configure::Request { terraform_version: "test".into(), config: dv(&config), client_capabilities: None })
        .await
        .expect("configure")
        .into_inner()
        .diagnostics;
    assert!(diags.is_empty(), "{diags:?}");
    let net_config = obj(&[("name", Val::Str("core".into())), ("cidr", Val::Str("10.9.0.0/24".into()))]);
    let planned = provider
        .plan_resource_change(plan_resource_change::Request {
            type_name: "novacron_network".into(),
            prior_state: dv(&Val::Null),
            proposed_new_state: dv(&net_config),
            config: dv(&net_config),
            ..Default::default()
        })
        .await
        .expect("plan")
        .into_inner();
    assert!(planned.diagnostics.is_empty(), "{:?}", planned.diagnostics);
    let applied = provider
        .apply_resource_change(apply_resource_change::Request {
            type_name: "novacron_network".into(),
            prior_state: dv(&Val::Null),
            planned_state: planned.planned_state.clone(),
            config: dv(&net_config),
            ..Default::default()
        })
        .await
        .expect("apply")
        .into_inner();
    assert!(applied.diagnostics.is_empty(), "{:?}", applied.diagnostics);
    let state = Val::from_dynamic(applied.new_state.as_ref()).expect("state");
    assert_eq!(state.get("gateway"), &Val::Str("10.9.0.1".into()));
    assert_eq!(state.get("mtu"), &Val::Num(1500.0));
    assert!(state.get("id").as_str().is_some_and(|id| id.starts_with("net-")));
    platform.shutdown().await.expect("shutdown");
}
