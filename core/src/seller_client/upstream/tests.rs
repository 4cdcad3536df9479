//! Tests of the guarded seller client: address rules, timeouts, size limits.

use super::*;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::{any, post};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const DEV: EndpointPolicy = EndpointPolicy {
    allow_private: true,
    require_https: false,
};
const PROD_HTTP: EndpointPolicy = EndpointPolicy {
    allow_private: false,
    require_https: false,
};
const PROD: EndpointPolicy = EndpointPolicy {
    allow_private: false,
    require_https: true,
};

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[test]
fn forbidden_ranges_and_their_edges() {
    let refused = "\
        0.0.0.0 0.255.255.255 127.0.0.1 127.255.255.255 10.0.0.1 10.255.255.255 \
        172.16.0.1 172.31.255.255 192.168.1.1 169.254.169.254 100.64.0.1 \
        100.127.255.255 224.0.0.1 239.255.255.255 240.0.0.1 255.255.255.255 192.0.0.8 \
        192.0.2.1 198.51.100.7 203.0.113.9 198.18.0.1 198.19.255.255 :: ::1 fc00::1 \
        fdff::1 fe80::1 febf:ffff::1 ff02::1 2001:db8::1 ::ffff:127.0.0.1 \
        ::ffff:10.0.0.1 ::127.0.0.1 ::10.0.0.1 64:ff9b::127.0.0.1 64:ff9b::10.0.0.1 \
        2002:7f00:1:: 2002:a00:1:: fec0::1 feff::1 2001::1 2001:0:4136:e378::1 \
        64:ff9b:1::a00:1";
    let allowed = "\
        1.0.0.0 126.255.255.255 128.0.0.0 9.255.255.255 11.0.0.0 172.15.255.255 \
        172.32.0.0 192.167.255.255 192.169.0.0 169.253.255.255 169.255.0.0 \
        100.63.255.255 100.128.0.0 223.255.255.255 192.0.1.0 192.0.3.0 198.51.101.0 \
        203.0.114.0 198.17.255.255 198.20.0.0 8.8.8.8 1.1.1.1 2606:4700::1111 \
        2001:4860:4860::8888 fbff::1 fe7f::1 2001:1::1 2001:db9::1 ::ffff:8.8.8.8 \
        ::8.8.8.8 64:ff9b::8.8.8.8 2002:808:808::";
    for a in refused.split_whitespace() {
        assert!(is_forbidden_ip(ip(a)), "{a} should be refused");
    }
    for a in allowed.split_whitespace() {
        assert!(!is_forbidden_ip(ip(a)), "{a} should be allowed");
    }
}

#[test]
fn check_url_rules() {
    assert_eq!(
        check_url("http://example.com/", &PROD),
        Err(EndpointUrlError::HttpsRequired)
    );
    assert!(check_url("https://example.com/api", &PROD).is_ok());
    for host in [
        "localhost",
        "foo.localhost",
        "printer.local",
        "svc.internal",
        "LOCALHOST.",
    ] {
        let url = format!("https://{host}/hook?token=s3cret");
        let err = check_url(&url, &PROD).unwrap_err();
        assert!(
            matches!(err, EndpointUrlError::HostNotAllowed(_)),
            "{host}: {err:?}"
        );
        assert_eq!(err.code(), "ENDPOINT_HOST_NOT_ALLOWED");
        assert!(!err.to_string().contains(&url) && !err.to_string().contains("s3cret"));
        assert!(
            check_url(&url, &DEV).is_ok(),
            "{host} allowed in development"
        );
    }
    for (host, addr) in [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("[::ffff:127.0.0.1]", "::ffff:127.0.0.1"),
        ("0x7f000001", "127.0.0.1"),
        ("169.254.169.254", "169.254.169.254"),
        ("[fe80::1]", "fe80::1"),
        ("[fd00::1]", "fd00::1"),
        ("100.64.0.1", "100.64.0.1"),
    ] {
        let url = format!("https://{host}/x?key=s3cret");
        let err = check_url(&url, &PROD).unwrap_err();
        assert_eq!(err, EndpointUrlError::AddressNotAllowed(ip(addr)), "{host}");
        assert!(!err.to_string().contains("s3cret"));
        assert!(check_url(&url, &DEV).is_ok());
    }
    for bad in [
        "https://user:pass@example.com/",
        "ftp://example.com/",
        "/relative",
        "nonsense",
    ] {
        let err = check_url(bad, &DEV).unwrap_err();
        assert!(
            matches!(err, EndpointUrlError::Invalid(_)),
            "{bad}: {err:?}"
        );
        assert!(!err.to_string().contains(bad), "{err}");
    }
    let long = format!("https://example.com/{}", "a".repeat(MAX_URL_LEN));
    assert!(matches!(
        check_url(&long, &DEV),
        Err(EndpointUrlError::Invalid(_))
    ));
}

fn rebind() -> HashMap<String, Vec<IpAddr>> {
    HashMap::from([("rebind.test".to_owned(), vec![ip("127.0.0.1")])])
}

async fn resolve(r: &GuardedResolver, name: &str) -> Result<Vec<IpAddr>, BoxError> {
    Ok(r.lookup(name)
        .await?
        .into_iter()
        .map(|sa| sa.ip())
        .collect())
}

#[tokio::test]
async fn resolver_filters_overrides() {
    let err = resolve(&GuardedResolver::new(false, rebind()), "rebind.test")
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<AddressRefused>().is_some(), "{err}");
    let ok = resolve(&GuardedResolver::new(true, rebind()), "REBIND.test")
        .await
        .unwrap();
    assert_eq!(ok, vec![ip("127.0.0.1")]);
    let mixed = HashMap::from([("mixed.test".to_owned(), vec![ip("10.0.0.1"), ip("8.8.8.8")])]);
    let ok = resolve(&GuardedResolver::new(false, mixed), "mixed.test")
        .await
        .unwrap();
    assert_eq!(ok, vec![ip("8.8.8.8")]);
}

#[derive(Default)]
struct Seen {
    target_hits: AtomicUsize,
    last: Mutex<Option<(HeaderMap, Vec<u8>)>>,
}

async fn spawn_seller() -> (u16, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route(
            "/json",
            post(
                |State(s): State<Arc<Seen>>, headers: HeaderMap, body: Bytes| async move {
                    *s.last.lock().unwrap() = Some((headers, body.to_vec()));
                    (
                        [(header::CONTENT_TYPE, "application/json")],
                        r#"{"ok":true,"n":1}"#,
                    )
                },
            ),
        )
        .route("/text", post(|| async { "plain words" }))
        .route(
            "/bad-json",
            post(|| async { ([(header::CONTENT_TYPE, "application/json")], "{nope") }),
        )
        .route(
            "/redirect",
            post(|| async { (StatusCode::FOUND, [(header::LOCATION, "/target")]) }),
        )
        .route(
            "/target",
            any(|State(s): State<Arc<Seen>>| async move {
                s.target_hits.fetch_add(1, Ordering::SeqCst);
                "target"
            }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(2)).await;
                "late"
            }),
        )
        .route("/large", post(|| async { vec![b'a'; 200_000] }))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, seen)
}

fn request(url: &Url) -> UpstreamRequest<'_> {
    UpstreamRequest {
        url,
        headers: HeaderMap::new(),
        body: Bytes::from_static(b"{}"),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
    }
}

#[tokio::test]
async fn send_json_text_and_redirect() {
    let (port, seen) = spawn_seller().await;
    let client = UpstreamClient::new(DEV, HashMap::new());
    assert_eq!(client.policy(), DEV);
    let url = Url::parse(&format!("http://127.0.0.1:{port}/json")).unwrap();
    let body = br#"{"task":"run", "x": [1,2]}"#.to_vec();
    let mut req = request(&url);
    req.headers
        .insert("x-crochet-signature", HeaderValue::from_static("abc123"));
    req.headers
        .insert("authorization", HeaderValue::from_static("Bearer t"));
    req.body = body.clone().into();
    let resp = client.send(req).await.unwrap();
    assert_eq!((resp.status, resp.is_json), (200, true));
    assert_eq!(resp.body, br#"{"ok":true,"n":1}"#);
    let (headers, got) = seen.last.lock().unwrap().take().unwrap();
    assert_eq!(got, body);
    assert_eq!(headers["x-crochet-signature"], "abc123");
    assert_eq!(headers["authorization"], "Bearer t");
    assert_eq!(headers["content-type"], "application/json");
    assert!(
        headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("crochet-gateway/")
    );

    for path in ["text", "bad-json"] {
        let url = Url::parse(&format!("http://127.0.0.1:{port}/{path}")).unwrap();
        let resp = client.send(request(&url)).await.unwrap();
        assert_eq!((resp.status, resp.is_json), (200, false), "{path}");
    }

    let url = Url::parse(&format!("http://127.0.0.1:{port}/redirect")).unwrap();
    let resp = client.send(request(&url)).await.unwrap();
    assert_eq!(resp.status, 302);
    assert_eq!(
        seen.target_hits.load(Ordering::SeqCst),
        0,
        "redirect must not be followed"
    );
}

#[tokio::test]
async fn send_failures() {
    let (port, _) = spawn_seller().await;
    let client = UpstreamClient::new(DEV, HashMap::new());

    let url = Url::parse(&format!("http://127.0.0.1:{port}/slow")).unwrap();
    let mut req = request(&url);
    req.timeout = Duration::from_millis(300);
    let started = Instant::now();
    let err = client.send(req).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(err.code(), "SELLER_TIMEOUT");

    let url = Url::parse(&format!("http://127.0.0.1:{port}/large")).unwrap();
    let mut req = request(&url);
    req.max_response_bytes = 1024;
    let err = client.send(req).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::ResponseTooLarge { limit: 1024 }),
        "{err:?}"
    );

    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_port = closed.local_addr().unwrap().port();
    drop(closed);
    let url = Url::parse(&format!("http://127.0.0.1:{closed_port}/json")).unwrap();
    let err = client.send(request(&url)).await.unwrap_err();
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    assert_eq!(err.code(), "SELLER_UNREACHABLE");
    assert!(!err.to_string().contains(url.as_str()), "{err}");
}

#[tokio::test]
async fn streamed_body_is_cut_at_limit() {
    // No Content-Length: the limit must be enforced while reading chunks.
    // A plain blocking thread keeps this independent of tokio's io-util feature.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut sock, _) = listener.accept().unwrap();
        // Read the whole request (headers + `{}` body) before answering.
        let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
        while !seen.ends_with(b"\r\n\r\n{}") {
            match sock.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let head =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
        let _ = sock.write_all(head);
        let _ = sock.write_all(&vec![b' '; 200_000]);
    });
    let client = UpstreamClient::new(DEV, HashMap::new());
    let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
    let mut req = request(&url);
    req.max_response_bytes = 1024;
    let err = client.send(req).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::ResponseTooLarge { limit: 1024 }),
        "{err:?}"
    );
}

#[tokio::test]
async fn production_refuses_rebinding_and_literals() {
    let (port, seen) = spawn_seller().await;
    let client = UpstreamClient::new(PROD_HTTP, rebind());
    let url = Url::parse(&format!("http://rebind.test:{port}/json")).unwrap();
    let err = client.send(request(&url)).await.unwrap_err();
    assert!(matches!(err, UpstreamError::AddressNotAllowed), "{err:?}");
    assert_eq!(err.code(), "ENDPOINT_ADDRESS_NOT_ALLOWED");
    assert!(
        seen.last.lock().unwrap().is_none(),
        "seller must not be reached"
    );

    let url = Url::parse(&format!("http://127.0.0.1:{port}/json")).unwrap();
    let err = client.send(request(&url)).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::Url(EndpointUrlError::AddressNotAllowed(a)) if a == ip("127.0.0.1")),
        "{err:?}"
    );

    // The same name is reachable in development.
    let dev = UpstreamClient::new(DEV, rebind());
    let url = Url::parse(&format!("http://rebind.test:{port}/json")).unwrap();
    assert_eq!(dev.send(request(&url)).await.unwrap().status, 200);
}
