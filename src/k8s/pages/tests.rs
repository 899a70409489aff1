use std::convert::Infallible;

use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper::http::{Request, Response, StatusCode, header};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::client::Body;
use kube::core::PartialObjectMeta;
use serde_json::{Value, json};

use super::*;
use crate::core::slim::Slim;

/// Objects whose strings hold what a splitter could mistake for the list's own structure.
fn tricky_items() -> Vec<Value> {
    vec![
        json!({ "metadata": { "name": "a" }, "data": "plain" }),
        json!({ "metadata": { "name": "b" }, "data": "a \"quoted\" }]{[ , : string" }),
        json!({ "metadata": { "name": "c" }, "data": "ends with a backslash \\" }),
        json!({ "metadata": { "name": "d" }, "data": "\\\"\\\\\"", "é": "\u{e9}\u{1F600}" }),
        json!({ "metadata": { "name": "e" }, "nested": [[], {}, [{ "items": [1, 2] }], null, -1.5e3, true] }),
        json!({}),
    ]
}

/// A list as the apiserver writes it: kind, apiVersion, metadata, items (or metadata last).
fn list_body(items: &[Value], token: Option<&str>, metadata_last: bool) -> Vec<u8> {
    let metadata = match token {
        Some(token) => json!({ "resourceVersion": "42", "continue": token }),
        None => json!({ "resourceVersion": "42" }),
    };
    let items = serde_json::to_string(items).unwrap();
    let metadata = serde_json::to_string(&metadata).unwrap();
    let body = if metadata_last {
        format!(r#"{{"kind":"PodList","apiVersion":"v1","items":{items},"metadata":{metadata}}}"#)
    } else {
        format!(
            "{{\"kind\":\"PodList\",\n \"apiVersion\":\"v1\",\"metadata\":{metadata},\n \"items\" : {items} }}\n"
        )
    };
    body.into_bytes()
}

/// The body fed in chunks of `size` bytes: the objects handed over, and the list's metadata.
fn split(body: &[u8], size: usize) -> Result<(Vec<Value>, ListMeta), kube::Error> {
    let mut split = Split::default();
    let mut items = Vec::new();
    for chunk in body.chunks(size) {
        split.feed(chunk, &mut |item: &[u8]| {
            items.push(serde_json::from_slice(item)?);
            Ok(())
        })?;
    }
    Ok((items, split.finish()?))
}

#[test]
fn every_object_is_handed_over_whole_wherever_the_body_is_cut() {
    let items = tricky_items();
    for metadata_last in [false, true] {
        let body = list_body(&items, Some("next-page"), metadata_last);
        for size in 1..=body.len() {
            let (read, meta) = split(&body, size).unwrap_or_else(|e| panic!("size {size}: {e}"));
            assert_eq!(
                read, items,
                "chunks of {size}, metadata last: {metadata_last}"
            );
            assert_eq!(meta.continue_.as_deref(), Some("next-page"));
            assert_eq!(meta.resource_version.as_deref(), Some("42"));
        }
    }
}

#[test]
fn a_strings_run_ends_at_its_first_quote_or_backslash() {
    let slow = |s: &[u8]| {
        s.iter()
            .position(|&b| b == b'"' || b == b'\\')
            .unwrap_or(s.len())
    };
    for len in 0..40 {
        let plain = vec![b'a'; len];
        assert_eq!(string_run(&plain), len);
        for at in 0..len {
            for stop in [b'"', b'\\'] {
                let mut s = plain.clone();
                s[at] = stop;
                // Another stop after the first, and a byte that borrows in the word's arithmetic.
                if at + 1 < len {
                    s[at + 1] = b'"';
                }
                if at > 0 {
                    s[at - 1] = 0x23;
                }
                assert_eq!(string_run(&s), slow(&s), "{s:?}");
            }
        }
    }
    for byte in 0..=u8::MAX {
        for at in 0..9 {
            let mut s = [b'a'; 9];
            s[at] = byte;
            assert_eq!(string_run(&s), slow(&s), "{byte} at {at}");
        }
    }
}

#[test]
fn a_body_cut_short_is_an_error_never_a_shorter_list() {
    let body = list_body(&tricky_items(), Some("next-page"), false);
    // Up to the list's closing brace: the newline after it may be missing.
    let end = body.iter().rposition(|&b| b == b'}').unwrap();
    for cut in 0..end {
        for size in [1, 7, body.len()] {
            assert!(
                split(&body[..cut], size).is_err(),
                "a body cut at {cut} of {} was read as a list",
                body.len()
            );
        }
    }
}

#[test]
fn empty_lists_and_the_last_page() {
    for body in [
        r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}"#,
        r#"{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1","continue":""},"items":null}"#,
        r#"{"metadata":{}}"#,
        "{}",
    ] {
        let (items, meta) = split(body.as_bytes(), 3).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert!(items.is_empty(), "{body}");
        assert!(meta.continue_.is_none_or(|c| c.is_empty()), "{body}");
    }
}

#[test]
fn only_the_lists_own_items_and_metadata_are_read() {
    let body = r#"{"other":{"items":[{"a":1}],"metadata":{"continue":"no"}},"metadataX":{"continue":"no"},"itemsX":[{"b":2}],"items":[{"c":3}]}"#;
    let (items, meta) = split(body.as_bytes(), 5).unwrap();
    assert_eq!(items, vec![json!({ "c": 3 })]);
    assert!(meta.continue_.is_none());
}

#[test]
fn what_is_not_a_list_of_objects_is_an_error() {
    for body in [
        r#"[{"a":1}]"#,
        r#""a string""#,
        "42",
        r#"{"items":{"a":1}}"#,
        r#"{"items":[1]}"#,
        r#"{"items":["a"]}"#,
        r#"{"items":[{"a":1},null]}"#,
        r#"{"items":[{"a":}]}"#,
        r#"{"items":[]}{"items":[]}"#,
        r#"{"items":[]}]"#,
        r#"{"metadata":"a string","items":[]}"#,
    ] {
        assert!(
            split(body.as_bytes(), 2).is_err(),
            "{body} was read as a list"
        );
    }
}

#[test]
fn the_lists_metadata_is_read_up_to_a_bound() {
    let token = "t".repeat(MAX_LIST_METADATA);
    let body = list_body(&[json!({})], Some(&token), false);
    assert!(split(&body, 4096).is_err());
    let token = "t".repeat(MAX_LIST_METADATA / 2);
    let body = list_body(&[json!({})], Some(&token), false);
    let (_, meta) = split(&body, 4096).unwrap();
    assert_eq!(meta.continue_, Some(token));
}

#[test]
fn an_object_is_held_whole_only_while_it_is_read() {
    // Objects of 1 MiB: what is kept between them is the buffer of one, not the page.
    let fat = "x".repeat(1 << 20);
    let items: Vec<Value> = (0..5)
        .map(|i| json!({ "metadata": { "name": format!("fat-{i}") }, "data": fat }))
        .collect();
    let body = list_body(&items, None, false);
    let mut split = Split::default();
    let mut names = Vec::new();
    let mut held = 0;
    for chunk in body.chunks(16 * 1024) {
        split
            .feed(chunk, &mut |item: &[u8]| {
                let object: Value = serde_json::from_slice(item)?;
                names.push(object["metadata"]["name"].as_str().unwrap().to_owned());
                Ok(())
            })
            .unwrap();
        held = held.max(split.item.capacity());
    }
    split.finish().unwrap();
    assert_eq!(names, ["fat-0", "fat-1", "fat-2", "fat-3", "fat-4"]);
    assert!(held < 3 << 20, "{held} bytes held for one object");
}

type Answer = Response<UnsyncBoxBody<Bytes, Infallible>>;

/// An answer whose body comes in frames of 5 bytes.
fn answer(status: StatusCode, body: &[u8]) -> Answer {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = body
        .chunks(5)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let mut response = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed_unsync());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    response
}

fn query(request: &Request<Body>) -> Vec<(String, String)> {
    form_urlencoded_pairs(request.uri().query().unwrap_or_default())
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

fn pod(name: &str) -> Value {
    json!({
        "metadata": { "name": name, "namespace": "ns", "uid": format!("uid-{name}"),
                      "labels": { "batch.kubernetes.io/controller-uid": "job", "app": "x" } },
        "spec": { "nodeName": "n", "containers": [{ "name": "main", "env": [{ "name": "PAYLOAD", "value": "x".repeat(10_000) }] }] },
        "status": { "phase": "Succeeded" }
    })
}

#[tokio::test]
async fn pages_follow_the_continue_token_and_read_each_object_through_its_view() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Answer>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        assert_eq!(request.uri().path(), "/api/v1/namespaces/ns/pods");
        let query = query(&request);
        assert!(query.contains(&("limit".into(), "2".into())), "{query:?}");
        assert!(
            query.contains(&("labelSelector".into(), "a%3Db".into())),
            "{query:?}"
        );
        assert!(!query.iter().any(|(k, _)| k == "continue"), "{query:?}");
        send.send_response(answer(
            StatusCode::OK,
            &list_body(&[pod("p1"), pod("p2")], Some("page-2"), false),
        ));
        let (request, send) = handle.next_request().await.unwrap();
        assert!(query_has(&request, "continue", "page-2"));
        send.send_response(answer(StatusCode::OK, &list_body(&[pod("p3")], None, true)));
    });
    let api: Api<Slim<Pod>> = Api::namespaced(client, "ns");
    let mut pages = Pages::new(api, ListParams::default().labels("a=b"), 2);
    let mut names = Vec::new();
    while let Some(page) = pages.next().await {
        for pod in page.unwrap() {
            // Through the view: the Job's label kept, the others and the variables not.
            let labels = pod.object.metadata.labels.clone().unwrap_or_default();
            assert_eq!(labels.len(), 1, "{labels:?}");
            let env = &pod.object.spec.as_ref().unwrap().containers;
            assert!(env.is_empty(), "{env:?}");
            names.push(pod.object.metadata.name.unwrap());
        }
    }
    assert_eq!(names, ["p1", "p2", "p3"]);
    server.await.unwrap();
}

fn query_has(request: &Request<Body>, key: &str, value: &str) -> bool {
    query(request).iter().any(|(k, v)| k == key && v == value)
}

#[tokio::test]
async fn metadata_is_asked_for_as_metadata() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Answer>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (request, send) = handle.next_request().await.unwrap();
        let accept = request.headers()[header::ACCEPT].to_str().unwrap();
        assert!(accept.contains("as=PartialObjectMetadataList"), "{accept}");
        let job = json!({ "kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                          "metadata": { "name": "j", "finalizers": ["a", "jobtrace.dev/export"] } });
        send.send_response(answer(StatusCode::OK, &list_body(&[job], None, false)));
    });
    let api: Api<Slim<PartialObjectMeta<Job>>> = Api::namespaced(client, "ns");
    let mut pages = Pages::new(api, ListParams::default(), METADATA);
    let page = pages.next().await.unwrap().unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].hold, Some(1));
    assert!(pages.next().await.is_none());
    server.await.unwrap();
}

#[tokio::test]
async fn an_error_ends_the_pages() {
    let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Answer>();
    let client = kube::Client::new(service, "default");
    let server = tokio::spawn(async move {
        let (_, send) = handle.next_request().await.unwrap();
        send.send_response(answer(
            StatusCode::OK,
            &list_body(&[pod("p1")], Some("page-2"), false),
        ));
        let (_, send) = handle.next_request().await.unwrap();
        let status = json!({ "kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "message": "continue token expired", "reason": "Expired", "code": 410 });
        send.send_response(answer(
            StatusCode::GONE,
            &serde_json::to_vec(&status).unwrap(),
        ));
        let (_, send) = handle.next_request().await.unwrap();
        // A page cut short: the connection closed mid-object.
        let body = list_body(&[pod("p1"), pod("p2")], None, false);
        send.send_response(answer(StatusCode::OK, &body[..body.len() / 2]));
    });
    let api: Api<Slim<Pod>> = Api::namespaced(client, "ns");
    let mut pages = Pages::new(api.clone(), ListParams::default(), OBJECTS);
    assert_eq!(pages.next().await.unwrap().unwrap().len(), 1);
    match pages.next().await {
        Some(Err(kube::Error::Api(status))) => assert_eq!(status.code, 410),
        other => panic!("{other:?}"),
    }
    assert!(pages.next().await.is_none());
    let mut pages = Pages::new(api, ListParams::default(), OBJECTS);
    assert!(matches!(pages.next().await, Some(Err(_))));
    assert!(pages.next().await.is_none());
    server.await.unwrap();
}
