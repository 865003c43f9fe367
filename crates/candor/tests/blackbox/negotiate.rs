//! Content negotiation (`accepts`, `produces`): an `Accept` that excludes every type a route
//! produces gets `not_acceptable` 406, a body of a type the route does not accept (or with no
//! `Content-Type`, or in a charset its type does not take) gets `unsupported_media_type` 415,
//! both from the gateway before the upstream sees the request.

use crate::harness::*;
use std::sync::atomic::Ordering;

fn gateway() -> (Gateway, Upstream) {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/v1/{*rest}",
        &up.url(),
        "accepts = [\"application/json\", \"text/*\"]\nproduces = [\"application/json\"]\n",
    ));
    (gw, up)
}

#[test]
fn an_accept_header_excluding_every_produced_type_gets_not_acceptable() {
    let (gw, up) = gateway();
    let r = gw.request("GET", "/v1/d", &[("Accept", "application/xml")], b"");
    let b = assert_problem(&r, "not_acceptable");
    assert_eq!(r.status, 406);
    assert_eq!(
        b["detail"],
        "The request accepts only application/xml; this API can answer with application/json."
    );
    assert_eq!(b["available"], serde_json::json!(["application/json"]));
    // A q=0 exclusion, and the most specific range deciding over a wider one.
    for accept in [
        "*/*, application/json;q=0",
        "application/*;q=0, text/html",
        "text/html, application/xml;q=0.9",
    ] {
        let r = gw.request("GET", "/v1/d", &[("Accept", accept)], b"");
        assert_eq!(r.status, 406, "{accept}: {}", r.text());
    }
    assert_eq!(
        up.hits.load(Ordering::Relaxed),
        0,
        "refused before the upstream"
    );
    // What a client may send and still be served.
    for accept in [
        "application/json",
        "*/*",
        "application/*;q=0.5",
        "text/html, application/json;q=0.1",
        "application/*;q=0, application/json",
        "text/html, image/gif, *; q=.2, */*; q=.2",
    ] {
        let r = gw.request("GET", "/v1/d", &[("Accept", accept)], b"");
        assert_eq!(r.status, 200, "{accept}: {}", r.text());
    }
    assert_eq!(gw.get("/v1/d").status, 200, "no Accept: anything goes");
}

#[test]
fn a_body_of_a_type_the_route_does_not_accept_gets_unsupported_media_type() {
    let (gw, up) = gateway();
    let xml = ("Content-Type", "application/xml");
    let r = gw.request("POST", "/v1/d", &[xml], b"<d/>");
    let b = assert_problem(&r, "unsupported_media_type");
    assert_eq!(r.status, 415);
    assert_eq!(
        b["detail"],
        "The request body is declared as application/xml; /v1/d accepts application/json or text/*."
    );
    assert_eq!(b["content_type"], "application/xml");
    assert_eq!(
        b["accepted"],
        serde_json::json!(["application/json", "text/*"])
    );

    let r = gw.request("POST", "/v1/d", &[], b"{}");
    let b = assert_problem(&r, "unsupported_media_type");
    assert_eq!(
        b["detail"],
        "The request body has no Content-Type header; /v1/d accepts application/json or text/*."
    );
    assert!(b["content_type"].is_null());

    let latin = ("Content-Type", "application/json; charset=ISO-8859-1");
    let b = assert_problem(
        &gw.request("POST", "/v1/d", &[latin], b"{}"),
        "unsupported_media_type",
    );
    assert_eq!(
        b["detail"],
        "The request body is declared as application/json in charset iso-8859-1, which it does not take (send utf-8); /v1/d accepts application/json or text/*."
    );
    let b = assert_problem(
        &gw.request("POST", "/v1/d", &[("Content-Type", "json")], b"{}"),
        "unsupported_media_type",
    );
    assert_eq!(
        b["detail"],
        "The request body is declared as `json`, which is not a media type; /v1/d accepts application/json or text/*."
    );
    // Chunked bodies are bodies too.
    let r = gw.send(
        b"POST /v1/d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
    );
    assert_problem(&r, "unsupported_media_type");
    assert_eq!(
        up.hits.load(Ordering::Relaxed),
        0,
        "refused before the upstream"
    );

    // Accepted: the type (any case, with charset UTF-8), a type of an accepted range, and
    // requests without a body whatever their headers say.
    for ct in [
        "application/json",
        "Application/JSON; charset=\"UTF-8\"",
        "text/csv",
    ] {
        let r = gw.request("POST", "/v1/d", &[("Content-Type", ct)], b"{}");
        assert_eq!(r.status, 200, "{ct}: {}", r.text());
    }
    assert_eq!(gw.get("/v1/d").status, 200);
    assert_eq!(gw.request("POST", "/v1/d", &[xml], b"").status, 200);
    assert_eq!(up.heads().len(), 5);
}

#[test]
fn negotiation_comes_before_credentials_and_is_in_the_plan() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/v1/{*rest}",
        &up.url(),
        "auth = \"bearer\"\nproduces = [\"application/json\"]\n",
    ));
    // The format is wrong whoever asks: said before credentials are read.
    let r = gw.request("GET", "/v1/d", &[("Accept", "text/html")], b"");
    assert_problem(&r, "not_acceptable");
    assert_problem(&gw.get("/v1/d"), "credentials_missing");
    let out = cli(&gw, &["check"]);
    assert!(out.contains("negotiate → authenticate"), "{out}");
}

#[test]
fn candor_check_explains_media_types_it_cannot_use() {
    let dir = temp_dir("negotiate");
    let file = dir.join("candor.toml");
    std::fs::write(
        &file,
        one_route(
            "/v1/{*rest}",
            "http://127.0.0.1:9",
            "accepts = [\"json\", \"*/*\", \"text/plain; level=1\"]\nproduces = [\"text/*\"]\n",
        ),
    )
    .unwrap();
    let (code, out, _) = candor(&["check", "--config", file.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("4 problems"), "{out}");
    for expected in [
        "`json` is not a media type (type/subtype)",
        "`*/*`: the type must be named",
        "`text/plain; level=1`: parameter `level` is not supported (only charset)",
        "`text/*`: a route produces definite types, not a range",
    ] {
        assert!(out.contains(expected), "{expected}: {out}");
    }
}

#[test]
fn a_body_that_is_not_what_its_content_type_says_gets_malformed_body() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/v1/{*rest}",
        &up.url(),
        "accepts = [\"application/json\", \"application/x-www-form-urlencoded\"]\n",
    ));
    let json = ("Content-Type", "application/json");
    let r = gw.request(
        "POST",
        "/v1/d",
        &[json],
        b"{\"name\": \"a\",\n \"serial\" = 1}",
    );
    let b = assert_problem(&r, "malformed_body");
    assert_eq!(r.status, 400);
    assert_eq!(
        b["detail"],
        "The request body is not valid JSON: expected `:`, found `=` at line 2, column 11."
    );
    assert_eq!(
        (&b["line"], &b["column"], &b["offset"]),
        (&2.into(), &11.into(), &24.into())
    );
    let form = ("Content-Type", "application/x-www-form-urlencoded");
    let b = assert_problem(
        &gw.request("POST", "/v1/d", &[form], b"name=a&serial=50%"),
        "malformed_body",
    );
    assert_eq!(
        b["detail"],
        "The request body is not valid form data: a `%` must be followed by two hex digits at line 1, column 17."
    );
    // A chunked body is read whole and checked too, and nothing of it reaches the upstream.
    let r = gw.send(
        b"POST /v1/d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n[1,\r\n0\r\n\r\n",
    );
    let b = assert_problem(&r, "malformed_body");
    assert_eq!(
        b["detail"],
        "The request body is not valid JSON: expected a value, found the end of the body at line 1, column 4."
    );
    assert!(up.heads().is_empty(), "{:?}", up.heads());

    // Well-formed bodies are forwarded whole, chunked ones too.
    let r = gw.request("POST", "/v1/d", &[json], br#"{"name": "a"}"#);
    assert_eq!((r.status, r.json()["body_len"].as_u64()), (200, Some(13)));
    let r = gw.send(
        b"POST /v1/d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\n[1,\r\n3\r\n 2]\r\n0\r\n\r\n",
    );
    assert_eq!((r.status, r.json()["body_len"].as_u64()), (200, Some(6)));
    let r = gw.request("POST", "/v1/d", &[form], b"name=caf%C3%A9&x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    // Over the body limit while being read: payload_too_large, not a parse error.
    let gw = Gateway::start(&format!(
        "[limits]\nmax_body_bytes = 16\n{}",
        one_route(
            "/v1/{*rest}",
            &up.url(),
            "accepts = [\"application/json\"]\n"
        )
    ));
    let r = gw.send(
        b"POST /v1/d HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n14\r\n[1,2,3,4,5,6,7,8,90]\r\n0\r\n\r\n",
    );
    assert_problem(&r, "payload_too_large");
}

#[test]
fn an_xml_body_must_be_well_formed_on_a_route_that_accepts_xml() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/v1/{*rest}",
        &up.url(),
        "accepts = [\"application/xml\", \"text/xml\"]\n",
    ));
    let xml = ("Content-Type", "application/xml");
    let b = assert_problem(
        &gw.request(
            "POST",
            "/v1/d",
            &[xml],
            b"<device>\n  <name>a</nam>\n</device>",
        ),
        "malformed_body",
    );
    assert_eq!(
        b["detail"],
        "The request body is not valid XML: expected `</name>`, found `</nam>` at line 2, column 10."
    );
    assert_eq!(
        (&b["line"], &b["column"], &b["offset"]),
        (&2.into(), &10.into(), &18.into())
    );
    let b = assert_problem(
        &gw.request("POST", "/v1/d", &[("Content-Type", "text/xml")], b"<a><b/>"),
        "malformed_body",
    );
    assert_eq!(
        b["detail"],
        "The request body is not valid XML: expected `</a>`, found the end of the body at line 1, column 8."
    );
    // A charset other than UTF-8 is not taken (the body is checked as UTF-8).
    let r = gw.request(
        "POST",
        "/v1/d",
        &[("Content-Type", "application/xml; charset=iso-8859-1")],
        b"<a/>",
    );
    assert_problem(&r, "unsupported_media_type");
    assert!(up.heads().is_empty(), "{:?}", up.heads());
    let body =
        b"<?xml version=\"1.0\"?>\n<device id=\"7\"><name>caf\xC3\xA9 &amp; bar</name></device>\n";
    let r = gw.request("POST", "/v1/d", &[xml], body);
    assert_eq!(
        (r.status, r.json()["body_len"].as_u64()),
        (200, Some(body.len() as u64))
    );
}

/// Found by the attack probe of negotiation, each with its bytes.
#[test]
fn what_the_attack_probe_found_in_negotiation() {
    let up = Upstream::start(Behaviour::Echo);
    let gw = Gateway::start(&one_route(
        "/v1/{*rest}",
        &up.url(),
        "accepts = [\"application/json\", \"application/x-www-form-urlencoded\"]\n",
    ));
    // `Connection: content-type` no longer drops the Content-Type the gateway checked (nor
    // the identity headers it sets).
    let r = gw.send(
        b"POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nConnection: close\r\nConnection: content-type, x-candor-client\r\nContent-Length: 7\r\n\r\n{\"a\":1}",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["headers"]["content-type"][0], "application/json");
    // An empty body, by length or by chunked framing, is no body: not refused for its type
    // and not checked as JSON.
    let json = ("Content-Type", "application/json");
    assert_eq!(gw.request("POST", "/v1/x", &[json], b"").status, 200);
    let r = gw.send(
        b"POST /v1/x HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // A form in a charset the gateway does not check it in: 415, not a malformed body.
    let latin = (
        "Content-Type",
        "application/x-www-form-urlencoded; charset=iso-8859-1",
    );
    let b = assert_problem(
        &gw.request("POST", "/v1/x", &[latin], b"a=caf%E9"),
        "unsupported_media_type",
    );
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("in charset iso-8859-1"),
        "{b}"
    );
    // Two charsets (an upstream might read either), or an empty one: 415.
    for ct in [
        "application/json; charset=utf-8; charset=latin1",
        "application/json; charset=",
    ] {
        let r = gw.request("POST", "/v1/x", &[("Content-Type", ct)], b"{}");
        assert_problem(&r, "unsupported_media_type");
    }
}
