//! The tower-test mock API server the cluster code's tests script: a test takes
//! each request the code under test sends, in order, asserts on what it saw and
//! answers as a real API server would (an object, a list, a log, a `Status`).

use http::{Request, Response};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock::Handle;

pub type ApiHandle = Handle<Request<Body>, Response<Body>>;

/// A kube client whose every request reaches the returned handle.
pub fn client() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// [`client`] as a connection to `context` (the server URL is a stand-in).
pub fn connection(context: &str) -> (super::inspect::Connection, ApiHandle) {
    let (client, handle) = client();
    (
        super::inspect::Connection::from_client(client, context, "https://0.0.0.0:6550"),
        handle,
    )
}

/// One request seen by the mock server.
#[derive(Debug)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Empty when the request has none.
    pub content_type: String,
    /// `Null` for a request without a body.
    pub body: Value,
}

impl Seen {
    /// `GET /api/v1/nodes`.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }
}

/// Takes the next request and answers `status` with `reply` (a string is sent
/// as it is: a log).
pub async fn serve(handle: &mut ApiHandle, status: u16, reply: Value) -> Seen {
    let text = match &reply {
        Value::String(s) => s.clone().into_bytes(),
        other => serde_json::to_vec(other).unwrap(),
    };
    answer(handle, status, |_| text).await
}

/// Answers a server-side apply with the object it was sent.
pub async fn serve_apply(handle: &mut ApiHandle) -> Seen {
    answer(handle, 200, <[u8]>::to_vec).await
}

/// A `Status` error as the API server sends it.
pub fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

async fn answer(handle: &mut ApiHandle, status: u16, reply: impl FnOnce(&[u8]) -> Vec<u8>) -> Seen {
    let (request, send) = handle.next_request().await.expect("a request");
    let method = request.method().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let content_type = request
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = request.into_body().collect_bytes().await.unwrap();
    send.send_response(
        Response::builder()
            .status(status)
            .body(Body::from(reply(&bytes)))
            .unwrap(),
    );
    Seen {
        method,
        path,
        query,
        content_type,
        body: if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        },
    }
}
