//! Wire-format tests of [`super::embeddings`]: exact requests, realistic answers and errors, and
//! property tests that no input makes the parser panic.

use proptest::prelude::*;

use super::embeddings::{EmbedError, EmbedRequest, Format, build, parse};

fn texts(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn headers(request: &EmbedRequest) -> Vec<(&str, &str)> {
    request
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn body(request: &EmbedRequest) -> &str {
    std::str::from_utf8(&request.body).unwrap()
}

fn close(a: &[f32], b: &[f32]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-6)
}

#[test]
fn openai_request() {
    let r = build(
        Format::OpenAi,
        "https://api.openai.com",
        Some("sk-test"),
        "text-embedding-3-small",
        &texts(&["refund policy", "deploy \"days\""]),
    );
    assert_eq!(r.url, "https://api.openai.com/v1/embeddings");
    assert_eq!(
        headers(&r),
        [
            ("content-type", "application/json"),
            ("authorization", "Bearer sk-test")
        ]
    );
    assert_eq!(
        body(&r),
        r#"{"model":"text-embedding-3-small","input":["refund policy","deploy \"days\""]}"#
    );
    // OpenAI-compatible servers: a base that already ends with /v1 is not given another.
    let r = build(
        Format::OpenAi,
        "http://127.0.0.1:11434/v1/",
        None,
        "nomic-embed-text",
        &[],
    );
    assert_eq!(r.url, "http://127.0.0.1:11434/v1/embeddings");
    assert_eq!(headers(&r), [("content-type", "application/json")]);
    assert_eq!(body(&r), r#"{"model":"nomic-embed-text","input":[]}"#);
    // A blank key is no key.
    let r = build(Format::OpenAi, "https://x", Some("  "), "m", &[]);
    assert_eq!(headers(&r).len(), 1);
}

#[test]
fn ollama_request() {
    let r = build(
        Format::Ollama,
        "http://127.0.0.1:11434/",
        None,
        "nomic-embed-text",
        &texts(&["héllo", "two"]),
    );
    assert_eq!(r.url, "http://127.0.0.1:11434/api/embed");
    assert_eq!(headers(&r), [("content-type", "application/json")]);
    assert_eq!(
        body(&r),
        r#"{"model":"nomic-embed-text","input":["héllo","two"]}"#
    );
    let r = build(
        Format::Ollama,
        "https://ollama.example",
        Some("secret"),
        "m",
        &[],
    );
    assert_eq!(r.url, "https://ollama.example/api/embed");
    assert_eq!(headers(&r)[1], ("authorization", "Bearer secret"));
}

#[test]
fn gemini_request() {
    let r = build(
        Format::Gemini,
        "https://generativelanguage.googleapis.com",
        Some("AIza-test"),
        "gemini-embedding-001",
        &texts(&["a", "b"]),
    );
    assert_eq!(
        r.url,
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-embedding-001:batchEmbedContents"
    );
    assert!(!r.url.contains("AIza"), "the key never goes in the URL");
    assert_eq!(
        headers(&r),
        [
            ("content-type", "application/json"),
            ("x-goog-api-key", "AIza-test")
        ]
    );
    assert_eq!(
        body(&r),
        concat!(
            r#"{"requests":["#,
            r#"{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"a"}]}},"#,
            r#"{"model":"models/gemini-embedding-001","content":{"parts":[{"text":"b"}]}}]}"#
        )
    );
    // A "models/" prefix is accepted, a versioned base is not doubled.
    let r = build(
        Format::Gemini,
        "http://localhost:9000/v1beta/",
        None,
        "models/text-embedding-004",
        &[],
    );
    assert_eq!(
        r.url,
        "http://localhost:9000/v1beta/models/text-embedding-004:batchEmbedContents"
    );
    assert_eq!(body(&r), r#"{"requests":[]}"#);
}

#[test]
fn formats_have_config_names() {
    let names: Vec<String> = [Format::OpenAi, Format::Ollama, Format::Gemini]
        .iter()
        .map(|f| serde_json::to_string(f).unwrap())
        .collect();
    assert_eq!(names, [r#""openai""#, r#""ollama""#, r#""gemini""#]);
    assert_eq!(Format::Gemini.max_batch(), 100);
}

#[test]
fn parses_openai_in_index_order() {
    let answer = br#"{
      "object": "list",
      "data": [
        {"object": "embedding", "index": 1, "embedding": [0.0, 2.0, 0.0]},
        {"object": "embedding", "index": 0, "embedding": [3.0, 4.0, 0.0]}
      ],
      "model": "text-embedding-3-small",
      "usage": {"prompt_tokens": 5, "total_tokens": 5}
    }"#;
    let v = parse(Format::OpenAi, 200, answer, 2).unwrap();
    assert!(close(&v[0], &[0.6, 0.8, 0.0]));
    assert!(close(&v[1], &[0.0, 1.0, 0.0]));
    // Servers that leave out `index`: array order.
    let v = parse(
        Format::OpenAi,
        200,
        br#"{"data":[{"embedding":[1,0]},{"embedding":[0,1]}]}"#,
        2,
    );
    assert!(close(&v.unwrap()[1], &[0.0, 1.0]));
    for bad in [
        &br#"{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[1]}]}"#[..],
        br#"{"data":[{"index":0,"embedding":[1]},{"index":5,"embedding":[1]}]}"#,
    ] {
        assert!(matches!(
            parse(Format::OpenAi, 200, bad, 2),
            Err(EmbedError::Malformed { .. })
        ));
    }
}

#[test]
fn parses_ollama() {
    let answer = br#"{"model":"nomic-embed-text","embeddings":[[0.010071029,-0.0017594862,0.05007221],[-0.0098,0.0112,0.0437]],"total_duration":14143917,"load_duration":1019500,"prompt_eval_count":8}"#;
    let v = parse(Format::Ollama, 200, answer, 2).unwrap();
    assert_eq!(v.len(), 2);
    for x in &v {
        let norm: f32 = x.iter().map(|c| c * c).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }
    assert!(v[0][0] > 0.0 && v[1][0] < 0.0);
}

#[test]
fn parses_gemini() {
    let answer = br#"{
      "embeddings": [
        {"values": [0.0, 0.0, 5.0]},
        {"values": [-1.0, 0.0, 0.0]}
      ]
    }"#;
    let v = parse(Format::Gemini, 200, answer, 2).unwrap();
    assert!(close(&v[0], &[0.0, 0.0, 1.0]));
    assert!(close(&v[1], &[-1.0, 0.0, 0.0]));
    assert_eq!(
        parse(Format::Gemini, 200, br#"{"embeddings":[]}"#, 0),
        Ok(vec![])
    );
}

#[test]
fn errors_by_status() {
    let openai_429 = br#"{"error":{"message":"Rate limit reached for text-embedding-3-small","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#;
    assert_eq!(
        parse(Format::OpenAi, 429, openai_429, 1),
        Err(EmbedError::RateLimited)
    );

    let openai_401 = br#"{"error":{"message":"Incorrect API key provided: sk-proj-AbCdEfGhIjKlMnOpQrStUvWx1234. You can find your API key at https://platform.openai.com/account/api-keys.","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
    let e = parse(Format::OpenAi, 401, openai_401, 1).unwrap_err();
    assert_eq!(e, EmbedError::Auth { status: 401 });
    assert!(!e.to_string().contains("sk-"));

    let gemini_403 = br#"{"error":{"code":403,"message":"Method doesn't allow unregistered callers","status":"PERMISSION_DENIED"}}"#;
    assert_eq!(
        parse(Format::Gemini, 403, gemini_403, 1),
        Err(EmbedError::Auth { status: 403 })
    );

    // Gemini answers a bad key with 400.
    let gemini_bad_key = br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID"}]}}"#;
    assert_eq!(
        parse(Format::Gemini, 400, gemini_bad_key, 1),
        Err(EmbedError::Auth { status: 400 })
    );

    let openai_400 = br#"{"error":{"message":"This model's maximum context length is 8192 tokens, however you requested 9000 tokens.","type":"invalid_request_error","param":null,"code":null}}"#;
    let e = parse(Format::OpenAi, 400, openai_400, 1).unwrap_err();
    assert!(
        matches!(&e, EmbedError::BadRequest { status: 400, detail } if detail.contains("maximum context length"))
    );
    assert!(!e.is_retryable());

    let ollama_404 = br#"{"error":"model \"nomic-embed-text\" not found, try pulling it first"}"#;
    let e = parse(Format::Ollama, 404, ollama_404, 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"embedding request rejected (HTTP 404): model "nomic-embed-text" not found, try pulling it first"#
    );

    let e = parse(
        Format::OpenAi,
        500,
        br#"{"error":{"message":"The server had an error while processing your request."}}"#,
        1,
    )
    .unwrap_err();
    assert!(matches!(&e, EmbedError::Server { status: 500, .. }) && e.is_retryable());
    let html = format!(
        "<html><body>{}</body></html>",
        "502 Bad Gateway ".repeat(50)
    );
    let e = parse(Format::Gemini, 502, html.as_bytes(), 1).unwrap_err();
    assert!(matches!(&e, EmbedError::Server { status: 502, .. }));
    assert!(e.to_string().chars().count() < 260);
    let e = parse(Format::Ollama, 503, b"", 1).unwrap_err();
    assert_eq!(
        e.to_string(),
        "embedding provider failed (HTTP 503): no details"
    );
    assert!(matches!(
        parse(Format::Ollama, 408, b"", 1),
        Err(EmbedError::Server { status: 408, .. })
    ));
}

#[test]
fn key_like_words_never_reach_messages() {
    let key = "sk-live-0123456789abcdefghijklmnop";
    let body = format!(r#"{{"error":{{"message":"Bad request with key {key} in it"}}}}"#);
    for status in [400, 404, 422, 500, 503] {
        let e = parse(Format::OpenAi, status, body.as_bytes(), 1).unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains(key) && !text.contains("0123456789abcdef"),
            "{text}"
        );
        assert!(text.contains("[redacted]"), "{text}");
    }
    let body = format!(r#"{{"error":{{"message":"key={key}"}}}}"#);
    let e = parse(Format::OpenAi, 200, body.as_bytes(), 1).unwrap_err();
    assert!(!e.to_string().contains("0123456789"), "{e}");
}

#[test]
fn malformed_answers() {
    let malformed = |format, body: &[u8], expected| {
        matches!(
            parse(format, 200, body, expected),
            Err(EmbedError::Malformed { .. })
        )
    };
    assert!(malformed(Format::OpenAi, b"", 1));
    assert!(malformed(Format::OpenAi, b"not json", 1));
    assert!(malformed(
        Format::OpenAi,
        br#"{"data":[{"embedding":"AAAAAA=="}]}"#,
        1
    ));
    assert!(malformed(Format::Ollama, br#"{"embedding":[1,2]}"#, 1));
    assert!(malformed(
        Format::Ollama,
        br#"{"embeddings":[[1,2],[1,2,3]]}"#,
        2
    ));
    assert!(malformed(Format::Ollama, br#"{"embeddings":[[]]}"#, 1));
    assert!(malformed(
        Format::Gemini,
        br#"{"embeddings":[{"values":[1e39, 0]}]}"#,
        1
    ));
    assert!(malformed(
        Format::Gemini,
        br#"{"embeddings":[{"values":[null]}]}"#,
        1
    ));
    let e = parse(
        Format::OpenAi,
        200,
        br#"{"error":{"message":"upstream timed out"}}"#,
        1,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "malformed embedding response: error in a 2xx answer: upstream timed out"
    );
    assert_eq!(
        parse(Format::Ollama, 200, br#"{"embeddings":[[1,0]]}"#, 2),
        Err(EmbedError::CountMismatch {
            expected: 2,
            got: 1
        })
    );
    // A zero vector is a valid (if useless) answer and stays zero.
    assert_eq!(
        parse(Format::Ollama, 200, br#"{"embeddings":[[0,0]]}"#, 1),
        Ok(vec![vec![0.0, 0.0]])
    );
}

fn any_format() -> impl Strategy<Value = Format> {
    prop_oneof![
        Just(Format::OpenAi),
        Just(Format::Ollama),
        Just(Format::Gemini)
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(
        format in any_format(),
        status in any::<u16>(),
        body in proptest::collection::vec(any::<u8>(), 0..512),
        expected in 0usize..4,
    ) {
        if let Err(e) = parse(format, status, &body, expected) {
            prop_assert!(e.to_string().chars().count() < 300);
        }
    }

    #[test]
    fn json_shaped_answers_never_panic(
        format in any_format(),
        rows in proptest::collection::vec(
            (proptest::option::of(0usize..6), proptest::collection::vec(-1e40f64..1e40, 0..5)),
            0..5,
        ),
        expected in 0usize..6,
    ) {
        let row = |(index, values): &(Option<usize>, Vec<f64>)| {
            let values = serde_json::to_string(values).unwrap();
            match (format, index) {
                (Format::OpenAi, Some(i)) => format!(r#"{{"index":{i},"embedding":{values}}}"#),
                (Format::OpenAi, None) => format!(r#"{{"embedding":{values}}}"#),
                (Format::Ollama, _) => values,
                (Format::Gemini, _) => format!(r#"{{"values":{values}}}"#),
            }
        };
        let list = rows.iter().map(row).collect::<Vec<_>>().join(",");
        let body = match format {
            Format::OpenAi => format!(r#"{{"data":[{list}]}}"#),
            Format::Ollama => format!(r#"{{"embeddings":[{list}]}}"#),
            Format::Gemini => format!(r#"{{"embeddings":[{list}]}}"#),
        };
        if let Ok(vectors) = parse(format, 200, body.as_bytes(), expected) {
            prop_assert_eq!(vectors.len(), expected);
            for v in vectors {
                let norm: f32 = v.iter().map(|x| x * x).sum();
                prop_assert!(norm == 0.0 || (norm - 1.0).abs() < 1e-4);
            }
        }
    }

    #[test]
    fn requests_carry_every_text(
        format in any_format(),
        texts in proptest::collection::vec(".{0,40}", 0..6),
        model in "[a-z0-9/ .:-]{1,30}",
    ) {
        let r = build(format, "http://127.0.0.1:1/", Some("k"), &model, &texts);
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let sent: Vec<String> = match format {
            Format::Gemini => body["requests"].as_array().unwrap().iter()
                .map(|q| q["content"]["parts"][0]["text"].as_str().unwrap().to_owned()).collect(),
            _ => body["input"].as_array().unwrap().iter()
                .map(|t| t.as_str().unwrap().to_owned()).collect(),
        };
        prop_assert_eq!(sent, texts);
        prop_assert!(r.url.starts_with("http://127.0.0.1:1/"));
        prop_assert!(!r.url.contains(' '));
    }
}
